// tests/net/test_sendfile.cpp - loop.sock_sendfile and loop.sendfile (CPython's
// test_sendfile.py scenarios): native sendfile(2), the fallback, offsets and counts, the file
// position afterwards, argument errors, and writes refused while a sendfile runs.
#include <gtest/gtest.h>

#include "support.hpp"
#include "tls_certs.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

#include <cerrno>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace asyncio;

namespace {
/// A temporary file holding `data`, open for reading; removed at the end.
struct TempFile {
    explicit TempFile(const std::string& data) {
        char path[] = "/tmp/asyncio_sendfile_XXXXXX";
        fd = ::mkstemp(path);
        name = path;
        EXPECT_GE(fd, 0);
        EXPECT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
        ::lseek(fd, 0, SEEK_SET);
    }
    ~TempFile() {
        ::close(fd);
        ::unlink(name.c_str());
    }
    off_t position() const { return ::lseek(fd, 0, SEEK_CUR); }
    int fd = -1;
    std::string name;
};

/// This suite's payload (asyncio_test::pattern, a shorter drift).
std::string pattern(std::size_t n) { return asyncio_test::pattern(n, {.drift = 13}); }

/// Reads from `sock` until EOF.
Coro<std::string> read_all(EventLoop& loop, Socket& sock) {
    std::string out;
    for (;;) {
        std::string chunk = co_await loop.sock_recv(sock, 65536);
        if (chunk.empty()) break;
        out += chunk;
    }
    co_return out;
}

/// Runs `send(loop, a)` against a reader on the other end of a socketpair; returns
/// (bytes reported sent, bytes received).
template <class F>
std::pair<std::size_t, std::string> over_socketpair(F send) {
    auto main = [&]() -> Coro<std::pair<std::size_t, std::string>> {
        EventLoop& loop = get_running_loop();
        auto [a, b] = socketpair();
        Task<std::string> reader = create_task(read_all(loop, b));
        std::size_t sent = co_await send(loop, a);
        a.shutdown(SHUT_WR);
        std::string got = co_await wait_for(reader, 10.0);
        co_return std::pair<std::size_t, std::string>(sent, got);
    };
    return run(main());
}
}  // namespace

TEST(SockSendfile, SendsTheWholeFileNatively) {
    const std::string data = pattern(1 << 20);
    TempFile f(data);
    auto [sent, got] = over_socketpair([&](EventLoop& loop, Socket& s) { return loop.sock_sendfile(s, f.fd); });
    EXPECT_EQ(sent, data.size());
    EXPECT_EQ(got, data);
    EXPECT_EQ(f.position(), static_cast<off_t>(data.size()));
}

TEST(SockSendfile, HonoursOffsetAndCountAndLeavesThePositionAfterThem) {
    const std::string data = pattern(100000);
    TempFile f(data);
    auto [sent, got] =
        over_socketpair([&](EventLoop& loop, Socket& s) { return loop.sock_sendfile(s, f.fd, 1000, 5000); });
    EXPECT_EQ(sent, 5000u);
    EXPECT_EQ(got, data.substr(1000, 5000));
    EXPECT_EQ(f.position(), 6000);
}

TEST(SockSendfile, CountPastTheEndSendsWhatThereIs) {
    const std::string data = pattern(3000);
    TempFile f(data);
    auto [sent, got] =
        over_socketpair([&](EventLoop& loop, Socket& s) { return loop.sock_sendfile(s, f.fd, 2000, 5000); });
    EXPECT_EQ(sent, 1000u);
    EXPECT_EQ(got, data.substr(2000));
}

TEST(SockSendfile, EmptyFileSendsNothing) {
    TempFile f("");
    auto [sent, got] = over_socketpair([&](EventLoop& loop, Socket& s) { return loop.sock_sendfile(s, f.fd); });
    EXPECT_EQ(sent, 0u);
    EXPECT_EQ(got, "");
}

TEST(SockSendfile, APipeIsNotARegularFileAndFallsBack) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    ASSERT_EQ(::write(p[1], "from a pipe", 11), 11);
    ::close(p[1]);
    // pread() is impossible on a pipe: the fallback reports the error, not wrong data.
    auto main = [&]() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        auto [a, b] = socketpair();
        try {
            co_await loop.sock_sendfile(a, p[0]);
        } catch (const std::system_error& e) {
            co_return std::string("error: ") + (e.code().value() == ESPIPE ? "ESPIPE" : e.what());
        }
        co_return std::string("sent");
    };
    EXPECT_EQ(run(main()), "error: ESPIPE");
    ::close(p[0]);
}

