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
//   queue_pingpong   two coroutines bounce a message through two
//                    experimental::channel<void(error_code, int)> (capacity 1), Q round trips
//   lock_contention  no async mutex in Asio 1.81: a channel<void(error_code)> of capacity 1
//                    holding one token is the lock (async_receive = acquire, try_send =
//                    release); T coroutines x M iterations of {acquire; ++counter;
//                    post (= sleep(0)); release}
//   to_thread        co_await co_spawn(pool, f-coroutine, use_awaitable) on a thread_pool of
//                    min(32, cores + 4) threads (Python's default executor size), back on the
//                    io_context: L sequential calls (latency); B calls in flight at once
//                    (throughput; completions counted on the io_context)
// The io_context is run by one thread, like an asyncio loop. By default it is created with
// BOOST_ASIO_CONCURRENCY_HINT_UNSAFE (no internal locking at all: the fastest single-threaded
// configuration, and the nearest match to asyncio's lock-free loop); `--hint one` uses
// concurrency hint 1, `--hint default` Asio's default (multi-thread safe).
//
// Output: one JSON object per line, {"impl":"asio","bench":...,"value":...,"unit":...}.
// Build: g++ -std=c++20 -O2 core_asio.cpp -o bench_core_asio -pthread
// Usage: bench_core_asio [--n N] [--sleep-n N] [--queue-n Q] [--lock-tasks T] [--lock-iters M]
//                        [--thread-n L] [--thread-batch B] [--bench GROUP,...]
//                        [--hint unsafe|one|default]
// (the io_context of to_thread always uses the default hint: a pool thread posts to it)

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

