// tests/net/test_datagram.cpp - UDP on real loopback sockets: loop.create_datagram_endpoint
// (local/remote addresses, connected and unconnected endpoints, family/proto/flags,
// reuse_port, allow_broadcast, resolution/bind/connect/socket errors, a caller's socket
// (sock=), Unix paths), DatagramTransport (sendto rules, write buffering and its accounting,
// pause_writing/resume_writing and set_write_buffer_limits, close/abort, connection_lost
// exactly once, writes after close, error_received, extra info), DatagramProtocol callback
// order, and the loop's sock_sendto/sock_recvfrom on datagram sockets. Ports the datagram scenarios of CPython's
// Lib/test/test_asyncio/ test_base_events.py (create_datagram_endpoint), test_selector_events.py
// (SelectorDatagramTransportTests) and test_events.py (_test_create_datagram_endpoint).
//
// Everything runs on the real clock; every wait a bug could turn into a hang is bounded with
// wait_for(..., kTimeout). "Nothing arrived" is checked with a marker datagram sent after the
// one that must not arrive (loopback keeps the order), never with a sleep.
//
// UDP on loopback never makes send() block (the kernel hands every datagram straight to the
// receiver, dropping it if the receiver is full), so the transport's write buffer cannot be
// reached through a UDP socket alone. The write-buffer tests put, under a *connected*
// transport's fd (dup2 keeps the fd number), a connected AF_UNIX datagram socket whose send
// buffer is full: the transport's send() then says EAGAIN exactly like a full UDP socket
// would, and reading the other end makes it writable again (see block_sends()).
#include <gtest/gtest.h>

#include "support.hpp"

#include "backend/faults.hpp"

#include <algorithm>
#include <ostream>
#include <cerrno>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <cstdlib>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace asyncio;
using asyncio_test::code_of;

namespace asyncio {
// Readable addresses in gtest failure messages.
inline void PrintTo(const SockAddr& a, std::ostream* os) {
    *os << (a.empty() ? std::string("<empty>") : a.to_string());
}
}  // namespace asyncio

using asyncio_test::error_of;
using asyncio_test::HandlerCapture;
using asyncio_test::holds;
using asyncio_test::ipv6_available;
using asyncio_test::LogCapture;
using asyncio_test::message_of;
using asyncio_test::settle;
using asyncio_test::TempDir;

namespace {

constexpr double kTimeout = 10.0;

/// The errno of a std::system_error held by `e` (-1 for anything else).
int errno_of(const std::exception_ptr& e) {
    if (!e) return 0;
    try {
        std::rethrow_exception(e);
    } catch (const std::system_error& x) {
        return x.code().value();
    } catch (...) {
        return -1;
    }
}

/// A DatagramProtocol that records every callback (Python's MyDatagramProto, with more
/// detail): `events` lists them in order ("made", "data:<bytes>", "error:<errno>", "pause",
/// "resume", "lost" or "lost:exc"). `changed` is set on each one, for until().
struct Recorder : DatagramProtocol {
    std::shared_ptr<DatagramTransport> transport;
    bool hold_transport = true;  ///< keep the transport (the usual pattern)
    bool echo = false;           ///< answer each datagram with echo_prefix + data
    std::string echo_prefix;
    std::vector<std::string> events;
    std::vector<std::pair<std::string, SockAddr>> datagrams;
    std::vector<std::exception_ptr> errors;
    std::exception_ptr lost_exc;
    int made = 0;
    int lost = 0;
    int paused = 0;
    int resumed = 0;
    std::size_t buffer_at_pause = 0;
    std::size_t buffer_at_resume = 0;
    bool closing_in_made = true;
    SockAddr sockname_at_made;     ///< the transport's "sockname" when connection_made ran
    bool close_when_made = false;  ///< close() from inside connection_made
    bool close_on_data = false;    ///< close() from inside datagram_received
    Event changed;

    void connection_made(std::shared_ptr<DatagramTransport> t) override {
        ++made;
        closing_in_made = t->is_closing();
        sockname_at_made = t->get_extra_info<SockAddr>("sockname", {});
        if (hold_transport) transport = t;
        note("made");
        if (close_when_made) t->close();
    }
    void datagram_received(std::string_view data, const SockAddr& addr) override {
        datagrams.emplace_back(std::string(data), addr);
        note("data:" + std::string(data));
        if (echo && transport) transport->sendto(echo_prefix + std::string(data), addr);
        if (close_on_data && transport) transport->close();
    }
    void error_received(std::exception_ptr exc) override {
        errors.push_back(exc);
        note("error:" + std::to_string(errno_of(exc)));
    }
    void connection_lost(std::exception_ptr exc) override {
        ++lost;
        lost_exc = exc;
        note(exc ? "lost:exc" : "lost");
        transport.reset();
    }
    void pause_writing() override {
        ++paused;
        if (transport) buffer_at_pause = transport->get_write_buffer_size();
        note("pause");
    }
    void resume_writing() override {
        ++resumed;
        if (transport) buffer_at_resume = transport->get_write_buffer_size();
        note("resume");
    }
    void note(std::string e) {
        events.push_back(std::move(e));
        changed.set();
    }
    std::size_t received_bytes() const {
        std::size_t n = 0;
        for (auto& d : datagrams) n += d.first.size();
        return n;
    }
    bool saw(std::string_view e) const { return std::find(events.begin(), events.end(), e) != events.end(); }
};

/// Waits until pred(r) holds (re-checked after each protocol callback); TimeoutError after
/// kTimeout, so a bug fails the test instead of hanging it.
template <class Pred>
Coro<void> until(Recorder& r, Pred pred) {
    while (!pred(r)) {
        r.changed.clear();
        co_await wait_for(r.changed.wait(), kTimeout);
    }
}

using Endpoint = std::pair<std::shared_ptr<DatagramTransport>, std::shared_ptr<Recorder>>;

/// create_datagram_endpoint with a fresh Recorder.
Coro<Endpoint> open_endpoint(DatagramOptions opts) {
    auto proto = std::make_shared<Recorder>();
    auto factory = [proto] { return proto; };  // named: GCC 12 (docs/compilers.md)
    auto [t, p] = co_await get_running_loop().create_datagram_endpoint(factory, opts);
    co_return Endpoint(t, p);
}

/// create_datagram_endpoint with a given protocol.
Coro<std::shared_ptr<DatagramTransport>> open_with(std::shared_ptr<Recorder> proto, DatagramOptions opts) {
    auto factory = [proto] { return proto; };
    auto [t, p] = co_await get_running_loop().create_datagram_endpoint(factory, opts);
    EXPECT_EQ(p, proto);
    co_return t;
}

DatagramOptions local_opts(std::string_view host = "127.0.0.1", int port = 0) {
    DatagramOptions o;
    o.local_host = host;
    o.local_port = port;
    return o;
}

DatagramOptions remote_opts(std::string_view host, int port) {
    DatagramOptions o;
    o.remote_host = host;
    o.remote_port = port;
    return o;
}

SockAddr sockname(const std::shared_ptr<DatagramTransport>& t) { return t->get_extra_info<SockAddr>("sockname", {}); }

TransportSocket socket_of(const std::shared_ptr<DatagramTransport>& t) {
    return t->get_extra_info<TransportSocket>("socket", {});
}

/// A UDP port nobody uses (bound, then released): sending there draws ICMP port unreachable.
int closed_udp_port() {
    Socket s(AF_INET, SOCK_DGRAM);
    s.bind(SockAddr("127.0.0.1", 0));
    return s.getsockname().port();
}

/// A plain UDP socket bound to the loopback.
Socket udp_socket(const char* host = "127.0.0.1") {
    SockAddr a(host, 0);
    Socket s(a.family(), SOCK_DGRAM);
    s.bind(a);
    return s;
}

/// Closes `t` and waits for its connection_lost.
Coro<void> close_and_wait(const std::shared_ptr<DatagramTransport>& t, Recorder& r) {
    t->close();
    co_await until(r, [](Recorder& x) { return x.lost > 0; });
}

// ---- making sendto() block (see the top of the file) -------------------------------------

/// The receiving end of the socket now under a transport's fd. It first holds `fillers`
/// one-byte "f" datagrams (what filled the send buffer), then what the transport sent.
struct Blocker {
    Socket peer;
    int fillers = 0;
};

Blocker block_sends(const std::shared_ptr<DatagramTransport>& t) {
    const int fd = socket_of(t).fileno();
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        throw std::system_error(errno, std::generic_category(), "socketpair");
    int small = 1;
    ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    int n = 0;
    while (::send(sv[0], "f", 1, 0) == 1) ++n;
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw std::system_error(errno, std::generic_category(), "fill");
    if (::dup2(sv[0], fd) < 0) throw std::system_error(errno, std::generic_category(), "dup2");
    ::close(sv[0]);
    return Blocker{Socket::adopt(sv[1]), n};
}

/// Reads (without waiting) whatever the blocker's peer holds, fillers included.
std::vector<std::string> read_available(Blocker& b) {
    std::vector<std::string> out;
    char buf[65536];
    for (;;) {
        ssize_t r = ::recv(b.peer.fileno(), buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0) break;
        out.emplace_back(buf, static_cast<std::size_t>(r));
    }
    return out;
}

/// Empties the fillers at once (makes the socket writable again without running the loop).
void drop_fillers(Blocker& b) {
    char c;
    while (b.fillers > 0 && ::recv(b.peer.fileno(), &c, 1, MSG_DONTWAIT) == 1) --b.fillers;
}

/// Reads the blocker's peer until `count` datagrams sent by the transport arrived.
Coro<std::vector<std::string>> drain(Blocker& b, std::size_t count) {
    EventLoop& loop = get_running_loop();
    std::vector<std::string> got;
    while (got.size() < count) {
        std::string d = co_await wait_for(loop.sock_recv(b.peer, 65536), kTimeout);
        if (b.fillers > 0) {
            --b.fillers;
            continue;
        }
        got.push_back(std::move(d));
    }
    co_return got;
}

/// A connected client endpoint towards a fresh server endpoint, both recorded.
struct Pair {
    std::shared_ptr<DatagramTransport> server;
    std::shared_ptr<Recorder> sp;
    std::shared_ptr<DatagramTransport> client;
    std::shared_ptr<Recorder> cp;
};

Coro<Pair> open_pair() {
    DatagramOptions so = local_opts();
    auto [st, sp] = co_await open_endpoint(so);
    const SockAddr server_addr = sockname(st);
    std::string host = server_addr.host();
    DatagramOptions co = remote_opts(host, server_addr.port());
    auto [ct, cp] = co_await open_endpoint(co);
    co_return Pair{st, sp, ct, cp};
}

}  // namespace

// =============================================================================================
// loop.create_datagram_endpoint (test_base_events.py)
// =============================================================================================

// CPython: test_create_datagram_endpoint_sockopts / _ip_addr (the socket asked for).
TEST(CreateDatagramEndpoint, LocalAddrBindsAUdpSocketThere) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        const SockAddr name = sockname(t);
        EXPECT_EQ(name.family(), AF_INET);
        EXPECT_EQ(name.host(), "127.0.0.1");
        EXPECT_NE(name.port(), 0);
        EXPECT_FALSE(t->get_extra_info("peername").has_value());
        TransportSocket s = socket_of(t);
        EXPECT_GE(s.fileno(), 0);
        EXPECT_EQ(s.getsockname(), name);
        EXPECT_EQ(s.family(), AF_INET);
        EXPECT_EQ(s.type(), SOCK_DGRAM);
        EXPECT_EQ(s.getsockopt(SOL_SOCKET, SO_PROTOCOL), IPPROTO_UDP);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// CPython: _test_create_datagram_endpoint (state 'INITIALIZED', server.transport is s_transport).
