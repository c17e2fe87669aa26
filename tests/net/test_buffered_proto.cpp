// tests/net/test_buffered_proto.cpp - BufferedProtocol on real sockets: CPython's
// test_buffered_proto.py (a stream server sends a payload to a create_connection client with a
// small get_buffer() buffer), the BufferedProtocol parts of test_protocols.py, and
// test_selector_events.py's SelectorSocketTransportBufferedProtocolTests (get_buffer /
// buffer_updated errors, an empty buffer, eof_received, switching protocol types) - on
// loopback TCP and socketpairs instead of mocks.
//
// GCC 12 note: a lambda that captures something with a destructor (`[proto] { return proto; }`)
// must not be written inside a co_await expression - GCC 12 destroys that temporary twice
// (the shared_ptr loses a reference; see docs/compilers.md). Protocol factories are named
// variables here for that reason.
#include <gtest/gtest.h>

#include "support.hpp"

#include "backend/faults.hpp"

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <poll.h>
#include <sys/socket.h>

using namespace asyncio;
using asyncio_test::Boom;
using asyncio_test::code_of;
using asyncio_test::HandlerCapture;
using asyncio_test::settle;

namespace {

/// A BufferedProtocol with a fixed-size buffer that records what it is told.
struct BufRec : BufferedProtocol {
    explicit BufRec(std::size_t size = 100) : buffer(size) {}

    std::shared_ptr<Transport> transport;
    std::vector<char> buffer;
    std::string data;                 // what buffer_updated() reported, in order
    std::vector<std::string> events;  // "made", "get_buffer", "updated", "eof", "lost"
    std::size_t max_nbytes = 0;
    bool nbytes_within_buffer = true;
    int get_buffer_calls = 0;
    int updated_calls = 0;
    int lost_calls = 0;
    std::exception_ptr lost_exc;
    bool keep_open = false;
    std::function<std::span<char>(BufRec&)> on_get_buffer;  // replaces the default buffer
    std::function<void(BufRec&, std::size_t)> on_updated;
    std::function<void(BufRec&)> on_made;
    std::function<void(BufRec&)> on_eof;
    std::span<char> last;  // the last buffer handed out
    Event changed;

    void connection_made(std::shared_ptr<Transport> t) override {
        transport = std::move(t);
        events.emplace_back("made");
        changed.set();
        if (on_made) on_made(*this);
    }
    std::span<char> get_buffer(std::size_t) override {
        ++get_buffer_calls;
        events.emplace_back("get_buffer");
        last = on_get_buffer ? on_get_buffer(*this) : std::span<char>(buffer);
        return last;
    }
    void buffer_updated(std::size_t nbytes) override {
        ++updated_calls;
        events.emplace_back("updated");
        if (nbytes > last.size() || nbytes == 0) nbytes_within_buffer = false;
        max_nbytes = std::max(max_nbytes, nbytes);
        data.append(last.data(), std::min(nbytes, last.size()));
        changed.set();
        if (on_updated) on_updated(*this, nbytes);
    }
    bool eof_received() override {
        events.emplace_back("eof");
        changed.set();
        if (on_eof) on_eof(*this);
        return keep_open;
    }
    void connection_lost(std::exception_ptr exc) override {
        ++lost_calls;
        lost_exc = exc;
        events.emplace_back("lost");
        changed.set();
    }

