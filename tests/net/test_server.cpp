// tests/net/test_server.cpp - servers and connections on real loopback sockets: asyncio::Server
// (sockets, is_serving, close, wait_closed with Python 3.12.1+ semantics, serve_forever,
// start_serving, close_clients/abort_clients), create_server (several hosts, reuse_port,
// port 0, address in use), create_connection (numeric and named hosts, local_addr, Happy
// Eyeballs, errors), connect_accepted_socket, Unix servers (socket file cleanup) and closing
// a loop that still has servers and transports open. Ports CPython's
// Lib/test/test_asyncio/test_server.py and the create_server/create_connection scenarios of
// test_events.py / test_base_events.py.
//
// Everything runs on the real clock; waits that a bug could turn into hangs are bounded with
// wait_for(..., kTimeout).
#include <gtest/gtest.h>

#include "support.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace asyncio;
using asyncio_test::code_of;

using asyncio_test::error_of;
using asyncio_test::holds;
using asyncio_test::message_of;
using asyncio_test::open_fd_count;
using asyncio_test::settle;
using asyncio_test::TempDir;

namespace {

constexpr double kTimeout = 10.0;

using asyncio_test::ipv6_available;

/// A port nobody listens on (bound, then released).
int unused_port() {
    Socket s(AF_INET, SOCK_STREAM);
    s.bind(SockAddr("127.0.0.1", 0));
    return s.getsockname().port();
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

bool is_socket_file(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

int port_of(const Server& s) { return s.sockets().at(0).getsockname().port(); }

/// CPython's MyBaseProto: checks the callback order and records what happened.
struct MyProto : Protocol {
    std::string state = "INITIAL";
    std::size_t nbytes = 0;
    std::string data;
    std::shared_ptr<Transport> transport;
    Future<void> connected;  // bound to the running loop: create protocols on the loop
    Future<void> done;
    Event got_data;
    std::exception_ptr lost_with;
    std::string greeting;  // written at connection_made when not empty (CPython's MyProto)

    void connection_made(std::shared_ptr<Transport> t) override {
        transport = t;
        EXPECT_EQ(state, "INITIAL");
        state = "CONNECTED";
        connected.set_result();
        if (!greeting.empty()) t->write(greeting);
    }
    void data_received(std::string_view d) override {
        EXPECT_EQ(state, "CONNECTED");
        nbytes += d.size();
        data += d;
        got_data.set();
    }
    bool eof_received() override {
        EXPECT_EQ(state, "CONNECTED");
        state = "EOF";
        return false;
    }
    void connection_lost(std::exception_ptr exc) override {
        EXPECT_TRUE(state == "CONNECTED" || state == "EOF") << state;
        state = "CLOSED";
        lost_with = exc;
        transport.reset();
        done.set_result();
    }
};

/// Collects the protocols a server creates.
struct ProtoList {
    std::vector<std::shared_ptr<MyProto>> protos;
    Event made;  // set at each new protocol
    std::shared_ptr<MyProto> operator()() {
        auto p = std::make_shared<MyProto>();
        protos.push_back(p);
        made.set();
        return p;
    }
    /// Waits until at least n protocols exist and the n-th is connected.
    Coro<std::shared_ptr<MyProto>> nth(std::size_t n) {
        while (protos.size() < n) {
            made.clear();
            co_await wait_for(made.wait(), kTimeout);
        }
        auto p = protos[n - 1];
        co_await wait_for(p->connected, kTimeout);
        co_return p;
    }
};

/// Waits until `p` has received at least `n` bytes.
Coro<void> wait_bytes(std::shared_ptr<MyProto> p, std::size_t n) {
    while (p->nbytes < n) {
        p->got_data.clear();
        co_await wait_for(p->got_data.wait(), kTimeout);
    }
}

/// A plain client socket connected to 127.0.0.1:port.
Coro<Socket> connect_client(int port) {
    Socket s(AF_INET, SOCK_STREAM);
    const SockAddr addr("127.0.0.1", port);
    co_await wait_for(get_running_loop().sock_connect(s, addr), kTimeout);
    co_return s;
}

/// Reads until EOF.
Coro<std::string> recv_all(Socket& s) {
    std::string out;
    for (;;) {
        std::string chunk = co_await wait_for(get_running_loop().sock_recv(s, 65536), kTimeout);
        if (chunk.empty()) co_return out;
        out += chunk;
    }
}

/// The streams handler of CPython's test_server.py: read to EOF, then close.
Coro<void> read_then_close(StreamReader rd, StreamWriter wr) {
    try {
        co_await rd.read();
    } catch (const std::exception&) {
    }
    wr.close();
    try {
        co_await wr.wait_closed();
    } catch (const std::exception&) {
    }
}

/// Counts the handlers that started (so a test can wait until the server has accepted).
struct Started {
    int count = 0;
    Event event;
};

Coro<void> counting_read_then_close(std::shared_ptr<Started> started, StreamReader rd, StreamWriter wr) {
    ++started->count;
    started->event.set();
    co_await read_then_close(std::move(rd), std::move(wr));
}

ClientConnectedCallback counting_handler(std::shared_ptr<Started> started) {
    return [started](StreamReader rd, StreamWriter wr) {
        return counting_read_then_close(started, std::move(rd), std::move(wr));
    };
}

Coro<void> wait_started(std::shared_ptr<Started> started, int n) {
    while (started->count < n) {
        started->event.clear();
        co_await wait_for(started->event.wait(), kTimeout);
    }
}

Coro<void> serve_forever_of(Server srv) { co_await srv.serve_forever(); }

}  // namespace

// =============================================================================================
// Server: sockets, is_serving, close
// =============================================================================================

TEST(Server, SocketsListTheListeningSocket) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        auto socks = srv.sockets();
        CO_ASSERT(socks.size() == 1u);
        SockAddr name = socks[0].getsockname();
        EXPECT_EQ(name.family(), AF_INET);
        EXPECT_EQ(name.host(), "127.0.0.1");
        EXPECT_GT(name.port(), 0);
        EXPECT_EQ(socks[0].family(), AF_INET);
        EXPECT_EQ(socks[0].type(), SOCK_STREAM);
        EXPECT_EQ(socks[0].getsockopt(SOL_SOCKET, SO_ACCEPTCONN), 1);
        EXPECT_EQ(&srv.get_loop(), &loop);
        srv.close();
        co_await srv.wait_closed();
    };
    run(main());
}

TEST(Server, IsServingUntilClosed) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0);
        EXPECT_TRUE(srv.is_serving());
        srv.close();
        EXPECT_FALSE(srv.is_serving());
        EXPECT_TRUE(srv.sockets().empty());
        co_await srv.wait_closed();
    };
    run(main());
}

// What wait_closed() waits for, as a callback (Server::call_when_closed): run at the moment
// the server is closed and its last connection gone - not before - and at once afterwards.
TEST(Server, CallWhenClosedRunsWhenClosedAndTheLastConnectionIsGone) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        int calls = 0;
        srv.call_when_closed([&calls] { ++calls; });
        Socket client = co_await connect_client(port_of(srv));
        auto proto = co_await protos->nth(1);
        srv.close();
        co_await sleep(0.01);
        EXPECT_EQ(calls, 0);  // closed, but a connection is still open
        proto->transport->close();
        co_await wait_for(proto->done, kTimeout);
        EXPECT_EQ(calls, 1);
        srv.call_when_closed([&calls] { calls += 10; });  // already closed and drained: at once
        EXPECT_EQ(calls, 11);
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// CPython: test_server_close.
TEST(Server, CloseStopsAcceptingConnections) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await loop.create_server(factory, "0.0.0.0", 0);
        const int port = port_of(srv);
        Socket first = co_await connect_client(port);
        co_await loop.sock_sendall(first, "xxx");
        first.close();
        srv.close();
        Socket second(AF_INET, SOCK_STREAM);
        const SockAddr addr("127.0.0.1", port);
        auto e = co_await wait_for(error_of(loop.sock_connect(second, addr)), kTimeout);
        EXPECT_EQ(code_of(e), std::errc::connection_refused) << message_of(e);
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(Server, CloseIsIdempotent) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0);
        srv.close();
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
        srv.close();
        EXPECT_FALSE(srv.is_serving());
    };
    run(main());
}

// Python 3.12: Server.close() stops listening only; accepted connections stay open.
TEST(Server, CloseLeavesAcceptedConnectionsOpen) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        Socket client = co_await connect_client(port_of(srv));
        auto proto = co_await protos->nth(1);
        srv.close();
        co_await settle();
        EXPECT_EQ(proto->state, "CONNECTED");
        co_await loop.sock_sendall(client, "still open");
        co_await wait_bytes(proto, 10);
        EXPECT_EQ(proto->data, "still open");
        proto->transport->write("reply");
        // In one receive or several (ASYNCIO_FAULTS's 1-byte transfers cut them).
        std::string got = co_await asyncio_test::sock_recv_exactly(client, 5);
        EXPECT_EQ(got, "reply");
        client.close();
        co_await wait_for(proto->done, kTimeout);
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(Server, EmptyHandleRaisesInvalidStateError) {
    Server srv;
    EXPECT_FALSE(srv);
    EXPECT_FALSE(srv.is_serving());
    EXPECT_THROW(srv.close(), InvalidStateError);
    EXPECT_THROW(srv.sockets(), InvalidStateError);
}

