// Crossing threads: ThreadPoolExecutor, loop.run_in_executor, asyncio::to_thread,
// asyncio::run_coroutine_threadsafe, shutdown_default_executor (Python's test_threads.py and
// the executor parts of test_base_events.py). Also run under ThreadSanitizer (tsan preset).
#include "support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace asyncio;

namespace {

int add(int a, int b) { return a + b; }

/// Runs a loop in a background thread for the test's duration.
class BackgroundLoop {
public:
    BackgroundLoop() {
        std::latch started(1);
        thread_ = std::thread([this, &started] {
            loop_ = std::make_unique<EventLoop>();
            loop_->call_soon([&started] { started.count_down(); });
            loop_->run_forever();
            loop_->run_until_complete(loop_->shutdown_default_executor());
            loop_->close();
        });
        started.wait();
    }
    ~BackgroundLoop() {
        loop_->call_soon_threadsafe([this] { loop_->stop(); });
        thread_.join();
    }
    EventLoop& loop() { return *loop_; }

private:
    std::unique_ptr<EventLoop> loop_;
    std::thread thread_;
};

Coro<int> slow_double(int x) {
    co_await sleep(0.001);
    co_return 2 * x;
}

Coro<int> forever() {
    co_await sleep(3600);
    co_return 0;
}

}  // namespace

// ---- ThreadPoolExecutor --------------------------------------------------------------------

TEST(ThreadPoolExecutor, RunsEverySubmittedItemOnWorkerThreads) {
    ThreadPoolExecutor ex(4);
    std::atomic<int> done{0};
    std::mutex m;
    std::set<std::thread::id> threads;
    for (int i = 0; i < 200; ++i) {
        ex.submit([&] {
            {
                std::lock_guard<std::mutex> lock(m);
                threads.insert(std::this_thread::get_id());
            }
            ++done;
        });
    }
    ex.shutdown(true);
    EXPECT_EQ(done.load(), 200);
    EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);
    EXPECT_LE(threads.size(), 4u);
}

TEST(ThreadPoolExecutor, NeverStartsMoreThanMaxWorkersThreads) {
    ThreadPoolExecutor ex(2);
    std::latch release(1);
    for (int i = 0; i < 10; ++i) ex.submit([&] { release.wait(); });
    EXPECT_LE(ex.thread_count(), 2u);
    release.count_down();
    ex.shutdown(true);
}

TEST(ThreadPoolExecutor, DefaultMaxWorkersIsPythonsMin32CoresPlus4) {
    ThreadPoolExecutor ex;
    std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    EXPECT_EQ(ex.max_workers(), std::min<std::size_t>(32, cores + 4));
}

TEST(ThreadPoolExecutor, SubmitAfterShutdownThrowsRuntimeError) {
    ThreadPoolExecutor ex(1);
    ex.shutdown(true);
    EXPECT_THROW(ex.submit([] {}), RuntimeError);
}

TEST(ThreadPoolExecutor, ShutdownWithWaitRunsWhatIsAlreadyQueued) {
    ThreadPoolExecutor ex(1);
    std::atomic<int> done{0};
    for (int i = 0; i < 50; ++i) ex.submit([&] { ++done; });
    ex.shutdown(true);
    EXPECT_EQ(done.load(), 50);
}

// ---- run_in_executor / to_thread -------------------------------------------------------------

TEST(RunInExecutor, ReturnsTheFunctionsResultOnTheLoop) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        int r = co_await loop.run_in_executor(nullptr, [] { return 6 * 7; });
        EXPECT_EQ(r, 42);
    };
    asyncio::run(main());
}

TEST(RunInExecutor, RunsTheFunctionOffTheLoopThread) {
    auto main = []() -> Coro<> {
        std::thread::id loop_thread = std::this_thread::get_id();
        std::thread::id ran_on =
            co_await get_running_loop().run_in_executor(nullptr, [] { return std::this_thread::get_id(); });
        EXPECT_NE(ran_on, loop_thread);
    };
    asyncio::run(main());
}