TEST(CreateDatagramEndpoint, ReturnsAfterConnectionMadeWithTheSameTransport) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        EXPECT_EQ(p->made, 1);
        EXPECT_EQ(p->transport, t);
        EXPECT_EQ(t->get_protocol(), p);
        EXPECT_FALSE(p->closing_in_made);
        EXPECT_FALSE(t->is_closing());
        EXPECT_EQ(p->events, std::vector<std::string>{"made"});
        EXPECT_EQ(t->get_write_buffer_size(), 0u);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

TEST(CreateDatagramEndpoint, RemoteAddrConnectsTheSocketToThePeer) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        const SockAddr server_addr = sockname(e.server);
        EXPECT_EQ(e.client->get_extra_info<SockAddr>("peername", {}), server_addr);
        EXPECT_EQ(socket_of(e.client).getpeername(), server_addr);
        const SockAddr mine = sockname(e.client);
        EXPECT_EQ(mine.host(), "127.0.0.1");
        EXPECT_NE(mine.port(), 0);  // connect() bound it to an ephemeral port
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

TEST(CreateDatagramEndpoint, LocalAndRemoteAddrBindThenConnect) {
    auto main = []() -> Coro<void> {
        auto [st, sp] = co_await open_endpoint(local_opts());
        const SockAddr server_addr = sockname(st);
        DatagramOptions o = local_opts();
        o.remote_host = "127.0.0.1";
        o.remote_port = server_addr.port();
        auto [ct, cp] = co_await open_endpoint(o);
        const SockAddr mine = sockname(ct);
        EXPECT_EQ(ct->get_extra_info<SockAddr>("peername", {}), server_addr);
        ct->sendto("hello");
        co_await until(*sp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(sp->datagrams.at(0).first, "hello");
        EXPECT_EQ(sp->datagrams.at(0).second, mine);
        co_await close_and_wait(ct, *cp);
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_socket_err's first case, working: family alone gives
// an unbound socket of that family.
TEST(CreateDatagramEndpoint, FamilyAloneGivesAnUnboundEndpointThatCanSendAndReceive) {
    auto main = []() -> Coro<void> {
        auto [st, sp] = co_await open_endpoint(local_opts());
        sp->echo = true;
        sp->echo_prefix = "re:";
        DatagramOptions o;
        o.family = AF_INET;
        auto [ct, cp] = co_await open_endpoint(o);
        EXPECT_EQ(socket_of(ct).family(), AF_INET);
        EXPECT_EQ(sockname(ct).port(), 0);  // not bound yet
        EXPECT_FALSE(ct->get_extra_info("peername").has_value());
        ct->sendto("ping", sockname(st));
        co_await until(*cp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(cp->datagrams.at(0).first, "re:ping");
        EXPECT_EQ(cp->datagrams.at(0).second, sockname(st));
        // The first sendto bound the socket (to the wildcard address, on some free port);
        // the transport's extra info keeps what it was at creation, as Python's _extra does.
        const SockAddr bound = socket_of(ct).getsockname();
        EXPECT_NE(bound.port(), 0);
        EXPECT_EQ(sp->datagrams.at(0).second.port(), bound.port());
        EXPECT_EQ(sockname(ct).port(), 0);
        co_await close_and_wait(ct, *cp);
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_noaddr_nofamily (ValueError).
TEST(CreateDatagramEndpoint, NoAddressAndNoFamilyRaisesInvalidArgument) {
    auto main = []() -> Coro<void> {
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        DatagramOptions o;
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, o));
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_EQ(calls, 0);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_no_matching_family (ValueError).
TEST(CreateDatagramEndpoint, LocalAndRemoteOfDifferentFamiliesRaiseInvalidArgument) {
    if (!ipv6_available()) GTEST_SKIP() << "no IPv6";
    auto main = []() -> Coro<void> {
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        DatagramOptions o = local_opts("::1", 0);
        o.remote_host = "127.0.0.1";
        o.remote_port = 9;
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, o));
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_EQ(calls, 0);
    };
    run(main());
}

// CPython: _ipaddr_info gives no match for an IPv4 literal with family=AF_INET6, so
// getaddrinfo runs and fails: socket.gaierror (an OSError).
TEST(CreateDatagramEndpoint, NumericHostOfAnotherFamilyThanRequestedRaisesOsError) {
    auto main = []() -> Coro<void> {
        DatagramOptions o = local_opts("127.0.0.1", 0);
        o.family = AF_INET6;
        auto factory = [] { return std::make_shared<Recorder>(); };
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, o));
        EXPECT_TRUE(holds<std::system_error>(e)) << message_of(e);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_no_addrinfo family (resolution fails: OSError).
// AI_NUMERICHOST keeps the test off the network: the name is refused at once.
TEST(CreateDatagramEndpoint, UnresolvableHostRaisesAGetaddrinfoError) {
    auto main = []() -> Coro<void> {
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        DatagramOptions o = local_opts("no-such-host.invalid", 0);
        o.flags = AI_NUMERICHOST;
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, o));
        EXPECT_TRUE(holds<std::system_error>(e)) << message_of(e);
        EXPECT_TRUE(code_of(e).category() == gai_category()) << message_of(e);
        EXPECT_EQ(code_of(e).value(), EAI_NONAME);
        EXPECT_EQ(calls, 0);

        DatagramOptions r = remote_opts("no-such-host.invalid", 9);
        r.flags = AI_NUMERICHOST;
        e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, r));
        EXPECT_TRUE(code_of(e).category() == gai_category()) << message_of(e);
        EXPECT_EQ(calls, 0);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_cant_bind (the bind error propagates, socket closed).
TEST(CreateDatagramEndpoint, BindingAnAddressInUseRaisesEaddrinuse) {
    auto main = []() -> Coro<void> {
        Socket taken = udp_socket();
        const int port = taken.getsockname().port();
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        DatagramOptions o = local_opts("127.0.0.1", port);
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, o));
        EXPECT_EQ(code_of(e), std::errc::address_in_use) << message_of(e);
        EXPECT_EQ(calls, 0);
    };
    run(main());
}

TEST(CreateDatagramEndpoint, BindingAnAddressNotOnThisHostRaisesEaddrnotavail) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<Recorder>(); };
        DatagramOptions o = local_opts("192.0.2.1", 0);  // TEST-NET-1: never local
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, o));
        EXPECT_EQ(code_of(e), std::errc::address_not_available) << message_of(e);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_connect_err (sock_connect fails: OSError). A UDP
// connect() to the broadcast address without SO_BROADCAST is refused with EACCES.
TEST(CreateDatagramEndpoint, ConnectFailureRaisesAndCreatesNoProtocol) {
    auto main = []() -> Coro<void> {
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        DatagramOptions o = remote_opts("255.255.255.255", 9);
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, o));
        EXPECT_EQ(code_of(e), std::errc::permission_denied) << message_of(e);
        EXPECT_EQ(calls, 0);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_socket_err (socket() fails: OSError), with a real
// failure: UDP sockets do not speak IPPROTO_TCP.
TEST(CreateDatagramEndpoint, SocketCreationFailureRaisesOsError) {
    auto main = []() -> Coro<void> {
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        DatagramOptions o;
        o.family = AF_INET;
        o.proto = IPPROTO_TCP;
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, o));
        EXPECT_EQ(code_of(e), std::errc::protocol_not_supported) << message_of(e);

        DatagramOptions l = local_opts();
        l.proto = IPPROTO_TCP;
        e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, l));
        EXPECT_EQ(code_of(e), std::errc::protocol_not_supported) << message_of(e);
        EXPECT_EQ(calls, 0);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_sockopts, first half.
TEST(CreateDatagramEndpoint, SocketOptionsAreNotSetUnlessAskedFor) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        TransportSocket s = socket_of(t);
        EXPECT_EQ(s.getsockopt(SOL_SOCKET, SO_REUSEPORT), 0);
        EXPECT_EQ(s.getsockopt(SOL_SOCKET, SO_BROADCAST), 0);
        EXPECT_EQ(s.getsockopt(SOL_SOCKET, SO_REUSEADDR), 0);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_sockopts, second half (SO_REUSEADDR stays off).