// CPython: test_create_server - the protocol sees connection_made, the data, then
// connection_lost when its transport is closed.
TEST(Server, ProtocolSeesTheConnectionItsDataAndItsEnd) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_server(factory, "0.0.0.0", 0);
        auto socks = srv.sockets();
        CO_ASSERT(socks.size() == 1u);
        EXPECT_EQ(socks[0].getsockname().host(), "0.0.0.0");
        Socket client = co_await connect_client(port_of(srv));
        co_await loop.sock_sendall(client, "xxx");
        auto proto = co_await protos->nth(1);
        EXPECT_EQ(proto->state, "CONNECTED");
        co_await wait_bytes(proto, 3);
        EXPECT_EQ(proto->nbytes, 3u);
        // extra info is available
        SockAddr sockname = proto->transport->get_extra_info<SockAddr>("sockname", {});
        SockAddr peername = proto->transport->get_extra_info<SockAddr>("peername", {});
        EXPECT_FALSE(sockname.empty());
        EXPECT_EQ(peername.host(), "127.0.0.1");
        EXPECT_EQ(peername, client.getsockname());
        proto->transport->close();
        co_await wait_for(proto->done, kTimeout);
        EXPECT_EQ(proto->state, "CLOSED");
        EXPECT_FALSE(proto->lost_with);
        client.close();
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(Server, EachConnectionGetsItsOwnProtocol) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        Socket a = co_await connect_client(port_of(srv));
        Socket b = co_await connect_client(port_of(srv));
        Socket c = co_await connect_client(port_of(srv));
        co_await protos->nth(3);
        EXPECT_EQ(protos->protos.size(), 3u);
        std::set<int> ports;
        for (auto& p : protos->protos) ports.insert(p->transport->get_extra_info<SockAddr>("peername", {}).port());
        EXPECT_EQ(ports.size(), 3u);
        srv.close();
        a.close();
        b.close();
        c.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(Server, AcceptedTransportsHaveTcpNodelay) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        Socket client = co_await connect_client(port_of(srv));
        auto proto = co_await protos->nth(1);
        auto sock = proto->transport->get_extra_info<TransportSocket>("socket", {});
        EXPECT_EQ(sock.getsockopt(IPPROTO_TCP, TCP_NODELAY), 1);
        EXPECT_EQ(sock.getsockopt(SOL_SOCKET, SO_KEEPALIVE), 0);
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// =============================================================================================
// Server.wait_closed (Python 3.12.1+: waits until closed AND every connection is gone)
// =============================================================================================

// CPython: test_wait_closed_basic.
TEST(ServerWaitClosed, WaitsForCloseAndForEveryConnection) {
    auto main = []() -> Coro<void> {
        auto started = std::make_shared<Started>();
        ClientConnectedCallback cb = counting_handler(started);
        Server srv = co_await start_server(cb, "127.0.0.1", 0);

        // active count = 0, not closed: blocks
        Task<void> task1 = create_task(srv.wait_closed());
        co_await sleep(0);
        EXPECT_FALSE(task1.done());

        // active count != 0, not closed: blocks
        auto [rd, wr] = co_await open_connection("127.0.0.1", port_of(srv));
        co_await wait_started(started, 1);
        Task<void> task2 = create_task(srv.wait_closed());
        co_await sleep(0);
        EXPECT_FALSE(task1.done());
        EXPECT_FALSE(task2.done());

        srv.close();
        co_await sleep(0);
        // active count != 0, closed: blocks
        Task<void> task3 = create_task(srv.wait_closed());
        co_await sleep(0);
        EXPECT_FALSE(task1.done());
        EXPECT_FALSE(task2.done());
        EXPECT_FALSE(task3.done());

        wr.close();
        co_await wr.wait_closed();
        // active count == 0, closed: unblocks
        co_await wait_for(task1, kTimeout);
        co_await wait_for(task2, kTimeout);
        co_await wait_for(task3, kTimeout);
        Task<void> task4 = create_task(srv.wait_closed());
        co_await sleep(0);
        EXPECT_TRUE(task4.done());  // returns at once now
    };
    run(main());
}

// CPython: test_wait_closed_race (a 3.12.0 regression).
TEST(ServerWaitClosed, CloseAndConnectionCloseInTheSameIteration) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto started = std::make_shared<Started>();
        ClientConnectedCallback cb = counting_handler(started);
        Server srv = co_await start_server(cb, "127.0.0.1", 0);
        Task<void> task = create_task(srv.wait_closed());
        co_await sleep(0);
        EXPECT_FALSE(task.done());
        auto [rd, wr] = co_await open_connection("127.0.0.1", port_of(srv));
        Server s = srv;
        StreamWriter w = wr;
        loop.call_soon([s]() mutable { s.close(); });
        loop.call_soon([w]() mutable { w.close(); });
        co_await wait_for(srv.wait_closed(), kTimeout);
        co_await wait_for(task, kTimeout);
    };
    run(main());
}

TEST(ServerWaitClosed, ReturnsAtOnceWhenClosedWithoutConnections) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0);
        srv.close();
        Task<void> t = create_task(srv.wait_closed());
        co_await sleep(0);
        EXPECT_TRUE(t.done());
    };
    run(main());
}

TEST(ServerWaitClosed, WaitsForTheProtocolsConnectionLost) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        Socket client = co_await connect_client(port_of(srv));
        auto proto = co_await protos->nth(1);
        srv.close();
        Task<void> waiter = create_task(srv.wait_closed());
        co_await settle();
        EXPECT_FALSE(waiter.done());
        client.close();  // the server side sees EOF and closes
        co_await wait_for(proto->done, kTimeout);
        co_await wait_for(waiter, kTimeout);
        EXPECT_EQ(proto->state, "CLOSED");
    };
    run(main());
}

// Python 3.13: close_clients() closes every accepted connection.
TEST(ServerWaitClosed, CloseClientsLetsWaitClosedFinish) {
    auto main = []() -> Coro<void> {
        auto started = std::make_shared<Started>();
        ClientConnectedCallback cb = counting_handler(started);
        Server srv = co_await start_server(cb, "127.0.0.1", 0);
        auto [rd, wr] = co_await open_connection("127.0.0.1", port_of(srv));
        co_await wait_started(started, 1);
        Task<void> task = create_task(srv.wait_closed());
        co_await sleep(0);
        EXPECT_FALSE(task.done());
        srv.close();
        srv.close_clients();
        co_await sleep(0);
        co_await sleep(0);
        EXPECT_TRUE(task.done());
        // The client sees the end of the connection.
        std::string rest = co_await wait_for(rd.read(), kTimeout);
        EXPECT_EQ(rest, "");
        wr.close();
    };
    run(main());
}

TEST(ServerWaitClosed, CloseClientsWithoutCloseKeepsListening) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        Socket first = co_await connect_client(port_of(srv));
        auto p1 = co_await protos->nth(1);
        srv.close_clients();
        co_await wait_for(p1->done, kTimeout);
        std::string eof = co_await wait_for(loop.sock_recv(first, 10), kTimeout);
        EXPECT_EQ(eof, "");
        EXPECT_TRUE(srv.is_serving());
        Socket second = co_await connect_client(port_of(srv));
        auto p2 = co_await protos->nth(2);
        EXPECT_EQ(p2->state, "CONNECTED");
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// CPython: test_abort_clients - abort_clients() drops data still buffered for a client that
// does not read, and wait_closed() finishes.
TEST(ServerWaitClosed, AbortClientsDropsBufferedDataAndLetsWaitClosedFinish) {
    struct Shared {
        std::optional<StreamWriter> server_writer;
        Event got;
    };
    auto main = []() -> Coro<void> {
        auto shared = std::make_shared<Shared>();
        ClientConnectedCallback cb = [shared](StreamReader rd, StreamWriter wr) -> Coro<void> {
            return [](std::shared_ptr<Shared> s, StreamReader, StreamWriter w) -> Coro<void> {
                s->server_writer = w;
                s->got.set();
                try {
                    co_await w.wait_closed();
                } catch (const std::exception&) {
                }
            }(shared, std::move(rd), std::move(wr));
        };
        Server srv = co_await start_server(cb, "127.0.0.1", 0);
        ConnectionOptions copts;
        auto [c_rd, c_wr] = co_await open_connection("127.0.0.1", port_of(srv), copts, 4096);
        co_await wait_for(shared->got.wait(), kTimeout);
        StreamWriter s_wr = *shared->server_writer;

        // Limit the socket buffers so they fill up.
        auto s_sock = s_wr.get_extra_info<TransportSocket>("socket", {});
        s_sock.setsockopt(SOL_SOCKET, SO_SNDBUF, 65536);
        auto c_sock = c_wr.get_extra_info<TransportSocket>("socket", {});
        c_sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 65536);

        // Get the client's reader paused by sending more than twice its limit.
        s_wr.write(std::string(4096, 'a'));
        s_wr.write(std::string(4096, 'a'));
        s_wr.write(std::string(4096, 'a'));
        for (int i = 0; i < 100000 && c_wr.transport().is_reading(); ++i) co_await sleep(0);
        EXPECT_FALSE(c_wr.transport().is_reading());

        // Fill the kernel buffers until the server transport starts buffering.
        const int c_bufsize = c_sock.getsockopt(SOL_SOCKET, SO_RCVBUF);
        const int s_bufsize = s_sock.getsockopt(SOL_SOCKET, SO_SNDBUF);
        for (int i = 0; i < 10; ++i) {
            s_wr.write(std::string(static_cast<std::size_t>(c_bufsize), 'a'));
            s_wr.write(std::string(static_cast<std::size_t>(s_bufsize), 'a'));
            if (s_wr.transport().get_write_buffer_size() > 0) break;
        }
        EXPECT_NE(s_wr.transport().get_write_buffer_size(), 0u);

        Task<void> task = create_task(srv.wait_closed());
        co_await sleep(0);
        EXPECT_FALSE(task.done());
        srv.close();
        srv.abort_clients();
        co_await sleep(0);
        co_await sleep(0);
        EXPECT_TRUE(task.done());
        c_wr.close();
        shared->server_writer.reset();  // breaks the cycle shared -> writer -> protocol -> callback -> shared
    };
    run(main());
}

