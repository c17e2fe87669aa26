// tests/net/test_protocols.cpp - transports and protocols on real sockets: the semantics of
// CPython's test_protocols.py, the _SelectorSocketTransport scenarios of
// test_selector_events.py (SelectorTransportTests, SelectorSocketTransportTests) and the
// create_connection/create_server protocol tests of test_events.py - on loopback TCP, Unix
// sockets and socketpairs instead of mocks. The far end is a raw Socket driven with the
// loop's sock_* operations, so each test controls exactly what the peer does (stop reading,
// half-close, reset).
//
// GCC 12 note: a lambda that captures something with a destructor (`[proto] { return proto; }`)
// must not be written inside a co_await expression - GCC 12 destroys that temporary twice
// (the shared_ptr loses a reference; see docs/compilers.md). Protocol factories are named
// variables here for that reason.
#include <gtest/gtest.h>

#include "backend/faults.hpp"
#include "recording_protocol.hpp"
#include "support.hpp"

#include <algorithm>
#include <any>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace asyncio {
// Readable gtest failure messages for addresses.
inline void PrintTo(const SockAddr& a, std::ostream* os) { *os << (a.empty() ? "<empty SockAddr>" : a.to_string()); }
}  // namespace asyncio

using namespace asyncio;
using asyncio_test::Boom;
using asyncio_test::code_of;
using asyncio_test::HandlerCapture;
using asyncio_test::LogCapture;
using asyncio_test::pattern;
using asyncio_test::settle;

namespace {

// ---- a recording protocol -------------------------------------------------------------------

using Rec = asyncio_test::RecordingProtocol;

using asyncio_test::seq;
using asyncio_test::until;
using asyncio_test::until_lost;

// ---- connections ----------------------------------------------------------------------------

/// A transport under test and the raw socket at the other end of its connection.
struct Conn {
    std::shared_ptr<Transport> tr;
    Socket peer;
};

constexpr int small_buffer = 4096;

/// create_connection() to a raw listening socket on 127.0.0.1; the accepted socket is the
/// peer. With `small_buffers`, the transport's SO_SNDBUF and the peer's SO_RCVBUF are shrunk
/// so that a few hundred KiB fill the path and the transport has to buffer.
Coro<Conn> tcp_client(std::shared_ptr<Protocol> proto, bool small_buffers = false) {
    EventLoop& loop = get_running_loop();
    Socket listener(AF_INET, SOCK_STREAM);
    if (small_buffers) listener.setsockopt(SOL_SOCKET, SO_RCVBUF, small_buffer);  // inherited
    listener.bind(SockAddr("127.0.0.1", 0));
    listener.listen();
    Task<std::pair<Socket, SockAddr>> accepted = create_task(loop.sock_accept(listener));
    auto factory = [proto] { return proto; };
    auto made = co_await loop.create_connection(factory, "127.0.0.1", listener.getsockname().port());
    std::pair<Socket, SockAddr> acc = co_await wait_for(accepted, 10.0);
    Conn c{made.first, std::move(acc.first)};
    if (small_buffers) {
        c.tr->get_extra_info<TransportSocket>("socket", {}).setsockopt(SOL_SOCKET, SO_SNDBUF, small_buffer);
        c.peer.setsockopt(SOL_SOCKET, SO_RCVBUF, small_buffer);
    }
    co_return c;
}

/// connect_accepted_socket() on one end of a Unix socketpair; the other end is the peer.
Coro<Conn> pair_conn(std::shared_ptr<Protocol> proto) {
    EventLoop& loop = get_running_loop();
    std::pair<Socket, Socket> ends = socketpair();
    auto factory = [proto] { return proto; };
    auto made = co_await loop.connect_accepted_socket(factory, std::move(ends.first));
    co_return Conn{made.first, std::move(ends.second)};
}

/// A raw TCP client of 127.0.0.1:port.
Coro<Socket> raw_connect(int port) {
    Socket s(AF_INET, SOCK_STREAM);
    co_await get_running_loop().sock_connect(s, SockAddr("127.0.0.1", port));
    co_return s;
}

/// Reads from the peer until `n` bytes arrived or EOF.
Coro<std::string> read_n(Socket& s, std::size_t n) {
    std::string out;
    while (out.size() < n) {
        std::string chunk = co_await get_running_loop().sock_recv(s, 256 * 1024);
        if (chunk.empty()) break;
        out += chunk;
    }
    co_return out;
}

Coro<std::string> read_n_bounded(Socket& s, std::size_t n) { co_return co_await wait_for(read_n(s, n), 10.0); }

/// Reads from the peer until EOF (a reset also ends the read).
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

/// Closes `s` with a TCP reset (SO_LINGER 0) instead of a FIN.
void reset_close(Socket& s) {
    linger lg{1, 0};
    ASSERT_EQ(::setsockopt(s.fileno(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    s.close();
}

/// Blocks (10 s at most) until `fd` is readable or has an error: what arrived from the
/// network is then in the socket, whatever the loop does next.
bool fd_readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 10000) == 1;
}

int transport_fd(const std::shared_ptr<Transport>& tr) {
    return tr->get_extra_info<TransportSocket>("socket", {}).fileno();
}

}  // namespace

// =============================================================================================
// The base classes (ProtocolsAbsTests)
// =============================================================================================

TEST(ProtocolBases, DefaultCallbacksDoNothingAndEofReceivedReturnsFalse) {
    Protocol p;
    p.connection_made(nullptr);
    p.data_received("data");
    EXPECT_FALSE(p.eof_received());
    p.pause_writing();
    p.resume_writing();
    p.connection_lost(nullptr);
    p.connection_lost(std::make_exception_ptr(std::runtime_error("x")));

    BaseProtocol b;
    b.pause_writing();
    b.resume_writing();
    b.connection_lost(nullptr);

    DatagramProtocol d;
    d.connection_made(nullptr);
    d.datagram_received("x", SockAddr("127.0.0.1", 1));
    d.error_received(nullptr);
    d.connection_lost(nullptr);
}

// =============================================================================================
// Callback order (test_events.py's MyProto state machine)
// =============================================================================================

TEST(ProtocolCallbacks, ConnectionMadeHasRunWhenCreateConnectionReturns) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EXPECT_EQ(proto->made_calls, 1);
        EXPECT_EQ(proto->transport, c.tr);
        EXPECT_EQ(c.tr->get_protocol(), proto);
        EXPECT_FALSE(c.tr->is_closing());
        EXPECT_TRUE(c.tr->is_reading());
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(ProtocolCallbacks, CreateConnectionReturnsTheFactorysProtocol) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(SockAddr("127.0.0.1", 0));
        listener.listen();
        auto accepted = create_task(loop.sock_accept(listener));
        int created = 0;
        auto [tr, pr] = co_await loop.create_connection(
            [&created] {
                ++created;
                return std::make_shared<Rec>();
            },
            "127.0.0.1", listener.getsockname().port());
        co_await accepted;
        EXPECT_EQ(created, 1);
        static_assert(std::is_same_v<decltype(pr), std::shared_ptr<Rec>>);
        EXPECT_EQ(pr->transport, tr);
        EXPECT_EQ(tr->get_protocol(), pr);
        tr->close();
        co_await until_lost(*pr);
    };
    run(main());
}

