// Core runtime benchmark for asyncio-cpp.
//
// The same four workloads as bench/peers/core_asyncio.py (asyncio / uvloop) and
// bench/peers/core_asio.cpp (Boost.Asio), written against the public API only
// (/work/shared/API.md):
//   create_await  for i in range(N): await create_task(trivial(i))
//   sleep_1m      N tasks each doing sleep(1 s): create all, then gather them all;
//                 wall time and peak RSS of the process
//   pingpong      two tasks each looping `await sleep(0)` N times
//   call_soon     a callback that re-schedules itself with loop.call_soon N times
//                 (chain); N callbacks scheduled up front (batch)
//   queue_pingpong   two tasks bounce a message through two Queue<int>s, Q round trips
//   lock_contention  T tasks each looping M times { acquire; ++counter; sleep(0); release }
//   to_thread        sequential to_thread(f), L calls (latency); B concurrent to_thread(f)
//                    gathered (throughput); default executor
// Each workload runs in its own asyncio::run, as the Python peer does.
//
// Output: one JSON object per line,
//   {"impl": "asyncio-cpp", "bench": NAME, "value": NUMBER, "unit": UNIT}
// Usage: bench_core [--n N] [--sleep-n N] [--queue-n Q] [--lock-tasks T] [--lock-iters M]
//                   [--thread-n L] [--thread-batch B] [--bench GROUP,...]
//   groups: sleep_1m,create_await,pingpong,call_soon,queue_pingpong,lock_contention,to_thread

#include <asyncio.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/resource.h>