// CPython: test_close_race - the server is closed while a connection is being accepted.
TEST(ServerWaitClosed, CloseWhileAConnectionIsBeingAcceptedDoesNotHang) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        asyncio_test::HandlerCapture handler;
        handler.install(loop);
        auto started = std::make_shared<Started>();
        ClientConnectedCallback cb = counting_handler(started);
        Server srv = co_await start_server(cb, "127.0.0.1", 0);
        const int port = port_of(srv);
        auto connect = [port]() -> Coro<std::pair<StreamReader, StreamWriter>> {
            co_return co_await open_connection("127.0.0.1", port);
        };
        Task<std::pair<StreamReader, StreamWriter>> conn = create_task(connect());
        co_await sleep(0);
        co_await sleep(0);
        srv.close();
        try {
            auto pair = co_await wait_for(conn, kTimeout);
            pair.second.close();
        } catch (const std::system_error&) {
            // refused or reset: the connection did not make it before close()
        }
        co_await wait_for(srv.wait_closed(), kTimeout);
        EXPECT_TRUE(handler.contexts.empty());
    };
    run(main());
}

// =============================================================================================
// serve_forever
// =============================================================================================

namespace {
struct MainTask {
    Task<void> task;
};

Coro<void> cancel_main_then_reply(std::shared_ptr<MainTask> m, StreamReader r, StreamWriter w) {
    co_await r.readline();
    m->task.cancel();
    w.write("1");
    w.close();
    co_await w.wait_closed();
}

Coro<std::string> hello_client(Server srv, SockAddr addr) {
    EventLoop& loop = get_running_loop();
    for (int i = 0; i < 1000 && !srv.is_serving(); ++i) co_await sleep(0);
    Socket sock(addr.family(), SOCK_STREAM);
    co_await wait_for(loop.sock_connect(sock, addr), kTimeout);
    const std::string hello = std::string(1024 * 5, '1') + "\n";
    co_await loop.sock_sendall(sock, hello);
    std::string got = co_await recv_all(sock);
    co_return got;
}
}  // namespace

// CPython: test_start_server_1.
TEST(ServeForever, CancelledClosesTheServerAndReraisesCancelledError) {
    auto main = []() -> Coro<void> {
        auto m = std::make_shared<MainTask>();
        ClientConnectedCallback cb = [m](StreamReader r, StreamWriter w) {
            return cancel_main_then_reply(m, std::move(r), std::move(w));
        };
        ServerOptions opts;
        opts.start_serving = false;
        Server srv = co_await start_server(cb, "127.0.0.1", 0, opts);
        EXPECT_FALSE(srv.is_serving());
        m->task = create_task(serve_forever_of(srv));
        const SockAddr addr = srv.sockets().at(0).getsockname();
        Task<std::string> client = create_task(hello_client(srv, addr));
        auto e = co_await wait_for(error_of(m->task), kTimeout);
        EXPECT_TRUE(holds<CancelledError>(e)) << message_of(e);
        EXPECT_TRUE(m->task.cancelled());
        std::string reply = co_await wait_for(client, kTimeout);
        EXPECT_EQ(reply, "1");
        EXPECT_TRUE(srv.sockets().empty());
        EXPECT_FALSE(srv.is_serving());
        auto e2 = co_await error_of(srv.serve_forever());
        EXPECT_TRUE(holds<RuntimeError>(e2)) << message_of(e2);
        EXPECT_NE(message_of(e2).find("is closed"), std::string::npos) << message_of(e2);
        m->task = Task<void>();
    };
    run(main());
}

TEST(ServeForever, StartsServingAServerCreatedWithStartServingFalse) {
    auto main = []() -> Coro<void> {
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        ServerOptions opts;
        opts.start_serving = false;
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0, opts);
        EXPECT_FALSE(srv.is_serving());
        Task<void> serving = create_task(serve_forever_of(srv));
        co_await sleep(0);
        EXPECT_TRUE(srv.is_serving());
        Socket client = co_await connect_client(port_of(srv));
        auto proto = co_await protos->nth(1);
        EXPECT_EQ(proto->state, "CONNECTED");
        serving.cancel();
        client.close();
        auto e = co_await wait_for(error_of(serving), kTimeout);
        EXPECT_TRUE(holds<CancelledError>(e));
        EXPECT_FALSE(srv.is_serving());
    };
    run(main());
}

TEST(ServeForever, CalledTwiceRaisesRuntimeError) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0);
        Task<void> first = create_task(serve_forever_of(srv));
        co_await sleep(0);
        auto e = co_await error_of(srv.serve_forever());
        EXPECT_TRUE(holds<RuntimeError>(e)) << message_of(e);
        EXPECT_NE(message_of(e).find("already being awaited"), std::string::npos) << message_of(e);
        EXPECT_FALSE(first.done());
        EXPECT_TRUE(srv.is_serving());
        first.cancel();
        auto e2 = co_await wait_for(error_of(first), kTimeout);
        EXPECT_TRUE(holds<CancelledError>(e2));
    };
    run(main());
}

TEST(ServeForever, OnAClosedServerRaisesRuntimeError) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0);
        srv.close();
        auto e = co_await error_of(srv.serve_forever());
        EXPECT_TRUE(holds<RuntimeError>(e)) << message_of(e);
        EXPECT_NE(message_of(e).find("is closed"), std::string::npos) << message_of(e);
    };
    run(main());
}

// Server.close() cancels the serve_forever() future: serve_forever() ends with CancelledError.
TEST(ServeForever, ServerCloseEndsItWithCancelledError) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0);
        Task<void> serving = create_task(serve_forever_of(srv));
        co_await sleep(0);
        srv.close();
        auto e = co_await wait_for(error_of(serving), kTimeout);
        EXPECT_TRUE(holds<CancelledError>(e)) << message_of(e);
        EXPECT_TRUE(serving.cancelled());
    };
    run(main());
}

// After a cancel, serve_forever() waits (wait_closed) until the connections are gone.
TEST(ServeForever, CancelWaitsUntilTheConnectionsAreClosed) {
    auto main = []() -> Coro<void> {
        auto started = std::make_shared<Started>();
        ClientConnectedCallback cb = counting_handler(started);
        Server srv = co_await start_server(cb, "127.0.0.1", 0);
        Task<void> serving = create_task(serve_forever_of(srv));
        auto [rd, wr] = co_await open_connection("127.0.0.1", port_of(srv));
        co_await wait_started(started, 1);
        serving.cancel();
        co_await settle();
        EXPECT_FALSE(serving.done());
        EXPECT_TRUE(srv.sockets().empty());  // closed at once
        wr.close();                          // the handler reads EOF and closes its side
        auto e = co_await wait_for(error_of(serving), kTimeout);
        EXPECT_TRUE(holds<CancelledError>(e)) << message_of(e);
    };
    run(main());
}

// After serve_forever() was cancelled the server is closed for good.
TEST(ServeForever, AfterACancelTheServerStaysClosed) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0);
        Task<void> serving = create_task(serve_forever_of(srv));
        co_await sleep(0);
        serving.cancel();
        co_await wait_for(error_of(serving), kTimeout);
        auto e = co_await error_of(srv.serve_forever());
        EXPECT_TRUE(holds<RuntimeError>(e)) << message_of(e);
        auto e2 = co_await error_of(wait_for(srv.wait_closed(), kTimeout));
        EXPECT_FALSE(e2) << message_of(e2);
    };
    run(main());
}

// =============================================================================================
// start_serving
// =============================================================================================

// Python listens in _start_serving(): before it, connections are refused.
TEST(StartServing, FalseCreatesTheSocketButDoesNotListen) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        ServerOptions opts;
        opts.start_serving = false;
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0, opts);
        EXPECT_FALSE(srv.is_serving());
        CO_ASSERT(srv.sockets().size() == 1u);
        EXPECT_EQ(srv.sockets()[0].getsockopt(SOL_SOCKET, SO_ACCEPTCONN), 0);
        Socket client(AF_INET, SOCK_STREAM);
        const SockAddr addr("127.0.0.1", port_of(srv));
        auto e = co_await wait_for(error_of(loop.sock_connect(client, addr)), kTimeout);
        EXPECT_EQ(code_of(e), std::errc::connection_refused) << message_of(e);
        srv.close();
        co_await srv.wait_closed();
    };
    run(main());
}

TEST(StartServing, StartsAcceptingConnections) {
    auto main = []() -> Coro<void> {
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        ServerOptions opts;
        opts.start_serving = false;
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0, opts);
        co_await srv.start_serving();
        EXPECT_TRUE(srv.is_serving());
        Socket client = co_await connect_client(port_of(srv));
        auto proto = co_await protos->nth(1);
        EXPECT_EQ(proto->state, "CONNECTED");
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(StartServing, IsIdempotent) {
    auto main = []() -> Coro<void> {
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0);
        co_await srv.start_serving();
        co_await srv.start_serving();
        EXPECT_TRUE(srv.is_serving());
        Socket client = co_await connect_client(port_of(srv));
        auto proto = co_await protos->nth(1);
        co_await settle();
        EXPECT_EQ(protos->protos.size(), 1u);  // one accept per connection, not two
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// =============================================================================================
// create_server options
// =============================================================================================

TEST(CreateServer, PortZeroPicksAFreePortPerServer) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server a = co_await loop.create_server(factory, "127.0.0.1", 0);
        Server b = co_await loop.create_server(factory, "127.0.0.1", 0);
        EXPECT_GT(port_of(a), 0);
        EXPECT_GT(port_of(b), 0);
        EXPECT_NE(port_of(a), port_of(b));
        a.close();
        b.close();
        co_await a.wait_closed();
        co_await b.wait_closed();
    };
    run(main());
}