TEST(ProtocolCallbacks, OrderIsMadeThenDataThenEofThenLostExactlyOnce) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendall(c.peer, "hello ");
        co_await loop.sock_sendall(c.peer, "world");
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
        co_await settle();
    };
    run(main());
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "eof", "lost"}));
    EXPECT_EQ(proto->data, "hello world");
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(ProtocolCallbacks, ConnectionLostIsCalledOnceWhateverClosesItAndHowOften) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->close();
        c.tr->abort();
        c.tr->close();
        c.peer.shutdown(SHUT_WR);  // an EOF racing with the close
        co_await until_lost(*proto);
        c.tr->abort();
        c.tr->close();
        co_await settle(10);
    };
    run(main());
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_EQ(proto->events.back(), "lost");
}

TEST(ProtocolCallbacks, ConnectionLostIsNeverCalledFromInsideClose) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->close();
        EXPECT_EQ(proto->lost_calls, 0);  // scheduled with call_soon, as in Python
        EXPECT_TRUE(c.tr->is_closing());
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(ProtocolCallbacks, DataReceivedGetsEveryByteAcrossManyWrites) {
    auto proto = std::make_shared<Rec>();
    std::string expected;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EventLoop& loop = get_running_loop();
        for (int i = 0; i < 500; ++i) {
            std::string piece = std::to_string(i) + std::string(static_cast<std::size_t>(i % 37), 'x') + ";";
            expected += piece;
            co_await loop.sock_sendall(c.peer, piece);
        }
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->data, expected);
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "eof", "lost"}));
}

TEST(ProtocolCallbacks, EofReceivedReturningFalseClosesTheTransport) {
    auto proto = std::make_shared<Rec>();
    std::string peer_got = "unset";
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
        EXPECT_TRUE(c.tr->is_closing());
        peer_got = co_await read_to_eof(c.peer);  // the transport closed its socket
    };
    run(main());
    EXPECT_EQ(proto->collapsed(), seq({"made", "eof", "lost"}));
    EXPECT_EQ(proto->lost_exc, nullptr);
    EXPECT_EQ(peer_got, "");
}

TEST(ProtocolCallbacks, EofReceivedReturningTrueKeepsTheTransportHalfOpenForWriting) {
    auto proto = std::make_shared<Rec>();
    proto->keep_open = true;
    std::string reply;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendall(c.peer, "question");
        c.peer.shutdown(SHUT_WR);
        co_await until(proto->changed, [&] { return !proto->events.empty() && proto->events.back() == "eof"; });
        co_await settle(10);
        EXPECT_EQ(proto->lost_calls, 0);
        EXPECT_FALSE(c.tr->is_closing());
        c.tr->write("answer to " + proto->data);
        c.tr->close();
        reply = co_await read_to_eof(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(reply, "answer to question");
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "eof", "lost"}));
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(ProtocolCallbacks, ServerSideProtocolSeesMadeDataEofLost) {
    auto proto = std::make_shared<Rec>();
    proto->on_data = [](Rec& p, std::string_view d) { p.transport->write(d); };  // echo
    std::string echoed;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [proto] { return proto; };
        Server server = co_await loop.create_server(factory, "127.0.0.1", 0);
        Socket client = co_await raw_connect(server.sockets().at(0).getsockname().port());
        co_await loop.sock_sendall(client, "ping");
        client.shutdown(SHUT_WR);
        echoed = co_await read_to_eof(client);
        co_await until_lost(*proto);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_EQ(echoed, "ping");
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "eof", "lost"}));
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(ProtocolCallbacks, CreateServerMakesOneProtocolPerConnection) {
    std::vector<std::shared_ptr<Rec>> protos;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Event changed;
        Server server = co_await loop.create_server(
            [&] {
                auto p = std::make_shared<Rec>();
                p->on_made = [&changed](Rec&) { changed.set(); };
                p->on_lost = [&changed](Rec&) { changed.set(); };
                protos.push_back(p);
                return p;
            },
            "127.0.0.1", 0);
        int port = server.sockets().at(0).getsockname().port();
        Socket a = co_await raw_connect(port);
        Socket b = co_await raw_connect(port);
        co_await until(changed, [&] { return protos.size() == 2 && protos[0]->made_calls && protos[1]->made_calls; });
        co_await loop.sock_sendall(a, "from-a");
        a.shutdown(SHUT_WR);
        co_await loop.sock_sendall(b, "from-b");
        b.shutdown(SHUT_WR);
        co_await until(changed, [&] { return protos[0]->lost_calls && protos[1]->lost_calls; });
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    ASSERT_EQ(protos.size(), 2u);
    EXPECT_NE(protos[0], protos[1]);
    std::vector<std::string> got{protos[0]->data, protos[1]->data};
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, seq({"from-a", "from-b"}));
}

TEST(ProtocolCallbacks, ConnectAcceptedSocketWrapsASocketpairEnd) {
    auto proto = std::make_shared<Rec>();
    std::string peer_got;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await pair_conn(proto);
        EXPECT_EQ(proto->made_calls, 1);
        EventLoop& loop = get_running_loop();
        c.tr->write("to-peer");
        c.tr->write_eof();
        peer_got = co_await read_to_eof(c.peer);
        co_await loop.sock_sendall(c.peer, "to-transport");
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(peer_got, "to-peer");
    EXPECT_EQ(proto->data, "to-transport");
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "eof", "lost"}));
}

TEST(ProtocolCallbacks, CloseInsideConnectionMadeStillReturnsFromCreateConnection) {
    auto proto = std::make_shared<Rec>();
    proto->on_made = [](Rec& p) { p.transport->close(); };
    std::string peer_got = "unset";
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EXPECT_TRUE(c.tr->is_closing());
        co_await until_lost(*proto);
        peer_got = co_await read_to_eof(c.peer);
    };
    run(main());
    EXPECT_EQ(proto->collapsed(), seq({"made", "lost"}));
    EXPECT_EQ(proto->lost_exc, nullptr);
    EXPECT_EQ(peer_got, "");
}

TEST(ProtocolCallbacks, FactoryExceptionPropagatesFromCreateConnectionAndClosesTheSocket) {
    std::exception_ptr err;
    std::string peer_got = "unset";
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(SockAddr("127.0.0.1", 0));
        listener.listen();
        auto accepted = create_task(loop.sock_accept(listener));
        auto factory = []() -> std::shared_ptr<Rec> { throw Boom("no protocol"); };
        err = co_await asyncio_test::error_of(
            loop.create_connection(factory, "127.0.0.1", listener.getsockname().port()));
        auto acc = co_await wait_for(accepted, 10.0);
        peer_got = co_await read_to_eof(acc.first);  // the connected socket was closed
    };
    run(main());
    EXPECT_TRUE(asyncio_test::holds<Boom>(err));
    EXPECT_EQ(peer_got, "");
}

TEST(ProtocolCallbacks, CreateConnectionRejectsADatagramProtocolFactory) {
    std::exception_ptr err;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(SockAddr("127.0.0.1", 0));
        listener.listen();
        auto accepted = create_task(loop.sock_accept(listener));
        auto factory = [] { return std::make_shared<DatagramProtocol>(); };
        err = co_await asyncio_test::error_of(
            loop.create_connection(factory, "127.0.0.1", listener.getsockname().port()));
        co_await wait_for(accepted, 10.0);
    };
    run(main());
    EXPECT_TRUE(asyncio_test::holds<std::invalid_argument>(err));
}