    /// The events without get_buffer, with runs collapsed.
    std::vector<std::string> collapsed() const {
        std::vector<std::string> out;
        for (const auto& e : events)
            if (e != "get_buffer" && (out.empty() || out.back() != e)) out.push_back(e);
        return out;
    }
};

/// A plain Protocol, for switching to and from.
struct PlainRec : Protocol {
    std::shared_ptr<Transport> transport;
    std::string data;
    std::vector<std::string> events;
    int lost_calls = 0;
    Event changed;
    void connection_made(std::shared_ptr<Transport> t) override {
        transport = std::move(t);
        events.emplace_back("made");
        changed.set();
    }
    void data_received(std::string_view d) override {
        data += d;
        events.emplace_back("data");
        changed.set();
    }
    bool eof_received() override {
        events.emplace_back("eof");
        changed.set();
        return false;
    }
    void connection_lost(std::exception_ptr) override {
        ++lost_calls;
        events.emplace_back("lost");
        changed.set();
    }
};

std::vector<std::string> seq(std::initializer_list<const char*> names) {
    std::vector<std::string> v;
    for (const char* n : names) v.emplace_back(n);
    return v;
}

Coro<void> until_loop(Event& changed, std::function<bool()> pred) {
    while (!pred()) {
        changed.clear();
        co_await changed.wait();
    }
}

/// Waits (10 s at most) until `pred()` holds; `changed` is set whenever it may have changed.
Coro<void> until(Event& changed, std::function<bool()> pred) {
    co_await wait_for(until_loop(changed, std::move(pred)), 10.0);
}

template <class P>
Coro<void> until_lost(P& p) {
    co_await until(p.changed, [&p] { return p.lost_calls > 0; });
}

struct Conn {
    std::shared_ptr<Transport> tr;
    Socket peer;
};

/// create_connection() to a raw listening socket on 127.0.0.1; the accepted socket is the peer.
Coro<Conn> tcp_client(std::shared_ptr<BaseProtocol> proto) {
    EventLoop& loop = get_running_loop();
    Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(SockAddr("127.0.0.1", 0));
    listener.listen();
    Task<std::pair<Socket, SockAddr>> accepted = create_task(loop.sock_accept(listener));
    auto factory = [proto] { return proto; };
    auto made = co_await loop.create_connection(factory, "127.0.0.1", listener.getsockname().port());
    std::pair<Socket, SockAddr> acc = co_await wait_for(accepted, 10.0);
    co_return Conn{made.first, std::move(acc.first)};
}

/// connect_accepted_socket() on one end of a Unix socketpair; the other end is the peer.
Coro<Conn> pair_conn(std::shared_ptr<BaseProtocol> proto) {
    std::pair<Socket, Socket> ends = socketpair();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_accepted_socket(factory, std::move(ends.first));
    co_return Conn{made.first, std::move(ends.second)};
}

Coro<std::string> read_to_eof_loop(Socket& s) {
    std::string out;
    for (;;) {
        std::string chunk;
        try {
            chunk = co_await get_running_loop().sock_recv(s, 256 * 1024);
        } catch (const std::system_error&) {
            break;
        }
        if (chunk.empty()) break;
        out += chunk;
    }
    co_return out;
}

Coro<std::string> read_to_eof(Socket& s) { co_return co_await wait_for(read_to_eof_loop(s), 10.0); }

void reset_close(Socket& s) {
    linger lg{1, 0};
    ASSERT_EQ(::setsockopt(s.fileno(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    s.close();
}

/// Blocks (10 s at most) until `fd` is readable: the bytes sent are in the socket.
bool fd_readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 10000) == 1;
}

/// This suite's payload (asyncio_test::pattern, capitals with another step and drift).
std::string pattern(std::size_t n) { return asyncio_test::pattern(n, {.first = 'A', .step = 5, .drift = 997}); }

}  // namespace

// =============================================================================================
// Receiving (test_buffered_proto.py)
// =============================================================================================

TEST(BufferedProtocol, CreateConnectionReceivesAStreamServersPayloadThroughASmallBuffer) {
    // CPython's test_buffered_proto_create_connection: the server writes NOISE and waits for
    // one byte back; the client, with a 100-byte buffer, answers once it has all of NOISE.
    std::string noise;
    for (int i = 0; i < 1024; ++i) noise += "12345678+";
    auto proto = std::make_shared<BufRec>(100);
    proto->on_updated = [&noise](BufRec& p, std::size_t) {
        if (p.data == noise) p.transport->write("1");
    };
    std::string server_got;
    auto main = [&]() -> Coro<void> {
        auto on_client = [&](StreamReader reader, StreamWriter writer) -> Coro<void> {
            writer.write(noise);
            server_got = co_await reader.readexactly(1);
            writer.close();
            co_await writer.wait_closed();
        };
        Server srv = co_await start_server(on_client, "127.0.0.1", 0);
        int port = srv.sockets().at(0).getsockname().port();
        auto factory = [proto] { return proto; };
        auto made = co_await get_running_loop().create_connection(factory, "127.0.0.1", port);
        EXPECT_EQ(made.second, proto);
        co_await until_lost(*proto);
        srv.close();
        co_await wait_for(srv.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_EQ(proto->data, noise);
    EXPECT_EQ(server_got, "1");
    EXPECT_EQ(proto->lost_exc, nullptr);
    EXPECT_TRUE(proto->nbytes_within_buffer);
    EXPECT_LE(proto->max_nbytes, 100u);
    EXPECT_GE(proto->updated_calls, static_cast<int>(noise.size() / 100));
}

TEST(BufferedProtocol, LargePayloadArrivesIntactThroughBufferUpdated) {
    auto proto = std::make_shared<BufRec>(64 * 1024);
    const std::string payload = pattern(4 * 1024 * 1024);
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EventLoop& loop = get_running_loop();
        co_await wait_for(loop.sock_sendall(c.peer, payload), 10.0);
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->data.size(), payload.size());
    EXPECT_TRUE(proto->data == payload);
    EXPECT_TRUE(proto->nbytes_within_buffer);
    EXPECT_LE(proto->max_nbytes, 64u * 1024);
}

TEST(BufferedProtocol, BufferUpdatedCountsBytesWrittenIntoTheLastBufferReturned) {
    // get_buffer() hands out a different buffer each time (alternating sizes): every
    // buffer_updated(n) describes the start of the buffer returned just before it.
    auto proto = std::make_shared<BufRec>();
    std::vector<char> small(7), large(300);
    int turn = 0;
    proto->on_get_buffer = [&](BufRec&) -> std::span<char> {
        return (turn++ % 2) ? std::span<char>(large) : std::span<char>(small);
    };
    const std::string payload = pattern(20000);
    auto main = [&]() -> Coro<void> {
        Conn c = co_await pair_conn(proto);
        co_await get_running_loop().sock_sendall(c.peer, payload);
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_TRUE(proto->data == payload);
    EXPECT_TRUE(proto->nbytes_within_buffer);
    EXPECT_LE(proto->max_nbytes, 300u);
}

TEST(BufferedProtocol, GetBufferIsCalledBeforeEveryBufferUpdated) {
    auto proto = std::make_shared<BufRec>(10);
    auto main = [&]() -> Coro<void> {
        Conn c = co_await pair_conn(proto);
        co_await get_running_loop().sock_sendall(c.peer, pattern(1000));
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
    };
    run(main());
    // Every "updated" directly follows a "get_buffer".
    for (std::size_t i = 0; i < proto->events.size(); ++i)
        if (proto->events[i] == "updated") {
            ASSERT_GT(i, 0u);
            EXPECT_EQ(proto->events[i - 1], "get_buffer") << i;
        }
    EXPECT_GE(proto->updated_calls, 100);
    EXPECT_EQ(proto->data, pattern(1000));
}

TEST(BufferedProtocol, CallbackOrderIsMadeThenUpdatesThenEofThenLost) {
    auto proto = std::make_shared<BufRec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EventLoop& loop = get_running_loop();
        for (int i = 0; i < 20; ++i) co_await loop.sock_sendall(c.peer, "chunk" + std::to_string(i) + ";");
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
        co_await settle();
    };
    run(main());
    EXPECT_EQ(proto->collapsed(), seq({"made", "updated", "eof", "lost"}));
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_EQ(proto->events.front(), "made");  // connection_made comes before any get_buffer
}

TEST(BufferedProtocol, ServerSideBufferedProtocolViaCreateServer) {
    auto proto = std::make_shared<BufRec>(16);
    std::string echoed;
    proto->on_updated = [](BufRec& p, std::size_t n) { p.transport->write(std::string_view(p.last.data(), n)); };
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [proto] { return proto; };
        Server server = co_await loop.create_server(factory, "127.0.0.1", 0);
        Socket client(AF_INET, SOCK_STREAM);
        co_await loop.sock_connect(client, SockAddr("127.0.0.1", server.sockets().at(0).getsockname().port()));
        co_await loop.sock_sendall(client, "a buffered echo of more than sixteen bytes");
        client.shutdown(SHUT_WR);
        echoed = co_await read_to_eof(client);
        co_await until_lost(*proto);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_EQ(echoed, "a buffered echo of more than sixteen bytes");
    EXPECT_EQ(proto->collapsed(), seq({"made", "updated", "eof", "lost"}));
}

// =============================================================================================
// EOF
// =============================================================================================

TEST(BufferedProtocol, EofReceivedReturningFalseClosesTheTransport) {
    auto proto = std::make_shared<BufRec>();
    std::string peer_got = "unset";
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        co_await get_running_loop().sock_sendall(c.peer, "bye");
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
        EXPECT_TRUE(c.tr->is_closing());
        peer_got = co_await read_to_eof(c.peer);
    };
    run(main());
    EXPECT_EQ(proto->data, "bye");
    EXPECT_EQ(proto->lost_exc, nullptr);
    EXPECT_EQ(peer_got, "");
}

TEST(BufferedProtocol, EofReceivedReturningTrueKeepsTheTransportHalfOpen) {
    auto proto = std::make_shared<BufRec>();
    proto->keep_open = true;
    std::string reply;
    int lost_after_eof = -1;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        co_await get_running_loop().sock_sendall(c.peer, "request");
        c.peer.shutdown(SHUT_WR);
        co_await until(proto->changed, [&] { return proto->events.back() == "eof"; });
        co_await settle(10);
        lost_after_eof = proto->lost_calls;
        EXPECT_FALSE(c.tr->is_closing());
        c.tr->write("response to " + proto->data);
        c.tr->close();
        reply = co_await read_to_eof(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(lost_after_eof, 0);
    EXPECT_EQ(reply, "response to request");
    EXPECT_EQ(proto->lost_exc, nullptr);
    EXPECT_EQ(proto->collapsed(), seq({"made", "updated", "eof", "lost"}));
}

// =============================================================================================
// Fatal errors (SelectorSocketTransportBufferedProtocolTests)
// =============================================================================================

TEST(BufferedProtocolErrors, EmptyBufferFromGetBufferIsAFatalError) {
    auto proto = std::make_shared<BufRec>();
    proto->on_get_buffer = [](BufRec&) { return std::span<char>(); };
    HandlerCapture handler;
    std::string peer_got = "unset";
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        co_await get_running_loop().sock_sendall(c.peer, "data");
        co_await until_lost(*proto);
        peer_got = co_await read_to_eof(c.peer);
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "Fatal error: protocol.get_buffer() call failed.");
    EXPECT_TRUE(asyncio_test::holds<asyncio::RuntimeError>(handler.contexts[0].exception));  // as Python's
    EXPECT_EQ(proto->updated_calls, 0);
    EXPECT_GE(proto->get_buffer_calls, 1);
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_NE(proto->lost_exc, nullptr);
    EXPECT_EQ(proto->lost_exc, handler.contexts[0].exception);
    EXPECT_EQ(peer_got, "");
}

TEST(BufferedProtocolErrors, ExceptionInGetBufferIsAFatalError) {
    auto proto = std::make_shared<BufRec>();
    proto->on_get_buffer = [](BufRec&) -> std::span<char> { throw Boom("no buffer"); };
    HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        co_await get_running_loop().sock_sendall(c.peer, "data");
        co_await until_lost(*proto);
        EXPECT_TRUE(c.tr->is_closing());
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "Fatal error: protocol.get_buffer() call failed.");
    EXPECT_TRUE(asyncio_test::holds<Boom>(handler.contexts[0].exception));
    EXPECT_EQ(proto->lost_exc, handler.contexts[0].exception);
    EXPECT_EQ(proto->updated_calls, 0);
}