TEST(CreateServer, ReuseAddressIsOnByDefault) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0);
        EXPECT_NE(srv.sockets().at(0).getsockopt(SOL_SOCKET, SO_REUSEADDR), 0);
        srv.close();
        co_await srv.wait_closed();
    };
    run(main());
}

// CPython: test_create_server_reuse_port.
TEST(CreateServer, ReusePortIsOffByDefaultAndSetWhenAsked) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server plain = co_await loop.create_server(factory, "0.0.0.0", 0);
        EXPECT_EQ(plain.sockets().at(0).getsockopt(SOL_SOCKET, SO_REUSEPORT), 0);
        plain.close();
        ServerOptions opts;
        opts.reuse_port = true;
        Server reusing = co_await loop.create_server(factory, "0.0.0.0", 0, opts);
        EXPECT_NE(reusing.sockets().at(0).getsockopt(SOL_SOCKET, SO_REUSEPORT), 0);
        reusing.close();
        co_await plain.wait_closed();
        co_await reusing.wait_closed();
    };
    run(main());
}

TEST(CreateServer, ReusePortLetsTwoServersShareAPort) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        ServerOptions opts;
        opts.reuse_port = true;
        Server a = co_await loop.create_server(factory, "127.0.0.1", 0, opts);
        const int port = port_of(a);
        Server b = co_await loop.create_server(factory, "127.0.0.1", port, opts);
        EXPECT_EQ(port_of(b), port);
        std::vector<Socket> clients;
        for (int i = 0; i < 4; ++i) clients.push_back(co_await connect_client(port));
        co_await protos->nth(4);
        EXPECT_EQ(protos->protos.size(), 4u);
        a.close();
        b.close();
        a.close_clients();
        b.close_clients();
        co_await wait_for(a.wait_closed(), kTimeout);
        co_await wait_for(b.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateServer, WithoutReusePortASecondServerOnThePortFails) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        ServerOptions opts;
        opts.reuse_port = true;
        Server a = co_await loop.create_server(factory, "127.0.0.1", 0, opts);
        auto e = co_await error_of(loop.create_server(factory, "127.0.0.1", port_of(a)));
        EXPECT_EQ(code_of(e), std::errc::address_in_use) << message_of(e);
        a.close();
        co_await a.wait_closed();
    };
    run(main());
}

// CPython: test_create_server_addr_in_use, and the message of base_events.create_server.
TEST(CreateServer, AddressInUseRaisesEaddrinuseNamingTheAddress) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server first = co_await loop.create_server(factory, "127.0.0.1", 0);
        const int port = port_of(first);
        auto e = co_await error_of(loop.create_server(factory, "127.0.0.1", port));
        CO_ASSERT(holds<std::system_error>(e));
        EXPECT_EQ(code_of(e), std::errc::address_in_use);
        EXPECT_EQ(&code_of(e).category(), &std::generic_category());
        // Python's message, the address as its repr shows it.
        const std::string expected = "error while attempting to bind on address ('127.0.0.1', " + std::to_string(port) +
                                     "): address already in use";
        EXPECT_EQ(message_of(e).rfind(expected, 0), 0u) << message_of(e);
        EXPECT_TRUE(first.is_serving());
        first.close();
        co_await first.wait_closed();
    };
    run(main());
}

TEST(CreateServer, AddressHeldByAPlainListeningSocketRaisesEaddrinuse) {
    auto main = []() -> Coro<void> {
        Socket holder(AF_INET, SOCK_STREAM);
        holder.bind(SockAddr("127.0.0.1", 0));
        holder.listen();
        const int port = holder.getsockname().port();
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto e = co_await error_of(get_running_loop().create_server(factory, "127.0.0.1", port));
        EXPECT_EQ(code_of(e), std::errc::address_in_use) << message_of(e);
    };
    run(main());
}

// CPython: test_create_server_cant_bind (the bind error is reported with the address).
TEST(CreateServer, NonLocalAddressRaisesEaddrnotavail) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto e = co_await error_of(get_running_loop().create_server(factory, "192.0.2.1", 0));
        EXPECT_EQ(code_of(e), std::errc::address_not_available) << message_of(e);
        EXPECT_EQ(message_of(e).rfind("error while attempting to bind on address ('192.0.2.1', 0)", 0), 0u)
            << message_of(e);
    };
    run(main());
}

TEST(CreateServer, FailedBindLeavesNoFdBehind) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server first = co_await loop.create_server(factory, "127.0.0.1", 0);
        const int port = port_of(first);
        co_await error_of(loop.create_server(factory, "127.0.0.1", port));  // warm up
        const std::size_t before = open_fd_count();
        for (int i = 0; i < 5; ++i) co_await error_of(loop.create_server(factory, "127.0.0.1", port));
        EXPECT_EQ(open_fd_count(), before);
        first.close();
        co_await first.wait_closed();
    };
    run(main());
}

TEST(CreateServer, SeveralHostsGetOneSocketEach) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        std::vector<std::string> hosts{"127.0.0.1", "127.0.0.2"};
        Server srv = co_await loop.create_server(factory, hosts, 0);
        auto socks = srv.sockets();
        CO_ASSERT(socks.size() == 2u);
        std::set<std::string> bound;
        for (auto& s : socks) bound.insert(s.getsockname().host());
        EXPECT_EQ(bound, (std::set<std::string>{"127.0.0.1", "127.0.0.2"}));
        // Both accept connections.
        std::vector<Socket> clients;
        for (auto& s : socks) {
            clients.emplace_back(AF_INET, SOCK_STREAM);
            const SockAddr addr = s.getsockname();
            co_await wait_for(loop.sock_connect(clients.back(), addr), kTimeout);
        }
        co_await protos->nth(2);
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// CPython: test_create_server_multiple_hosts_ipv4 - duplicate hosts are bound once.
TEST(CreateServer, DuplicateHostsAreBoundOnce) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        std::vector<std::string> hosts{"127.0.0.1", "127.0.0.2", "127.0.0.1"};
        Server srv = co_await get_running_loop().create_server(factory, hosts, 0);
        EXPECT_EQ(srv.sockets().size(), 2u);
        srv.close();
        co_await srv.wait_closed();
    };
    run(main());
}

TEST(CreateServer, Ipv4AndIpv6HostsTogether) {
    if (!ipv6_available()) GTEST_SKIP() << "no IPv6";
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        std::vector<std::string> hosts{"127.0.0.1", "::1"};
        Server srv = co_await loop.create_server(factory, hosts, 0);
        auto socks = srv.sockets();
        CO_ASSERT(socks.size() == 2u);
        std::set<int> families;
        for (auto& s : socks) families.insert(s.family());
        EXPECT_EQ(families, (std::set<int>{AF_INET, AF_INET6}));
        std::vector<Socket> clients;
        for (auto& s : socks) {
            const SockAddr addr = s.getsockname();
            clients.emplace_back(addr.family(), SOCK_STREAM);
            co_await wait_for(loop.sock_connect(clients.back(), addr), kTimeout);
        }
        co_await protos->nth(2);
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// CPython: test_create_server_dual_stack - the empty host listens on every interface of every
// family (IPv6 sockets IPv6-only), on one port when a port is given. (With port 0 each
// socket would get its own port, in Python too.)
TEST(CreateServer, EmptyHostListensOnEveryFamily) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv;
        int port = 0;
        for (int attempt = 0; attempt < 5 && !srv; ++attempt) {
            port = unused_port();
            try {
                srv = co_await loop.create_server(factory, "", port);
            } catch (const std::system_error& e) {
                if (e.code() != std::errc::address_in_use) throw;
            }
        }
        CO_ASSERT(srv);
        auto socks = srv.sockets();
        CO_ASSERT(!socks.empty());
        bool has_v6 = false;
        for (auto& s : socks) {
            EXPECT_EQ(s.getsockname().port(), port);
            if (s.family() == AF_INET6) {
                has_v6 = true;
                EXPECT_EQ(s.getsockopt(IPPROTO_IPV6, IPV6_V6ONLY), 1);
            }
        }
        Socket c4 = co_await connect_client(port);
        co_await protos->nth(1);
        Socket c6;
        if (has_v6 && ipv6_available()) {
            c6 = Socket(AF_INET6, SOCK_STREAM);
            const SockAddr addr6("::1", port);
            co_await wait_for(loop.sock_connect(c6, addr6), kTimeout);
            co_await protos->nth(2);
        }
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateServer, FamilyRestrictsTheEmptyHostToOneFamily) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        ServerOptions opts;
        opts.family = AF_INET;
        Server srv = co_await get_running_loop().create_server(factory, "", 0, opts);
        auto socks = srv.sockets();
        CO_ASSERT(socks.size() == 1u);
        EXPECT_EQ(socks[0].getsockname().host(), "0.0.0.0");
        srv.close();
        co_await srv.wait_closed();
    };
    run(main());
}

