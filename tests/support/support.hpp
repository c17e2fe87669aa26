// tests/support/support.hpp - shared helpers for the test suite.
#pragma once

#include <asyncio.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/// ASSERT for coroutine bodies (gtest's ASSERT_* use `return`, which a coroutine cannot).
#define CO_ASSERT(cond)                                  \
    do {                                                 \
        if (!(cond)) {                                   \
            ADD_FAILURE() << "assertion failed: " #cond; \
            co_return;                                   \
        }                                                \
    } while (0)

namespace asyncio_test {

/// Runs `main` with asyncio::run on a virtual-clock loop: timers fire instantly and in order,
/// loop.time() only moves when the loop would otherwise sleep (like CPython's TestLoop).
template <class T>
T run_virtual(asyncio::Coro<T> main, bool debug = false) {
    return asyncio::run(std::move(main), asyncio::RunOptions{.debug = debug, .virtual_clock = true});
}

/// Captures what the runtime logs while alive (restores the default sink after).
class LogCapture {
public:
    LogCapture() {
        asyncio::set_log_handler([this](std::string_view m) { messages.emplace_back(m); });
    }
    ~LogCapture() { asyncio::set_log_handler(nullptr); }
    bool contains(std::string_view needle) const {
        for (auto& m : messages)
            if (m.find(needle) != std::string::npos) return true;
        return false;
    }
    std::string joined() const {
        std::string s;
        for (auto& m : messages) s += m + "\n";
        return s;
    }
    std::vector<std::string> messages;
};

/// Collects every context passed to a loop's exception handler.
struct HandlerCapture {
    std::vector<asyncio::ExceptionContext> contexts;
    void install(asyncio::EventLoop& loop) {
        loop.set_exception_handler(
            [this](asyncio::EventLoop&, const asyncio::ExceptionContext& c) { contexts.push_back(c); });
    }
    bool contains(std::string_view needle) const {
        for (auto& c : contexts)
            if (c.message.find(needle) != std::string::npos) return true;
        return false;
    }
};

/// Builds a vector outside the coroutine frame: GCC 12 cannot compile a braced
/// std::vector<T>{...} (an initializer_list) inside a co_await expression ("array used as
/// initializer").
template <class F, class... Fs>
std::vector<F> list_of(Fs... fs) {
    return std::vector<F>{F(std::move(fs))...};
}

/// The number of callbacks in `loop`'s ready queue and of its live timers.
inline std::size_t ready_count(const asyncio::EventLoop& loop) {
    return asyncio::detail::LoopAccess::ready_count(loop);
}
inline std::size_t timer_count(const asyncio::EventLoop& loop) {
    return asyncio::detail::LoopAccess::timer_count(loop);
}

/// The running loop's time.
inline double now() { return asyncio::get_running_loop().time(); }

/// The exception tests throw on purpose: Boom("msg") says msg, Boom() says "boom".
struct Boom : std::runtime_error {
    using std::runtime_error::runtime_error;
    Boom() : std::runtime_error("boom") {}
};

/// A coroutine that returns `v` after sleeping `delay` seconds.
inline asyncio::Coro<int> value_after(double delay, int v) {
    co_await asyncio::sleep(delay);
    co_return v;
}

/// Lets every ready callback and task step run (Python's test _run_loop, bounded).
inline asyncio::Coro<> settle(int iterations = 6) {
    for (int i = 0; i < iterations; ++i) co_await asyncio::sleep(0);
}

/// Runs exactly one loop iteration (what is ready now), like CPython's test_utils.run_briefly:
/// a pre-stopped run_forever() runs one iteration and returns.
inline void run_briefly(asyncio::EventLoop& loop) {
    loop.stop();
    loop.run_forever();
}

/// The message of the exception held by `e` (std::exception or CancelledError); "<no
/// exception>" for null, so a failing check's message does not crash the test.
inline std::string message_of(const std::exception_ptr& e) {
    if (!e) return "<no exception>";
    try {
        std::rethrow_exception(e);
    } catch (const asyncio::CancelledError& c) {
        return c.message();
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return "<unknown>";
    }
}

/// The exception `aw` fails with (null when it succeeds).
template <class A>
asyncio::Coro<std::exception_ptr> error_of(A aw) {
    std::exception_ptr e;
    try {
        co_await std::move(aw);
    } catch (...) {
        e = std::current_exception();
    }
    co_return e;
}

/// Whether `e` holds an exception of type E (or derived).
template <class E>
bool holds(const std::exception_ptr& e) {
    if (!e) return false;
    try {
        std::rethrow_exception(e);
    } catch (const E&) {
        return true;
    } catch (...) {
        return false;
    }
}

/// The message of the CancelledError held by `e`.
inline std::string cancel_message(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const asyncio::CancelledError& c) {
        return c.message();
    } catch (...) {
        return "<not a CancelledError>";
    }
}