TEST(SockSendfile, NoFallbackOnANonRegularFileRaisesSendfileNotAvailable) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    auto main = [&]() -> Coro<bool> {
        EventLoop& loop = get_running_loop();
        auto [a, b] = socketpair();
        try {
            co_await loop.sock_sendfile(a, p[0], 0, std::nullopt, false);
        } catch (const SendfileNotAvailableError&) {
            co_return true;
        }
        co_return false;
    };
    EXPECT_TRUE(run(main()));
    ::close(p[0]);
    ::close(p[1]);
}

TEST(SockSendfile, ZeroCountIsInvalid) {
    TempFile f("x");
    auto main = [&]() -> Coro<bool> {
        EventLoop& loop = get_running_loop();
        auto [a, b] = socketpair();
        try {
            co_await loop.sock_sendfile(a, f.fd, 0, 0);
        } catch (const std::invalid_argument& e) {
            co_return std::string(e.what()).find("count must be a positive integer") != std::string::npos;
        }
        co_return false;
    };
    EXPECT_TRUE(run(main()));
}

TEST(SockSendfile, DatagramSocketsAreRejected) {
    TempFile f("x");
    auto main = [&]() -> Coro<bool> {
        EventLoop& loop = get_running_loop();
        Socket udp(AF_INET, SOCK_DGRAM);
        try {
            co_await loop.sock_sendfile(udp, f.fd);
        } catch (const std::invalid_argument& e) {
            co_return std::string(e.what()).find("only SOCK_STREAM") != std::string::npos;
        }
        co_return false;
    };
    EXPECT_TRUE(run(main()));
}

namespace {
/// A protocol that collects everything and signals EOF.
struct Sink : Protocol {
    std::string data;
    Future<void> eof;
    std::shared_ptr<Transport> transport;
    bool starts_paused = false;  // reads nothing until resumed: the sender's socket fills up
    void connection_made(std::shared_ptr<Transport> t) override {
        transport = t;
        if (starts_paused) t->pause_reading();
    }
    void connection_lost(std::exception_ptr) override { transport.reset(); }
    bool eof_received() override {
        if (!eof.done()) eof.set_result();
        return false;
    }
    void data_received(std::string_view d) override { data += d; }
};
struct Holder : Protocol {
    std::shared_ptr<Transport> t;
    bool lost = false;
    void connection_made(std::shared_ptr<Transport> tr) override { t = tr; }
    void connection_lost(std::exception_ptr) override {
        lost = true;
        t.reset();
    }
};

/// Connects a Holder (sending side) to a Sink over TCP loopback and runs `body` with them
/// (`body(loop, transport)`, or `body(loop, transport, sink)`).
template <class F>
std::string over_tcp(F body, bool sink_starts_paused = false) {
    auto main = [&]() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        auto sink = std::make_shared<Sink>();
        sink->starts_paused = sink_starts_paused;
        Server server = co_await loop.create_server([sink] { return sink; }, "127.0.0.1", 0);
        int port = server.sockets().at(0).getsockname().port();
        auto [t, holder] =
            co_await loop.create_connection([] { return std::make_shared<Holder>(); }, "127.0.0.1", port);
        if constexpr (std::is_invocable_v<F&, EventLoop&, std::shared_ptr<Transport>, Sink&>)
            co_await body(loop, t, *sink);
        else
            co_await body(loop, t);
        t->write_eof();
        co_await wait_for(sink->eof, 10.0);
        t->close();
        server.close();
        co_return sink->data;
    };
    return run(main());
}
}  // namespace

TEST(LoopSendfile, SendsAFileOverATcpTransportAfterWhatWasWrittenBefore) {
    const std::string data = pattern(3 << 20);
    TempFile f(data);
    std::size_t sent = 0;
    std::string got = over_tcp([&](EventLoop& loop, std::shared_ptr<Transport> t) -> Coro<void> {
        t->write("header:");
        sent = co_await loop.sendfile(t, f.fd);
        t->write(":trailer");
    });
    EXPECT_EQ(sent, data.size());
    EXPECT_EQ(got, "header:" + data + ":trailer");
}