TEST(ProtocolCallbacks, ServerFactoryExceptionIsReportedAndTheServerKeepsServing) {
    HandlerCapture handler;
    int calls = 0;
    auto good = std::make_shared<Rec>();
    std::string first_peer_got = "unset";
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        handler.install(loop);
        Server server = co_await loop.create_server(
            [&]() -> std::shared_ptr<Rec> {
                if (calls++ == 0) throw Boom("factory failed");
                return good;
            },
            "127.0.0.1", 0);
        int port = server.sockets().at(0).getsockname().port();
        Socket first = co_await raw_connect(port);
        first_peer_got = co_await read_to_eof(first);  // that connection is dropped
        Socket second = co_await raw_connect(port);
        co_await loop.sock_sendall(second, "served");
        second.shutdown(SHUT_WR);
        co_await until_lost(*good);
        EXPECT_TRUE(server.is_serving());
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_EQ(first_peer_got, "");
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "Error on transport creation for incoming connection");
    EXPECT_TRUE(asyncio_test::holds<Boom>(handler.contexts[0].exception));
    EXPECT_EQ(good->data, "served");
}

TEST(ProtocolCallbacks, UnixServerAndConnectionExchangeDataThroughProtocols) {
    asyncio::detail::faults::Suspended premise;  // "hi" arrives in one read (fault injection off)
    char tmpl[] = "/tmp/asyncio-proto-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    std::string dir = tmpl;
    std::string path = dir + "/sock";
    auto server_proto = std::make_shared<Rec>();
    server_proto->on_data = [](Rec& p, std::string_view d) {
        p.transport->write(std::string(d) + "!");
        p.transport->close();
    };
    auto client_proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto server_factory = [server_proto] { return server_proto; };
        Server server = co_await loop.create_unix_server(server_factory, path);
        auto client_factory = [client_proto] { return client_proto; };
        auto [tr, pr] = co_await loop.create_unix_connection(client_factory, path);
        EXPECT_EQ(pr, client_proto);
        EXPECT_EQ(tr->get_extra_info<SockAddr>("peername", {}).family(), AF_UNIX);
        tr->write("hi");
        co_await until_lost(*client_proto);
        co_await until_lost(*server_proto);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    std::filesystem::remove_all(dir);
    EXPECT_EQ(client_proto->data, "hi!");
    EXPECT_EQ(client_proto->collapsed(), seq({"made", "data", "eof", "lost"}));
    EXPECT_EQ(server_proto->collapsed(), seq({"made", "data", "lost"}));
}

TEST(ProtocolCallbacks, CreateConnectionOverIpv6Loopback) {
    if (!asyncio_test::ipv6_available()) GTEST_SKIP() << "no IPv6 loopback (::1)";
    auto server_proto = std::make_shared<Rec>();
    auto client_proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto server_factory = [server_proto] { return server_proto; };
        Server server = co_await loop.create_server(server_factory, "::1", 0);
        int port = server.sockets().at(0).getsockname().port();
        auto client_factory = [client_proto] { return client_proto; };
        auto [tr, pr] = co_await loop.create_connection(client_factory, "::1", port);
        SockAddr peer = tr->get_extra_info<SockAddr>("peername", {});
        EXPECT_EQ(peer.family(), AF_INET6);
        EXPECT_EQ(peer.host(), "::1");
        EXPECT_EQ(peer.port(), port);
        tr->write("six");
        tr->write_eof();
        co_await until(server_proto->changed, [&] { return server_proto->data == "six"; });
        server_proto->transport->close();
        co_await until_lost(*client_proto);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_EQ(server_proto->data, "six");
}

// =============================================================================================
// Writing
// =============================================================================================

TEST(TransportWrite, WriteInsideConnectionMadeIsSent) {
    auto proto = std::make_shared<Rec>();
    proto->on_made = [](Rec& p) { p.transport->write("greeting"); };
    std::string got;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        got = co_await read_n_bounded(c.peer, 8);
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(got, "greeting");
}

TEST(TransportWrite, EchoServerReturnsALargePayloadIntact) {
    // Writes from data_received while the peer sends and reads concurrently: the echo
    // transport buffers, pauses its writer, and every byte comes back in order.
    auto proto = std::make_shared<Rec>();
    proto->on_data = [](Rec& p, std::string_view d) { p.transport->write(d); };
    proto->keep_open = true;
    proto->on_eof = [](Rec& p) { p.transport->close(); };  // after echoing everything
    const std::string payload = pattern(4 * 1024 * 1024);
    std::string got;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [proto] { return proto; };
        Server server = co_await loop.create_server(factory, "127.0.0.1", 0);
        Socket client = co_await raw_connect(server.sockets().at(0).getsockname().port());
        auto sender = [&]() -> Coro<void> {
            co_await loop.sock_sendall(client, payload);
            client.shutdown(SHUT_WR);
        };
        Task<void> send_task = create_task(sender());
        got = co_await read_to_eof(client);
        co_await wait_for(send_task, 10.0);
        co_await until_lost(*proto);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_EQ(got.size(), payload.size());
    EXPECT_TRUE(got == payload);
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(TransportWrite, WriteSendsTheBytesToThePeer) {
    asyncio::detail::faults::Suspended kernel_takes_everything;  // the premise (fault injection off)
    auto proto = std::make_shared<Rec>();
    std::string got;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->write("data");
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);  // sent at once: the socket had room
        got = co_await read_n_bounded(c.peer, 4);
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(got, "data");
}

TEST(TransportWrite, WriteOfNothingIsANoOp) {
    auto proto = std::make_shared<Rec>();
    std::string got;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->write("");
        c.tr->write(std::string_view());
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);
        c.tr->write("x");
        c.tr->close();
        got = co_await read_to_eof(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(got, "x");
}

TEST(TransportWrite, WritelinesSendsThePiecesInOrder) {
    auto proto = std::make_shared<Rec>();
    std::string got;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->writelines({"one ", "two ", "three"});
        std::vector<std::string> more{" four", " five"};
        c.tr->writelines(more);
        c.tr->close();
        got = co_await read_to_eof(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(got, "one two three four five");
}

TEST(TransportWrite, LargeWriteBiggerThanTheSocketBuffersArrivesIntact) {
    auto proto = std::make_shared<Rec>();
    const std::string payload = pattern(2 * 1024 * 1024);  // 500 times the shrunk buffers
    std::string got;
    std::size_t buffered = 0;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, /*small_buffers=*/true);
        c.tr->write(payload);
        buffered = c.tr->get_write_buffer_size();
        got = co_await read_n_bounded(c.peer, payload.size());
        co_await settle();
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_GT(buffered, 0u);
    EXPECT_LE(buffered, payload.size());
    EXPECT_EQ(got.size(), payload.size());
    EXPECT_TRUE(got == payload);
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(TransportWrite, WritesQueuedBehindABufferKeepTheirOrder) {
    auto proto = std::make_shared<Rec>();
    std::string expected;
    std::string got;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        c.tr->write(pattern(1024 * 1024));  // fills the path: what follows is queued
        expected = pattern(1024 * 1024);
        CO_ASSERT(c.tr->get_write_buffer_size() > 0);
        for (int i = 0; i < 2000; ++i) {
            std::string piece(1, '<');  // (not "<" + ...: GCC 12 -Wrestrict false positive)
            piece += std::to_string(i);
            piece += '>';
            expected += piece;
            c.tr->write(piece);
        }
        c.tr->close();
        got = co_await read_to_eof(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(got.size(), expected.size());
    EXPECT_TRUE(got == expected);
}

TEST(TransportWrite, CanWriteEofIsTrueForASocketTransport) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EXPECT_TRUE(c.tr->can_write_eof());
        Conn u = co_await pair_conn(std::make_shared<Rec>());
        EXPECT_TRUE(u.tr->can_write_eof());
        c.tr->close();
        u.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportWrite, WriteEofShutsDownTheWritingSideOnly) {
    auto proto = std::make_shared<Rec>();
    std::string peer_got = "unset";
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->write("abc");
        c.tr->write_eof();
        EXPECT_FALSE(c.tr->is_closing());
        peer_got = co_await read_to_eof(c.peer);
        // The reading side still works.
        co_await get_running_loop().sock_sendall(c.peer, "still here");
        co_await until(proto->changed, [&] { return proto->data == "still here"; });
        EXPECT_EQ(proto->lost_calls, 0);
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(peer_got, "abc");
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "eof", "lost"}));
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(TransportWrite, WriteEofWaitsForTheBufferToDrainFirst) {
    auto proto = std::make_shared<Rec>();
    const std::string payload = pattern(2 * 1024 * 1024);
    std::string got;
    bool peer_saw_eof_early = true;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        c.tr->write(payload);
        CO_ASSERT(c.tr->get_write_buffer_size() > 0);
        c.tr->write_eof();
        EXPECT_GT(c.tr->get_write_buffer_size(), 0u);  // still queued, not dropped
        got = co_await read_to_eof(c.peer);
        peer_saw_eof_early = got.size() != payload.size();
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_FALSE(peer_saw_eof_early);
    EXPECT_TRUE(got == payload);
}