TEST(CreateServer, HostNameIsResolved) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        ServerOptions opts;
        opts.family = AF_INET;
        Server srv = co_await loop.create_server(factory, "localhost", 0, opts);
        auto socks = srv.sockets();
        CO_ASSERT(!socks.empty());
        EXPECT_EQ(socks[0].getsockname().host(), "127.0.0.1");
        Socket c = co_await connect_client(port_of(srv));
        co_await protos->nth(1);
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateServer, KeepAliveSetsSoKeepaliveOnAcceptedConnections) {
    auto main = []() -> Coro<void> {
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        ServerOptions opts;
        opts.keep_alive = true;
        Server srv = co_await get_running_loop().create_server(factory, "127.0.0.1", 0, opts);
        Socket c = co_await connect_client(port_of(srv));
        auto proto = co_await protos->nth(1);
        auto sock = proto->transport->get_extra_info<TransportSocket>("socket", {});
        EXPECT_EQ(sock.getsockopt(SOL_SOCKET, SO_KEEPALIVE), 1);
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// CPython's _accept_connection2: a failing protocol factory does not stop the server; the
// error reaches the exception handler in debug mode.
TEST(CreateServer, FailingProtocolFactoryDoesNotStopTheServer) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        asyncio_test::HandlerCapture handler;
        handler.install(loop);
        auto protos = std::make_shared<ProtoList>();
        auto calls = std::make_shared<int>(0);
        auto factory = [protos, calls]() -> std::shared_ptr<MyProto> {
            if (++*calls == 1) throw std::runtime_error("factory failed");
            return (*protos)();
        };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        Socket first = co_await connect_client(port_of(srv));
        std::string eof = co_await recv_all(first);  // the accepted socket is closed
        EXPECT_EQ(eof, "");
        CO_ASSERT(handler.contexts.size() == 1u);
        EXPECT_EQ(handler.contexts[0].message, "Error on transport creation for incoming connection");
        EXPECT_EQ(message_of(handler.contexts[0].exception), "factory failed");
        Socket second = co_await connect_client(port_of(srv));
        auto proto = co_await protos->nth(1);
        EXPECT_EQ(proto->state, "CONNECTED");
        EXPECT_TRUE(srv.is_serving());
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main(), RunOptions{.debug = true});
}

// =============================================================================================
// Accepting bursts: more clients than the backlog, connect+reset storms
// =============================================================================================

namespace {

/// A client's request: one byte. A longer one may go out split (a 1-byte send of
/// ASYNCIO_FAULTS, or any short send), and when it reaches a listener whose queue is full,
/// Linux's SYN-cookie path can drop its first byte while acknowledging it: the server then
/// never gets the whole request (shown without this library: scripts/repro/syncookie_split_request.py,
/// docs/reliability.md). One byte cannot be split.
constexpr std::string_view kRequest = "!";

/// Answers a client's request with "hello", then closes: each served client reads
/// "hello" then EOF. (Clients speak first, as HTTP clients do: a client whose handshake
/// the kernel completed while the listen queue was full is only taken into the queue when
/// its first data segment arrives.)
struct Greeter : Protocol {
    std::shared_ptr<Transport> transport;
    std::size_t received = 0;
    void connection_made(std::shared_ptr<Transport> t) override { transport = std::move(t); }
    void data_received(std::string_view d) override {
        // The whole request first, however it is split: closing with bytes of it still
        // unread would make the kernel answer them with a reset, which loses the greeting.
        received += d.size();
        if (received < kRequest.size() || transport->is_closing()) return;
        transport->write("hello");
        transport->close();
    }
    void connection_lost(std::exception_ptr) override { transport.reset(); }
};

/// Starts `n` non-blocking connects to port without yielding to the loop, so they all queue
/// up at the listener before the server can accept any (the loop is "busy").
std::vector<Socket> connect_all_at_once(int port, int n) {
    std::vector<Socket> clients;
    const SockAddr addr("127.0.0.1", port);
    for (int i = 0; i < n; ++i) {
        Socket s(AF_INET, SOCK_STREAM);
        int rc = ::connect(s.fileno(), addr.data(), addr.size());
        EXPECT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
        clients.push_back(std::move(s));
    }
    return clients;
}

/// Sends a request, then reads the answer until EOF.
Coro<std::string> request(EventLoop& loop, Socket& s) {
    co_await loop.sock_sendall(s, kRequest);
    std::string out;
    for (;;) {
        std::string chunk = co_await loop.sock_recv(s, 64);
        if (chunk.empty()) co_return out;
        out += chunk;
    }
}

/// Every client is served: each sends a request, then reads the greeting and EOF.
Coro<void> expect_every_client_greeted(EventLoop& loop, std::vector<Socket>& clients) {
    std::vector<Task<std::string>> reads;
    for (Socket& c : clients) reads.push_back(create_task(request(loop, c)));
    // Clients past the kernel's queue are retried by TCP after about a second: allow several.
    auto greetings = co_await wait_for(gather(reads), kTimeout);
    std::size_t served = 0;
    for (const std::string& g : greetings) served += g == "hello";
    EXPECT_EQ(served, clients.size());
}

Coro<void> burst_beyond_backlog(int backlog, int clients_count) {
    EventLoop& loop = get_running_loop();
    auto factory = [] { return std::make_shared<Greeter>(); };
    ServerOptions opts;
    opts.backlog = backlog;
    Server srv = co_await loop.create_server(factory, "127.0.0.1", 0, opts);
    std::vector<Socket> clients = connect_all_at_once(port_of(srv), clients_count);
    co_await expect_every_client_greeted(loop, clients);
    srv.close();
    co_await wait_for(srv.wait_closed(), kTimeout);
}

}  // namespace

// A pass of the accept loop takes up to `backlog` connections; the one its last accept4()
// returned used to be dropped (never served, never closed).
TEST(AcceptBurst, MoreClientsThanASmallBacklogAreEachServed) { run(burst_beyond_backlog(5, 16)); }

TEST(AcceptBurst, TwoHundredClientsAgainstTheDefaultBacklogAreEachServed) {
    run(burst_beyond_backlog(ServerOptions{}.backlog, 200));
}

// Connect, then reset at once (SO_LINGER 0), in bursts larger than the backlog: the server
// accepts and closes every one of them, and ends with the open-fd count it started with.
TEST(AcceptBurst, ConnectResetStormLeavesNoFdBehind) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<Greeter>(); };
        ServerOptions opts;
        opts.backlog = 8;
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0, opts);
        co_await settle();
        const std::size_t baseline = open_fd_count();
        for (int round = 0; round < 100; ++round) {
            std::vector<Socket> clients = connect_all_at_once(port_of(srv), 30);
            for (Socket& c : clients) {
                const linger reset{1, 0};
                ::setsockopt(c.fileno(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
                c.close();
            }
            co_await sleep(0.001);
        }
        EXPECT_EQ(co_await asyncio_test::fd_count_settles_to(baseline), baseline);
        EXPECT_TRUE(srv.is_serving());
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// =============================================================================================
// create_connection
// =============================================================================================

// CPython: test_create_connection (+ MyProto's request written at connection_made).
TEST(CreateConnection, ToANumericHostReturnsTheTransportAndItsProtocol) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto server_protos = std::make_shared<ProtoList>();
        auto server_factory = [server_protos] { return (*server_protos)(); };
        Server srv = co_await loop.create_server(server_factory, "127.0.0.1", 0);
        auto factory = [] {
            auto p = std::make_shared<MyProto>();
            p->greeting = "GET / HTTP/1.0\r\nHost: example.com\r\n\r\n";
            return p;
        };
        auto [tr, pr] = co_await loop.create_connection(factory, "127.0.0.1", port_of(srv));
        CO_ASSERT(tr && pr);
        EXPECT_EQ(pr->transport, tr);
        EXPECT_EQ(pr->state, "CONNECTED");  // connection_made ran before create_connection returned
        EXPECT_FALSE(tr->get_extra_info<SockAddr>("sockname", {}).empty());
        EXPECT_EQ(tr->get_extra_info<SockAddr>("peername", {}), SockAddr("127.0.0.1", port_of(srv)));
        auto sp = co_await server_protos->nth(1);
        co_await wait_bytes(sp, 37);
        EXPECT_EQ(sp->data, "GET / HTTP/1.0\r\nHost: example.com\r\n\r\n");
        sp->transport->write("HTTP/1.0 200 OK\r\n\r\n");
        sp->transport->close();
        co_await wait_for(pr->done, kTimeout);
        EXPECT_GT(pr->nbytes, 0u);
        EXPECT_EQ(pr->state, "CLOSED");
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateConnection, SetsTcpNodelay) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        auto [tr, pr] = co_await loop.create_connection(factory, "127.0.0.1", port_of(srv));
        auto sock = tr->get_extra_info<TransportSocket>("socket", {});
        EXPECT_EQ(sock.getsockopt(IPPROTO_TCP, TCP_NODELAY), 1);
        tr->close();
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateConnection, ToLocalhostIsResolved) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        // Without a family: every address of "localhost" is tried in turn (an IPv6 ::1 first,
        // where nothing listens, is refused and the next is tried).
        auto [tr, pr] = co_await wait_for(loop.create_connection(factory, "localhost", port_of(srv)), kTimeout);
        EXPECT_EQ(tr->get_extra_info<SockAddr>("peername", {}).host(), "127.0.0.1");
        tr->close();
        ConnectionOptions v4;
        v4.family = AF_INET;
        auto [tr2, pr2] = co_await wait_for(loop.create_connection(factory, "localhost", port_of(srv), v4), kTimeout);
        EXPECT_EQ(tr2->get_extra_info<SockAddr>("peername", {}).family(), AF_INET);
        tr2->close();
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateConnection, ToIpv6Loopback) {
    if (!ipv6_available()) GTEST_SKIP() << "no IPv6";
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await loop.create_server(factory, "::1", 0);
        auto [tr, pr] = co_await wait_for(loop.create_connection(factory, "::1", port_of(srv)), kTimeout);
        SockAddr peer = tr->get_extra_info<SockAddr>("peername", {});
        EXPECT_EQ(peer.family(), AF_INET6);
        EXPECT_EQ(peer.host(), "::1");
        tr->close();
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateConnection, ToAClosedPortRaisesConnectionRefused) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        const int port = unused_port();
        auto e =
            co_await wait_for(error_of(get_running_loop().create_connection(factory, "127.0.0.1", port)), kTimeout);
        CO_ASSERT(holds<std::system_error>(e));
        EXPECT_EQ(code_of(e), std::errc::connection_refused);
        EXPECT_NE(message_of(e).find("127.0.0.1:" + std::to_string(port)), std::string::npos) << message_of(e);
    };
    run(main());
}