namespace {

int g_hint = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE;  // --hint

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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
    std::printf("{\"impl\": \"asio\", \"bench\": \"%s\", \"value\": %.10g, \"unit\": \"%s\"}\n", bench, value, unit);
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

// --- 5. channel ping-pong: two coroutines, two channels ---------------------------

using IntChannel = asio::experimental::channel<void(boost::system::error_code, int)>;

awaitable<void> queue_pinger(IntChannel& to, IntChannel& from, long long n, long long& sum) {
    for (long long i = 0; i < n; ++i) {
        co_await to.async_send(boost::system::error_code{}, static_cast<int>(i & 0xffff), use_awaitable);
        sum += co_await from.async_receive(use_awaitable);
    }
}

awaitable<void> queue_ponger(IntChannel& from, IntChannel& to, long long n) {
    for (long long i = 0; i < n; ++i) {
        int x = co_await from.async_receive(use_awaitable);
        co_await to.async_send(boost::system::error_code{}, x, use_awaitable);
    }
}

double bench_queue_pingpong(long long n) {
    asio::io_context ctx{g_hint};
    IntChannel q1(ctx, 1), q2(ctx, 1);
    long long sum = 0;
    auto t0 = Clock::now();
    asio::co_spawn(ctx, queue_pinger(q1, q2, n, sum), rethrow_if);
    asio::co_spawn(ctx, queue_ponger(q1, q2, n), rethrow_if);
    ctx.run();
    double ns = seconds_since(t0) * 1e9 / (2.0 * static_cast<double>(n));
    long long expect = 0;
    for (long long i = 0; i < n; ++i) expect += i & 0xffff;
    if (sum != expect) throw std::runtime_error("queue_pingpong: wrong sum");
    return ns;
}

// --- 6. lock contention: a capacity-1 channel holding one token is the lock --------

using TokenChannel = asio::experimental::channel<void(boost::system::error_code)>;

awaitable<void> lock_worker(TokenChannel& lock, long long m, long long& counter) {
    auto ex = co_await asio::this_coro::executor;
    for (long long i = 0; i < m; ++i) {
        co_await lock.async_receive(use_awaitable);  // acquire: take the token
        ++counter;
        co_await asio::post(ex, use_awaitable);  // sleep(0)
        // release: put the token back (hands it to the first waiting receiver, if any).
        if (!lock.try_send(boost::system::error_code{})) throw std::runtime_error("lock: release failed");
    }
}

double bench_lock_contention(long long tasks, long long m) {
    asio::io_context ctx{g_hint};
    TokenChannel lock(ctx, 1);
    if (!lock.try_send(boost::system::error_code{})) throw std::runtime_error("lock: init failed");
    long long counter = 0;
    auto t0 = Clock::now();
    for (long long i = 0; i < tasks; ++i) asio::co_spawn(ctx, lock_worker(lock, m, counter), rethrow_if);
    ctx.run();
    double ns = seconds_since(t0) * 1e9 / static_cast<double>(tasks * m);
    if (counter != tasks * m) throw std::runtime_error("lock_contention: wrong count");
    return ns;
}

// --- 7. to_thread: a thread_pool and back ----------------------------------------

std::size_t default_pool_size() {
    unsigned hc = std::thread::hardware_concurrency();
    return std::min<std::size_t>(32, (hc ? hc : 1) + 4);  // Python's default executor size
}

awaitable<long long> trivial_fn(long long i) { co_return i; }

awaitable<void> to_thread_latency_main(asio::thread_pool& pool, long long n, double& us) {
    long long total = 0;
    auto t0 = Clock::now();
    for (long long i = 0; i < n; ++i) total += co_await asio::co_spawn(pool, trivial_fn(i), use_awaitable);
    us = seconds_since(t0) * 1e6 / static_cast<double>(n);
    if (total != n * (n - 1) / 2) throw std::runtime_error("to_thread_latency: wrong sum");
}

double bench_to_thread_latency(long long n) {
    asio::io_context ctx;  // default hint: completions are posted from pool threads
    asio::thread_pool pool(default_pool_size());
    double us = 0;
    asio::co_spawn(ctx, to_thread_latency_main(pool, n, us), rethrow_if);
    ctx.run();
    pool.join();
    return us;
}

double bench_to_thread_throughput(long long n) {
    asio::io_context ctx;
    asio::thread_pool pool(default_pool_size());
    long long remaining = n, total = 0;
    auto t0 = Clock::now();
    double sec = 0;
    for (long long i = 0; i < n; ++i) {
        asio::co_spawn(pool, trivial_fn(i), asio::bind_executor(ctx, [&](std::exception_ptr e, long long v) {
                           rethrow_if(e);
                           total += v;
                           if (--remaining == 0) sec = seconds_since(t0);
                       }));
    }
    ctx.run();  // returns once every completion has run on it
    pool.join();
    if (remaining != 0 || total != n * (n - 1) / 2) throw std::runtime_error("to_thread_throughput: wrong sum");
    return static_cast<double>(n) / sec;
}

void usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s [--n N] [--sleep-n N] [--queue-n Q] [--lock-tasks T] [--lock-iters M]\n"
                 "          [--thread-n L] [--thread-batch B] [--bench GROUP,...] [--hint unsafe|one|default]\n"
                 "groups: sleep_1m,create_await,pingpong,call_soon,queue_pingpong,lock_contention,to_thread\n",
                 argv0);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    long long n = 1'000'000, sleep_n = 0;
    long long queue_n = 500'000, lock_tasks = 1'000, lock_iters = 1'000, thread_n = 20'000, thread_batch = 10'000;
    std::string bench = "sleep_1m,create_await,pingpong,call_soon,queue_pingpong,lock_contention,to_thread";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(argv[0]);
            return argv[++i];
        };
        if (a == "--n")
            n = std::atoll(value().c_str());
        else if (a == "--sleep-n")
            sleep_n = std::atoll(value().c_str());
        else if (a == "--queue-n")
            queue_n = std::atoll(value().c_str());
        else if (a == "--lock-tasks")
            lock_tasks = std::atoll(value().c_str());
        else if (a == "--lock-iters")
            lock_iters = std::atoll(value().c_str());
        else if (a == "--thread-n")
            thread_n = std::atoll(value().c_str());
        else if (a == "--thread-batch")
            thread_batch = std::atoll(value().c_str());
        else if (a == "--bench")
            bench = value();
        else if (a == "--hint") {
            std::string h = value();
            if (h == "unsafe")
                g_hint = BOOST_ASIO_CONCURRENCY_HINT_UNSAFE;
            else if (h == "one")
                g_hint = 1;
            else if (h == "default")
                g_hint = BOOST_ASIO_CONCURRENCY_HINT_DEFAULT;
            else
                usage(argv[0]);
        } else
            usage(argv[0]);
    }
    if (n <= 0 || queue_n <= 0 || lock_tasks <= 0 || lock_iters <= 0 || thread_n <= 0 || thread_batch <= 0)
        usage(argv[0]);
    if (sleep_n <= 0) sleep_n = n;
    auto wanted = [&](const char* g) {
        return ("," + bench + ",").find(std::string(",") + g + ",") != std::string::npos;
    };

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
        if (wanted("queue_pingpong")) emit("queue_pingpong", bench_queue_pingpong(queue_n), "ns/msg");
        if (wanted("lock_contention"))
            emit("lock_contention", bench_lock_contention(lock_tasks, lock_iters), "ns/acquire");
        if (wanted("to_thread")) {
            emit("to_thread_latency", bench_to_thread_latency(thread_n), "us/call");
            emit("to_thread_throughput", bench_to_thread_throughput(thread_batch), "calls/s");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_core_asio: %s\n", e.what());
        return 1;
    }
    return 0;
}