TEST(TransportWrite, WriteAfterWriteEofRaisesRuntimeError) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->write_eof();
        EXPECT_THROW(c.tr->write("late"), asyncio::RuntimeError);
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportWrite, WriteEofTwiceIsANoOp) {
    auto proto = std::make_shared<Rec>();
    std::string got = "unset";
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->write("once");
        c.tr->write_eof();
        EXPECT_NO_THROW(c.tr->write_eof());
        got = co_await read_to_eof(c.peer);
        EXPECT_FALSE(c.tr->is_closing());
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(got, "once");
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(TransportWrite, WriteEofAfterCloseIsANoOp) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->close();
        co_await until_lost(*proto);
        EXPECT_NO_THROW(c.tr->write_eof());
        co_await settle();
    };
    run(main());
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(TransportWrite, WriteAfterCloseIsIgnored) {
    asyncio::detail::faults::Suspended kernel_takes_everything;  // the premise (fault injection off)
    auto proto = std::make_shared<Rec>();
    std::string got = "unset";
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->write("before");
        c.tr->close();
        EXPECT_NO_THROW(c.tr->write("after"));
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);
        got = co_await read_to_eof(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(got, "before");
}

TEST(TransportWrite, WritesAfterTheConnectionIsLostAreIgnoredAndLoggedFromTheFifth) {
    auto proto = std::make_shared<Rec>();
    LogCapture log;
    bool logged_after_four = true;
    bool logged_after_five = false;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        reset_close(c.peer);
        co_await until_lost(*proto);
        for (int i = 0; i < 4; ++i) EXPECT_NO_THROW(c.tr->write("data"));
        logged_after_four = log.contains("socket.send() raised exception.");
        c.tr->write("data");
        logged_after_five = log.contains("socket.send() raised exception.");
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);
    };
    run(main());
    EXPECT_FALSE(logged_after_four) << log.joined();
    EXPECT_TRUE(logged_after_five) << log.joined();
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(TransportWrite, EofReceivedReturningFalseStillFlushesPendingWrites) {
    // A request/response server: the response is written from data_received, the client
    // half-closes, eof_received returns false -> close(), which must send the whole response.
    auto proto = std::make_shared<Rec>();
    const std::string response = pattern(2 * 1024 * 1024);
    proto->on_data = [&response](Rec& p, std::string_view) { p.transport->write(response); };
    std::string got;
    std::size_t buffered_at_eof = 0;
    proto->on_eof = [&buffered_at_eof](Rec& p) { buffered_at_eof = p.transport->get_write_buffer_size(); };
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        co_await get_running_loop().sock_sendall(c.peer, "?");
        c.peer.shutdown(SHUT_WR);
        co_await until(proto->changed, [&] { return proto->lost_calls > 0 || proto->events.back() == "eof"; });
        got = co_await read_to_eof(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_GT(buffered_at_eof, 0u);
    EXPECT_EQ(got.size(), response.size());
    EXPECT_TRUE(got == response);
    EXPECT_EQ(proto->lost_exc, nullptr);
}

// =============================================================================================
// Closing and aborting (SelectorTransportTests)
// =============================================================================================

TEST(TransportClose, IsClosingIsFalseUntilCloseThenTrue) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EXPECT_FALSE(c.tr->is_closing());
        c.tr->close();
        EXPECT_TRUE(c.tr->is_closing());
        co_await until_lost(*proto);
        EXPECT_TRUE(c.tr->is_closing());
    };
    run(main());
}

TEST(TransportClose, IsClosingIsTrueAfterAbort) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->abort();
        EXPECT_TRUE(c.tr->is_closing());
        EXPECT_FALSE(c.tr->is_reading());
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(TransportClose, CloseFlushesTheBufferBeforeConnectionLost) {
    auto proto = std::make_shared<Rec>();
    const std::string payload = pattern(2 * 1024 * 1024);
    std::string got;
    int lost_before_drain = -1;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        c.tr->write(payload);
        CO_ASSERT(c.tr->get_write_buffer_size() > 0);
        c.tr->close();
        EXPECT_TRUE(c.tr->is_closing());
        co_await settle(10);
        lost_before_drain = proto->lost_calls;  // the peer reads nothing yet: no drain possible
        EXPECT_GT(c.tr->get_write_buffer_size(), 0u);
        got = co_await read_to_eof(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(lost_before_drain, 0);
    EXPECT_EQ(got.size(), payload.size());
    EXPECT_TRUE(got == payload);
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(TransportClose, CloseStopsReadingAtOnce) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        c.tr->write(pattern(1024 * 1024));  // keeps the transport open after close()
        c.tr->close();
        EXPECT_FALSE(c.tr->is_reading());
        co_await get_running_loop().sock_sendall(c.peer, "ignored");
        EXPECT_TRUE(fd_readable(transport_fd(c.tr)));
        co_await settle(10);
        EXPECT_EQ(proto->data, "");
        c.tr->abort();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->collapsed(), seq({"made", "pause", "lost"}));  // no data, no eof
}

TEST(TransportClose, AbortDropsTheBufferAndConnectionLostGetsNull) {
    auto proto = std::make_shared<Rec>();
    const std::string payload = pattern(4 * 1024 * 1024);
    std::string got;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        c.tr->write(payload);
        CO_ASSERT(c.tr->get_write_buffer_size() > 0);
        c.tr->abort();
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);
        EXPECT_EQ(proto->lost_calls, 0);  // soon, not from inside abort()
        co_await until_lost(*proto);
        got = co_await read_to_eof(c.peer);
    };
    run(main());
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_EQ(proto->lost_exc, nullptr);
    EXPECT_LT(got.size(), payload.size());
    EXPECT_TRUE(payload.compare(0, got.size(), got) == 0);  // a prefix, nothing invented
}