namespace {

using Clock = std::chrono::steady_clock;

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
    return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

void emit(const char* bench, double value, const char* unit) {
    std::printf("{\"impl\": \"asyncio-cpp\", \"bench\": \"%s\", \"value\": %.10g, \"unit\": \"%s\"}\n", bench, value,
                unit);
    std::fflush(stdout);
}

// --- 1. create + await trivial tasks, one after the other --------------------

asyncio::Coro<long long> trivial(long long i) { co_return i; }

asyncio::Coro<double> bench_create_await(long long n) {
    long long total = 0;
    auto t0 = Clock::now();
    for (long long i = 0; i < n; ++i) {
        asyncio::Task<long long> t = asyncio::create_task(trivial(i));
        total += co_await t;
    }
    double ns = seconds_since(t0) * 1e9 / static_cast<double>(n);
    if (total != n * (n - 1) / 2) throw std::runtime_error("create_await: wrong sum");
    co_return ns;
}

// --- 2. N concurrent tasks each sleeping 1 s ----------------------------------

asyncio::Coro<> sleeper() { co_await asyncio::sleep(1.0); }

struct SleepResult {
    double wall, peak_rss, base_rss;
};

asyncio::Coro<SleepResult> bench_sleep(long long n) {
    double base = current_rss_mb();
    auto t0 = Clock::now();
    std::vector<asyncio::Task<void>> tasks;
    tasks.reserve(static_cast<std::size_t>(n));
    for (long long i = 0; i < n; ++i) tasks.push_back(asyncio::create_task(sleeper()));
    co_await asyncio::gather(std::move(tasks));
    double wall = seconds_since(t0);
    co_return SleepResult{wall, peak_rss_mb(), base};
}

// --- 3. sleep(0) ping-pong between two tasks -----------------------------------

asyncio::Coro<> yielder(long long m) {
    for (long long i = 0; i < m; ++i) co_await asyncio::sleep(0);
}

asyncio::Coro<double> bench_pingpong(long long m) {
    auto t0 = Clock::now();
    asyncio::Task<void> a = asyncio::create_task(yielder(m));
    asyncio::Task<void> b = asyncio::create_task(yielder(m));
    co_await a;
    co_await b;
    co_return seconds_since(t0) * 1e9 / (2.0 * static_cast<double>(m));
}

// --- 4. call_soon throughput -----------------------------------------------------

// Completion is signalled with a Future, as the Python peer does (loop.create_future()).
struct ChainState {
    asyncio::EventLoop* loop = nullptr;
    long long count = 0;
    long long n = 0;
    asyncio::Future<> done;  // bound to the running loop
};

struct Chain {
    ChainState* s;
    void operator()() const {
        if (++s->count < s->n)
            (void)s->loop->call_soon(*this);
        else
            s->done.set_result();
    }
};

asyncio::Coro<double> bench_call_soon_chain(long long n) {
    ChainState s;
    s.loop = &asyncio::get_running_loop();
    s.n = n;
    auto t0 = Clock::now();
    (void)s.loop->call_soon(Chain{&s});
    co_await s.done;
    double sec = seconds_since(t0);
    if (s.count != n) throw std::runtime_error("call_soon_chain: wrong count");
    co_return static_cast<double>(n) / sec;
}

asyncio::Coro<double> bench_call_soon_batch(long long n) {
    auto& loop = asyncio::get_running_loop();
    long long count = 0;
    asyncio::Future<> done;
    auto t0 = Clock::now();
    for (long long i = 0; i < n; ++i) {
        (void)loop.call_soon([&count, &done, n] {
            if (++count == n) done.set_result();
        });
    }
    co_await done;
    double sec = seconds_since(t0);
    co_return static_cast<double>(n) / sec;
}

// --- 5. queue ping-pong: two tasks, two queues ------------------------------------

asyncio::Coro<> queue_pinger(asyncio::Queue<int>& to, asyncio::Queue<int>& from, long long n, long long& sum) {
    for (long long i = 0; i < n; ++i) {
        co_await to.put(static_cast<int>(i & 0xffff));
        sum += co_await from.get();
    }
}

asyncio::Coro<> queue_ponger(asyncio::Queue<int>& from, asyncio::Queue<int>& to, long long n) {
    for (long long i = 0; i < n; ++i) {
        int x = co_await from.get();
        co_await to.put(x);
    }
}

asyncio::Coro<double> bench_queue_pingpong(long long n) {
    asyncio::Queue<int> q1, q2;
    long long sum = 0;
    auto t0 = Clock::now();
    asyncio::Task<void> a = asyncio::create_task(queue_pinger(q1, q2, n, sum));
    asyncio::Task<void> b = asyncio::create_task(queue_ponger(q1, q2, n));
    co_await a;
    co_await b;
    double ns = seconds_since(t0) * 1e9 / (2.0 * static_cast<double>(n));
    long long expect = 0;
    for (long long i = 0; i < n; ++i) expect += i & 0xffff;
    if (sum != expect) throw std::runtime_error("queue_pingpong: wrong sum");
    co_return ns;
}

// --- 6. lock contention: T tasks x M iterations, the lock held across a sleep(0) ------

asyncio::Coro<> lock_worker(asyncio::Lock& lock, long long m, long long& counter) {
    for (long long i = 0; i < m; ++i) {
        co_await lock.acquire();
        ++counter;
        co_await asyncio::sleep(0);
        lock.release();
    }
}

asyncio::Coro<double> bench_lock_contention(long long tasks, long long m) {
    asyncio::Lock lock;
    long long counter = 0;
    auto t0 = Clock::now();
    std::vector<asyncio::Task<void>> ts;
    ts.reserve(static_cast<std::size_t>(tasks));
    for (long long i = 0; i < tasks; ++i) ts.push_back(asyncio::create_task(lock_worker(lock, m, counter)));
    co_await asyncio::gather(std::move(ts));
    double ns = seconds_since(t0) * 1e9 / static_cast<double>(tasks * m);
    if (counter != tasks * m) throw std::runtime_error("lock_contention: wrong count");
    co_return ns;
}

// --- 7. to_thread: latency (sequential) and throughput (concurrent, gathered) --------

long long trivial_fn(long long i) { return i; }

asyncio::Coro<double> bench_to_thread_latency(long long n) {
    long long total = 0;
    auto t0 = Clock::now();
    for (long long i = 0; i < n; ++i) total += co_await asyncio::to_thread(trivial_fn, i);
    double us = seconds_since(t0) * 1e6 / static_cast<double>(n);
    if (total != n * (n - 1) / 2) throw std::runtime_error("to_thread_latency: wrong sum");
    co_return us;
}

asyncio::Coro<double> bench_to_thread_throughput(long long n) {
    auto t0 = Clock::now();
    std::vector<asyncio::Future<long long>> futs;
    futs.reserve(static_cast<std::size_t>(n));
    for (long long i = 0; i < n; ++i) futs.push_back(asyncio::to_thread(trivial_fn, i));
    std::vector<long long> results = co_await asyncio::gather(std::move(futs));
    double sec = seconds_since(t0);
    long long total = 0;
    for (long long v : results) total += v;
    if (total != n * (n - 1) / 2) throw std::runtime_error("to_thread_throughput: wrong sum");
    co_return static_cast<double>(n) / sec;
}

[[noreturn]] void usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s [--n N] [--sleep-n N] [--queue-n Q] [--lock-tasks T] [--lock-iters M]\n"
                 "          [--thread-n L] [--thread-batch B] [--bench GROUP,...]\n"
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
        else
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
            SleepResult r = asyncio::run(bench_sleep(sleep_n));
            emit("sleep_1m_wall", r.wall, "s");
            emit("sleep_1m_rss", r.peak_rss, "MB");
            emit("sleep_1m_rss_base", r.base_rss, "MB");
            emit("sleep_1m_n", static_cast<double>(sleep_n), "tasks");
        }
        if (wanted("create_await")) emit("create_await_task", asyncio::run(bench_create_await(n)), "ns/task");
        if (wanted("pingpong")) emit("sleep0_pingpong", asyncio::run(bench_pingpong(n)), "ns/switch");
        if (wanted("call_soon")) {
            emit("call_soon_chain", asyncio::run(bench_call_soon_chain(n)), "callbacks/s");
            emit("call_soon_batch", asyncio::run(bench_call_soon_batch(n)), "callbacks/s");
        }
        if (wanted("queue_pingpong")) emit("queue_pingpong", asyncio::run(bench_queue_pingpong(queue_n)), "ns/msg");
        if (wanted("lock_contention"))
            emit("lock_contention", asyncio::run(bench_lock_contention(lock_tasks, lock_iters)), "ns/acquire");
        if (wanted("to_thread")) {
            emit("to_thread_latency", asyncio::run(bench_to_thread_latency(thread_n)), "us/call");
            emit("to_thread_throughput", asyncio::run(bench_to_thread_throughput(thread_batch)), "calls/s");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_core: %s\n", e.what());
        return 1;
    } catch (...) {  // asyncio::CancelledError is deliberately not a std::exception
        std::fprintf(stderr, "bench_core: unknown exception (CancelledError?)\n");
        return 1;
    }
    return 0;
}
