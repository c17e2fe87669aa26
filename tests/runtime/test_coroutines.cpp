// Coro<T>: laziness, inline awaiting, deep chains, frames made on other threads, and the
// frame pool's steady state.
#include "support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace asyncio;
using asyncio_test::run_virtual;

namespace {

Coro<int> depth(int n) {
    if (n == 0) co_return 0;
    co_return 1 + co_await depth(n - 1);
}

Coro<int> count_calls(int* calls) {
    ++*calls;
    co_return *calls;
}

Coro<std::unique_ptr<int>> make_unique_value(int v) {
    co_await sleep(0);
    co_return std::make_unique<int>(v);
}

Coro<> throws_after_yield() {
    co_await sleep(0);
    throw std::logic_error("from deep inside");
}

Coro<> rethrows_through_three_levels() {
    co_await []() -> Coro<> { co_await throws_after_yield(); }();
}

}  // namespace

TEST(Coro, CallingACoroutineFunctionRunsNothing) {
    int calls = 0;
    {
        auto c = count_calls(&calls);
        EXPECT_FALSE(c.done());
    }
    EXPECT_EQ(calls, 0);
}

TEST(Coro, AwaitingRunsItInlineInTheSameTask) {
    auto main = []() -> Coro<> {
        AnyTask outer = current_task();
        auto inner = []() -> Coro<AnyTask> { co_return current_task(); };
        AnyTask seen = co_await inner();
        EXPECT_TRUE(seen == outer);  // no new task for an awaited coroutine
        EXPECT_EQ(all_tasks().size(), 1u);
    };
    run_virtual(main());
}

TEST(Coro, AMillionDeepChainOfAwaitsDoesNotOverflowTheStack) {
    // Symmetric transfer: each co_await and each completion is a tail call.
    EXPECT_EQ(run_virtual(depth(1'000'000)), 1'000'000);
}

TEST(Coro, ExceptionsCrossEveryLevelOfAwait) {
    auto main = []() -> Coro<std::string> {
        try {
            co_await rethrows_through_three_levels();
        } catch (const std::logic_error& e) {
            co_return e.what();
        }
        co_return "nothing thrown";
    };
    EXPECT_EQ(run_virtual(main()), "from deep inside");
}

TEST(Coro, MoveOnlyResultsAreMovedOut) {
    auto main = []() -> Coro<int> {
        std::unique_ptr<int> p = co_await make_unique_value(7);
        Task<std::unique_ptr<int>> t = create_task(make_unique_value(8));
        std::unique_ptr<int> q = co_await std::move(t);
        co_return *p + *q;
    };
    EXPECT_EQ(run_virtual(main()), 15);
}

TEST(Coro, AwaitingTheSameCoroTwiceIsARuntimeError) {
    auto main = []() -> Coro<std::string> {
        int calls = 0;
        auto c = count_calls(&calls);
        co_await c;
        try {
            co_await c;
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no error";
    };
    EXPECT_NE(run_virtual(main()).find("cannot reuse already awaited coroutine"), std::string::npos);
}

TEST(Coro, AwaitingAnEmptyCoroIsARuntimeError) {
    auto main = []() -> Coro<bool> {
        Coro<int> empty;
        try {
            co_await std::move(empty);
        } catch (const RuntimeError&) {
            co_return true;
        }
        co_return false;
    };
    EXPECT_TRUE(run_virtual(main()));
}

TEST(Coro, MovedFromCoroIsEmptyAndTheMoveTargetRuns) {
    int calls = 0;
    auto a = count_calls(&calls);
    Coro<int> b = std::move(a);
    EXPECT_FALSE(bool(a));
    EXPECT_TRUE(bool(b));
    EXPECT_EQ(run_virtual(std::move(b)), 1);
}

TEST(Coro, ACoroutineCreatedOnAThreadWithoutALoopRunsOnTheLoopThread) {
    // Its frame comes from the creating thread's pool and is freed on the loop's thread.
    std::vector<Coro<int>> made;
    std::thread maker([&] {
        for (int i = 0; i < 1000; ++i) made.push_back(depth(i % 7));
    });
    maker.join();
    auto main = [](std::vector<Coro<int>> coros) -> Coro<int> {
        auto results = co_await gather(std::move(coros));
        int sum = 0;
        for (int r : results) sum += r;
        co_return sum;
    };
    int expected = 0;
    for (int i = 0; i < 1000; ++i) expected += i % 7;
    EXPECT_EQ(run_virtual(main(std::move(made))), expected);
}

TEST(Coro, FramesOfFinishedTasksAreRecycledSoASteadyStateAllocatesNoSlab) {
#if ASYNCIO_FRAME_POOL_ENABLED
    auto round = []() -> Coro<> {
        for (int i = 0; i < 10'000; ++i) co_await create_task(depth(3));
    };
    run_virtual(round());  // warm-up: the pool grows to what this workload needs
    const std::size_t slabs = detail::frame_pool_slab_count();
    run_virtual(round());
    run_virtual(round());
    EXPECT_EQ(detail::frame_pool_slab_count(), slabs);
#else
    GTEST_SKIP() << "the frame pool is bypassed under sanitizers";
#endif
}

// ---- create_task() of awaitables that are not coroutines (Python's ensure_future) ----------

TEST(CreateTaskOfAwaitable, ASleepBecomesATask) {
    auto main = []() -> Coro<double> {
        auto& loop = get_running_loop();
        double t0 = loop.time();
        Task<void> t = create_task(sleep(2.5));
        co_await t;
        co_return loop.time() - t0;
    };
    EXPECT_DOUBLE_EQ(run_virtual(main()), 2.5);
}

TEST(CreateTaskOfAwaitable, AQueueGetBecomesATaskThatTheNextPutCompletes) {
    auto main = []() -> Coro<int> {
        Queue<int> q;
        Task<int> getter = create_task(q.get(), TaskOptions{"getter", false});
        co_await sleep(0);
        EXPECT_FALSE(getter.done());
        EXPECT_EQ(getter.get_name(), "getter");
        q.put_nowait(41);
        co_return co_await getter + 1;
    };
    EXPECT_EQ(run_virtual(main()), 42);
}

TEST(CreateTaskOfAwaitable, WorksOnTheLoopAndInATaskGroup) {
    auto main = []() -> Coro<int> {
        Queue<int> q;
        Task<int> a, b;
        co_await task_group([&](TaskGroup& tg) -> Coro<> {
            a = tg.create_task(q.get());
            b = get_running_loop().create_task(q.get(), "b");
            co_await sleep(0);
            q.put_nowait(1);
            q.put_nowait(2);
        });
        co_return a.result() * 10 + co_await b;
    };
    EXPECT_EQ(run_virtual(main()), 12);  // FIFO: the first getter gets the first item
}

TEST(CreateTaskOfAwaitable, CancellingTheTaskCancelsTheWaitInside) {
    auto main = []() -> Coro<bool> {
        Queue<int> q;
        Task<int> getter = create_task(q.get());
        co_await sleep(1);
        getter.cancel();
        try {
            co_await getter;
        } catch (const CancelledError&) {
        }
        q.put_nowait(7);  // nobody takes it: the cancelled get() left the queue
        co_return getter.cancelled() && q.qsize() == 1;
    };
    EXPECT_TRUE(run_virtual(main()));
}