TEST(TransportClose, AbortAfterCloseWithABufferDropsItAtOnce) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        c.tr->write(pattern(2 * 1024 * 1024));
        CO_ASSERT(c.tr->get_write_buffer_size() > 0);
        c.tr->close();
        co_await settle(4);
        EXPECT_EQ(proto->lost_calls, 0);
        c.tr->abort();  // the peer never reads: only abort can end this connection
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(TransportClose, DroppingEveryHandleDoesNotCutAnOpenConnection) {
    auto proto = std::make_shared<Rec>();
    std::string got;
    auto main = [&]() -> Coro<void> {
        Socket peer;
        {
            Conn c = co_await tcp_client(proto);
            peer = std::move(c.peer);
        }
        proto->transport.reset();  // nobody holds the transport now but the loop
        co_await get_running_loop().sock_sendall(peer, "still open");
        co_await until(proto->changed, [&] { return proto->data == "still open"; });
        peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
        got = co_await read_to_eof(peer);
    };
    run(main());
    EXPECT_EQ(proto->data, "still open");
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(TransportClose, AbortInsideDataReceivedEndsTheConnectionWithoutError) {
    asyncio::detail::faults::Suspended premise;  // what the peer sends arrives in one read (fault injection off)
    auto proto = std::make_shared<Rec>();
    proto->on_data = [](Rec& p, std::string_view) { p.transport->abort(); };
    HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        co_await get_running_loop().sock_sendall(c.peer, "stop");
        co_await until_lost(*proto);
        co_await get_running_loop().sock_sendall(c.peer, "more");  // may or may not fail: no matter
        co_await settle();
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty());
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "lost"}));
    EXPECT_EQ(proto->lost_exc, nullptr);
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(TransportClose, CloseInsideDataReceivedStopsFurtherDataReceived) {
    auto proto = std::make_shared<Rec>();
    proto->on_data = [](Rec& p, std::string_view) { p.transport->close(); };
    auto main = [&]() -> Coro<void> {
        Conn c = co_await pair_conn(proto);
        co_await get_running_loop().sock_sendall(c.peer, "first");
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "lost"}));
    EXPECT_EQ(proto->events.size(), 3u);  // exactly one data_received
}

// =============================================================================================
// Reading: pause_reading / resume_reading / is_reading
// =============================================================================================

TEST(TransportReading, PauseReadingHoldsDataReceivedUntilResume) {
    auto proto = std::make_shared<Rec>();
    std::string while_paused = "unset";
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->pause_reading();
        EXPECT_FALSE(c.tr->is_reading());
        co_await get_running_loop().sock_sendall(c.peer, "held");
        EXPECT_TRUE(fd_readable(transport_fd(c.tr)));  // the bytes are in the socket
        co_await settle(10);
        while_paused = proto->data;
        c.tr->resume_reading();
        EXPECT_TRUE(c.tr->is_reading());
        co_await until(proto->changed, [&] { return proto->data == "held"; });
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(while_paused, "");
    EXPECT_EQ(proto->data, "held");
}

TEST(TransportReading, PauseReadingAlsoHoldsTheEof) {
    auto proto = std::make_shared<Rec>();
    std::vector<std::string> while_paused;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->pause_reading();
        co_await get_running_loop().sock_sendall(c.peer, "last words");
        c.peer.shutdown(SHUT_WR);
        EXPECT_TRUE(fd_readable(transport_fd(c.tr)));
        co_await settle(10);
        while_paused = proto->events;
        c.tr->resume_reading();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(while_paused, seq({"made"}));
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "eof", "lost"}));
    EXPECT_EQ(proto->data, "last words");
}

TEST(TransportReading, PauseAndResumeReadingAreIdempotent) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EXPECT_TRUE(c.tr->is_reading());
        c.tr->pause_reading();
        c.tr->pause_reading();
        EXPECT_FALSE(c.tr->is_reading());
        c.tr->resume_reading();
        c.tr->resume_reading();
        EXPECT_TRUE(c.tr->is_reading());
        co_await get_running_loop().sock_sendall(c.peer, "once");
        co_await until(proto->changed, [&] { return proto->data.size() >= 4; });
        c.tr->close();
        EXPECT_FALSE(c.tr->is_reading());
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->data, "once");  // delivered once, not twice
}

TEST(TransportReading, ResumeReadingAfterCloseDoesNotRestartReading) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        c.tr->pause_reading();
        c.tr->close();
        c.tr->resume_reading();
        EXPECT_FALSE(c.tr->is_reading());
        EXPECT_TRUE(c.tr->is_closing());
        co_await until_lost(*proto);
        c.tr->resume_reading();
        c.tr->pause_reading();
        EXPECT_FALSE(c.tr->is_reading());
    };
    run(main());
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(TransportReading, PauseReadingInsideConnectionMadeHoldsTheFirstBytes) {
    auto proto = std::make_shared<Rec>();
    proto->on_made = [](Rec& p) { p.transport->pause_reading(); };
    std::string while_paused = "unset";
    auto main = [&]() -> Coro<void> {
        auto [a, b] = socketpair();
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendall(b, "early");  // already waiting in the socket
        auto factory = [proto] { return proto; };
        auto made = co_await loop.connect_accepted_socket(factory, std::move(a));
        std::shared_ptr<Transport> tr = made.first;
        EXPECT_FALSE(tr->is_reading());
        co_await settle(10);
        while_paused = proto->data;
        tr->resume_reading();
        co_await until(proto->changed, [&] { return proto->data == "early"; });
        tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(while_paused, "");
    EXPECT_EQ(proto->data, "early");
}

TEST(TransportReading, PauseReadingInsideDataReceivedStopsFurtherDeliveries) {
    auto proto = std::make_shared<Rec>();
    proto->on_data = [](Rec& p, std::string_view) { p.transport->pause_reading(); };
    std::size_t first_size = 0;
    std::size_t while_paused = 0;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendall(c.peer, "first");
        co_await until(proto->changed, [&] { return !proto->data.empty(); });
        first_size = proto->data.size();
        co_await loop.sock_sendall(c.peer, "second");
        EXPECT_TRUE(fd_readable(transport_fd(c.tr)));
        co_await settle(10);
        while_paused = proto->data.size();
        proto->on_data = nullptr;
        c.tr->resume_reading();
        co_await until(proto->changed, [&] { return proto->data == "firstsecond"; });
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(while_paused, first_size);
    EXPECT_EQ(proto->data, "firstsecond");
}

// =============================================================================================
// Errors: fatal errors go to the loop's exception handler, connection errors do not
// =============================================================================================

TEST(TransportErrors, ExceptionInDataReceivedIsReportedAndClosesTheTransport) {
    auto proto = std::make_shared<Rec>();
    proto->on_data = [](Rec&, std::string_view) { throw Boom("bad data"); };
    HandlerCapture handler;
    std::string peer_got = "unset";
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        co_await get_running_loop().sock_sendall(c.peer, "data");
        co_await until_lost(*proto);
        EXPECT_TRUE(c.tr->is_closing());
        peer_got = co_await read_to_eof(c.peer);
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "Fatal error: protocol.data_received() call failed.");
    EXPECT_TRUE(asyncio_test::holds<Boom>(handler.contexts[0].exception));
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_EQ(proto->lost_exc, handler.contexts[0].exception);  // the same exception object
    EXPECT_EQ(asyncio_test::message_of(proto->lost_exc), "bad data");
    EXPECT_EQ(peer_got, "");
}

