// Asynchronous generators (the asyncio parts of Python's test_asyncgen.py / PEP 525).
#include "support.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace asyncio;
using asyncio_test::run_virtual;

namespace {

AsyncGenerator<int> count_to(int n, double delay = 0) {
    for (int i = 1; i <= n; ++i) {
        if (delay > 0) co_await sleep(delay);
        co_yield i;
    }
}

AsyncGenerator<int> fails_after(int n) {
    for (int i = 0; i < n; ++i) co_yield i;
    throw std::runtime_error("generator failed");
}

struct Flag {
    bool* set;
    ~Flag() { *set = true; }
};

AsyncGenerator<int> with_cleanup(bool* cleaned) {
    Flag f{cleaned};
    for (int i = 0;; ++i) {
        co_await sleep(0);
        co_yield i;
    }
}

AsyncGenerator<std::unique_ptr<int>> boxes(int n) {
    for (int i = 0; i < n; ++i) co_yield std::make_unique<int>(i);
}

}  // namespace

TEST(AsyncGenerator, YieldsEveryValueThenNullopt) {
    auto main = []() -> Coro<std::vector<int>> {
        std::vector<int> out;
        auto g = count_to(4);
        while (auto v = co_await g.next()) out.push_back(*v);
        EXPECT_TRUE(g.finished());
        EXPECT_FALSE((co_await g.next()).has_value());  // stays exhausted
        co_return out;
    };
    EXPECT_EQ(run_virtual(main()), (std::vector<int>{1, 2, 3, 4}));
}

TEST(AsyncGenerator, TheBodyCanAwaitAndRunsInTheConsumersTask) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        double t0 = loop.time();
        AnyTask me = current_task();
        auto g = []() -> AsyncGenerator<bool> {
            co_await sleep(1.5);
            co_yield bool(current_task());
        }();
        auto v = co_await g.next();
        EXPECT_TRUE(v.has_value() && *v);
        EXPECT_DOUBLE_EQ(loop.time() - t0, 1.5);
        EXPECT_TRUE(current_task() == me);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, NothingRunsBeforeTheFirstNext) {
    bool ran = false;
    auto make = [&]() -> AsyncGenerator<int> {
        ran = true;
        co_yield 1;
    };
    auto main = [&]() -> Coro<> {
        auto g = make();
        co_await sleep(0);
        EXPECT_FALSE(ran);
        co_await g.next();
        EXPECT_TRUE(ran);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AnExceptionInTheBodyReachesTheConsumer) {
    auto main = []() -> Coro<std::string> {
        auto g = fails_after(2);
        EXPECT_EQ(*co_await g.next(), 0);
        EXPECT_EQ(*co_await g.next(), 1);
        try {
            co_await g.next();
        } catch (const std::runtime_error& e) {
            EXPECT_TRUE(g.finished());
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_EQ(run_virtual(main()), "generator failed");
}

TEST(AsyncGenerator, AcloseDestroysTheUnfinishedBody) {
    auto main = []() -> Coro<> {
        bool cleaned = false;
        auto g = with_cleanup(&cleaned);
        co_await g.next();
        EXPECT_FALSE(cleaned);
        g.aclose();
        EXPECT_TRUE(cleaned);
        EXPECT_FALSE((co_await g.next()).has_value());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AthrowRaisesAtTheYieldAndTheGeneratorMayHandleIt) {
    auto gen = []() -> AsyncGenerator<std::string> {
        std::string caught;
        try {
            co_yield "first";
        } catch (const std::invalid_argument& e) {
            caught = e.what();  // (C++: no co_yield inside a handler)
        }
        co_yield "caught " + caught;
    };
    auto main = [&]() -> Coro<> {
        auto g = gen();
        EXPECT_EQ(*co_await g.next(), "first");
        auto v = co_await g.athrow(std::make_exception_ptr(std::invalid_argument("x")));
        EXPECT_EQ(v.value_or(""), "caught x");
        EXPECT_FALSE((co_await g.next()).has_value());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AthrowThatTheGeneratorDoesNotHandleComesBack) {
    auto main = []() -> Coro<bool> {
        auto g = count_to(5);
        co_await g.next();
        try {
            co_await g.athrow(std::make_exception_ptr(std::logic_error("stop")));
        } catch (const std::logic_error&) {
            co_return g.finished();
        }
        co_return false;
    };
    EXPECT_TRUE(run_virtual(main()));
}

TEST(AsyncGenerator, AthrowBeforeTheFirstNextIsARuntimeError) {
    auto main = []() -> Coro<> {
        auto g = count_to(1);
        EXPECT_THROW((void)g.athrow(std::make_exception_ptr(std::logic_error("x"))), RuntimeError);
        co_return;
    };
    run_virtual(main());
}

TEST(AsyncGenerator, MoveOnlyValuesAreMovedOut) {
    auto main = []() -> Coro<int> {
        int sum = 0;
        auto g = boxes(4);
        while (auto b = co_await g.next()) sum += **b;
        co_return sum;
    };
    EXPECT_EQ(run_virtual(main()), 6);
}

TEST(AsyncGenerator, CancellingTheConsumerWhileTheBodyAwaitsCancelsTheBody) {
    auto main = []() -> Coro<> {
        bool cleaned = false;
        auto consumer = create_task([](bool* c) -> Coro<> {
            auto g = []( bool* c2) -> AsyncGenerator<int> {
                Flag f{c2};
                co_await sleep(100);
                co_yield 1;
            }(c);
            co_await g.next();
        }(&cleaned));
        co_await sleep(1);
        consumer.cancel();
        try {
            co_await consumer;
        } catch (const CancelledError&) {
        }
        EXPECT_TRUE(consumer.cancelled());
        EXPECT_TRUE(cleaned);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, GeneratorsLeftOpenAreFinalizedByShutdownAsyncgensAtTheEndOfRun) {
    static bool cleaned = false;
    static AsyncGenerator<int> leftover;  // outlives the run
    cleaned = false;
    auto main = []() -> Coro<> {
        leftover = with_cleanup(&cleaned);
        co_await leftover.next();
    };
    run_virtual(main());
    EXPECT_TRUE(cleaned);          // finalized by asyncio::run's shutdown_asyncgens()
    EXPECT_TRUE(leftover.finished());
}

TEST(AsyncGenerator, ANotStartedGeneratorIsNotTrackedByTheLoop) {
    bool cleaned = false;
    auto main = [&]() -> Coro<> {
        auto g = with_cleanup(&cleaned);  // never iterated
        get_running_loop().shutdown_asyncgens();
        EXPECT_FALSE(g.finished());
        co_return;
    };
    run_virtual(main());
}

TEST(AsyncGenerator, ConcurrentNextOnTheSameGeneratorIsARuntimeError) {
    auto main = []() -> Coro<bool> {
        auto g = count_to(3, 1.0);
        auto first = create_task([](AsyncGenerator<int>* gen) -> Coro<> { co_await gen->next(); }(&g));
        co_await sleep(0.5);  // the first next() is inside the body's sleep
        bool refused = false;
        try {
            co_await g.next();
        } catch (const RuntimeError&) {
            refused = true;
        }
        co_await first;
        co_return refused;
    };
    EXPECT_TRUE(run_virtual(main()));
}
