// tests/net/test_net_smoke.cpp - end-to-end checks of the networking stack on loopback: a stream
// echo server and client, sock_* on a socketpair, a Protocol server. (The per-module suites
// test_streams, test_sock_lowlevel, test_server, test_protocols port CPython's tests.)
#include <gtest/gtest.h>

#include "support.hpp"

using namespace asyncio;

TEST(NetSmoke, StreamEchoRoundTrip) {
    auto main = []() -> Coro<std::string> {
        Server server = co_await start_server(asyncio_test::echo_until_eof, "127.0.0.1", 0);
        int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        writer.write("hello\nworld\n");
        co_await writer.drain();
        std::string a = co_await reader.readline();
        std::string b = co_await reader.readexactly(6);
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
        co_return a + b;
    };
    EXPECT_EQ(run(main()), "hello\nworld\n");
}

TEST(NetSmoke, SockOpsOnASocketpair) {
    auto main = []() -> Coro<std::string> {
        auto [a, b] = socketpair();
        EventLoop& loop = get_running_loop();
        Task<std::string> rx = create_task(loop.sock_recv(b, 100));
        co_await sleep(0);
        co_await loop.sock_sendall(a, "ping");
        co_return co_await rx;
    };
    EXPECT_EQ(run(main()), "ping");
}

TEST(NetSmoke, ProtocolServerSeesDataAndEof) {
    struct Collect : Protocol {
        std::string got;
        bool eof = false;
        bool lost = false;
        std::shared_ptr<Transport> t;
        void connection_made(std::shared_ptr<Transport> tr) override { t = tr; }
        void data_received(std::string_view d) override {
            got += d;
            t->write(d);
        }
        bool eof_received() override {
            eof = true;
            return false;
        }
        void connection_lost(std::exception_ptr) override {
            lost = true;
            t.reset();
        }
    };
    auto proto = std::make_shared<Collect>();
    auto main = [proto]() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        auto factory = [proto] { return proto; };  // named: GCC 12 bug, docs/compilers.md
        Server server = co_await loop.create_server(std::move(factory), "127.0.0.1", 0);
        int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        writer.write("abc");
        writer.write_eof();
        std::string echoed = co_await reader.read();
        server.close();
        co_await server.wait_closed();
        co_return echoed;
    };
    EXPECT_EQ(run(main()), "abc");
    EXPECT_EQ(proto->got, "abc");
    EXPECT_TRUE(proto->eof);
    EXPECT_TRUE(proto->lost);
}

TEST(NetSmoke, DatagramEndpointsExchangeDatagrams) {
    struct Echo : DatagramProtocol {
        std::shared_ptr<DatagramTransport> t;
        void connection_made(std::shared_ptr<DatagramTransport> tr) override { t = tr; }
        void datagram_received(std::string_view d, const SockAddr& from) override { t->sendto(d, from); }
        void connection_lost(std::exception_ptr) override { t.reset(); }
    };
    struct Client : DatagramProtocol {
        Future<std::string> reply;
        std::shared_ptr<DatagramTransport> t;
        void connection_made(std::shared_ptr<DatagramTransport> tr) override {
            t = tr;
            t->sendto("datagram");
        }
        void datagram_received(std::string_view d, const SockAddr&) override {
            if (!reply.done()) reply.set_result(std::string(d));
        }
        void connection_lost(std::exception_ptr) override { t.reset(); }
    };
    auto main = []() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        DatagramOptions server_opts;
        server_opts.local_host = "127.0.0.1";
        server_opts.local_port = 0;
        auto [st, sp] = co_await loop.create_datagram_endpoint([] { return std::make_shared<Echo>(); }, server_opts);
        int port = st->get_extra_info<SockAddr>("sockname", {}).port();
        DatagramOptions client_opts;
        client_opts.remote_host = "127.0.0.1";
        client_opts.remote_port = port;
        auto [ct, cp] = co_await loop.create_datagram_endpoint([] { return std::make_shared<Client>(); }, client_opts);
        std::string r = co_await wait_for(cp->reply, 10.0);
        ct->close();
        st->close();
        co_return r;
    };
    EXPECT_EQ(run(main()), "datagram");
}