TEST(BufferedProtocolErrors, ExceptionInBufferUpdatedIsAFatalError) {
    auto proto = std::make_shared<BufRec>();
    proto->on_updated = [](BufRec&, std::size_t) { throw Boom("bad update"); };
    HandlerCapture handler;
    std::string peer_got = "unset";
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        co_await get_running_loop().sock_sendall(c.peer, "data");
        co_await until_lost(*proto);
        peer_got = co_await read_to_eof(c.peer);
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "Fatal error: protocol.buffer_updated() call failed.");
    EXPECT_TRUE(asyncio_test::holds<Boom>(handler.contexts[0].exception));
    EXPECT_EQ(proto->lost_exc, handler.contexts[0].exception);
    EXPECT_EQ(proto->updated_calls, 1);  // nothing more after the failure
    EXPECT_EQ(peer_got, "");
}

TEST(BufferedProtocolErrors, ExceptionInEofReceivedIsAFatalError) {
    auto proto = std::make_shared<BufRec>();
    proto->on_eof = [](BufRec&) { throw Boom("bad eof"); };
    HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "Fatal error: protocol.eof_received() call failed.");
    EXPECT_TRUE(asyncio_test::holds<Boom>(handler.contexts[0].exception));
    EXPECT_EQ(proto->lost_exc, handler.contexts[0].exception);
    EXPECT_EQ(proto->collapsed(), seq({"made", "eof", "lost"}));
}