TEST(CreateConnection, FailedConnectionCreatesNoProtocol) {
    auto main = []() -> Coro<void> {
        auto made = std::make_shared<int>(0);
        auto factory = [made] {
            ++*made;
            return std::make_shared<MyProto>();
        };
        co_await wait_for(error_of(get_running_loop().create_connection(factory, "127.0.0.1", unused_port())),
                          kTimeout);
        EXPECT_EQ(*made, 0);
    };
    run(main());
}

TEST(CreateConnection, UnresolvableHostRaisesAGaiError) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        ConnectionOptions opts;
        opts.flags = AI_NUMERICHOST;  // no DNS query: fails at once
        auto e = co_await error_of(get_running_loop().create_connection(factory, "localhost", 80, opts));
        CO_ASSERT(holds<std::system_error>(e));
        EXPECT_EQ(&code_of(e).category(), &gai_category()) << message_of(e);
    };
    run(main());
}

TEST(CreateConnection, FamilyThatTheHostDoesNotHaveRaisesAGaiError) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        ConnectionOptions opts;
        opts.family = AF_INET6;
        auto e = co_await error_of(get_running_loop().create_connection(factory, "127.0.0.1", 80, opts));
        CO_ASSERT(holds<std::system_error>(e));
        EXPECT_EQ(&code_of(e).category(), &gai_category()) << message_of(e);
    };
    run(main());
}

TEST(CreateConnection, ServerHostnameWithoutSslRaisesInvalidArgument) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        ConnectionOptions opts;
        opts.server_hostname = "example.com";
        auto e = co_await error_of(get_running_loop().create_connection(factory, "127.0.0.1", 80, opts));
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_NE(message_of(e).find("server_hostname is only meaningful with ssl"), std::string::npos)
            << message_of(e);
    };
    run(main());
}

// CPython: test_create_connection_local_addr.
TEST(CreateConnection, LocalAddrBindsTheLocalPort) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        const int local_port = unused_port();
        ConnectionOptions opts;
        opts.local_host = "127.0.0.1";
        opts.local_port = local_port;
        auto [tr, pr] = co_await wait_for(loop.create_connection(factory, "127.0.0.1", port_of(srv), opts), kTimeout);
        EXPECT_EQ(pr->transport->get_extra_info<SockAddr>("sockname", {}).port(), local_port);
        tr->close();
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateConnection, LocalAddrWithPortZeroBindsTheLocalHost) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto protos = std::make_shared<ProtoList>();
        auto server_factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_server(server_factory, "127.0.0.1", 0);
        auto factory = [] { return std::make_shared<MyProto>(); };
        ConnectionOptions opts;
        opts.local_host = "127.0.0.2";
        opts.local_port = 0;
        auto [tr, pr] = co_await wait_for(loop.create_connection(factory, "127.0.0.1", port_of(srv), opts), kTimeout);
        EXPECT_EQ(tr->get_extra_info<SockAddr>("sockname", {}).host(), "127.0.0.2");
        auto sp = co_await protos->nth(1);
        EXPECT_EQ(sp->transport->get_extra_info<SockAddr>("peername", {}).host(), "127.0.0.2");
        tr->close();
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// CPython: test_create_connection_local_addr_in_use.
TEST(CreateConnection, LocalAddrInUseRaisesEaddrinuseNamingTheAddress) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        // CPython checks str(address) in the message: the address as Python's repr shows it.
        const std::string server_addr = "('127.0.0.1', " + std::to_string(port_of(srv)) + ")";
        ConnectionOptions opts;
        opts.local_host = "127.0.0.1";
        opts.local_port = port_of(srv);
        auto e =
            co_await wait_for(error_of(loop.create_connection(factory, "127.0.0.1", port_of(srv), opts)), kTimeout);
        EXPECT_EQ(code_of(e), std::errc::address_in_use) << message_of(e);
        EXPECT_NE(message_of(e).find("error while attempting to bind on address " + server_addr + ": "),
                  std::string::npos)
            << message_of(e);
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// CPython: test_create_connection_local_addr_nomatch_family.
TEST(CreateConnection, LocalAddrOfAnotherFamilyRaises) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        ConnectionOptions opts;
        opts.local_host = "::1";
        opts.local_port = 0;
        auto e =
            co_await wait_for(error_of(loop.create_connection(factory, "127.0.0.1", port_of(srv), opts)), kTimeout);
        CO_ASSERT(holds<std::system_error>(e));
        EXPECT_NE(message_of(e).find("no matching local address"), std::string::npos) << message_of(e);
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateConnection, HappyEyeballsWithOneAddressConnects) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await loop.create_server(factory, "127.0.0.1", 0);
        ConnectionOptions opts;
        opts.happy_eyeballs_delay = 0.25;
        auto [tr, pr] = co_await wait_for(loop.create_connection(factory, "127.0.0.1", port_of(srv), opts), kTimeout);
        EXPECT_EQ(pr->state, "CONNECTED");
        tr->close();
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateConnection, HappyEyeballsToAClosedPortRaisesConnectionRefused) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        ConnectionOptions opts;
        opts.happy_eyeballs_delay = 0.25;
        auto e = co_await wait_for(
            error_of(get_running_loop().create_connection(factory, "127.0.0.1", unused_port(), opts)), kTimeout);
        EXPECT_EQ(code_of(e), std::errc::connection_refused) << message_of(e);
    };
    run(main());
}

// Python 3.12: all_errors=True raises an ExceptionGroup of every attempt's error.
TEST(CreateConnection, AllErrorsRaisesAnExceptionGroupOfEveryAttempt) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        ConnectionOptions opts;
        opts.all_errors = true;
        auto e = co_await wait_for(
            error_of(get_running_loop().create_connection(factory, "127.0.0.1", unused_port(), opts)), kTimeout);
        CO_ASSERT(holds<ExceptionGroup>(e));
        try {
            std::rethrow_exception(e);
        } catch (const ExceptionGroup& g) {
            EXPECT_EQ(g.message(), "create_connection failed");
            CO_ASSERT(g.exceptions().size() == 1u);
            EXPECT_EQ(code_of(g.exceptions()[0]), std::errc::connection_refused);
        }
    };
    run(main());
}

namespace {
/// The addresses "localhost" resolves to for stream sockets (as create_connection sees them).
Coro<std::vector<AddrInfo>> localhost_infos(int port) {
    co_return co_await get_running_loop().getaddrinfo("localhost", std::to_string(port), AF_UNSPEC, SOCK_STREAM, 0, 0);
}
}  // namespace

// Several addresses, every one refused: one error naming them all ("Multiple exceptions: ").
TEST(CreateConnection, SeveralAddressesAllRefusedRaiseOneCombinedError) {
    auto main = []() -> Coro<void> {
        const int port = unused_port();
        auto infos = co_await localhost_infos(port);
        if (infos.size() < 2) co_return;  // checked (and skipped) before run()
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto e =
            co_await wait_for(error_of(get_running_loop().create_connection(factory, "localhost", port)), kTimeout);
        CO_ASSERT(holds<std::system_error>(e));
        EXPECT_EQ(message_of(e).rfind("Multiple exceptions: ", 0), 0u) << message_of(e);
        ConnectionOptions all;
        all.all_errors = true;
        auto g = co_await wait_for(error_of(get_running_loop().create_connection(factory, "localhost", port, all)),
                                   kTimeout);
        CO_ASSERT(holds<ExceptionGroup>(g));
        try {
            std::rethrow_exception(g);
        } catch (const ExceptionGroup& eg) {
            EXPECT_EQ(eg.exceptions().size(), infos.size());
        }
    };
    {
        EventLoop probe;
        auto infos = probe.run_until_complete(localhost_infos(80));
        probe.close();
        if (infos.size() < 2) GTEST_SKIP() << "\"localhost\" resolves to a single address here";
    }
    run(main());
}

// Happy Eyeballs: the first address hangs (a listener whose accept queue is full drops the
// SYN), the second attempt starts after happy_eyeballs_delay and wins.
TEST(CreateConnection, HappyEyeballsStartsTheNextAttemptAfterTheDelay) {
    {
        EventLoop probe;
        auto infos = probe.run_until_complete(localhost_infos(80));
        probe.close();
        std::set<int> families;
        for (auto& i : infos) families.insert(i.family);
        if (families.size() < 2 || !ipv6_available())
            GTEST_SKIP() << "\"localhost\" does not resolve to both an IPv4 and an IPv6 address here";
    }
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto infos = co_await localhost_infos(80);
        const int first_family = infos.at(0).family;
        const int second_family = first_family == AF_INET ? AF_INET6 : AF_INET;
        // The real server on the second family; a stuck listener on the first, same port.
        auto protos = std::make_shared<ProtoList>();
        auto server_factory = [protos] { return (*protos)(); };
        ServerOptions sopts;
        sopts.family = second_family;
        Server srv =
            co_await loop.create_server(server_factory, second_family == AF_INET ? "127.0.0.1" : "::1", 0, sopts);
        const int port = port_of(srv);
        const SockAddr stuck_addr(first_family == AF_INET ? "127.0.0.1" : "::1", port);
        Socket stuck(first_family, SOCK_STREAM);
        if (first_family == AF_INET6) stuck.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1);
        stuck.bind(stuck_addr);
        stuck.listen(0);
        Socket filler(first_family, SOCK_STREAM);
        co_await wait_for(loop.sock_connect(filler, stuck_addr), kTimeout);

        auto factory = [] { return std::make_shared<MyProto>(); };
        ConnectionOptions opts;
        opts.happy_eyeballs_delay = 0.2;
        const double t0 = loop.time();
        auto [tr, pr] = co_await wait_for(loop.create_connection(factory, "localhost", port, opts), kTimeout);
        const double elapsed = loop.time() - t0;
        EXPECT_EQ(tr->get_extra_info<SockAddr>("peername", {}).family(), second_family);
        EXPECT_GE(elapsed, 0.15);
        EXPECT_LT(elapsed, 5.0);
        tr->close();
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// =============================================================================================
// Unix connections
// =============================================================================================

