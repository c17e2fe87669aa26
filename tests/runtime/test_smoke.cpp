#include "support.hpp"

#include <gtest/gtest.h>

using namespace asyncio;
using asyncio_test::run_virtual;

namespace {
Coro<int> add(int a, int b) {
    co_await sleep(0);
    co_return a + b;
}
}  // namespace

TEST(Smoke, RunReturnsValue) { EXPECT_EQ(run_virtual(add(1, 2)), 3); }

TEST(Smoke, TaskAndSleepOnVirtualClock) {
    auto main = []() -> Coro<double> {
        auto& loop = get_running_loop();
        double t0 = loop.time();
        auto t = create_task(add(2, 3));
        co_await sleep(10);
        EXPECT_TRUE(t.done());
        EXPECT_EQ(t.result(), 5);
        co_return loop.time() - t0;
    };
    EXPECT_DOUBLE_EQ(run_virtual(main()), 10.0);
}

TEST(Smoke, CancelSleepingTask) {
    auto main = []() -> Coro<> {
        auto t = create_task([]() -> Coro<> { co_await sleep(100); }());
        co_await sleep(1);
        EXPECT_TRUE(t.cancel("stop"));
        try {
            co_await t;
            ADD_FAILURE() << "expected CancelledError";
        } catch (const CancelledError& e) {
            EXPECT_EQ(e.message(), "stop");
        }
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

TEST(Smoke, GatherTuple) {
    auto main = []() -> Coro<> {
        auto [a, b] = co_await gather(add(1, 1), add(2, 2));
        EXPECT_EQ(a, 2);
        EXPECT_EQ(b, 4);
        std::vector<Coro<int>> v;
        for (int i = 0; i < 5; ++i) v.push_back(add(i, i));
        auto r = co_await gather(std::move(v));
        EXPECT_EQ(r, (std::vector<int>{0, 2, 4, 6, 8}));
    };
    run_virtual(main());
}

TEST(Smoke, TimeoutExpires) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        double t0 = loop.time();
        EXPECT_THROW(co_await timeout(1.5, sleep(10)), TimeoutError);
        EXPECT_DOUBLE_EQ(loop.time() - t0, 1.5);
        EXPECT_EQ(current_task().cancelling(), 0);
        int v = co_await wait_for(add(1, 2), 5.0);
        EXPECT_EQ(v, 3);
    };
    run_virtual(main());
}

TEST(Smoke, TaskGroupCollectsErrors) {
    auto main = []() -> Coro<> {
        try {
            co_await task_group([](TaskGroup& tg) -> Coro<> {
                tg.create_task([]() -> Coro<> {
                    co_await sleep(1);
                    throw std::runtime_error("boom");
                }());
                tg.create_task([]() -> Coro<> { co_await sleep(100); }());
                co_await sleep(50);
            });
            ADD_FAILURE() << "expected ExceptionGroup";
        } catch (const ExceptionGroup& eg) {
            EXPECT_EQ(eg.exceptions().size(), 1u);
        }
        EXPECT_EQ(get_running_loop().time() > 0, true);
    };
    run_virtual(main());
}

TEST(Smoke, DeepChainDoesNotOverflow) {
    struct Deep {
        static Coro<int> f(int n) {
            if (n == 0) co_return 0;
            co_return 1 + co_await f(n - 1);
        }
    };
    EXPECT_EQ(run_virtual(Deep::f(1000000)), 1000000);
}