TEST(LoopSendfile, WriteDuringSendfileIsRefused) {
    const std::string data = pattern(8 << 20);
    TempFile f(data);
    std::string error;
    // The receiver reads nothing at first, so the sendfile cannot finish in one go.
    std::string got = over_tcp(
        [&](EventLoop& loop, std::shared_ptr<Transport> t, Sink& sink) -> Coro<void> {
            Task<std::size_t> s = create_task(loop.sendfile(t, f.fd));
            co_await sleep(0);
            try {
                t->write("x");
            } catch (const RuntimeError& e) {
                error = e.what();
            }
            while (!sink.transport) co_await sleep(0);
            sink.transport->resume_reading();
            co_await s;
        },
        true);
    EXPECT_EQ(error, "unable to write; sendfile is in progress");
    EXPECT_EQ(got, data);
}

TEST(LoopSendfile, OffsetAndCountOverATransportSendExactlyThatRange) {
    const std::string data = pattern(600 * 1024);
    TempFile f(data);
    std::size_t sent = 0;
    std::string got = over_tcp([&](EventLoop& loop, std::shared_ptr<Transport> t) -> Coro<void> {
        sent = co_await loop.sendfile(t, f.fd, 100, 500 * 1024);
    });
    EXPECT_EQ(sent, 500u * 1024);
    EXPECT_EQ(got, data.substr(100, 500 * 1024));
    EXPECT_EQ(f.position(), static_cast<off_t>(100 + 500 * 1024));
}

TEST(LoopSendfile, ClosingTransportIsRefused) {
    TempFile f("abc");
    std::string error;
    over_tcp([&](EventLoop& loop, std::shared_ptr<Transport> t) -> Coro<void> {
        auto [t2, h2] = co_await loop.create_connection([] { return std::make_shared<Holder>(); }, "127.0.0.1",
                                                        t->get_extra_info<SockAddr>("peername", {}).port());
        t2->close();
        try {
            co_await loop.sendfile(t2, f.fd);
        } catch (const RuntimeError& e) {
            error = e.what();
        }
    });
    EXPECT_EQ(error, "Transport is closing");
}

#ifdef ASYNCIO_WITH_TLS  // the TLS cases need the TLS layer
// ---- over TLS: the fallback (Python's _sendfile_fallback for SSL transports) -------------
namespace {
/// A TLS server (Sink) and a TLS client transport (Holder) on loopback; runs `body`.
template <class F>
std::string over_tls(F body) {
    const auto& certs = asyncio_test::test_certs();
    ssl::Context sctx = ssl::Context::server();
    sctx.load_cert_chain(certs.localhost_cert, certs.localhost_key);
    ssl::Context cctx = ssl::create_default_context(ssl::Purpose::SERVER_AUTH, certs.ca_cert);
    auto main = [&]() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        auto sink = std::make_shared<Sink>();
        auto sink_factory = [sink] { return sink; };
        ServerOptions sopts;
        sopts.ssl = sctx;
        Server server = co_await loop.create_server(std::move(sink_factory), "127.0.0.1", 0, sopts);
        int port = server.sockets().at(0).getsockname().port();
        ConnectionOptions copts;
        copts.ssl = cctx;
        copts.server_hostname = "localhost";
        auto [t, holder] =
            co_await loop.create_connection([] { return std::make_shared<Holder>(); }, "127.0.0.1", port, copts);
        co_await body(loop, t);
        t->close();  // TLS has no half-close: the server sees EOF after close_notify
        co_await wait_for(sink->eof, 10.0);
        server.close();
        co_return sink->data;
    };
    return run(main());
}
}  // namespace

TEST(LoopSendfile, OverTlsTheFallbackSendsEverythingEncrypted) {
    const std::string data = pattern(2 << 20);
    TempFile f(data);
    std::size_t sent = 0;
    std::string got = over_tls([&](EventLoop& loop, std::shared_ptr<Transport> t) -> Coro<void> {
        sent = co_await loop.sendfile(t, f.fd, 10, data.size() - 20);
    });
    EXPECT_EQ(sent, data.size() - 20);
    EXPECT_EQ(got, data.substr(10, data.size() - 20));
    EXPECT_EQ(f.position(), static_cast<off_t>(data.size() - 10));
}

TEST(LoopSendfile, OverTlsWithoutFallbackIsRefused) {
    TempFile f("abc");
    std::string error;
    over_tls([&](EventLoop& loop, std::shared_ptr<Transport> t) -> Coro<void> {
        try {
            co_await loop.sendfile(t, f.fd, 0, std::nullopt, false);
        } catch (const RuntimeError& e) {
            error = e.what();
        }
    });
    EXPECT_NE(error.find("native sendfile is not supported for this transport"), std::string::npos) << error;
}
#endif  // ASYNCIO_WITH_TLS