TEST(BufferedProtocolErrors, PeerResetGivesConnectionLostWithEconnresetAndIsNotReported) {
    auto proto = std::make_shared<BufRec>();
    HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        reset_close(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty());
    EXPECT_EQ(code_of(proto->lost_exc), std::errc::connection_reset);
    EXPECT_EQ(proto->updated_calls, 0);
    EXPECT_EQ(proto->collapsed(), seq({"made", "lost"}));
}

// =============================================================================================
// Reading control and protocol switching
// =============================================================================================

TEST(BufferedProtocolReading, PauseReadingHoldsBufferUpdatedUntilResume) {
    auto proto = std::make_shared<BufRec>();
    int calls_while_paused = -1;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->pause_reading();
        EXPECT_FALSE(c.tr->is_reading());
        co_await get_running_loop().sock_sendall(c.peer, "held");
        EXPECT_TRUE(fd_readable(c.tr->get_extra_info<TransportSocket>("socket", {}).fileno()));
        co_await settle(10);
        calls_while_paused = proto->get_buffer_calls + proto->updated_calls;
        c.tr->resume_reading();
        EXPECT_TRUE(c.tr->is_reading());
        co_await until(proto->changed, [&] { return proto->data == "held"; });
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(calls_while_paused, 0);
    EXPECT_EQ(proto->data, "held");
}

