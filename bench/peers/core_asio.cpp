// Core runtime benchmark, Boost.Asio peer (C++20 coroutines, header-only Asio).
//
// Same four workloads as bench/core_bench.cpp (asyncio-cpp) and
// bench/peers/core_asyncio.py (asyncio / uvloop), in their nearest Asio form:
//   create_await  co_await co_spawn(ex, trivial(i), use_awaitable), N times in a row
//   sleep_1m      N co_spawned coroutines each awaiting a 1 s steady_timer; the
//                 spawner then waits for all of them (a counter + a "done" timer)
//   pingpong      two coroutines each doing co_await post(ex, use_awaitable) M times
//   call_soon     a lambda that re-posts itself N times (chain); N lambdas posted
//                 up front (batch)
// The io_context is run by one thread, like an asyncio loop. By default it is created with
// BOOST_ASIO_CONCURRENCY_HINT_UNSAFE (no internal locking at all: the fastest single-threaded
// configuration, and the nearest match to asyncio's lock-free loop); `--hint one` uses
// concurrency hint 1, `--hint default` Asio's default (multi-thread safe).
//
// Output: one JSON object per line, {"impl":"asio","bench":...,"value":...,"unit":...}.
// Build: g++ -std=c++20 -O2 core_asio.cpp -o bench_core_asio -pthread
// Usage: bench_core_asio [--n N] [--sleep-n N] [--bench sleep_1m,create_await,pingpong,call_soon]
//                        [--hint unsafe|one|default]

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/resource.h>

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {

int g_hint = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE;  // --hint

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A "VmHWM:" (peak) or "VmRSS:" (current) line of /proc/self/status, in MiB; 0 if absent.
double proc_status_mb(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    std::string prefix = std::string(key) + ":";
    while (std::getline(f, line)) {
        if (line.rfind(prefix, 0) == 0) {
            std::istringstream is(line.substr(prefix.size()));
            long kb = 0;
            is >> kb;
            return static_cast<double>(kb) / 1024.0;
        }
    }
    return 0;
}

double current_rss_mb() { return proc_status_mb("VmRSS"); }

double peak_rss_mb() {
    if (double mb = proc_status_mb("VmHWM"); mb > 0) return mb;
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

void emit(const char* bench, double value, const char* unit) {
    std::printf("{\"impl\": \"asio\", \"bench\": \"%s\", \"value\": %.10g, \"unit\": \"%s\"}\n",
                bench, value, unit);
    std::fflush(stdout);
}

void rethrow_if(const std::exception_ptr& e) {
    if (e) std::rethrow_exception(e);
}

// --- 1. create + await trivial coroutines, one after the other --------------

awaitable<long long> trivial(long long i) { co_return i; }

awaitable<void> create_await_main(long long n, double& ns_per_task) {
    auto ex = co_await asio::this_coro::executor;
    long long total = 0;
    auto t0 = Clock::now();
    for (long long i = 0; i < n; ++i) total += co_await asio::co_spawn(ex, trivial(i), use_awaitable);
    ns_per_task = seconds_since(t0) * 1e9 / static_cast<double>(n);
    if (total != n * (n - 1) / 2) throw std::runtime_error("create_await: wrong sum");
}

double bench_create_await(long long n) {
    asio::io_context ctx{g_hint};
    double ns = 0;
    asio::co_spawn(ctx, create_await_main(n, ns), rethrow_if);
    ctx.run();
    return ns;
}

// --- 2. N concurrent coroutines each waiting on a 1 s timer -------------------

awaitable<void> sleeper() {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::seconds(1));
    co_await t.async_wait(use_awaitable);
}

awaitable<void> sleep_main(long long n, double& wall, double& base) {
    auto ex = co_await asio::this_coro::executor;
    base = current_rss_mb();
    asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
    long long remaining = n;
    auto t0 = Clock::now();
    for (long long i = 0; i < n; ++i) {
        asio::co_spawn(ex, sleeper(), [&](std::exception_ptr e) {
            rethrow_if(e);
            if (--remaining == 0) all_done.cancel();
        });
    }
    boost::system::error_code ec;  // operation_aborted when all_done is cancelled
    co_await all_done.async_wait(asio::redirect_error(use_awaitable, ec));
    wall = seconds_since(t0);
    if (remaining != 0) throw std::runtime_error("sleep_1m: woke early");
}

void bench_sleep(long long n, double& wall, double& rss, double& base) {
    asio::io_context ctx{g_hint};
    asio::co_spawn(ctx, sleep_main(n, wall, base), rethrow_if);
    ctx.run();
    rss = peak_rss_mb();
}

// --- 3. post() ping-pong between two coroutines --------------------------------

awaitable<void> yielder(long long m) {
    auto ex = co_await asio::this_coro::executor;
    for (long long i = 0; i < m; ++i) co_await asio::post(ex, use_awaitable);
}

double bench_pingpong(long long m) {
    asio::io_context ctx{g_hint};
    auto t0 = Clock::now();
    asio::co_spawn(ctx, yielder(m), rethrow_if);
    asio::co_spawn(ctx, yielder(m), rethrow_if);
    ctx.run();
    return seconds_since(t0) * 1e9 / (2.0 * static_cast<double>(m));
}

// --- 4. post() throughput -----------------------------------------------------

struct Chain {
    asio::io_context* ctx;
    long long* count;
    long long n;
    void operator()() const {
        if (++*count < n) asio::post(*ctx, *this);
    }
};

double bench_call_soon_chain(long long n) {
    asio::io_context ctx{g_hint};
    long long count = 0;
    auto t0 = Clock::now();
    asio::post(ctx, Chain{&ctx, &count, n});
    ctx.run();
    double s = seconds_since(t0);
    if (count != n) throw std::runtime_error("call_soon_chain: wrong count");
    return static_cast<double>(n) / s;
}

double bench_call_soon_batch(long long n) {
    asio::io_context ctx{g_hint};
    long long count = 0;
    auto t0 = Clock::now();
    for (long long i = 0; i < n; ++i) asio::post(ctx, [&count] { ++count; });
    ctx.run();
    double s = seconds_since(t0);
    if (count != n) throw std::runtime_error("call_soon_batch: wrong count");
    return static_cast<double>(n) / s;
}

void usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s [--n N] [--sleep-n N] [--bench sleep_1m,create_await,pingpong,call_soon]"
                 " [--hint unsafe|one|default]\n",
                 argv0);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    long long n = 1'000'000, sleep_n = 0;
    std::string bench = "sleep_1m,create_await,pingpong,call_soon";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(argv[0]);
            return argv[++i];
        };
        if (a == "--n") n = std::atoll(value().c_str());
        else if (a == "--sleep-n") sleep_n = std::atoll(value().c_str());
        else if (a == "--bench") bench = value();
        else if (a == "--hint") {
            std::string h = value();
            if (h == "unsafe") g_hint = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE;
            else if (h == "one") g_hint = 1;
            else if (h == "default") g_hint = BOOST_ASIO_CONCURRENCY_HINT_DEFAULT;
            else usage(argv[0]);
        }
        else usage(argv[0]);
    }
    if (n <= 0) usage(argv[0]);
    if (sleep_n <= 0) sleep_n = n;
    auto wanted = [&](const char* g) { return ("," + bench + ",").find(std::string(",") + g + ",") != std::string::npos; };

    try {
        // sleep_1m first: its peak-RSS figure is the process-wide high-water mark.
        if (wanted("sleep_1m")) {
            double wall = 0, rss = 0, base = 0;
            bench_sleep(sleep_n, wall, rss, base);
            emit("sleep_1m_wall", wall, "s");
            emit("sleep_1m_rss", rss, "MB");
            emit("sleep_1m_rss_base", base, "MB");
            emit("sleep_1m_n", static_cast<double>(sleep_n), "tasks");
        }
        if (wanted("create_await")) emit("create_await_task", bench_create_await(n), "ns/task");
        if (wanted("pingpong")) emit("sleep0_pingpong", bench_pingpong(n), "ns/switch");
        if (wanted("call_soon")) {
            emit("call_soon_chain", bench_call_soon_chain(n), "callbacks/s");
            emit("call_soon_batch", bench_call_soon_batch(n), "callbacks/s");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_core_asio: %s\n", e.what());
        return 1;
    }
    return 0;
}