// CPython: test_create_unix_connection.
TEST(CreateUnixConnection, ConnectsToAUnixServer) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        TempDir dir;
        const std::string path = dir.file("srv.sock");
        auto protos = std::make_shared<ProtoList>();
        auto server_factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_unix_server(server_factory, path);
        auto factory = [] {
            auto p = std::make_shared<MyProto>();
            p->greeting = "GET / HTTP/1.0\r\n\r\n";
            return p;
        };
        auto [tr, pr] = co_await wait_for(loop.create_unix_connection(factory, path), kTimeout);
        EXPECT_EQ(pr->transport, tr);
        EXPECT_EQ(tr->get_extra_info<SockAddr>("peername", {}).host(), path);
        EXPECT_EQ(tr->get_extra_info<SockAddr>("sockname", {}).family(), AF_UNIX);
        auto sp = co_await protos->nth(1);
        co_await wait_bytes(sp, 18);
        sp->transport->write("HTTP/1.0 200 OK\r\n");
        sp->transport->close();
        co_await wait_for(pr->done, kTimeout);
        EXPECT_EQ(pr->data, "HTTP/1.0 200 OK\r\n");
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(CreateUnixConnection, ToAMissingPathRaisesEnoent) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto e = co_await error_of(get_running_loop().create_unix_connection(factory, dir.file("none.sock")));
        EXPECT_EQ(code_of(e), std::errc::no_such_file_or_directory) << message_of(e);
    };
    run(main());
}

// =============================================================================================
// connect_accepted_socket
// =============================================================================================

// CPython: test_connect_accepted_socket (the client runs as a task instead of a thread).
TEST(ConnectAcceptedSocket, WrapsAnAcceptedSocketInATransport) {
    struct Roger : MyProto {
        // Answers the whole request (9 bytes), however many data_received() it comes in: the
        // kernel may cut it, and so does ASYNCIO_FAULTS.
        void data_received(std::string_view d) override {
            const bool complete_before = nbytes >= 9;
            MyProto::data_received(d);
            if (!complete_before && nbytes >= 9) transport->write("roger");
        }
    };
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Socket lsock(AF_INET, SOCK_STREAM);
        lsock.bind(SockAddr("127.0.0.1", 0));
        lsock.listen(1);
        const SockAddr addr = lsock.getsockname();
        auto client = [](SockAddr to) -> Coro<std::string> {
            EventLoop& l = get_running_loop();
            Socket csock(AF_INET, SOCK_STREAM);
            co_await l.sock_connect(csock, to);
            co_await l.sock_sendall(csock, "test data");
            std::string response = co_await asyncio_test::sock_recv_exactly(csock, 5);
            csock.close();
            co_return response;
        };
        Task<std::string> ct = create_task(client(addr));
        auto accepted = co_await wait_for(loop.sock_accept(lsock), kTimeout);
        auto proto = std::make_shared<Roger>();
        auto factory = [proto] { return proto; };
        auto [tr, pr] = co_await loop.connect_accepted_socket(factory, std::move(accepted.first));
        EXPECT_EQ(pr, proto);
        std::string response = co_await wait_for(ct, kTimeout);
        co_await wait_for(proto->done, kTimeout);
        EXPECT_EQ(proto->state, "CLOSED");
        EXPECT_EQ(proto->nbytes, 9u);
        EXPECT_EQ(response, "roger");
    };
    run(main());
}

TEST(ConnectAcceptedSocket, AClosedSocketRaisesInvalidArgument) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto e = co_await error_of(get_running_loop().connect_accepted_socket(factory, Socket()));
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
    };
    run(main());
}

TEST(ConnectAcceptedSocket, ADatagramSocketRaisesInvalidArgument) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<MyProto>(); };
        Socket udp(AF_INET, SOCK_DGRAM);
        auto e = co_await error_of(get_running_loop().connect_accepted_socket(factory, std::move(udp)));
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_NE(message_of(e).find("A Stream Socket was expected"), std::string::npos) << message_of(e);
    };
    run(main());
}

TEST(ConnectAcceptedSocket, ABlockingSocketIsMadeNonBlocking) {
    auto main = []() -> Coro<void> {
        auto pair = socketpair();
        pair.first.setblocking(true);
        const int fd = pair.first.fileno();
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto [tr, pr] = co_await get_running_loop().connect_accepted_socket(factory, std::move(pair.first));
        EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
        tr->write("over a socketpair");
        // In one receive or several (ASYNCIO_FAULTS's 1-byte transfers cut them).
        std::string got = co_await asyncio_test::sock_recv_exactly(pair.second, 17);
        EXPECT_EQ(got, "over a socketpair");
        tr->close();
        co_await wait_for(pr->done, kTimeout);
    };
    run(main());
}

// =============================================================================================
// Unix servers
// =============================================================================================

// CPython: test_create_unix_server.
TEST(UnixServer, AcceptsConnections) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        TempDir dir;
        const std::string path = dir.file("srv.sock");
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_unix_server(factory, path);
        auto socks = srv.sockets();
        CO_ASSERT(socks.size() == 1u);
        EXPECT_EQ(socks[0].family(), AF_UNIX);
        EXPECT_EQ(socks[0].getsockname().host(), path);
        Socket client(AF_UNIX, SOCK_STREAM);
        const SockAddr addr = SockAddr::unix_path(path);
        co_await wait_for(loop.sock_connect(client, addr), kTimeout);
        co_await loop.sock_sendall(client, "xxx");
        auto proto = co_await protos->nth(1);
        EXPECT_EQ(proto->state, "CONNECTED");
        co_await wait_bytes(proto, 3);
        EXPECT_EQ(proto->nbytes, 3u);
        proto->transport->close();
        co_await wait_for(proto->done, kTimeout);
        EXPECT_EQ(proto->state, "CLOSED");
        client.close();
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// Python 3.13's create_unix_server(cleanup_socket=False): the socket file stays.
TEST(UnixServer, CleanupSocketFalseLeavesTheSocketFile) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        TempDir dir;
        const std::string path = dir.file("srv.sock");
        auto factory = [] { return std::make_shared<MyProto>(); };
        ServerOptions opts;
        opts.cleanup_socket = false;
        Server srv = co_await loop.create_unix_server(factory, path, opts);
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
        EXPECT_TRUE(std::filesystem::exists(path));
    };
    run(main());
}

// CPython: test_unix_server_addr_cleanup.
TEST(UnixServer, CloseRemovesTheSocketFile) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("srv.sock");
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_unix_server(factory, path);
        EXPECT_TRUE(is_socket_file(path));
        srv.close();
        EXPECT_FALSE(exists(path));
        co_await srv.wait_closed();
    };
    run(main());
}

// CPython: test_unix_server_cleanup_gone.
TEST(UnixServer, CloseToleratesAnAlreadyRemovedFile) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("srv.sock");
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_unix_server(factory, path);
        ::unlink(path.c_str());
        EXPECT_NO_THROW(srv.close());
        EXPECT_FALSE(exists(path));
        co_await srv.wait_closed();
    };
    run(main());
}

// CPython: test_unix_server_cleanup_replaced.
TEST(UnixServer, CloseLeavesASocketFileSomeoneElseBoundSince) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("srv.sock");
        auto factory = [] { return std::make_shared<MyProto>(); };
        Server srv = co_await get_running_loop().create_unix_server(factory, path);
        ::unlink(path.c_str());
        Socket other(AF_UNIX, SOCK_STREAM);
        other.bind(SockAddr::unix_path(path));
        srv.close();
        EXPECT_TRUE(is_socket_file(path));
        co_await srv.wait_closed();
    };
    run(main());
}

TEST(UnixServer, StaleSocketFileIsReplaced) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        TempDir dir;
        const std::string path = dir.file("srv.sock");
        {
            Socket old(AF_UNIX, SOCK_STREAM);
            old.bind(SockAddr::unix_path(path));
        }  // closed: the file stays behind
        EXPECT_TRUE(is_socket_file(path));
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_unix_server(factory, path);
        Socket client(AF_UNIX, SOCK_STREAM);
        const SockAddr addr = SockAddr::unix_path(path);
        co_await wait_for(loop.sock_connect(client, addr), kTimeout);
        auto proto = co_await protos->nth(1);
        EXPECT_EQ(proto->state, "CONNECTED");
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// Python only removes a stale *socket*: any other file makes bind fail with EADDRINUSE.
TEST(UnixServer, ARegularFileAtThePathRaisesEaddrinuseAndIsKept) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("not-a-socket");
        { std::ofstream(path) << "data"; }
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto e = co_await error_of(get_running_loop().create_unix_server(factory, path));
        EXPECT_EQ(code_of(e), std::errc::address_in_use) << message_of(e);
        EXPECT_NE(message_of(e).find(path), std::string::npos) << message_of(e);
        EXPECT_TRUE(exists(path));
        EXPECT_FALSE(is_socket_file(path));
    };
    run(main());
}

TEST(UnixServer, MissingDirectoryRaisesEnoent) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto e = co_await error_of(get_running_loop().create_unix_server(factory, dir.file("no/such/dir.sock")));
        EXPECT_EQ(code_of(e), std::errc::no_such_file_or_directory) << message_of(e);
    };
    run(main());
}

