// tests/loop/test_events_header.cpp - <asyncio/events.hpp> alone is enough to use the loop:
// every member template of EventLoop (create_task, run_until_complete, create_server,
// create_connection, run_in_executor) is defined by what that header brings. This file must
// include nothing else from the library: it fails to link ("used but never defined") if a
// member template's definition is out of reach.
#include <asyncio/events.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>

namespace {

using asyncio::Coro;
using asyncio::EventLoop;

/// Echoes what it receives and closes at EOF.
class Echo : public asyncio::Protocol {
public:
    void connection_made(std::shared_ptr<asyncio::Transport> transport) override { transport_ = transport; }
    void data_received(std::string_view data) override { transport_->write(data); }
    void connection_lost(std::exception_ptr) override { transport_.reset(); }

private:
    std::shared_ptr<asyncio::Transport> transport_;
};

/// Collects what it receives; `lost` is set when the connection ends.
class Collect : public asyncio::Protocol {
public:
    void data_received(std::string_view data) override { received += data; }
    void connection_lost(std::exception_ptr) override { lost.set_result(); }
    std::string received;
    asyncio::Future<void> lost{asyncio::get_running_loop()};
};

Coro<std::string> echo_round_trip(EventLoop& loop) {
    auto server_factory = [] { return std::make_shared<Echo>(); };
    asyncio::Server server = co_await loop.create_server(server_factory, "127.0.0.1", 0);
    auto client = std::make_shared<Collect>();
    auto client_factory = [client] { return client; };
    auto made =
        co_await loop.create_connection(client_factory, "127.0.0.1", server.sockets().at(0).getsockname().port());
    made.first->write("ping");
    made.first->write_eof();
    co_await client->lost;
    server.close();
    co_await server.wait_closed();
    co_return client->received;
}

Coro<int> in_executor(EventLoop& loop) {
    co_return co_await loop.run_in_executor(nullptr, [] { return 42; });
}

TEST(EventsHeader, LoopMemberTemplatesAreUsableWithEventsHppAlone) {
    EventLoop loop;
    asyncio::Task<std::string> echo = loop.create_task(echo_round_trip(loop));
    EXPECT_EQ(loop.run_until_complete(echo), "ping");
    EXPECT_EQ(loop.run_until_complete(in_executor(loop)), 42);
    loop.close();
}

}  // namespace