TEST(TransportErrors, ExceptionInDataReceivedDropsTheWriteBuffer) {
    auto proto = std::make_shared<Rec>();
    HandlerCapture handler;
    std::size_t size_after = 1;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto, true);
        c.tr->write(pattern(2 * 1024 * 1024));
        CO_ASSERT(c.tr->get_write_buffer_size() > 0);
        proto->on_data = [](Rec&, std::string_view) { throw Boom("bad data"); };
        co_await get_running_loop().sock_sendall(c.peer, "data");
        co_await until_lost(*proto);  // would hang if the fatal error waited for the drain
        size_after = c.tr->get_write_buffer_size();
    };
    run(main());
    EXPECT_EQ(size_after, 0u);
    EXPECT_TRUE(asyncio_test::holds<Boom>(proto->lost_exc));
    EXPECT_TRUE(handler.contains("Fatal error: protocol.data_received() call failed."));
}

TEST(TransportErrors, ExceptionInEofReceivedIsReportedAsAFatalError) {
    auto proto = std::make_shared<Rec>();
    proto->on_eof = [](Rec&) { throw Boom("bad eof"); };
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

TEST(TransportErrors, PeerResetGivesConnectionLostWithEconnresetAndIsNotReported) {
    auto proto = std::make_shared<Rec>();
    HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        reset_close(c.peer);
        co_await until_lost(*proto);
        EXPECT_TRUE(c.tr->is_closing());
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.at(0).message;
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_TRUE(asyncio_test::holds<std::system_error>(proto->lost_exc));
    EXPECT_EQ(code_of(proto->lost_exc), std::errc::connection_reset);
    EXPECT_EQ(proto->collapsed(), seq({"made", "lost"}));  // a reset is not an EOF
}

TEST(TransportErrors, PeerResetIsNotLoggedOutsideDebugMode) {
    auto proto = std::make_shared<Rec>();
    LogCapture log;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        reset_close(c.peer);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_TRUE(log.messages.empty()) << log.joined();
}

TEST(TransportErrors, WriteToAResetPeerLosesTheConnectionWithoutReporting) {
    auto proto = std::make_shared<Rec>();
    HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        c.tr->pause_reading();  // only the write can notice the reset
        int fd = transport_fd(c.tr);
        reset_close(c.peer);
        EXPECT_TRUE(fd_readable(fd));  // the RST has arrived
        c.tr->write("into the void");
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty());
    std::error_code ec = code_of(proto->lost_exc);
    EXPECT_TRUE(ec == std::errc::connection_reset || ec == std::errc::broken_pipe) << ec.message();
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(TransportErrors, PeerResetWhileWritesAreQueuedDropsTheBufferWithoutReporting) {
    auto proto = std::make_shared<Rec>();
    HandlerCapture handler;
    std::size_t size_after = 1;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto, true);
        c.tr->pause_reading();  // the queued send must notice the reset by itself
        c.tr->write(pattern(2 * 1024 * 1024));
        CO_ASSERT(c.tr->get_write_buffer_size() > 0);
        reset_close(c.peer);
        co_await until_lost(*proto);
        size_after = c.tr->get_write_buffer_size();
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty());
    std::error_code ec = code_of(proto->lost_exc);
    EXPECT_TRUE(ec == std::errc::connection_reset || ec == std::errc::broken_pipe) << ec.message();
    EXPECT_EQ(size_after, 0u);
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(TransportErrors, KeyboardInterruptFromDataReceivedEscapesTheLoopAndKeepsReading) {
    // Python re-raises SystemExit/KeyboardInterrupt from protocol callbacks instead of
    // treating them as a fatal error of the connection; the selector's reader stays
    // registered, so when the loop runs again the transport goes on reading.
    auto proto = std::make_shared<Rec>();
    proto->on_data = [](Rec& p, std::string_view) {
        p.on_data = nullptr;
        throw KeyboardInterrupt();
    };
    EventLoop loop;
    HandlerCapture handler;
    handler.install(loop);
    std::shared_ptr<Transport> tr;
    Socket peer;
    auto start = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        tr = c.tr;
        peer = std::move(c.peer);
        co_await get_running_loop().sock_sendall(peer, "x");
        co_await until(proto->changed, [&] { return proto->lost_calls > 0; });
    };
    bool interrupted = false;
    try {
        loop.run_until_complete(start());
    } catch (const KeyboardInterrupt&) {
        interrupted = true;
    }
    EXPECT_TRUE(interrupted);
    ASSERT_TRUE(tr);
    EXPECT_FALSE(tr->is_closing());
    EXPECT_EQ(proto->lost_calls, 0);
    EXPECT_TRUE(handler.contexts.empty());
    auto finish = [&]() -> Coro<void> {
        co_await get_running_loop().sock_sendall(peer, "y");
        co_await until(proto->changed, [&] { return proto->data == "xy"; });
        tr->close();
        co_await until_lost(*proto);
    };
    loop.run_until_complete(finish());
    EXPECT_EQ(proto->data, "xy");
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(TransportErrors, ExceptionInConnectionLostIsReportedToTheHandler) {
    auto proto = std::make_shared<Rec>();
    proto->on_lost = [](Rec&) { throw Boom("bad lost"); };
    HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        c.tr->close();
        co_await until_lost(*proto);
        co_await settle();
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_TRUE(asyncio_test::holds<Boom>(handler.contexts[0].exception));
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(TransportErrors, ExceptionInConnectionMadeIsReportedAndTheConnectionStillWorks) {
    // Python calls connection_made from a loop callback: its exception is reported as
    // "Exception in callback ..." and the transport starts reading all the same.
    auto proto = std::make_shared<Rec>();
    proto->on_made = [](Rec&) { throw Boom("bad made"); };
    HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto);
        co_await get_running_loop().sock_sendall(c.peer, "after");
        co_await until(proto->changed, [&] { return proto->data == "after"; });
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_TRUE(asyncio_test::holds<Boom>(handler.contexts[0].exception));
    EXPECT_EQ(proto->data, "after");
}

// =============================================================================================
// Flow control: write buffer limits, pause_writing / resume_writing
// =============================================================================================

TEST(TransportFlowControl, DefaultWriteBufferLimitsAre16KiBLowAnd64KiBHigh) {
    auto proto = std::make_shared<Rec>();
    std::pair<std::size_t, std::size_t> limits;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        limits = c.tr->get_write_buffer_limits();
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(limits.first, 16u * 1024);   // low
    EXPECT_EQ(limits.second, 64u * 1024);  // high
}