// CPython: test_start_unix_server_1.
TEST(UnixServer, StartServingThenServeForeverUntilCancelled) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("srv.sock");
        auto m = std::make_shared<MainTask>();
        ClientConnectedCallback cb = [m](StreamReader r, StreamWriter w) {
            return cancel_main_then_reply(m, std::move(r), std::move(w));
        };
        ServerOptions opts;
        opts.start_serving = false;
        Server srv = co_await start_unix_server(cb, path, opts);
        auto body = [](Server s) -> Coro<void> {
            EXPECT_FALSE(s.is_serving());
            co_await s.start_serving();
            EXPECT_TRUE(s.is_serving());
            co_await s.serve_forever();
        };
        m->task = create_task(body(srv));
        Task<std::string> client = create_task(hello_client(srv, SockAddr::unix_path(path)));
        auto e = co_await wait_for(error_of(m->task), kTimeout);
        EXPECT_TRUE(holds<CancelledError>(e)) << message_of(e);
        std::string reply = co_await wait_for(client, kTimeout);
        EXPECT_EQ(reply, "1");
        EXPECT_TRUE(srv.sockets().empty());
        EXPECT_FALSE(srv.is_serving());
        EXPECT_FALSE(exists(path));
        auto e2 = co_await error_of(srv.serve_forever());
        EXPECT_NE(message_of(e2).find("is closed"), std::string::npos) << message_of(e2);
        m->task = Task<void>();
    };
    run(main());
}

TEST(UnixServer, AbstractNamespaceAddress) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        std::string name("\0asyncio-test-", 14);
        name += std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}());
        auto protos = std::make_shared<ProtoList>();
        auto factory = [protos] { return (*protos)(); };
        Server srv = co_await loop.create_unix_server(factory, name);
        EXPECT_EQ(srv.sockets().at(0).getsockname().host(), name);
        Socket client(AF_UNIX, SOCK_STREAM);
        const SockAddr addr = SockAddr::unix_path(name);
        co_await wait_for(loop.sock_connect(client, addr), kTimeout);
        auto proto = co_await protos->nth(1);
        EXPECT_EQ(proto->state, "CONNECTED");
        srv.close();
        srv.close_clients();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

TEST(UnixServer, StreamsRoundTrip) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("echo.sock");
        ClientConnectedCallback cb = [](StreamReader r, StreamWriter w) -> Coro<void> {
            return [](StreamReader rd, StreamWriter wr) -> Coro<void> {
                std::string line = co_await rd.readline();
                wr.write("echo: " + line);
                co_await wr.drain();
                wr.close();
                co_await wr.wait_closed();
            }(std::move(r), std::move(w));
        };
        Server srv = co_await start_unix_server(cb, path);
        auto [rd, wr] = co_await open_unix_connection(path);
        wr.write("hi\n");
        std::string reply = co_await wait_for(rd.read(), kTimeout);
        EXPECT_EQ(reply, "echo: hi\n");
        wr.close();
        srv.close();
        co_await wait_for(srv.wait_closed(), kTimeout);
    };
    run(main());
}

// =============================================================================================
// Closing the loop with servers and transports still open
// =============================================================================================

TEST(LoopClose, WithAnOpenServerAndConnectionsReleasesEveryFd) {
    { EventLoop warm_up; }
    const std::size_t before = open_fd_count();
    {
        EventLoop loop;
        Server srv;
        std::shared_ptr<Transport> client;
        std::shared_ptr<MyProto> server_side;
        int peer_port = 0;
        auto protos = std::make_shared<ProtoList>();
        auto setup = [&]() -> Coro<void> {
            auto factory = [protos] { return (*protos)(); };
            srv = co_await loop.create_server(factory, "127.0.0.1", 0);
            peer_port = port_of(srv);
            auto plain = [] { return std::make_shared<MyProto>(); };
            auto conn = co_await loop.create_connection(plain, "127.0.0.1", port_of(srv));
            client = conn.first;
            client->write(std::string(1 << 20, 'x'));  // leave unsent data behind too
            server_side = co_await protos->nth(1);
        };
        loop.run_until_complete(setup());
        EXPECT_GE(open_fd_count(), before + 3);  // listener, client, accepted (+ the loop's own)
        loop.close();
        // Handles that outlived the loop's I/O: usable, inert, no crash.
        EXPECT_FALSE(srv.is_serving());
        EXPECT_TRUE(srv.sockets().empty());
        EXPECT_NO_THROW(srv.close());
        EXPECT_TRUE(client->is_closing());
        EXPECT_NO_THROW(client->write("dropped"));
        EXPECT_NO_THROW(client->close());
        EXPECT_NO_THROW(client->abort());
        // As in Python, the address extra info was cached at creation; the socket is gone.
        EXPECT_EQ(client->get_extra_info<SockAddr>("peername", {}), SockAddr("127.0.0.1", peer_port));
        EXPECT_FALSE(client->get_extra_info("socket").has_value());
        EXPECT_EQ(server_side->state, "CONNECTED");  // no callbacks from a closed loop
    }
    EXPECT_EQ(open_fd_count(), before);
}

TEST(LoopClose, UnixServerLeftOpenReleasesItsFd) {
    { EventLoop warm_up; }
    TempDir dir;
    const std::string path = dir.file("srv.sock");
    const std::size_t before = open_fd_count();
    {
        EventLoop loop;
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto setup = [&]() -> Coro<Server> { co_return co_await loop.create_unix_server(factory, path); };
        Server srv = loop.run_until_complete(setup());
        loop.close();
        EXPECT_FALSE(srv.is_serving());
    }
    EXPECT_EQ(open_fd_count(), before);
}

TEST(LoopClose, RunEndingWithAServerAndAConnectionStillOpenLeaksNoFd) {
    auto once = []() {
        auto main = []() -> Coro<void> {
            EventLoop& loop = get_running_loop();
            auto started = std::make_shared<Started>();
            ClientConnectedCallback cb = counting_handler(started);
            Server srv = co_await start_server(cb, "127.0.0.1", 0);
            auto [rd, wr] = co_await open_connection("127.0.0.1", port_of(srv));
            wr.write("unfinished business");
            co_await wait_started(started, 1);
            auto factory = [] { return std::make_shared<MyProto>(); };
            auto conn = co_await loop.create_connection(factory, "127.0.0.1", port_of(srv));
            (void)conn;
            // return without closing anything: run() cancels the handlers, closes the loop
        };
        run(main());
    };
    once();  // warm up (the default executor, allocator pools...)
    const std::size_t before = open_fd_count();
    once();
    EXPECT_EQ(open_fd_count(), before);
}

TEST(LoopClose, ServerClosedAfterItsLoopWasDestroyedIsANoOp) {
    Server srv;
    {
        EventLoop loop;
        auto factory = [] { return std::make_shared<MyProto>(); };
        auto setup = [&]() -> Coro<Server> { co_return co_await loop.create_server(factory, "127.0.0.1", 0); };
        srv = loop.run_until_complete(setup());
        loop.close();
    }
    EXPECT_FALSE(srv.is_serving());
    EXPECT_TRUE(srv.sockets().empty());
    EXPECT_NO_THROW(srv.close());
    EXPECT_NO_THROW(srv.close_clients());
    EXPECT_NO_THROW(srv.abort_clients());
}

// ---- faults: running out of file descriptors ----------------------------------------------
namespace {
/// The highest fd number this process has open.
int highest_open_fd() {
    int highest = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        try {
            highest = std::max(highest, std::stoi(entry.path().filename().string()));
        } catch (const std::exception&) {
        }
    }
    return highest;
}
}  // namespace

TEST(ServerFaults, AcceptHittingEmfileIsReportedAndTheServerKeepsServing) {
    // Python's _accept_connection: EMFILE is reported ("socket.accept() out of system
    // resource"), accepting pauses for a second, then resumes - the pending connection is
    // served then, and the server never stops.
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "the sanitizer runtime needs free fds for its own checks (its vptr check opens a pipe)";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
    GTEST_SKIP() << "the sanitizer runtime needs free fds for its own checks (its vptr check opens a pipe)";
#endif
#endif
    rlimit saved{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
    asyncio_test::HandlerCapture handler;
    auto main = [&]() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        handler.install(loop);
        auto echo_once = [](StreamReader r, StreamWriter w) -> Coro<void> {
            std::string line = co_await r.readline();
            w.write(line);
            co_await w.drain();
            w.close();
        };
        Server server = co_await start_server(echo_once, "127.0.0.1", 0);
        int port = server.sockets().at(0).getsockname().port();
        Socket client(AF_INET, SOCK_STREAM);
        // Use up every fd number below a tight limit, so the server's accept() gets EMFILE.
        rlimit tight = saved;
        tight.rlim_cur = static_cast<rlim_t>(highest_open_fd() + 8);
        EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
        std::vector<int> fillers;
        for (int fd; (fd = ::dup(0)) >= 0;) fillers.push_back(fd);
        EXPECT_EQ(errno, EMFILE);
        co_await loop.sock_connect(client, SockAddr("127.0.0.1", port));
        // Let the server try (and fail) to accept.
        for (int i = 0; i < 100 && !handler.contains("socket.accept() out of system resource"); ++i)
            co_await sleep(0.01);
        EXPECT_TRUE(handler.contains("socket.accept() out of system resource"));
        EXPECT_TRUE(server.is_serving());
        for (int fd : fillers) ::close(fd);
        ::setrlimit(RLIMIT_NOFILE, &saved);
        co_await loop.sock_sendall(client, "still here\n");
        std::string reply;
        while (reply.find('\n') == std::string::npos) {
            std::string chunk = co_await wait_for(loop.sock_recv(client, 100), 10.0);
            if (chunk.empty()) break;
            reply += chunk;
        }
        server.close();
        co_await server.wait_closed();
        co_return reply;
    };
    std::string reply = run(main());
    ::setrlimit(RLIMIT_NOFILE, &saved);
    EXPECT_EQ(reply, "still here\n");
}