/// What an awaitable ended with, for checks that need more than EXPECT_THROW.
enum class Outcome { value, timeout, cancelled, other };

template <class A>
asyncio::Coro<Outcome> outcome_of(A aw) {
    try {
        co_await std::move(aw);
        co_return Outcome::value;
    } catch (const asyncio::TimeoutError&) {
        co_return Outcome::timeout;
    } catch (const asyncio::CancelledError&) {
        co_return Outcome::cancelled;
    } catch (...) {
        co_return Outcome::other;
    }
}

/// The spelling of pattern()'s bytes: byte i is `first + (i * step + i / drift + seed) % alphabet`,
/// without the `i / drift` term when drift is 0. The defaults are the streams/protocols payload.
struct PatternSpec {
    char first = 'a';
    std::size_t alphabet = 26;
    std::size_t step = 7;
    std::size_t drift = 251;
    std::size_t seed = 0;
};

/// `n` deterministic bytes in which nearby positions differ, so loss or reordering shows in a
/// comparison.
inline std::string pattern(std::size_t n, const PatternSpec& spec = {}) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t drift = spec.drift != 0 ? i / spec.drift : 0;
        s[i] = static_cast<char>(spec.first + (i * spec.step + drift + spec.seed) % spec.alphabet);
    }
    return s;
}

/// True when this machine has IPv6 loopback (::1 can be bound): network tests skip IPv6
/// cases otherwise.
inline bool ipv6_available() {
    int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

/// The error_code of a std::system_error held by `e` (empty for anything else).
inline std::error_code code_of(const std::exception_ptr& e) {
    if (!e) return {};
    try {
        std::rethrow_exception(e);
    } catch (const std::system_error& x) {
        return x.code();
    } catch (...) {
        return {};
    }
}

/// Number of open file descriptors of this process.
inline std::size_t open_fd_count() {
    std::size_t n = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd"); it != std::filesystem::directory_iterator();
         ++it)
        ++n;
    return n;
}

/// Lets the loop run until this process's open-fd count is `expected` or `seconds` pass;
/// returns the last count. For checks that connections a peer abandoned were released.
inline asyncio::Coro<std::size_t> fd_count_settles_to(std::size_t expected, double seconds = 5.0) {
    const double deadline = asyncio::get_running_loop().time() + seconds;
    std::size_t n = open_fd_count();
    while (n != expected && asyncio::get_running_loop().time() < deadline) {
        co_await asyncio::sleep(0.01);
        n = open_fd_count();
    }
    co_return n;
}

/// A fresh directory for Unix socket paths, removed with its content.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/asyncio-test-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
        path = tmpl;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return path + "/" + name; }
};

/// A stream echo server's connection callback: reads up to 64 KiB, writes it back, drains,
/// until EOF; then closes. (The echo benchmark's server loop, bench/echo/.)
inline asyncio::Coro<void> echo_until_eof(asyncio::StreamReader r, asyncio::StreamWriter w) {
    for (;;) {
        std::string data = co_await r.read(65536);
        if (data.empty()) break;
        w.write(data);
        co_await w.drain();
    }
    w.close();
}

/// `n` bytes from a stream socket by sock_recv, however many receives they take (or fewer at
/// EOF). A single sock_recv returns what one recv(2) gives: the kernel may cut a message, and
/// so do the 1-byte reads of $ASYNCIO_FAULTS (docs/reliability.md).
inline asyncio::Coro<std::string> sock_recv_exactly(asyncio::Socket& sock, std::size_t n) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    std::string out;
    while (out.size() < n) {
        std::string chunk = co_await asyncio::wait_for(loop.sock_recv(sock, n - out.size()), 10.0);
        if (chunk.empty()) break;
        out += chunk;
    }
    co_return out;
}

}  // namespace asyncio_test