TEST(TransportFlowControl, SetWriteBufferLimitsFollowsPythonsRules) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        using L = std::pair<std::size_t, std::size_t>;
        c.tr->set_write_buffer_limits(128);  // high only: low = high / 4
        EXPECT_EQ(c.tr->get_write_buffer_limits(), L(32, 128));
        c.tr->set_write_buffer_limits(std::nullopt, 10);  // low only: high = 4 * low
        EXPECT_EQ(c.tr->get_write_buffer_limits(), L(10, 40));
        c.tr->set_write_buffer_limits(100, 90);
        EXPECT_EQ(c.tr->get_write_buffer_limits(), L(90, 100));
        c.tr->set_write_buffer_limits(7, 7);
        EXPECT_EQ(c.tr->get_write_buffer_limits(), L(7, 7));
        c.tr->set_write_buffer_limits(0, 0);
        EXPECT_EQ(c.tr->get_write_buffer_limits(), L(0, 0));
        c.tr->set_write_buffer_limits(3);  // 3 // 4 == 0
        EXPECT_EQ(c.tr->get_write_buffer_limits(), L(0, 3));
        c.tr->set_write_buffer_limits();  // neither: the defaults again
        EXPECT_EQ(c.tr->get_write_buffer_limits(), L(16 * 1024, 64 * 1024));
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportFlowControl, LowAboveHighIsInvalidAndKeepsTheOldLimits) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        using L = std::pair<std::size_t, std::size_t>;
        c.tr->set_write_buffer_limits(200, 50);
        EXPECT_THROW(c.tr->set_write_buffer_limits(10, 20), std::invalid_argument);
        EXPECT_EQ(c.tr->get_write_buffer_limits(), L(50, 200));
        EXPECT_THROW(c.tr->set_write_buffer_limits(0, 1), std::invalid_argument);
        EXPECT_EQ(c.tr->get_write_buffer_limits(), L(50, 200));
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportFlowControl, NoPauseWritingWhileTheKernelTakesEverything) {
    asyncio::detail::faults::Suspended kernel_takes_everything;  // the premise (fault injection off)
    auto proto = std::make_shared<Rec>();
    std::string got;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        for (int i = 0; i < 10; ++i) c.tr->write("small");
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);
        got = co_await read_n_bounded(c.peer, 50);
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->pause_calls, 0);
    EXPECT_EQ(proto->resume_calls, 0);
    EXPECT_EQ(got.size(), 50u);
}

TEST(TransportFlowControl, PauseWritingIsCalledOnceWhenTheBufferExceedsHighWater) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        c.tr->write(pattern(512 * 1024));
        EXPECT_EQ(proto->pause_calls, 1);  // synchronously, from inside write()
        c.tr->write(pattern(512 * 1024));
        c.tr->write("more");
        EXPECT_EQ(proto->pause_calls, 1);  // not again while paused
        EXPECT_EQ(proto->resume_calls, 0);
        c.tr->abort();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_GT(proto->size_at_pause, 64u * 1024);
}

TEST(TransportFlowControl, ResumeWritingIsCalledWhenTheBufferDrainsToLowWater) {
    auto proto = std::make_shared<Rec>();
    const std::string payload = pattern(1024 * 1024);
    std::string got;
    std::pair<std::size_t, std::size_t> limits;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        limits = c.tr->get_write_buffer_limits();
        c.tr->write(payload);
        CO_ASSERT(proto->pause_calls == 1);
        got = co_await read_n_bounded(c.peer, payload.size());  // the peer reads: the buffer drains
        co_await until(proto->changed, [&] { return proto->resume_calls > 0; });
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->resume_calls, 1);
    EXPECT_LE(proto->size_at_resume, limits.first);
    EXPECT_EQ(proto->collapsed(), seq({"made", "pause", "resume", "lost"}));
    EXPECT_TRUE(got == payload);
}

TEST(TransportFlowControl, PauseAndResumeRepeatAcrossSeveralBursts) {
    auto proto = std::make_shared<Rec>();
    std::string got;
    std::string expected;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        for (int burst = 0; burst < 3; ++burst) {
            std::string piece = pattern(512 * 1024 + static_cast<std::size_t>(burst));
            expected += piece;
            c.tr->write(piece);
            EXPECT_EQ(proto->pause_calls, burst + 1);
            got += co_await read_n_bounded(c.peer, piece.size());
            co_await until(proto->changed, [&] { return proto->resume_calls == burst + 1; });
        }
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(proto->pause_calls, 3);
    EXPECT_EQ(proto->resume_calls, 3);
    EXPECT_TRUE(got == expected);
}

TEST(TransportFlowControl, LoweringHighWaterBelowTheBufferedAmountPausesAtOnce) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        const std::string chunk(2048, 'z');
        for (int i = 0; i < 10000 && c.tr->get_write_buffer_size() == 0; ++i) c.tr->write(chunk);
        CO_ASSERT(c.tr->get_write_buffer_size() > 0);
        EXPECT_EQ(proto->pause_calls, 0);  // at most one chunk buffered: under 64 KiB
        c.tr->set_write_buffer_limits(0);
        EXPECT_EQ(proto->pause_calls, 1);
        c.tr->abort();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportFlowControl, GetWriteBufferSizeCountsTheUnsentBytes) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);
        c.tr->write(pattern(1024 * 1024));
        std::size_t size = c.tr->get_write_buffer_size();
        CO_ASSERT(size > 0);
        c.tr->write("12345");
        EXPECT_EQ(c.tr->get_write_buffer_size(), size + 5);  // queued behind, nothing sent
        co_await read_n_bounded(c.peer, 1024 * 1024 + 5);
        co_await until(proto->changed, [&] { return proto->resume_calls > 0; });
        co_await settle();  // resume_writing may come before the last bytes are sent
        EXPECT_EQ(c.tr->get_write_buffer_size(), 0u);
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportFlowControl, ExceptionInPauseWritingIsReportedAndTheTransportStaysOpen) {
    auto proto = std::make_shared<Rec>();
    proto->on_pause = [](Rec&) { throw Boom("bad pause"); };
    HandlerCapture handler;
    std::string got;
    const std::string payload = pattern(512 * 1024);
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto, true);
        EXPECT_NO_THROW(c.tr->write(payload));
        EXPECT_FALSE(c.tr->is_closing());
        got = co_await read_n_bounded(c.peer, payload.size());
        // The protocol counts as paused all the same: resume_writing follows the drain.
        co_await until(proto->changed, [&] { return proto->resume_calls > 0; });
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "protocol.pause_writing() failed");
    EXPECT_TRUE(asyncio_test::holds<Boom>(handler.contexts[0].exception));
    EXPECT_TRUE(got == payload);
    EXPECT_EQ(proto->lost_exc, nullptr);
}

TEST(TransportFlowControl, ExceptionInResumeWritingIsReportedAndTheTransportStaysOpen) {
    auto proto = std::make_shared<Rec>();
    proto->on_resume = [](Rec&) { throw Boom("bad resume"); };
    HandlerCapture handler;
    const std::string payload = pattern(512 * 1024);
    std::string got;
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Conn c = co_await tcp_client(proto, true);
        c.tr->write(payload);
        got = co_await read_n_bounded(c.peer, payload.size());
        co_await until(proto->changed, [&] { return proto->resume_calls > 0; });
        EXPECT_FALSE(c.tr->is_closing());
        c.tr->write("after");
        got += co_await read_n_bounded(c.peer, 5);
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "protocol.resume_writing() failed");
    EXPECT_TRUE(got == payload + "after");
}

TEST(TransportFlowControl, WritingFromResumeWritingRefillsTheBuffer) {
    // The classic producer: write until paused, write again when resumed.
    auto proto = std::make_shared<Rec>();
    int chunks_left = 40;
    const std::string chunk = pattern(32 * 1024);
    std::string expected;
    std::string got;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto, true);
        auto produce = [&](Rec& p) {
            while (chunks_left > 0 && (p.pause_calls == p.resume_calls)) {
                --chunks_left;
                expected += chunk;
                p.transport->write(chunk);
            }
        };
        proto->on_resume = produce;
        produce(*proto);
        CO_ASSERT(proto->pause_calls == 1);
        got = co_await read_n_bounded(c.peer, 40 * chunk.size());
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_EQ(chunks_left, 0);
    EXPECT_GE(proto->pause_calls, 2);
    EXPECT_TRUE(got == expected);
}