TEST(CreateDatagramEndpoint, ReusePortAndAllowBroadcastSetTheirSocketOptions) {
    auto main = []() -> Coro<void> {
        DatagramOptions o = local_opts();
        o.reuse_port = true;
        o.allow_broadcast = true;
        auto [t, p] = co_await open_endpoint(o);
        TransportSocket s = socket_of(t);
        EXPECT_NE(s.getsockopt(SOL_SOCKET, SO_REUSEPORT), 0);
        EXPECT_NE(s.getsockopt(SOL_SOCKET, SO_BROADCAST), 0);
        EXPECT_EQ(s.getsockopt(SOL_SOCKET, SO_REUSEADDR), 0);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

TEST(CreateDatagramEndpoint, ReusePortLetsTwoEndpointsBindTheSamePort) {
    auto main = []() -> Coro<void> {
        DatagramOptions o = local_opts();
        o.reuse_port = true;
        auto [t1, p1] = co_await open_endpoint(o);
        DatagramOptions o2 = local_opts("127.0.0.1", sockname(t1).port());
        o2.reuse_port = true;
        auto [t2, p2] = co_await open_endpoint(o2);
        EXPECT_EQ(sockname(t2), sockname(t1));
        co_await close_and_wait(t2, *p2);
        co_await close_and_wait(t1, *p1);
    };
    run(main());
}

TEST(CreateDatagramEndpoint, LocalhostIsResolvedByName) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts("localhost", 0));
        const std::string host = sockname(t).host();
        EXPECT_TRUE(host == "127.0.0.1" || host == "::1") << host;
        EXPECT_NE(sockname(t).port(), 0);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_allow_broadcast - with allow_broadcast the socket is
// NOT connected (sock_connect is never called): remote_addr only becomes the default
// destination. So peername is None, and datagrams from any sender are received.
TEST(CreateDatagramEndpoint, AllowBroadcastWithRemoteAddrLeavesTheSocketUnconnected) {
    auto main = []() -> Coro<void> {
        auto [st, sp] = co_await open_endpoint(local_opts());
        DatagramOptions o = local_opts();
        o.remote_host = "127.0.0.1";
        o.remote_port = sockname(st).port();
        o.allow_broadcast = true;
        auto [ct, cp] = co_await open_endpoint(o);
        EXPECT_FALSE(ct->get_extra_info("peername").has_value());
        std::exception_ptr peer_error;
        try {
            (void)socket_of(ct).getpeername();
        } catch (...) {
            peer_error = std::current_exception();
        }
        EXPECT_EQ(code_of(peer_error), std::errc::not_connected);
        // An unconnected socket hears from anyone, not only from remote_addr.
        Socket stranger = udp_socket();
        co_await get_running_loop().sock_sendto(stranger, "from a stranger", sockname(ct));
        co_await until(*cp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(cp->datagrams.at(0).first, "from a stranger");
        co_await close_and_wait(ct, *cp);
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

TEST(CreateDatagramEndpoint, AllowBroadcastWithRemoteAddrSendsThereByDefault) {
    auto main = []() -> Coro<void> {
        auto [st, sp] = co_await open_endpoint(local_opts());
        DatagramOptions o = remote_opts("127.0.0.1", sockname(st).port());
        o.allow_broadcast = true;
        auto [ct, cp] = co_await open_endpoint(o);
        ct->sendto("default destination");
        co_await until(*sp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(sp->datagrams.at(0).first, "default destination");
        // remote_addr still restricts the destination.
        EXPECT_THROW(ct->sendto("x", SockAddr("127.0.0.1", 9)), std::invalid_argument);
        co_await close_and_wait(ct, *cp);
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_sock_unix - family=AF_UNIX without addresses creates
// an (unbound) Unix datagram endpoint.
TEST(CreateDatagramEndpoint, FamilyUnixWithoutAddressCreatesAUnixEndpoint) {
    auto main = []() -> Coro<void> {
        DatagramOptions o;
        o.family = AF_UNIX;
        auto [t, p] = co_await open_endpoint(o);
        EXPECT_EQ(socket_of(t).family(), AF_UNIX);
        EXPECT_EQ(socket_of(t).type(), SOCK_DGRAM);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// CPython's create_datagram_endpoint: `try: await waiter except: transport.close(); raise` -
// a create_datagram_endpoint cancelled after the transport exists closes it, so a protocol
// that saw connection_made also sees connection_lost, and the port is released.
TEST(CreateDatagramEndpoint, CancelledAfterTheTransportExistsClosesIt) {
    auto main = []() -> Coro<void> {
        auto proto = std::make_shared<Recorder>();
        DatagramOptions o = local_opts();
        Task<std::shared_ptr<DatagramTransport>> task = create_task(open_with(proto, o));
        co_await asyncio::sleep(0);  // the task ran up to waiting for connection_made
        task.cancel();
        auto e = co_await error_of(task);
        EXPECT_TRUE(holds<CancelledError>(e)) << message_of(e);
        // connection_made was already scheduled when the cancellation landed (as in Python).
        EXPECT_EQ(proto->made, 1);
        const int port = proto->sockname_at_made.port();
        CO_ASSERT(port != 0);
        co_await until(*proto, [](Recorder& r) { return r.lost > 0; });
        EXPECT_EQ(proto->lost, 1);
        Socket again(AF_INET, SOCK_DGRAM);
        EXPECT_NO_THROW(again.bind(SockAddr("127.0.0.1", port)));
    };
    run(main());
}

// =============================================================================================
// create_datagram_endpoint(sock=...) (test_base_events.py, test_events.py)
// =============================================================================================

namespace {
/// create_datagram_endpoint(sock=) with a fresh Recorder.
Coro<Endpoint> open_sock_endpoint(Socket sock, DatagramOptions opts = {}) {
    auto proto = std::make_shared<Recorder>();
    auto factory = [proto] { return proto; };  // named: GCC 12 (docs/compilers.md)
    auto [t, p] = co_await get_running_loop().create_datagram_endpoint(factory, std::move(sock), opts);
    co_return Endpoint(t, p);
}

/// Whether `address` can be bound again by a new socket of `type`: the socket that held it
/// was closed.
bool address_is_free(const SockAddr& address, int type) {
    Socket s(address.family(), type);
    try {
        s.bind(address);
        return true;
    } catch (const std::system_error&) {
        return false;
    }
}

/// Each option that would set a socket up, and how Python's message names it.
std::vector<std::pair<DatagramOptions, std::string>> socket_modifiers() {
    std::vector<std::pair<DatagramOptions, std::string>> out;
    out.emplace_back(local_opts("127.0.0.1", 0), "local_addr=('127.0.0.1', 0)");
    out.emplace_back(remote_opts("127.0.0.1", 9), "remote_addr=('127.0.0.1', 9)");
    DatagramOptions o;
    o.family = AF_INET;
    out.emplace_back(o, "family=" + std::to_string(AF_INET));
    o = {};
    o.proto = IPPROTO_UDP;
    out.emplace_back(o, "proto=" + std::to_string(IPPROTO_UDP));
    o = {};
    o.flags = AI_PASSIVE;
    out.emplace_back(o, "flags=" + std::to_string(AI_PASSIVE));
    o = {};
    o.reuse_port = true;
    out.emplace_back(o, "reuse_port=True");
    o = {};
    o.allow_broadcast = true;
    out.emplace_back(o, "allow_broadcast=True");
    return out;
}

bool is_nonblocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }
}  // namespace

// CPython: test_create_datagram_endpoint_sock (both files): a bound UDP socket becomes the
// endpoint - the same socket, which the transport then owns and closes.
TEST(CreateDatagramEndpointSock, ABoundUdpSocketBecomesTheEndpoint) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Socket sock = udp_socket();
        const SockAddr bound = sock.getsockname();
        const int fd = sock.fileno();
        auto [t, p] = co_await open_sock_endpoint(std::move(sock));
        EXPECT_EQ(p->made, 1);
        EXPECT_EQ(p->transport, t);
        EXPECT_EQ(socket_of(t).fileno(), fd);
        EXPECT_EQ(sockname(t), bound);
        EXPECT_FALSE(t->get_extra_info("peername").has_value());
        p->echo = true;
        p->echo_prefix = "resp:";
        Socket peer = udp_socket();
        co_await loop.sock_sendto(peer, "hello", bound);
        auto [data, from] = co_await wait_for(loop.sock_recvfrom(peer, 100), kTimeout);
        EXPECT_EQ(data, "resp:hello");
        EXPECT_EQ(from, bound);
        EXPECT_EQ(p->datagrams.at(0).second, peer.getsockname());
        co_await close_and_wait(t, *p);
        EXPECT_EQ(p->lost, 1);
        EXPECT_FALSE(p->lost_exc);
        EXPECT_TRUE(address_is_free(bound, SOCK_DGRAM));
    };
    run(main());
}

// Python's transport send()s on a socket that has a peer (extra['peername']), so a caller's
// connected socket needs no address in sendto().
TEST(CreateDatagramEndpointSock, AConnectedSocketSendsToItsPeerWithoutAnAddress) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Socket server = udp_socket();
        const SockAddr server_addr = server.getsockname();
        Socket sock = udp_socket();
        co_await loop.sock_connect(sock, server_addr);
        const SockAddr mine = sock.getsockname();
        auto [t, p] = co_await open_sock_endpoint(std::move(sock));
        EXPECT_EQ(t->get_extra_info<SockAddr>("peername", {}), server_addr);
        t->sendto("no address");
        auto [data, from] = co_await wait_for(loop.sock_recvfrom(server, 100), kTimeout);
        EXPECT_EQ(data, "no address");
        EXPECT_EQ(from, mine);
        co_await loop.sock_sendto(server, "answer", mine);
        co_await until(*p, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(p->datagrams.at(0).first, "answer");
        EXPECT_EQ(p->datagrams.at(0).second, server_addr);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// Python passes no remote address with sock=: an unconnected socket's transport has no
// default destination.
TEST(CreateDatagramEndpointSock, AnUnconnectedSocketNeedsAnAddressForSendto) {
    auto main = []() -> Coro<void> {
        Socket sock = udp_socket();
        auto [t, p] = co_await open_sock_endpoint(std::move(sock));
        EXPECT_THROW(t->sendto("x"), std::invalid_argument);
        EXPECT_TRUE(p->errors.empty());
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// Python: sock.setblocking(False).
TEST(CreateDatagramEndpointSock, ABlockingSocketIsMadeNonBlocking) {
    auto main = []() -> Coro<void> {
        Socket sock = udp_socket();
        sock.setblocking(true);
        CO_ASSERT(!is_nonblocking(sock.fileno()));
        auto [t, p] = co_await open_sock_endpoint(std::move(sock));
        EXPECT_TRUE(is_nonblocking(socket_of(t).fileno()));
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_wrong_sock (ValueError 'A datagram socket was
// expected'); the socket given is closed, as any sock= on failure.
TEST(CreateDatagramEndpointSock, AStreamSocketRaisesInvalidArgumentAndIsClosed) {
    auto main = []() -> Coro<void> {
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        Socket sock(AF_INET, SOCK_STREAM);
        sock.bind(SockAddr("127.0.0.1", 0));
        const SockAddr bound = sock.getsockname();
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, std::move(sock)));
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_EQ(message_of(e).rfind("A datagram socket was expected, got <socket fd=", 0), 0u) << message_of(e);
        EXPECT_EQ(calls, 0);
        EXPECT_TRUE(address_is_free(bound, SOCK_STREAM));
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_sock_sockopts - every option that would set the
// socket up is refused with sock=, and Python's message names it.
TEST(CreateDatagramEndpointSock, SocketModifierOptionsRaiseInvalidArgumentNamingThem) {
    auto main = []() -> Coro<void> {
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        const auto cases = socket_modifiers();
        for (const auto& [opts, named] : cases) {
            Socket sock = udp_socket();
            const SockAddr bound = sock.getsockname();
            auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, std::move(sock), opts));
            EXPECT_TRUE(holds<std::invalid_argument>(e)) << named << ": " << message_of(e);
            EXPECT_EQ(message_of(e),
                      "socket modifier keyword arguments can not be used when sock is specified. (" + named + ")");
            EXPECT_TRUE(address_is_free(bound, SOCK_DGRAM)) << named;
        }
        EXPECT_EQ(calls, 0);
    };
    run(main());
}

TEST(CreateDatagramEndpointSock, SeveralSocketModifiersAreAllNamedInPythonsOrder) {
    auto main = []() -> Coro<void> {
        DatagramOptions o = remote_opts("127.0.0.1", 9);
        o.allow_broadcast = true;
        o.family = AF_INET;
        Socket sock = udp_socket();
        auto e = co_await error_of(open_sock_endpoint(std::move(sock), o));
        EXPECT_EQ(message_of(e),
                  "socket modifier keyword arguments can not be used when sock is specified. "
                  "(remote_addr=('127.0.0.1', 9), family=" +
                      std::to_string(AF_INET) + ", allow_broadcast=True)");
    };
    run(main());
}

// The type is checked first, as in Python.
TEST(CreateDatagramEndpointSock, AStreamSocketWithModifiersIsReportedAsTheWrongSocket) {
    auto main = []() -> Coro<void> {
        Socket sock(AF_INET, SOCK_STREAM);
        auto e = co_await error_of(open_sock_endpoint(std::move(sock), local_opts()));
        EXPECT_NE(message_of(e).find("A datagram socket was expected"), std::string::npos) << message_of(e);
    };
    run(main());
}

TEST(CreateDatagramEndpointSock, AClosedSocketRaisesInvalidArgument) {
    auto main = []() -> Coro<void> {
        Socket closed;
        auto e = co_await error_of(open_sock_endpoint(std::move(closed)));
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_EQ(message_of(e), "create_datagram_endpoint: the socket is closed");
    };
    run(main());
}

// uvloop's test_create_datagram_endpoint_sock_unix_domain: a Unix datagram socket bound to a
// path works like a UDP one; senders are seen by their paths.
TEST(CreateDatagramEndpointSock, AUnixDatagramSocketBoundToAPathExchangesWithAnotherPath) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        TempDir dir;
        const SockAddr server_addr = SockAddr::unix_path(dir.file("server"));
        Socket sock(AF_UNIX, SOCK_DGRAM);
        sock.bind(server_addr);
        auto [t, p] = co_await open_sock_endpoint(std::move(sock));
        EXPECT_EQ(sockname(t), server_addr);
        p->echo = true;
        p->echo_prefix = "re:";
        Socket client(AF_UNIX, SOCK_DGRAM);
        client.bind(SockAddr::unix_path(dir.file("client")));
        co_await loop.sock_sendto(client, "hi", server_addr);
        auto [data, from] = co_await wait_for(loop.sock_recvfrom(client, 100), kTimeout);
        EXPECT_EQ(data, "re:hi");
        EXPECT_EQ(from, server_addr);
        EXPECT_EQ(p->datagrams.at(0).second.host(), dir.file("client"));
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// =============================================================================================
// create_datagram_endpoint(family=AF_UNIX) with paths (test_base_events.py)
// =============================================================================================

namespace {
DatagramOptions unix_opts(std::string_view local, std::string_view remote = {}) {
    DatagramOptions o;
    o.family = AF_UNIX;
    o.local_host = local;
    o.remote_host = remote;
    return o;
}

bool is_socket_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}
}  // namespace

TEST(CreateDatagramEndpointUnix, LocalPathBindsTheEndpointThere) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        TempDir dir;
        const std::string path = dir.file("server");
        auto [t, p] = co_await open_endpoint(unix_opts(path));
        EXPECT_EQ(sockname(t), SockAddr::unix_path(path));
        EXPECT_EQ(socket_of(t).family(), AF_UNIX);
        EXPECT_EQ(socket_of(t).type(), SOCK_DGRAM);
        EXPECT_FALSE(t->get_extra_info("peername").has_value());
        EXPECT_TRUE(is_socket_file(path));
        Socket client(AF_UNIX, SOCK_DGRAM);
        client.bind(SockAddr::unix_path(dir.file("client")));
        co_await loop.sock_sendto(client, "hello", SockAddr::unix_path(path));
        co_await until(*p, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(p->datagrams.at(0).first, "hello");
        EXPECT_EQ(p->datagrams.at(0).second, client.getsockname());
        t->sendto("back", p->datagrams.at(0).second);
        auto [data, from] = co_await wait_for(loop.sock_recvfrom(client, 100), kTimeout);
        EXPECT_EQ(data, "back");
        EXPECT_EQ(from.host(), path);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

TEST(CreateDatagramEndpointUnix, RemotePathConnectsToThePeer) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string server_path = dir.file("server");
        const std::string client_path = dir.file("client");
        auto [st, sp] = co_await open_endpoint(unix_opts(server_path));
        sp->echo = true;
        sp->echo_prefix = "re:";
        auto [ct, cp] = co_await open_endpoint(unix_opts(client_path, server_path));
        EXPECT_EQ(ct->get_extra_info<SockAddr>("peername", {}), SockAddr::unix_path(server_path));
        EXPECT_EQ(socket_of(ct).getpeername().host(), server_path);
        EXPECT_EQ(sockname(ct).host(), client_path);
        ct->sendto("ping");
        co_await until(*cp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(cp->datagrams.at(0).first, "re:ping");
        EXPECT_EQ(cp->datagrams.at(0).second.host(), server_path);
        EXPECT_EQ(sp->datagrams.at(0).second.host(), client_path);
        // sendto's address rules hold for paths too.
        EXPECT_THROW(ct->sendto("x", SockAddr::unix_path(dir.file("other"))), std::invalid_argument);
        EXPECT_NO_THROW(ct->sendto("again", SockAddr::unix_path(server_path)));
        co_await until(*cp, [](Recorder& r) { return r.datagrams.size() == 2; });
        EXPECT_EQ(cp->datagrams.at(1).first, "re:again");
        co_await close_and_wait(ct, *cp);
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

// Without a local path the client is unbound: its datagrams come from no address (Python's
// None).
TEST(CreateDatagramEndpointUnix, RemotePathAloneSendsFromAnUnboundSocket) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string server_path = dir.file("server");
        auto [st, sp] = co_await open_endpoint(unix_opts(server_path));
        auto [ct, cp] = co_await open_endpoint(unix_opts("", server_path));
        ct->sendto("anonymous");
        co_await until(*sp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(sp->datagrams.at(0).first, "anonymous");
        EXPECT_TRUE(sp->datagrams.at(0).second.empty()) << sp->datagrams.at(0).second.to_string();
        co_await close_and_wait(ct, *cp);
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

// CPython: test_create_datagram_endpoint_existing_sock_unix - a socket file left at the path
// by a closed socket is removed, and the endpoint binds there.
TEST(CreateDatagramEndpointUnix, AStaleSocketFileAtTheLocalPathIsReplaced) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        TempDir dir;
        const std::string path = dir.file("stale");
        {
            Socket old(AF_UNIX, SOCK_DGRAM);
            old.bind(SockAddr::unix_path(path));
        }
        CO_ASSERT(is_socket_file(path));
        auto [t, p] = co_await open_endpoint(unix_opts(path));
        Socket client(AF_UNIX, SOCK_DGRAM);
        co_await loop.sock_sendto(client, "fresh", SockAddr::unix_path(path));
        co_await until(*p, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(p->datagrams.at(0).first, "fresh");
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// Python does not remove a datagram endpoint's socket file when it closes (only a Unix
// server does); the next endpoint at that path takes it over as a stale one.
TEST(CreateDatagramEndpointUnix, TheSocketFileStaysAfterCloseAndTheNextEndpointTakesItOver) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("server");
        auto [t1, p1] = co_await open_endpoint(unix_opts(path));
        co_await close_and_wait(t1, *p1);
        EXPECT_TRUE(is_socket_file(path));
        auto [t2, p2] = co_await open_endpoint(unix_opts(path));
        EXPECT_EQ(sockname(t2).host(), path);
        co_await close_and_wait(t2, *p2);
    };
    run(main());
}

// Python removes only a socket file (S_ISSOCK): anything else at the path stays, and bind()
// fails with EADDRINUSE.
TEST(CreateDatagramEndpointUnix, ARegularFileAtTheLocalPathIsKeptAndBindingFailsWithEaddrinuse) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("precious");
        std::ofstream(path) << "keep me";
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, unix_opts(path)));
        EXPECT_EQ(code_of(e), std::errc::address_in_use) << message_of(e);
        EXPECT_EQ(calls, 0);
        std::string content;
        std::getline(std::ifstream(path), content);
        EXPECT_EQ(content, "keep me");
    };
    run(main());
}

TEST(CreateDatagramEndpointUnix, AnAbstractNameBindsWithoutAFile) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        const std::string name = std::string(1, '\0') + "asyncio-dgram-test-" + std::to_string(::getpid());
        auto [t, p] = co_await open_endpoint(unix_opts(name));
        EXPECT_EQ(sockname(t), SockAddr::unix_path(name));
        Socket client(AF_UNIX, SOCK_DGRAM);
        co_await loop.sock_sendto(client, "abstract", SockAddr::unix_path(name));
        co_await until(*p, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(p->datagrams.at(0).first, "abstract");
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// Python: TypeError('string is expected') for a (host, port) address with AF_UNIX.
TEST(CreateDatagramEndpointUnix, APortWithTheUnixFamilyRaisesInvalidArgument) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("server");
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        DatagramOptions o = unix_opts(path);
        o.local_port = 0;
        auto e = co_await error_of(get_running_loop().create_datagram_endpoint(factory, o));
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_NE(message_of(e).find("string is expected"), std::string::npos) << message_of(e);
        DatagramOptions r = unix_opts("", path);
        r.remote_port = 9;
        auto e2 = co_await error_of(get_running_loop().create_datagram_endpoint(factory, r));
        EXPECT_TRUE(holds<std::invalid_argument>(e2)) << message_of(e2);
        EXPECT_EQ(calls, 0);
        EXPECT_FALSE(is_socket_file(path));
    };
    run(main());
}

TEST(CreateDatagramEndpointUnix, ConnectingToAMissingPathRaisesEnoentAndCreatesNoProtocol) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        int calls = 0;
        auto factory = [&calls] {
            ++calls;
            return std::make_shared<Recorder>();
        };
        auto e =
            co_await error_of(get_running_loop().create_datagram_endpoint(factory, unix_opts("", dir.file("nobody"))));
        EXPECT_EQ(code_of(e), std::errc::no_such_file_or_directory) << message_of(e);
        EXPECT_EQ(calls, 0);
    };
    run(main());
}

// =============================================================================================
// End to end over loopback (test_events.py)
// =============================================================================================

namespace {
/// CPython's _test_create_datagram_endpoint: a server endpoint answering b'resp:' + data to
/// a connected client endpoint.
Coro<void> echo_round_trip(const char* local_host, int family) {
    DatagramOptions so = local_opts(local_host, 0);
    so.family = family;
    auto [st, server] = co_await open_endpoint(so);
    server->echo = true;
    server->echo_prefix = "resp:";
    EXPECT_EQ(server->transport, st);
    EXPECT_EQ(server->events, std::vector<std::string>{"made"});
    const SockAddr addr = sockname(st);
    EXPECT_EQ(addr.family(), family);
    std::string host = addr.host();
    DatagramOptions co = remote_opts(host, addr.port());
    auto [ct, client] = co_await open_endpoint(co);
    EXPECT_EQ(client->transport, ct);

    ct->sendto("xxx");
    co_await until(*server, [](Recorder& r) { return r.received_bytes() >= 3; });
    EXPECT_EQ(server->received_bytes(), 3u);
    co_await until(*client, [](Recorder& r) { return r.received_bytes() >= 8; });
    EXPECT_EQ(client->received_bytes(), 8u);
    EXPECT_EQ(client->datagrams.at(0).first, "resp:xxx");
    EXPECT_EQ(client->datagrams.at(0).second, addr);
    EXPECT_EQ(server->datagrams.at(0).second, sockname(ct));
    EXPECT_FALSE(sockname(ct).empty());

    co_await close_and_wait(ct, *client);
    std::vector<std::string> expected{"made", "data:resp:xxx", "lost"};
    EXPECT_EQ(client->events, expected);
    co_await close_and_wait(st, *server);
}
}  // namespace

// CPython: test_create_datagram_endpoint.
TEST(DatagramEndToEnd, EchoBetweenServerAndConnectedClientIpv4) { run(echo_round_trip("127.0.0.1", AF_INET)); }

// CPython: test_create_datagram_endpoint_ipv6.
TEST(DatagramEndToEnd, EchoBetweenServerAndConnectedClientIpv6) {
    if (!ipv6_available()) GTEST_SKIP() << "no IPv6";
    run(echo_round_trip("::1", AF_INET6));
}

TEST(DatagramEndToEnd, ConnectedEndpointOnlyHearsFromItsPeer) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Socket stranger = udp_socket();
        EventLoop& loop = get_running_loop();
        co_await loop.sock_sendto(stranger, "from a stranger", sockname(e.client));
        e.server->sendto("from the peer", sockname(e.client));
        co_await until(*e.cp, [](Recorder& r) { return !r.datagrams.empty(); });
        CO_ASSERT(e.cp->datagrams.size() == 1u);
        EXPECT_EQ(e.cp->datagrams.at(0).first, "from the peer");
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

TEST(DatagramEndToEnd, UnconnectedEndpointReportsEachSendersAddress) {
    auto main = []() -> Coro<void> {
        auto [st, sp] = co_await open_endpoint(local_opts());
        EventLoop& loop = get_running_loop();
        Socket a = udp_socket();
        Socket b = udp_socket();
        co_await loop.sock_sendto(a, "from a", sockname(st));
        co_await loop.sock_sendto(b, "from b", sockname(st));
        co_await until(*sp, [](Recorder& r) { return r.datagrams.size() >= 2; });
        EXPECT_EQ(sp->datagrams.at(0).first, "from a");
        EXPECT_EQ(sp->datagrams.at(0).second, a.getsockname());
        EXPECT_EQ(sp->datagrams.at(1).first, "from b");
        EXPECT_EQ(sp->datagrams.at(1).second, b.getsockname());
        // And it can answer each of them.
        st->sendto("to a", a.getsockname());
        auto [data, from] = co_await wait_for(loop.sock_recvfrom(a, 100), kTimeout);
        EXPECT_EQ(data, "to a");
        EXPECT_EQ(from, sockname(st));
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

TEST(DatagramEndToEnd, DatagramBoundariesAreKept) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        e.client->sendto("a");
        e.client->sendto(std::string(1000, 'b'));
        e.client->sendto("ccc");
        co_await until(*e.sp, [](Recorder& r) { return r.datagrams.size() >= 3; });
        EXPECT_EQ(e.sp->datagrams.at(0).first, "a");
        EXPECT_EQ(e.sp->datagrams.at(1).first, std::string(1000, 'b'));
        EXPECT_EQ(e.sp->datagrams.at(2).first, "ccc");
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

TEST(DatagramEndToEnd, ABurstOfDatagramsArrivesWholeAndInOrder) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        constexpr int n = 50;
        for (int i = 0; i < n; ++i) e.client->sendto("datagram " + std::to_string(i));
        // Loopback UDP never blocks - unless $ASYNCIO_FAULTS injects a spurious EAGAIN: then
        // the rest waits in the buffer, and is sent (in order) once the socket is writable.
        if (std::getenv("ASYNCIO_FAULTS") == nullptr) {
            EXPECT_EQ(e.client->get_write_buffer_size(), 0u);
        }
        co_await until(*e.sp, [](Recorder& r) { return r.datagrams.size() >= n; });
        EXPECT_EQ(e.client->get_write_buffer_size(), 0u);
        for (int i = 0; i < n; ++i)
            EXPECT_EQ(e.sp->datagrams.at(static_cast<std::size_t>(i)).first, "datagram " + std::to_string(i));
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// Python's max_size is 256 KiB: the largest IPv4 datagram arrives in one piece.
TEST(DatagramEndToEnd, TheLargestUdpDatagramArrivesWhole) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        std::string big(65507, 'x');
        for (std::size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>('a' + i % 26);
        e.client->sendto(big);
        co_await until(*e.sp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_TRUE(e.cp->errors.empty());
        EXPECT_EQ(e.sp->datagrams.at(0).first, big);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// Python 3.13+ (gh-115199 family): sendto(b'') sends a zero-length datagram.
TEST(DatagramEndToEnd, AnEmptyDatagramIsSentAndReceived) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        e.client->sendto("");
        e.client->sendto("marker");
        co_await until(*e.sp, [](Recorder& r) { return r.saw("data:marker"); });
        std::vector<std::string> expected{"made", "data:", "data:marker"};
        EXPECT_EQ(e.sp->events, expected);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// transports.hpp: an open transport is kept alive by its loop until connection_lost.
TEST(DatagramEndToEnd, DroppingEveryHandleKeepsTheEndpointOpen) {
    auto main = []() -> Coro<void> {
        auto proto = std::make_shared<Recorder>();
        proto->hold_transport = false;
        std::weak_ptr<DatagramTransport> weak;
        SockAddr addr;
        {
            DatagramOptions o = local_opts();
            auto t = co_await open_with(proto, o);
            weak = t;
            addr = sockname(t);
        }
        CO_ASSERT(!weak.expired());
        Socket sender = udp_socket();
        co_await get_running_loop().sock_sendto(sender, "still there", addr);
        co_await until(*proto, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(proto->datagrams.at(0).first, "still there");
        auto t = weak.lock();
        CO_ASSERT(t);
        co_await close_and_wait(t, *proto);
    };
    run(main());
}

TEST(DatagramEndToEnd, AnEndpointLeftOpenWhenTheLoopEndsReleasesItsPort) {
    auto proto = std::make_shared<Recorder>();
    int port = 0;
    auto main = [proto, &port]() -> Coro<void> {
        DatagramOptions o = local_opts();
        auto t = co_await open_with(proto, o);
        port = sockname(t).port();
    };
    run(main());
    ASSERT_NE(port, 0);
    EXPECT_EQ(proto->made, 1);
    Socket again(AF_INET, SOCK_DGRAM);
    EXPECT_NO_THROW(again.bind(SockAddr("127.0.0.1", port)));
}

// =============================================================================================
// DatagramTransport (test_selector_events.py SelectorDatagramTransportTests)
// =============================================================================================

// CPython: test_sendto_connected_addr (ValueError).
TEST(DatagramTransport, SendtoAnotherAddressOnAConnectedTransportRaisesInvalidArgument) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        const SockAddr server_addr = sockname(e.server);
        EXPECT_THROW(e.client->sendto("nope", SockAddr("127.0.0.1", server_addr.port() == 9 ? 10 : 9)),
                     std::invalid_argument);
        EXPECT_FALSE(e.client->is_closing());
        e.client->sendto("marker");
        co_await until(*e.sp, [](Recorder& r) { return !r.datagrams.empty(); });
        CO_ASSERT(e.sp->datagrams.size() == 1u);
        EXPECT_EQ(e.sp->datagrams.at(0).first, "marker");
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

TEST(DatagramTransport, SendtoThePeerAddressOnAConnectedTransportIsAccepted) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        e.client->sendto("explicit", sockname(e.server));
        co_await until(*e.sp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(e.sp->datagrams.at(0).first, "explicit");
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// Python: sock.sendto(data, None) raises TypeError; here std::invalid_argument.
TEST(DatagramTransport, SendtoWithoutAddressOnAnUnconnectedTransportRaisesInvalidArgument) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        EXPECT_THROW(t->sendto("where to?"), std::invalid_argument);
        EXPECT_FALSE(t->is_closing());
        EXPECT_TRUE(p->errors.empty());
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// CPython: test_sendto_error_received_connected / test_read_ready_oserr: an OSError of a
// connected UDP socket (ICMP port unreachable) goes to error_received; the endpoint stays open.
TEST(DatagramTransport, ConnectionRefusedIsReportedThroughErrorReceived) {
    auto main = []() -> Coro<void> {
        DatagramOptions o = remote_opts("127.0.0.1", closed_udp_port());
        auto [t, p] = co_await open_endpoint(o);
        t->sendto("anyone there?");
        co_await until(*p, [](Recorder& r) { return !r.errors.empty(); });
        EXPECT_EQ(code_of(p->errors.at(0)), std::errc::connection_refused) << message_of(p->errors.at(0));
        EXPECT_FALSE(t->is_closing());
        EXPECT_EQ(p->lost, 0);
        co_await close_and_wait(t, *p);
        EXPECT_FALSE(p->lost_exc);
        std::vector<std::string> expected{"made", "error:" + std::to_string(ECONNREFUSED), "lost"};
        EXPECT_EQ(p->events, expected);
    };
    run(main());
}

TEST(DatagramTransport, TheEndpointKeepsWorkingAfterErrorReceived) {
    auto main = []() -> Coro<void> {
        const int port = closed_udp_port();
        DatagramOptions o = remote_opts("127.0.0.1", port);
        auto [ct, cp] = co_await open_endpoint(o);
        ct->sendto("lost");
        co_await until(*cp, [](Recorder& r) { return !r.errors.empty(); });
        // Now someone serves that port: the same endpoint talks to it.
        auto [st, sp] = co_await open_endpoint(local_opts("127.0.0.1", port));
        sp->echo = true;
        sp->echo_prefix = "resp:";
        ct->sendto("ping");
        co_await until(*cp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(cp->datagrams.at(0).first, "resp:ping");
        std::vector<std::string> expected{"made", "error:" + std::to_string(ECONNREFUSED), "data:resp:ping"};
        EXPECT_EQ(cp->events, expected);
        co_await close_and_wait(ct, *cp);
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

// CPython: test_sendto_error_received (an OSError of sendto goes to error_received, no fatal
// error, at once from inside sendto()).
TEST(DatagramTransport, ADatagramTooLargeIsReportedThroughErrorReceivedAtOnce) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        {
            // The premise: the send reaches the kernel at once (an EAGAIN - here injected by
            // ASYNCIO_FAULTS - would queue it, and its error would come when it is flushed).
            asyncio::detail::faults::Suspended premise;
            e.client->sendto(std::string(70000, 'x'));
        }
        CO_ASSERT(e.cp->errors.size() == 1u);
        EXPECT_EQ(code_of(e.cp->errors.at(0)), std::errc::message_size);
        EXPECT_FALSE(e.client->is_closing());
        EXPECT_EQ(e.client->get_write_buffer_size(), 0u);
        e.client->sendto("small");
        co_await until(*e.sp, [](Recorder& r) { return !r.datagrams.empty(); });
        CO_ASSERT(e.sp->datagrams.size() == 1u);
        EXPECT_EQ(e.sp->datagrams.at(0).first, "small");
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// CPython: an exception from datagram_received escapes _read_ready into the loop, which
// reports "Exception in callback ..." and goes on: unlike a stream transport's, the endpoint
// is not closed and keeps receiving.
TEST(DatagramTransport, AnExceptionFromDatagramReceivedIsReportedAndTheEndpointKeepsReceiving) {
    struct Thrower : Recorder {
        void datagram_received(std::string_view data, const SockAddr& addr) override {
            Recorder::datagram_received(data, addr);
            if (data == "trigger") throw std::runtime_error("boom");
        }
    };
    auto main = []() -> Coro<void> {
        HandlerCapture handler;
        handler.install(get_running_loop());
        auto proto = std::make_shared<Thrower>();
        auto factory = [proto] { return proto; };
        DatagramOptions o = local_opts();
        auto [t, p] = co_await get_running_loop().create_datagram_endpoint(factory, o);
        Socket sender = udp_socket();
        co_await get_running_loop().sock_sendto(sender, "trigger", sockname(t));
        co_await get_running_loop().sock_sendto(sender, "after", sockname(t));
        co_await until(*p, [](Recorder& r) { return r.datagrams.size() >= 2; });
        EXPECT_FALSE(t->is_closing());
        EXPECT_EQ(p->lost, 0);
        CO_ASSERT(handler.contexts.size() == 1u);
        EXPECT_TRUE(handler.contains("datagram_received")) << handler.contexts.at(0).message;
        EXPECT_EQ(message_of(handler.contexts.at(0).exception), "boom");
        std::vector<std::string> expected{"made", "data:trigger", "data:after"};
        EXPECT_EQ(p->events, expected);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

TEST(DatagramTransport, ConnectionLostIsCalledSoonNotFromInsideClose) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        t->close();
        EXPECT_TRUE(t->is_closing());
        EXPECT_EQ(p->lost, 0);
        co_await until(*p, [](Recorder& r) { return r.lost > 0; });
        EXPECT_EQ(p->lost, 1);
        EXPECT_FALSE(p->lost_exc);
    };
    run(main());
}

// CPython: _SelectorTransport.close is idempotent; connection_lost once.
TEST(DatagramTransport, CloseIsIdempotentAndConnectionLostComesOnce) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        t->close();
        t->close();
        co_await until(*p, [](Recorder& r) { return r.lost > 0; });
        t->close();
        co_await settle();
        EXPECT_EQ(p->lost, 1);
        EXPECT_EQ(p->events.back(), "lost");
    };
    run(main());
}

TEST(DatagramTransport, AbortCallsConnectionLostWithoutAnError) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        t->abort();
        EXPECT_TRUE(t->is_closing());
        EXPECT_EQ(p->lost, 0);
        co_await until(*p, [](Recorder& r) { return r.lost > 0; });
        EXPECT_FALSE(p->lost_exc);
        co_await settle();
        EXPECT_EQ(p->lost, 1);
    };
    run(main());
}

TEST(DatagramTransport, CloseThenAbortCallsConnectionLostOnce) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        t->close();
        t->abort();
        co_await until(*p, [](Recorder& r) { return r.lost > 0; });
        t->abort();
        t->close();
        co_await settle();
        EXPECT_EQ(p->lost, 1);
        std::vector<std::string> expected{"made", "lost"};
        EXPECT_EQ(p->events, expected);
    };
    run(main());
}

// close() stops reading at once (CPython removes the reader in close()).
TEST(DatagramTransport, NoDatagramIsDeliveredAfterClose) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        Socket sender = udp_socket();
        const SockAddr addr = sockname(t);
        t->close();
        // Already in the socket's queue before the loop runs again.
        CO_ASSERT(::sendto(sender.fileno(), "late", 4, 0, addr.data(), addr.size()) == 4);
        co_await until(*p, [](Recorder& r) { return r.lost > 0; });
        co_await settle();
        std::vector<std::string> expected{"made", "lost"};
        EXPECT_EQ(p->events, expected);
    };
    run(main());
}

// CPython: test_sendto_closing (a write after close on a connected transport is dropped and
// counted, no exception).
TEST(DatagramTransport, SendtoAfterCloseOnAConnectedTransportIsDroppedSilently) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        e.client->close();
        EXPECT_NO_THROW(e.client->sendto("dropped before connection_lost"));
        co_await until(*e.cp, [](Recorder& r) { return r.lost > 0; });
        EXPECT_NO_THROW(e.client->sendto("dropped after connection_lost"));
        EXPECT_EQ(e.client->get_write_buffer_size(), 0u);
        // The server hears only a marker sent afterwards from elsewhere.
        Socket other = udp_socket();
        co_await get_running_loop().sock_sendto(other, "marker", sockname(e.server));
        co_await until(*e.sp, [](Recorder& r) { return !r.datagrams.empty(); });
        CO_ASSERT(e.sp->datagrams.size() == 1u);
        EXPECT_EQ(e.sp->datagrams.at(0).first, "marker");
        EXPECT_TRUE(e.cp->errors.empty());
        EXPECT_EQ(e.cp->lost, 1);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// CPython: test_sendto_exception (LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5: from the fifth
// write after the connection was lost, 'socket.send() raised exception.' is logged).
TEST(DatagramTransport, RepeatedSendtoAfterCloseLogsAWarning) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        e.client->close();
        co_await until(*e.cp, [](Recorder& r) { return r.lost > 0; });
        LogCapture log;
        for (int i = 0; i < 4; ++i) e.client->sendto("x");
        EXPECT_FALSE(log.contains("socket.send() raised exception.")) << log.joined();
        e.client->sendto("x");
        EXPECT_TRUE(log.contains("socket.send() raised exception.")) << log.joined();
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

TEST(DatagramTransport, ExtraInfoOfAConnectedTransport) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        EXPECT_EQ(e.client->get_extra_info<SockAddr>("peername", {}), sockname(e.server));
        EXPECT_EQ(e.client->get_extra_info<SockAddr>("sockname", {}), socket_of(e.client).getsockname());
        EXPECT_EQ(socket_of(e.client).type(), SOCK_DGRAM);
        EXPECT_FALSE(e.client->get_extra_info("no such thing").has_value());
        EXPECT_EQ(e.client->get_extra_info<int>("no such thing", 42), 42);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// CPython's _SelectorTransport keeps its extra dict (socket, sockname, peername) for life:
// get_extra_info('sockname') / ('peername') still answer after the transport is closed. Our
// stream transports do the same.
TEST(DatagramTransport, ExtraInfoStaysAvailableAfterConnectionLost) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        const SockAddr mine = sockname(e.client);
        const SockAddr peer = sockname(e.server);
        co_await close_and_wait(e.client, *e.cp);
        EXPECT_EQ(e.client->get_extra_info<SockAddr>("sockname", {}), mine);
        EXPECT_EQ(e.client->get_extra_info<SockAddr>("peername", {}), peer);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// Python's _read_ready handles one datagram per readiness; close() removes the reader, so a
// protocol that closes its transport hears no further datagram.
TEST(DatagramTransport, ClosingFromInsideDatagramReceivedStopsDelivery) {
    auto main = []() -> Coro<void> {
        auto proto = std::make_shared<Recorder>();
        proto->close_on_data = true;
        DatagramOptions o = local_opts();
        auto t = co_await open_with(proto, o);
        Socket sender = udp_socket();
        const SockAddr addr = sockname(t);
        for (const char* d : {"1", "2", "3"})  // all queued before the loop runs again
            CO_ASSERT(::sendto(sender.fileno(), d, 1, 0, addr.data(), addr.size()) == 1);
        co_await until(*proto, [](Recorder& r) { return r.lost > 0; });
        co_await settle();
        std::vector<std::string> expected{"made", "data:1", "lost"};
        EXPECT_EQ(proto->events, expected);
    };
    run(main());
}

// CPython's _add_reader does nothing on a closing transport: closing from connection_made
// gives a transport that never reads and still ends with one connection_lost.
TEST(DatagramTransport, ClosingFromConnectionMadeStillEndsWithOneConnectionLost) {
    auto main = []() -> Coro<void> {
        auto proto = std::make_shared<Recorder>();
        proto->close_when_made = true;
        auto factory = [proto] { return proto; };
        DatagramOptions o = local_opts();
        auto [t, p] = co_await get_running_loop().create_datagram_endpoint(factory, o);
        EXPECT_TRUE(t->is_closing());
        co_await until(*proto, [](Recorder& r) { return r.lost > 0; });
        co_await settle();
        std::vector<std::string> expected{"made", "lost"};
        EXPECT_EQ(proto->events, expected);
        (void)p;
    };
    run(main());
}

// CPython's create_datagram_endpoint returns (transport, protocol) with the protocol the
// factory made, whatever happened to the transport meanwhile: here it was closed (and its
// connection_lost delivered) before the call returned.
TEST(CreateDatagramEndpoint, ReturnsTheFactorysProtocolEvenIfTheTransportClosedAlready) {
    auto main = []() -> Coro<void> {
        auto proto = std::make_shared<Recorder>();
        proto->close_when_made = true;
        auto factory = [proto] { return proto; };
        DatagramOptions o = local_opts();
        auto [t, p] = co_await get_running_loop().create_datagram_endpoint(factory, o);
        EXPECT_EQ(p, proto);
        EXPECT_TRUE(t != nullptr);
        co_await until(*proto, [](Recorder& r) { return r.lost > 0; });
    };
    run(main());
}

TEST(DatagramTransport, SetProtocolSendsLaterDatagramsToTheNewProtocol) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        e.client->sendto("one");
        co_await until(*e.sp, [](Recorder& r) { return r.datagrams.size() >= 1; });
        auto second = std::make_shared<Recorder>();
        e.server->set_protocol(second);
        EXPECT_EQ(e.server->get_protocol(), second);
        e.client->sendto("two");
        co_await until(*second, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(second->datagrams.at(0).first, "two");
        CO_ASSERT(e.sp->datagrams.size() == 1u);
        EXPECT_EQ(e.sp->datagrams.at(0).first, "one");
        e.server->close();
        co_await until(*second, [](Recorder& r) { return r.lost > 0; });
        EXPECT_EQ(e.sp->lost, 0);
        co_await close_and_wait(e.client, *e.cp);
    };
    run(main());
}

TEST(DatagramTransport, SetProtocolRefusesAStreamProtocol) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        EXPECT_THROW(t->set_protocol(std::make_shared<Protocol>()), std::invalid_argument);
        EXPECT_EQ(t->get_protocol(), p);
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// ---- the write buffer (sendto that would block) ------------------------------------------

// CPython: test_sendto_tryagain / test_sendto_ready (queued, then sent when writable).
TEST(DatagramWriteBuffer, SendtoQueuesWhenTheSocketWouldBlockAndSendsLaterInOrder) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        e.client->sendto("first");
        e.client->sendto("second");
        EXPECT_GT(e.client->get_write_buffer_size(), 0u);
        EXPECT_TRUE(e.cp->errors.empty());
        auto got = co_await drain(b, 2);
        std::vector<std::string> expected{"first", "second"};
        EXPECT_EQ(got, expected);
        co_await settle();
        EXPECT_EQ(e.client->get_write_buffer_size(), 0u);
        EXPECT_FALSE(e.client->is_closing());
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// CPython: test_sendto_buffer (with a non-empty buffer, sendto appends, even if the socket
// could take the datagram now: the order is kept).
TEST(DatagramWriteBuffer, SendtoQueuesBehindEarlierDatagramsEvenWhenTheSocketIsWritable) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        e.client->sendto("first");
        const std::size_t one = e.client->get_write_buffer_size();
        drop_fillers(b);  // writable again, but the loop has not noticed
        e.client->sendto("second");
        EXPECT_GT(e.client->get_write_buffer_size(), one);
        auto got = co_await drain(b, 2);
        std::vector<std::string> expected{"first", "second"};
        EXPECT_EQ(got, expected);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// get_write_buffer_size counts each queued datagram's bytes plus a fixed per-datagram header
// (Python 3.12+: _header_size), and is 0 once everything is sent.
TEST(DatagramWriteBuffer, GetWriteBufferSizeCountsQueuedDatagrams) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        EXPECT_EQ(e.client->get_write_buffer_size(), 0u);
        e.client->sendto(std::string(100, 'a'));
        const std::size_t s1 = e.client->get_write_buffer_size();
        EXPECT_GE(s1, 100u);
        e.client->sendto(std::string(300, 'b'));
        const std::size_t s2 = e.client->get_write_buffer_size();
        EXPECT_EQ(s2 - s1, s1 + 200);  // same header for each datagram
        e.client->sendto("");
        const std::size_t s3 = e.client->get_write_buffer_size();
        EXPECT_EQ(s3 - s2, s1 - 100);  // an empty datagram costs just the header
        auto got = co_await drain(b, 3);
        EXPECT_EQ(got.at(0), std::string(100, 'a'));
        EXPECT_EQ(got.at(1), std::string(300, 'b'));
        EXPECT_EQ(got.at(2), "");
        co_await settle();
        EXPECT_EQ(e.client->get_write_buffer_size(), 0u);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// _FlowControlMixin: pause_writing once the buffer goes above the high-water mark (64 KiB by
// default), resume_writing once it drains to the low-water mark (high / 4), each once.
TEST(DatagramWriteBuffer, PauseWritingAboveHighWaterAndResumeWritingWhenDrained) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        constexpr int n = 80;
        const std::string chunk(1000, 'p');
        for (int i = 0; i < n; ++i) e.client->sendto(chunk);
        EXPECT_EQ(e.cp->paused, 1);
        EXPECT_EQ(e.cp->resumed, 0);
        EXPECT_GT(e.cp->buffer_at_pause, 64u * 1024);
        EXPECT_GT(e.client->get_write_buffer_size(), 64u * 1024);
        auto got = co_await drain(b, n);
        EXPECT_EQ(got.size(), static_cast<std::size_t>(n));
        co_await until(*e.cp, [](Recorder& r) { return r.resumed > 0; });
        EXPECT_EQ(e.cp->paused, 1);
        EXPECT_EQ(e.cp->resumed, 1);
        EXPECT_LE(e.cp->buffer_at_resume, 16u * 1024);
        std::vector<std::string> expected{"made", "pause", "resume"};
        EXPECT_EQ(e.cp->events, expected);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// CPython's _sendto_ready: an OSError sending a queued datagram goes to error_received and
// that datagram is dropped; the writer stays registered, so the datagrams behind it are still
// sent (and close() then completes). Here the queued datagram is too large for the socket
// under the transport (AF_UNIX: EMSGSIZE above its send buffer).
TEST(DatagramWriteBuffer, AnErrorSendingAQueuedDatagramIsReportedAndTheRestIsStillSent) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        e.client->sendto("a");
        e.client->sendto(std::string(100000, 'x'));  // queued behind "a", fails when sent
        e.client->sendto("c");
        EXPECT_TRUE(e.cp->errors.empty());
        auto first = co_await drain(b, 1);
        EXPECT_EQ(first.at(0), "a");
        co_await until(*e.cp, [](Recorder& r) { return !r.errors.empty(); });
        EXPECT_EQ(code_of(e.cp->errors.at(0)), std::errc::message_size) << message_of(e.cp->errors.at(0));
        auto rest = co_await drain(b, 1);
        EXPECT_EQ(rest.at(0), "c");
        co_await settle();
        EXPECT_EQ(e.client->get_write_buffer_size(), 0u);
        EXPECT_FALSE(e.client->is_closing());
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// Python 3.13+ (gh-113812, with the zero-length datagram change): each queued datagram costs
// len(data) + _header_size, and _header_size is 8.
TEST(DatagramWriteBuffer, AQueuedDatagramCostsItsSizePlusPythonsEightByteHeader) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        e.client->sendto(std::string(100, 'a'));
        EXPECT_EQ(e.client->get_write_buffer_size(), 108u);
        e.client->sendto("");
        EXPECT_EQ(e.client->get_write_buffer_size(), 116u);
        auto got = co_await drain(b, 2);
        EXPECT_EQ(got.size(), 2u);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// _sendto_ready: resume_writing (buffer at the low-water mark) comes before the
// connection_lost of a transport closed while paused.
TEST(DatagramWriteBuffer, CloseWhilePausedResumesWritingBeforeConnectionLost) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        constexpr int n = 80;
        const std::string chunk(1000, 'p');
        for (int i = 0; i < n; ++i) e.client->sendto(chunk);
        CO_ASSERT(e.cp->paused == 1);
        e.client->close();
        auto got = co_await drain(b, n);
        EXPECT_EQ(got.size(), static_cast<std::size_t>(n));
        co_await until(*e.cp, [](Recorder& r) { return r.lost > 0; });
        std::vector<std::string> expected{"made", "pause", "resume", "lost"};
        EXPECT_EQ(e.cp->events, expected);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// _force_close drops the buffer: no resume_writing, just connection_lost(None).
TEST(DatagramWriteBuffer, AbortWhilePausedDoesNotResumeWriting) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        constexpr int n = 80;
        const std::string chunk(1000, 'p');
        for (int i = 0; i < n; ++i) e.client->sendto(chunk);
        CO_ASSERT(e.cp->paused == 1);
        e.client->abort();
        co_await until(*e.cp, [](Recorder& r) { return r.lost > 0; });
        co_await settle();
        std::vector<std::string> expected{"made", "pause", "lost"};
        EXPECT_EQ(e.cp->events, expected);
        EXPECT_FALSE(e.cp->lost_exc);
        (void)b;
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// _FlowControlMixin._maybe_pause_protocol: an exception from pause_writing is reported to
// the loop's exception handler ('protocol.pause_writing() failed'); the transport goes on.
TEST(DatagramWriteBuffer, AnExceptionFromPauseWritingIsReportedAndTheTransportGoesOn) {
    struct BadPause : Recorder {
        void pause_writing() override {
            Recorder::pause_writing();
            throw std::runtime_error("no pause");
        }
    };
    auto main = []() -> Coro<void> {
        HandlerCapture handler;
        handler.install(get_running_loop());
        auto [st, sp] = co_await open_endpoint(local_opts());
        auto proto = std::make_shared<BadPause>();
        auto factory = [proto] { return proto; };
        DatagramOptions o = remote_opts("127.0.0.1", sockname(st).port());
        auto [ct, cp] = co_await get_running_loop().create_datagram_endpoint(factory, o);
        Blocker b = block_sends(ct);
        constexpr int n = 80;
        const std::string chunk(1000, 'p');
        for (int i = 0; i < n; ++i) ct->sendto(chunk);
        EXPECT_EQ(cp->paused, 1);
        CO_ASSERT(handler.contexts.size() == 1u);
        EXPECT_TRUE(handler.contains("pause_writing() failed")) << handler.contexts.at(0).message;
        EXPECT_EQ(message_of(handler.contexts.at(0).exception), "no pause");
        EXPECT_FALSE(ct->is_closing());
        auto got = co_await drain(b, n);
        EXPECT_EQ(got.size(), static_cast<std::size_t>(n));
        co_await close_and_wait(ct, *cp);
        EXPECT_FALSE(cp->lost_exc);
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

// CPython: test_sendto_ready_closing (close() with a non-empty buffer: the datagrams are
// still sent, then connection_lost(None)).
TEST(DatagramWriteBuffer, CloseSendsTheQueuedDatagramsBeforeConnectionLost) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        e.client->sendto("a");
        e.client->sendto("b");
        e.client->sendto("c");
        e.client->close();
        EXPECT_TRUE(e.client->is_closing());
        co_await settle();
        EXPECT_EQ(e.cp->lost, 0);  // not while datagrams are waiting
        auto got = co_await drain(b, 3);
        std::vector<std::string> expected{"a", "b", "c"};
        EXPECT_EQ(got, expected);
        co_await until(*e.cp, [](Recorder& r) { return r.lost > 0; });
        EXPECT_FALSE(e.cp->lost_exc);
        EXPECT_EQ(e.cp->lost, 1);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// CPython: _force_close (abort drops the buffer; connection_lost(None)).
TEST(DatagramWriteBuffer, AbortDropsTheQueuedDatagrams) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        e.client->sendto("a");
        e.client->sendto("b");
        e.client->abort();
        EXPECT_EQ(e.client->get_write_buffer_size(), 0u);
        co_await until(*e.cp, [](Recorder& r) { return r.lost > 0; });
        EXPECT_FALSE(e.cp->lost_exc);
        auto left = read_available(b);
        EXPECT_EQ(left.size(), static_cast<std::size_t>(b.fillers));
        for (auto& d : left) EXPECT_EQ(d, "f");
        co_await settle();
        EXPECT_EQ(e.cp->lost, 1);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

TEST(DatagramWriteBuffer, SendtoAfterCloseIsStillQueuedWhileTheBufferDrains) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        e.client->sendto("queued");
        e.client->close();
        // Python: _conn_lost is still 0 while the buffer drains, so this one is queued too.
        e.client->sendto("after close");
        auto got = co_await drain(b, 2);
        std::vector<std::string> expected{"queued", "after close"};
        EXPECT_EQ(got, expected);
        co_await until(*e.cp, [](Recorder& r) { return r.lost > 0; });
        EXPECT_EQ(e.cp->lost, 1);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// ---- set_write_buffer_limits / get_write_buffer_limits (_FlowControlMixin) ---------------

TEST(DatagramWriteBufferLimits, DefaultsArePythons64KiBAnd16KiB) {
    auto main = []() -> Coro<void> {
        auto [t, p] = co_await open_endpoint(local_opts());
        EXPECT_EQ(t->get_write_buffer_limits(), (std::pair<std::size_t, std::size_t>(16 * 1024, 64 * 1024)));
        co_await close_and_wait(t, *p);
    };
    run(main());
}

// _set_write_buffer_limits: high defaults to 4 * low (or 64 KiB), low to high // 4.
TEST(DatagramWriteBufferLimits, AMissingMarkIsDerivedFromTheOtherAsPythonDoes) {
    auto main = []() -> Coro<void> {
        using Limits = std::pair<std::size_t, std::size_t>;
        auto [t, p] = co_await open_endpoint(local_opts());
        t->set_write_buffer_limits(4001);
        EXPECT_EQ(t->get_write_buffer_limits(), Limits(1000, 4001));
        t->set_write_buffer_limits(std::nullopt, 500);
        EXPECT_EQ(t->get_write_buffer_limits(), Limits(500, 2000));
        t->set_write_buffer_limits(300, 200);
        EXPECT_EQ(t->get_write_buffer_limits(), Limits(200, 300));
        t->set_write_buffer_limits(0, 0);
        EXPECT_EQ(t->get_write_buffer_limits(), Limits(0, 0));
        t->set_write_buffer_limits();
        EXPECT_EQ(t->get_write_buffer_limits(), Limits(16 * 1024, 64 * 1024));
        co_await close_and_wait(t, *p);
    };
    run(main());
}

TEST(DatagramWriteBufferLimits, LowAboveHighRaisesInvalidArgumentAndKeepsTheLimits) {
    auto main = []() -> Coro<void> {
        using Limits = std::pair<std::size_t, std::size_t>;
        auto [t, p] = co_await open_endpoint(local_opts());
        t->set_write_buffer_limits(1000, 100);
        try {
            t->set_write_buffer_limits(100, 200);
            ADD_FAILURE() << "no exception";
        } catch (const std::invalid_argument& e) {
            EXPECT_STREQ(e.what(), "high (100) must be >= low (200) must be >= 0");
        }
        EXPECT_EQ(t->get_write_buffer_limits(), Limits(100, 1000));
        co_await close_and_wait(t, *p);
    };
    run(main());
}

TEST(DatagramWriteBufferLimits, PauseAndResumeFollowTheLimitsSet) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        e.client->set_write_buffer_limits(2000, 1000);
        Blocker b = block_sends(e.client);
        const std::string chunk(1000, 'p');  // 1008 bytes each in the buffer
        e.client->sendto(chunk);
        EXPECT_EQ(e.cp->paused, 0);
        e.client->sendto(chunk);  // 2016 > 2000
        EXPECT_EQ(e.cp->paused, 1);
        EXPECT_EQ(e.cp->buffer_at_pause, 2016u);
        for (int i = 0; i < 8; ++i) e.client->sendto(chunk);
        EXPECT_EQ(e.cp->paused, 1);
        auto got = co_await drain(b, 10);
        EXPECT_EQ(got.size(), 10u);
        co_await until(*e.cp, [](Recorder& r) { return r.resumed > 0; });
        EXPECT_EQ(e.cp->resumed, 1);
        EXPECT_LE(e.cp->buffer_at_resume, 1000u);
        std::vector<std::string> expected{"made", "pause", "resume"};
        EXPECT_EQ(e.cp->events, expected);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// resume_writing waits for the low-water mark, not just for the buffer to go back under the
// high one: room for a few datagrams (the fillers dropped, the transport's datagrams not
// read yet) drains the buffer part way, and the protocol stays paused.
TEST(DatagramWriteBufferLimits, APartialDrainAboveTheLowWaterMarkDoesNotResume) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        constexpr int n = 200;
        for (int i = 0; i < n; ++i) e.client->sendto(std::string(100, 'q'));
        const std::size_t queued = e.client->get_write_buffer_size();
        e.client->set_write_buffer_limits(queued - 1, 0);
        CO_ASSERT(e.cp->paused == 1);
        drop_fillers(b);
        co_await settle();
        const std::size_t left = e.client->get_write_buffer_size();
        CO_ASSERT(left > 0 && left < queued);  // some sent, not all: the case under test
        EXPECT_EQ(e.cp->resumed, 0);
        auto got = co_await drain(b, n);
        EXPECT_EQ(got.size(), static_cast<std::size_t>(n));
        co_await until(*e.cp, [](Recorder& r) { return r.resumed > 0; });
        EXPECT_EQ(e.cp->buffer_at_resume, 0u);
        std::vector<std::string> expected{"made", "pause", "resume"};
        EXPECT_EQ(e.cp->events, expected);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// CPython's _sendto_ready breaks out of its loop on BlockingIOError and still calls
// _maybe_resume_protocol: a partial drain that reaches the low-water mark resumes the
// protocol before the rest of the buffer is sent.
TEST(DatagramWriteBufferLimits, APartialDrainToTheLowWaterMarkResumesAtOnce) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        constexpr int n = 200;
        for (int i = 0; i < n; ++i) e.client->sendto(std::string(100, 'q'));
        const std::size_t queued = e.client->get_write_buffer_size();
        e.client->set_write_buffer_limits(queued - 1, queued - 1);
        CO_ASSERT(e.cp->paused == 1);
        // The premise: one flush sends until the socket's buffer is full (an injected EAGAIN
        // would end it sooner: it resumes there, then the next flush sends more).
        auto premise = std::make_unique<asyncio::detail::faults::Suspended>();
        drop_fillers(b);
        co_await settle();
        const std::size_t left = e.client->get_write_buffer_size();
        premise.reset();
        CO_ASSERT(left > 0 && left < queued);  // some sent, not all: the case under test
        EXPECT_EQ(e.cp->resumed, 1);
        EXPECT_EQ(e.cp->buffer_at_resume, left);
        auto got = co_await drain(b, n);
        EXPECT_EQ(got.size(), static_cast<std::size_t>(n));
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// Python's set_write_buffer_limits ends with _maybe_pause_protocol: pause_writing comes from
// inside the call when the buffer is already above the new high-water mark.
TEST(DatagramWriteBufferLimits, LoweringTheHighWaterMarkBelowTheQueuedSizePausesAtOnce) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        e.client->sendto(std::string(100, 'a'));
        e.client->sendto(std::string(100, 'b'));
        CO_ASSERT(e.cp->paused == 0);
        e.client->set_write_buffer_limits(200);
        EXPECT_EQ(e.cp->paused, 1);
        EXPECT_EQ(e.cp->buffer_at_pause, 216u);
        auto got = co_await drain(b, 2);
        EXPECT_EQ(got.size(), 2u);
        co_await until(*e.cp, [](Recorder& r) { return r.resumed > 0; });
        EXPECT_LE(e.cp->buffer_at_resume, 50u);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// ... and nothing else: raising the limits while paused does not resume the protocol; that
// waits until the buffer drains (to the new low-water mark).
TEST(DatagramWriteBufferLimits, RaisingTheLimitsWhilePausedWaitsForTheBufferToDrainToResume) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        const std::string chunk(1000, 'p');
        for (int i = 0; i < 80; ++i) e.client->sendto(chunk);
        CO_ASSERT(e.cp->paused == 1);
        e.client->set_write_buffer_limits(1024 * 1024);
        EXPECT_EQ(e.cp->resumed, 0);
        co_await settle();  // the socket is still full: nothing drained
        EXPECT_EQ(e.cp->resumed, 0);
        EXPECT_EQ(e.client->get_write_buffer_size(), 80u * 1008);
        auto got = co_await drain(b, 80);
        EXPECT_EQ(got.size(), 80u);
        co_await until(*e.cp, [](Recorder& r) { return r.resumed > 0; });
        std::vector<std::string> expected{"made", "pause", "resume"};
        EXPECT_EQ(e.cp->events, expected);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// Marks of zero: the first datagram that has to wait pauses, and only an empty buffer
// resumes. A datagram sent at once is never buffered, so it never pauses.
TEST(DatagramWriteBufferLimits, ZeroMarksPauseOnTheFirstQueuedDatagramAndResumeWhenEmpty) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        e.client->set_write_buffer_limits(0);
        {
            // The premise: the kernel takes this datagram at once (an EAGAIN, as ASYNCIO_FAULTS
            // injects, would queue it, and a queued datagram pauses).
            asyncio::detail::faults::Suspended premise;
            e.client->sendto("straight through");
        }
        co_await until(*e.sp, [](Recorder& r) { return !r.datagrams.empty(); });
        EXPECT_EQ(e.cp->paused, 0);
        Blocker b = block_sends(e.client);
        e.client->sendto("");
        EXPECT_EQ(e.cp->paused, 1);
        EXPECT_EQ(e.cp->buffer_at_pause, 8u);  // an empty datagram costs the header alone
        auto got = co_await drain(b, 1);
        EXPECT_EQ(got.at(0), "");
        co_await until(*e.cp, [](Recorder& r) { return r.resumed > 0; });
        EXPECT_EQ(e.cp->buffer_at_resume, 0u);
        co_await close_and_wait(e.client, *e.cp);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// _FlowControlMixin._maybe_resume_protocol: an exception from resume_writing goes to the
// loop's exception handler ('protocol.resume_writing() failed'); the transport goes on.
TEST(DatagramWriteBufferLimits, AnExceptionFromResumeWritingIsReportedAndTheTransportGoesOn) {
    struct BadResume : Recorder {
        void resume_writing() override {
            Recorder::resume_writing();
            throw std::runtime_error("no resume");
        }
    };
    auto main = []() -> Coro<void> {
        HandlerCapture handler;
        handler.install(get_running_loop());
        auto [st, sp] = co_await open_endpoint(local_opts());
        auto proto = std::make_shared<BadResume>();
        auto factory = [proto] { return proto; };
        DatagramOptions o = remote_opts("127.0.0.1", sockname(st).port());
        auto [ct, cp] = co_await get_running_loop().create_datagram_endpoint(factory, o);
        ct->set_write_buffer_limits(100);
        Blocker b = block_sends(ct);
        ct->sendto(std::string(200, 'x'));
        CO_ASSERT(cp->paused == 1);
        auto got = co_await drain(b, 1);
        co_await until(*cp, [](Recorder& r) { return r.resumed > 0; });
        CO_ASSERT(handler.contexts.size() == 1u);
        EXPECT_TRUE(handler.contains("resume_writing() failed")) << handler.contexts.at(0).message;
        EXPECT_EQ(message_of(handler.contexts.at(0).exception), "no resume");
        EXPECT_FALSE(ct->is_closing());
        {
            // The premise: the kernel takes the send (no EAGAIN, which ASYNCIO_FAULTS injects).
            asyncio::detail::faults::Suspended premise;
            ct->sendto("still open");  // straight through again
        }
        EXPECT_EQ(ct->get_write_buffer_size(), 0u);
        co_await close_and_wait(ct, *cp);
        co_await close_and_wait(st, *sp);
    };
    run(main());
}

// ---- sendto once the transport let go of its socket ---------------------------------------

// After connection_lost the socket is closed: a sendto is dropped, not sent on a closed (or
// reused) fd, and the protocol - already let go of - is not called.
TEST(DatagramTransport, SendtoOnAnUnconnectedTransportAfterConnectionLostIsDropped) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto [t, p] = co_await open_endpoint(local_opts());
        Socket peer = udp_socket();
        co_await close_and_wait(t, *p);
        EXPECT_NO_THROW(t->sendto("late", peer.getsockname()));
        Socket other = udp_socket();
        co_await loop.sock_sendto(other, "marker", peer.getsockname());
        auto [data, from] = co_await wait_for(loop.sock_recvfrom(peer, 100), kTimeout);
        EXPECT_EQ(data, "marker");
        EXPECT_TRUE(p->errors.empty());
        EXPECT_EQ(p->lost, 1);
    };
    run(main());
}

// The same for a connected transport whose close() waited for its buffer to drain.
TEST(DatagramWriteBuffer, SendtoAfterTheBufferDrainedAndConnectionLostIsDropped) {
    auto main = []() -> Coro<void> {
        Pair e = co_await open_pair();
        Blocker b = block_sends(e.client);
        e.client->sendto("queued");
        e.client->close();
        auto got = co_await drain(b, 1);
        EXPECT_EQ(got.at(0), "queued");
        co_await until(*e.cp, [](Recorder& r) { return r.lost > 0; });
        EXPECT_NO_THROW(e.client->sendto("late"));
        co_await settle();
        EXPECT_TRUE(read_available(b).empty());
        EXPECT_TRUE(e.cp->errors.empty());
        EXPECT_EQ(e.cp->lost, 1);
        co_await close_and_wait(e.server, *e.sp);
    };
    run(main());
}

// =============================================================================================
// loop.sock_sendto / sock_recvfrom on datagram sockets
// =============================================================================================

// Python: sock_recvfrom on a connected UDP socket raises ConnectionRefusedError after an ICMP
// port unreachable.
TEST(SockDatagram, RecvfromOnAConnectedSocketRaisesConnectionRefused) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Socket s(AF_INET, SOCK_DGRAM);
        const SockAddr dead("127.0.0.1", closed_udp_port());
        co_await loop.sock_connect(s, dead);
        std::size_t sent = co_await loop.sock_sendto(s, "ping", dead);
        EXPECT_EQ(sent, 4u);
        auto e = co_await error_of(wait_for(loop.sock_recvfrom(s, 100), kTimeout));
        EXPECT_EQ(code_of(e), std::errc::connection_refused) << message_of(e);
    };
    run(main());
}

TEST(SockDatagram, SendtoADatagramTooLargeRaisesEmsgsize) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Socket a = udp_socket();
        Socket b = udp_socket();
        const std::string huge(70000, 'x');
        auto e = co_await error_of(loop.sock_sendto(a, huge, b.getsockname()));
        EXPECT_EQ(code_of(e), std::errc::message_size) << message_of(e);
    };
    run(main());
}

TEST(SockDatagram, APlainSocketTalksToADatagramEndpoint) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto [st, sp] = co_await open_endpoint(local_opts());
        sp->echo = true;
        sp->echo_prefix = "resp:";
        Socket s = udp_socket();
        std::size_t sent = co_await loop.sock_sendto(s, "hello", sockname(st));
        EXPECT_EQ(sent, 5u);
        auto [data, from] = co_await wait_for(loop.sock_recvfrom(s, 100), kTimeout);
        EXPECT_EQ(data, "resp:hello");
        EXPECT_EQ(from, sockname(st));
        EXPECT_EQ(sp->datagrams.at(0).second, s.getsockname());
        co_await close_and_wait(st, *sp);
    };
    run(main());
}