TEST(BufferedProtocolReading, PauseReadingInsideConnectionMadeHoldsTheFirstBytes) {
    auto proto = std::make_shared<BufRec>();
    proto->on_made = [](BufRec& p) { p.transport->pause_reading(); };
    std::string while_paused = "unset";
    auto main = [&]() -> Coro<void> {
        auto [a, b] = socketpair();
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendall(b, "early");
        auto factory = [proto] { return proto; };
        auto made = co_await loop.connect_accepted_socket(factory, std::move(a));
        EXPECT_FALSE(made.first->is_reading());
        co_await settle(10);
        while_paused = proto->data;
        made.first->resume_reading();
        co_await until(proto->changed, [&] { return proto->data == "early"; });
        made.first->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(while_paused, "");
    EXPECT_EQ(proto->data, "early");
}

TEST(BufferedProtocolSwitch, FromProtocolToBufferedProtocolMidStream) {
    auto plain = std::make_shared<PlainRec>();
    auto buffered = std::make_shared<BufRec>(4);
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(plain);
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendall(c.peer, "data");
        co_await until(plain->changed, [&] { return plain->data == "data"; });
        buffered->transport = c.tr;
        c.tr->set_protocol(buffered);
        EXPECT_EQ(c.tr->get_protocol(), buffered);
        co_await loop.sock_sendall(c.peer, "0123456789");
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*buffered);
    };
    run(main());
    EXPECT_EQ(plain->data, "data");
    EXPECT_EQ(plain->lost_calls, 0);
    EXPECT_EQ(buffered->data, "0123456789");
    EXPECT_LE(buffered->max_nbytes, 4u);
    EXPECT_EQ(buffered->collapsed(), seq({"updated", "eof", "lost"}));
}

TEST(BufferedProtocolSwitch, FromBufferedProtocolToProtocolMidStream) {
    auto buffered = std::make_shared<BufRec>();
    auto plain = std::make_shared<PlainRec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(buffered);
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendall(c.peer, "first");
        co_await until(buffered->changed, [&] { return buffered->data == "first"; });
        plain->transport = c.tr;
        c.tr->set_protocol(plain);
        // The premise: "second" comes in one read, so one data_received() (no 1-byte transfer
        // of ASYNCIO_FAULTS on either side).
        asyncio::detail::faults::Suspended premise;
        co_await loop.sock_sendall(c.peer, "second");
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*plain);
    };
    run(main());
    EXPECT_EQ(buffered->data, "first");
    EXPECT_EQ(buffered->lost_calls, 0);
    EXPECT_EQ(plain->data, "second");
    EXPECT_EQ(plain->events, seq({"data", "eof", "lost"}));
}

TEST(BufferedProtocolSwitch, SwitchingFromInsideBufferUpdatedAppliesToTheNextRead) {
    auto buffered = std::make_shared<BufRec>(5);
    auto plain = std::make_shared<PlainRec>();
    buffered->on_updated = [plain](BufRec& p, std::size_t) {
        plain->transport = p.transport;
        p.transport->set_protocol(plain);
    };
    auto main = [&]() -> Coro<void> {
        Conn c = co_await pair_conn(buffered);
        EventLoop& loop = get_running_loop();
        {
            // The premise: "hello" is taken in one read, so one buffer_updated() (no 1-byte
            // transfer of ASYNCIO_FAULTS on either side).
            asyncio::detail::faults::Suspended premise;
            co_await loop.sock_sendall(c.peer, "hello");
            co_await until(buffered->changed, [&] { return buffered->updated_calls > 0; });
        }
        co_await loop.sock_sendall(c.peer, " world");
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*plain);
    };
    run(main());
    EXPECT_EQ(buffered->data, "hello");
    EXPECT_EQ(buffered->updated_calls, 1);
    EXPECT_EQ(plain->data, " world");
}