TEST(RunInExecutor, AnExceptionInTheFunctionIsRaisedByTheAwait) {
    auto main = []() -> Coro<std::string> {
        try {
            co_await get_running_loop().run_in_executor(nullptr, []() -> int { throw std::range_error("bad"); });
        } catch (const std::range_error& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_EQ(asyncio::run(main()), "bad");
}

TEST(RunInExecutor, AnExplicitExecutorIsUsed) {
    ThreadPoolExecutor ex(1);
    auto main = [&]() -> Coro<> {
        std::thread::id a = co_await get_running_loop().run_in_executor(&ex, [] { return std::this_thread::get_id(); });
        std::thread::id b = co_await get_running_loop().run_in_executor(&ex, [] { return std::this_thread::get_id(); });
        EXPECT_EQ(a, b);  // one worker thread
    };
    asyncio::run(main());
    ex.shutdown(true);
}

TEST(RunInExecutor, VoidFunctionsGiveAVoidFuture) {
    auto main = []() -> Coro<int> {
        std::atomic<int> x{0};
        co_await get_running_loop().run_in_executor(nullptr, [&] { x = 5; });
        co_return x.load();
    };
    EXPECT_EQ(asyncio::run(main()), 5);
}

TEST(RunInExecutor, CancellingTheFutureBeforeTheWorkStartsSkipsTheWork) {
    ThreadPoolExecutor ex(1);
    std::latch gate(1);
    std::atomic<bool> second_ran{false};
    auto main = [&]() -> Coro<> {
        auto& loop = get_running_loop();
        auto blocker = loop.run_in_executor(&ex, [&] { gate.wait(); });
        auto second = loop.run_in_executor(&ex, [&] { second_ran = true; });
        EXPECT_TRUE(second.cancel());
        // As in Python, the cancellation reaches the executor from a done callback, on the
        // next loop iteration; only then may the worker get to the second item.
        co_await sleep(0);
        gate.count_down();
        co_await blocker;
        EXPECT_TRUE(second.cancelled());
    };
    asyncio::run(main());
    ex.shutdown(true);
    EXPECT_FALSE(second_ran.load());
}

TEST(RunInExecutor, ManyConcurrentCallsAllComplete) {
    auto main = []() -> Coro<long> {
        std::vector<Future<int>> fs;
        for (int i = 0; i < 100; ++i) fs.push_back(get_running_loop().run_in_executor(nullptr, [i] { return i; }));
        auto results = co_await gather(std::move(fs));
        long sum = 0;
        for (int r : results) sum += r;
        co_return sum;
    };
    EXPECT_EQ(asyncio::run(main()), 4950);
}

TEST(ToThread, PassesItsArgumentsAndReturnsTheResult) {
    auto main = []() -> Coro<int> { co_return co_await to_thread(add, 40, 2); };
    EXPECT_EQ(asyncio::run(main()), 42);
}

TEST(ToThread, CopiesArgumentsSoTheCallerMayChangeItsOwn) {
    auto main = []() -> Coro<std::string> {
        std::string s = "abc";
        auto f = to_thread([](std::string x) { return x + "!"; }, s);
        s = "changed";
        co_return co_await f;
    };
    EXPECT_EQ(asyncio::run(main()), "abc!");
}

TEST(ToThread, OutsideARunningLoopThrowsRuntimeError) { EXPECT_THROW(to_thread(add, 1, 2), RuntimeError); }

TEST(DefaultExecutor, RunWaitsForPendingWorkBeforeReturning) {
    std::atomic<bool> finished{false};
    auto main = [&]() -> Coro<> {
        // Not awaited: asyncio::run's shutdown_default_executor() must still wait for it.
        (void)get_running_loop().run_in_executor(nullptr, [&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            finished = true;
        });
        co_return;
    };
    asyncio::run(main());
    EXPECT_TRUE(finished.load());
}

TEST(DefaultExecutor, AfterShutdownRunInExecutorThrowsRuntimeError) {
    auto main = []() -> Coro<std::string> {
        auto& loop = get_running_loop();
        co_await loop.run_in_executor(nullptr, [] {});
        co_await loop.shutdown_default_executor();
        try {
            (void)loop.run_in_executor(nullptr, [] {});
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no error";
    };
    EXPECT_EQ(asyncio::run(main()), "Executor shutdown has been called");
}

TEST(DefaultExecutor, ShutdownWithoutAnExecutorIsANoOp) {
    auto main = []() -> Coro<> { co_await get_running_loop().shutdown_default_executor(); };
    asyncio::run(main());
}

TEST(DefaultExecutor, SetDefaultExecutorReplacesIt) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        loop.set_default_executor(std::make_unique<ThreadPoolExecutor>(1));
        auto a = co_await loop.run_in_executor(nullptr, [] { return std::this_thread::get_id(); });
        auto b = co_await loop.run_in_executor(nullptr, [] { return std::this_thread::get_id(); });
        EXPECT_EQ(a, b);
    };
    asyncio::run(main());
}

// ---- run_coroutine_threadsafe ----------------------------------------------------------------

TEST(RunCoroutineThreadsafe, DeliversTheResultToAStdFuture) {
    BackgroundLoop bg;
    auto f = run_coroutine_threadsafe(slow_double(21), bg.loop());
    EXPECT_EQ(f.get(), 42);
}

TEST(RunCoroutineThreadsafe, TheCoroutineRunsAsATaskOnTheLoopThread) {
    BackgroundLoop bg;
    auto probe = []() -> Coro<bool> { co_return bool(current_task()); };
    EXPECT_TRUE(run_coroutine_threadsafe(probe(), bg.loop()).get());
}

TEST(RunCoroutineThreadsafe, AnExceptionIsRethrownByGet) {
    BackgroundLoop bg;
    auto boom = []() -> Coro<int> {
        co_await sleep(0);
        throw std::out_of_range("nope");
    };
    auto f = run_coroutine_threadsafe(boom(), bg.loop());
    EXPECT_THROW(f.get(), std::out_of_range);
}

TEST(RunCoroutineThreadsafe, CancelCancelsTheTaskAndGetThrowsCancelledError) {
    BackgroundLoop bg;
    auto f = run_coroutine_threadsafe(forever(), bg.loop());
    EXPECT_TRUE(f.cancel());
    EXPECT_THROW(f.get(), CancelledError);
}

TEST(RunCoroutineThreadsafe, VoidCoroutinesWork) {
    BackgroundLoop bg;
    std::atomic<int> hits{0};
    auto hit = [](std::atomic<int>* h) -> Coro<> {
        ++*h;
        co_return;
    };
    run_coroutine_threadsafe(hit(&hits), bg.loop()).get();
    EXPECT_EQ(hits.load(), 1);
}

TEST(RunCoroutineThreadsafe, ManyThreadsSubmitAtOnce) {
    BackgroundLoop bg;
    std::vector<std::thread> threads;
    std::atomic<int> sum{0};
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) sum += run_coroutine_threadsafe(slow_double(t), bg.loop()).get();
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(sum.load(), 50 * 2 * (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7));
}

TEST(RunCoroutineThreadsafe, ToAClosedLoopThrowsRuntimeError) {
    EventLoop loop;
    loop.close();
    EXPECT_THROW(run_coroutine_threadsafe(slow_double(1), loop), RuntimeError);
}

TEST(RunCoroutineThreadsafe, TheResultIsAPlainStdFuture) {
    BackgroundLoop bg;
    std::future<int> f = run_coroutine_threadsafe(slow_double(4), bg.loop());
    EXPECT_EQ(f.get(), 8);
    auto nothing = []() -> Coro<> { co_return; };
    std::future<void> g = run_coroutine_threadsafe(nothing(), bg.loop());
    g.get();
}