// =============================================================================================
// get_extra_info
// =============================================================================================

TEST(TransportExtraInfo, PeernameAndSocknameMatchThePeersSocket) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        std::any peer = c.tr->get_extra_info("peername");
        std::any sock = c.tr->get_extra_info("sockname");
        CO_ASSERT(peer.has_value() && sock.has_value());
        EXPECT_EQ(std::any_cast<SockAddr>(peer), c.peer.getsockname());
        EXPECT_EQ(std::any_cast<SockAddr>(sock), c.peer.getpeername());
        EXPECT_EQ(std::any_cast<SockAddr>(sock).host(), "127.0.0.1");
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportExtraInfo, SocketIsTheTransportsOwnSocket) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        std::any s = c.tr->get_extra_info("socket");
        CO_ASSERT(s.has_value());
        TransportSocket ts = std::any_cast<TransportSocket>(s);
        EXPECT_GE(ts.fileno(), 0);
        EXPECT_EQ(ts.family(), AF_INET);
        EXPECT_EQ(ts.type(), SOCK_STREAM);
        EXPECT_EQ(ts.getsockname(), c.peer.getpeername());
        EXPECT_EQ(ts.getpeername(), c.peer.getsockname());
        EXPECT_EQ(ts.getsockopt(IPPROTO_TCP, TCP_NODELAY), 1);  // set by the loop, as in Python
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportExtraInfo, UnknownNameGivesAnEmptyAny) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EXPECT_FALSE(c.tr->get_extra_info("no-such-thing").has_value());
        EXPECT_FALSE(c.tr->get_extra_info("sslcontext").has_value());  // plain TCP
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportExtraInfo, TypedOverloadReturnsTheDefaultForUnknownOrMistypedNames) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        SockAddr fallback("10.1.2.3", 9);
        EXPECT_EQ(c.tr->get_extra_info<SockAddr>("no-such-thing", fallback), fallback);
        EXPECT_EQ(c.tr->get_extra_info<int>("peername", 42), 42);  // wrong type: the default
        EXPECT_EQ(c.tr->get_extra_info<std::string>("socket", "dflt"), "dflt");
        EXPECT_EQ(c.tr->get_extra_info<SockAddr>("peername", fallback), c.peer.getsockname());
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportExtraInfo, ServerSideTransportReportsTheClientAsPeer) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto factory = [proto] { return proto; };
        Server server = co_await loop.create_server(factory, "127.0.0.1", 0);
        int port = server.sockets().at(0).getsockname().port();
        Socket client = co_await raw_connect(port);
        co_await until(proto->changed, [&] { return proto->made_calls > 0; });
        EXPECT_EQ(proto->transport->get_extra_info<SockAddr>("peername", {}), client.getsockname());
        EXPECT_EQ(proto->transport->get_extra_info<SockAddr>("sockname", {}).port(), port);
        proto->transport->close();
        co_await until_lost(*proto);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(TransportExtraInfo, UnixSocketpairTransportHasUnixAddresses) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await pair_conn(proto);
        TransportSocket ts = c.tr->get_extra_info<TransportSocket>("socket", {});
        EXPECT_EQ(ts.family(), AF_UNIX);
        EXPECT_EQ(c.tr->get_extra_info<SockAddr>("sockname", {}).family(), AF_UNIX);
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}

TEST(TransportExtraInfo, PeernameIsAvailableInsideConnectionLost) {
    auto proto = std::make_shared<Rec>();
    SockAddr seen;
    proto->on_lost = [&seen](Rec& p) { seen = p.transport->get_extra_info<SockAddr>("peername", {}); };
    SockAddr expected;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        expected = c.peer.getsockname();
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*proto);
    };
    run(main());
    EXPECT_FALSE(seen.empty());
    EXPECT_EQ(seen, expected);
}

TEST(TransportExtraInfo, PeernameStaysAvailableAfterTheConnectionIsLost) {
    // Python computes 'peername', 'sockname' and 'socket' once, in the transport's
    // constructor (_SelectorTransport.__init__ fills self._extra), so they stay readable after
    // close() - a common way to log who disconnected.
    auto proto = std::make_shared<Rec>();
    SockAddr after;
    SockAddr expected;
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        expected = c.peer.getsockname();
        c.tr->close();
        co_await until_lost(*proto);
        after = c.tr->get_extra_info<SockAddr>("peername", {});
    };
    run(main());
    EXPECT_EQ(after, expected);
}

// =============================================================================================
// set_protocol / get_protocol
// =============================================================================================

TEST(TransportProtocolSwitch, GetProtocolReturnsTheCurrentProtocol) {
    auto proto = std::make_shared<Rec>();
    auto other = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EXPECT_EQ(c.tr->get_protocol(), proto);
        c.tr->set_protocol(other);
        EXPECT_EQ(c.tr->get_protocol(), other);
        c.tr->close();
        co_await until_lost(*other);
    };
    run(main());
}

TEST(TransportProtocolSwitch, LaterCallbacksGoToTheNewProtocol) {
    auto first = std::make_shared<Rec>();
    auto second = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(first);
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendall(c.peer, "one");
        co_await until(first->changed, [&] { return first->data == "one"; });
        second->transport = c.tr;  // connection_made is not repeated for the new protocol
        c.tr->set_protocol(second);
        co_await loop.sock_sendall(c.peer, "two");
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*second);
    };
    run(main());
    EXPECT_EQ(first->data, "one");
    EXPECT_EQ(first->collapsed(), seq({"made", "data"}));
    EXPECT_EQ(second->data, "two");
    EXPECT_EQ(second->collapsed(), seq({"data", "eof", "lost"}));
    EXPECT_EQ(second->made_calls, 0);
}

TEST(TransportProtocolSwitch, SetProtocolFromInsideDataReceivedTakesEffectForTheNextBytes) {
    asyncio::detail::faults::Suspended one_read_per_write;  // the premise (fault injection off)
    auto first = std::make_shared<Rec>();
    auto second = std::make_shared<Rec>();
    first->on_data = [second](Rec& p, std::string_view) {
        second->transport = p.transport;
        p.transport->set_protocol(second);
    };
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(first);
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendall(c.peer, "hdr");
        co_await until(first->changed, [&] { return !first->data.empty(); });
        co_await loop.sock_sendall(c.peer, "body");
        c.peer.shutdown(SHUT_WR);
        co_await until_lost(*second);
    };
    run(main());
    EXPECT_EQ(first->data, "hdr");
    EXPECT_EQ(second->data, "body");
    EXPECT_EQ(first->lost_calls, 0);
}

TEST(TransportProtocolSwitch, NullOrDatagramProtocolIsRejected) {
    auto proto = std::make_shared<Rec>();
    auto main = [&]() -> Coro<void> {
        Conn c = co_await tcp_client(proto);
        EXPECT_THROW(c.tr->set_protocol(nullptr), std::invalid_argument);
        EXPECT_THROW(c.tr->set_protocol(std::make_shared<DatagramProtocol>()), std::invalid_argument);
        EXPECT_EQ(c.tr->get_protocol(), proto);  // unchanged
        co_await get_running_loop().sock_sendall(c.peer, "ok");
        co_await until(proto->changed, [&] { return proto->data == "ok"; });
        c.tr->close();
        co_await until_lost(*proto);
    };
    run(main());
}
