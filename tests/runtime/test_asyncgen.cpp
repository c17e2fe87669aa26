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
            auto g = [](bool* c2) -> AsyncGenerator<int> {
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
    EXPECT_TRUE(cleaned);  // finalized by asyncio::run's shutdown_asyncgens()
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

// ---------------------------------------------------------------------------------------------
// Ported from CPython's test_asyncgen.py (AsyncGenAsyncioTest and friends) and PEP 525.
// ---------------------------------------------------------------------------------------------

namespace {

struct Counter {
    int* n;
    ~Counter() { ++*n; }
};

AsyncGenerator<int> counted_forever(int* destroyed) {
    Counter c{destroyed};
    for (int i = 0;; ++i) co_yield i;
}

AsyncGenerator<int> holds(std::shared_ptr<int> p, bool* ran) {
    *ran = true;
    co_yield *p;
}

AsyncGenerator<int> empty_gen() { co_return; }

AsyncGenerator<int> raises_first() {
    throw std::invalid_argument("before any yield");
    co_yield 0;  // makes it a generator
}

struct GenError : std::runtime_error {
    int code;
    explicit GenError(int c) : std::runtime_error("gen error"), code(c) {}
};

Coro<int> twice(int x) {
    co_await sleep(0.25);
    co_return 2 * x;
}

}  // namespace

TEST(AsyncGenerator, AnExhaustedGeneratorKeepsReturningNulloptOnEveryLaterNext) {
    auto main = []() -> Coro<int> {
        auto g = count_to(1);
        EXPECT_EQ(*co_await g.next(), 1);
        int nullopts = 0;
        for (int i = 0; i < 5; ++i)
            if (!(co_await g.next()).has_value()) ++nullopts;
        co_return nullopts;
    };
    EXPECT_EQ(run_virtual(main()), 5);
}

TEST(AsyncGenerator, AGeneratorThatNeverYieldsEndsAtTheFirstNext) {
    auto main = []() -> Coro<> {
        auto g = empty_gen();
        EXPECT_FALSE(g.finished());
        EXPECT_FALSE((co_await g.next()).has_value());
        EXPECT_TRUE(g.finished());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AnExceptionBeforeTheFirstYieldReachesTheFirstNext) {
    auto main = []() -> Coro<std::string> {
        auto g = raises_first();
        try {
            co_await g.next();
        } catch (const std::invalid_argument& e) {
            EXPECT_TRUE(g.finished());
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_EQ(run_virtual(main()), "before any yield");
}

TEST(AsyncGenerator, AnExceptionAfterAnAwaitBetweenYieldsReachesNextAtTheRightTime) {
    auto main = []() -> Coro<> {
        auto g = []() -> AsyncGenerator<int> {
            co_yield 1;
            co_await sleep(2);
            throw GenError(42);
        }();
        double t0 = asyncio_test::now();
        EXPECT_EQ(*co_await g.next(), 1);
        int code = 0;
        try {
            co_await g.next();
        } catch (const GenError& e) {
            code = e.code;  // the exact type and its data survive
        }
        EXPECT_EQ(code, 42);
        EXPECT_DOUBLE_EQ(asyncio_test::now() - t0, 2.0);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AfterTheBodyRaisedLaterNextReturnsNullopt) {
    auto main = []() -> Coro<> {
        auto g = fails_after(0);
        EXPECT_THROW(co_await g.next(), std::runtime_error);
        EXPECT_FALSE((co_await g.next()).has_value());
        EXPECT_FALSE((co_await g.next()).has_value());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, ValuesArriveAtTheTimesOfTheBodysSleeps) {
    auto main = []() -> Coro<std::vector<double>> {
        std::vector<double> times;
        double t0 = asyncio_test::now();
        auto g = count_to(3, 0.5);
        while (co_await g.next()) times.push_back(asyncio_test::now() - t0);
        co_return times;
    };
    auto times = run_virtual(main());
    ASSERT_EQ(times.size(), 3u);
    EXPECT_DOUBLE_EQ(times[0], 0.5);
    EXPECT_DOUBLE_EQ(times[1], 1.0);
    EXPECT_DOUBLE_EQ(times[2], 1.5);
}

TEST(AsyncGenerator, TheBodyRunsOnlyUpToTheYieldUntilTheNextNext) {
    int progress = 0;
    auto gen = [&]() -> AsyncGenerator<int> {
        progress = 1;
        co_yield 1;
        progress = 2;
        co_yield 2;
        progress = 3;
    };
    auto main = [&]() -> Coro<> {
        auto g = gen();
        co_await g.next();
        co_await asyncio_test::settle();
        EXPECT_EQ(progress, 1);
        co_await g.next();
        EXPECT_EQ(progress, 2);
        EXPECT_FALSE((co_await g.next()).has_value());
        EXPECT_EQ(progress, 3);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, TheBodyCanAwaitAFutureResolvedByAnotherTask) {
    auto main = []() -> Coro<> {
        Future<int> fut;
        auto g = [](Future<int> f) -> AsyncGenerator<int> {
            int v = co_await f;
            co_yield v + 1;
        }(fut);
        auto setter = create_task([](Future<int> f) -> Coro<> {
            co_await sleep(3);
            f.set_result(41);
        }(fut));
        double t0 = asyncio_test::now();
        auto v = co_await g.next();
        EXPECT_EQ(v.value_or(-1), 42);
        EXPECT_DOUBLE_EQ(asyncio_test::now() - t0, 3.0);
        co_await setter;
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AFailedFutureAwaitedByTheBodyRaisesAtNext) {
    auto main = []() -> Coro<> {
        Future<int> fut;
        auto g = [](Future<int> f) -> AsyncGenerator<int> { co_yield co_await f; }(fut);
        fut.set_exception(std::make_exception_ptr(GenError(7)));
        int code = 0;
        try {
            co_await g.next();
        } catch (const GenError& e) {
            code = e.code;
        }
        EXPECT_EQ(code, 7);
        EXPECT_TRUE(g.finished());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, TheBodyCanAwaitOtherCoroutinesBetweenYields) {
    auto main = []() -> Coro<std::vector<int>> {
        auto g = []() -> AsyncGenerator<int> {
            for (int i = 1; i <= 3; ++i) co_yield co_await twice(i);
        }();
        std::vector<int> out;
        double t0 = asyncio_test::now();
        while (auto v = co_await g.next()) out.push_back(*v);
        EXPECT_DOUBLE_EQ(asyncio_test::now() - t0, 0.75);
        co_return out;
    };
    EXPECT_EQ(run_virtual(main()), (std::vector<int>{2, 4, 6}));
}

TEST(AsyncGenerator, AGeneratorCanConsumeAnotherGenerator) {
    auto main = []() -> Coro<std::vector<int>> {
        auto outer = []() -> AsyncGenerator<int> {
            auto inner = count_to(3, 0.1);
            while (auto v = co_await inner.next()) co_yield *v * 10;
        }();
        std::vector<int> out;
        while (auto v = co_await outer.next()) out.push_back(*v);
        co_return out;
    };
    EXPECT_EQ(run_virtual(main()), (std::vector<int>{10, 20, 30}));
}

TEST(AsyncGenerator, AGeneratorOfGeneratorsYieldsIndependentGenerators) {
    auto main = []() -> Coro<std::vector<int>> {
        auto gens = []() -> AsyncGenerator<AsyncGenerator<int>> {
            for (int n = 1; n <= 3; ++n) co_yield count_to(n);
        }();
        std::vector<int> out;
        while (auto g = co_await gens.next()) {
            int sum = 0;
            while (auto v = co_await g->next()) sum += *v;
            out.push_back(sum);
        }
        co_return out;
    };
    EXPECT_EQ(run_virtual(main()), (std::vector<int>{1, 3, 6}));
}

TEST(AsyncGenerator, AnInnerGeneratorLeftOpenByTheOuterIsDestroyedWithIt) {
    auto main = []() -> Coro<> {
        int destroyed = 0;
        auto outer = [](int* d) -> AsyncGenerator<int> {
            auto inner = counted_forever(d);
            while (auto v = co_await inner.next()) co_yield *v;
        }(&destroyed);
        EXPECT_EQ(*co_await outer.next(), 0);
        EXPECT_EQ(*co_await outer.next(), 1);
        EXPECT_EQ(destroyed, 0);
        outer.aclose();
        EXPECT_EQ(destroyed, 1);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, TheBodyRunsInWhicheverTaskCallsNext) {
    auto main = []() -> Coro<> {
        auto g = []() -> AsyncGenerator<AnyTask> {
            for (;;) co_yield current_task();
        }();
        auto step = [](AsyncGenerator<AnyTask>* gen) -> Coro<bool> {
            auto t = co_await gen->next();
            co_return t.has_value() && *t == current_task();
        };
        EXPECT_TRUE(co_await create_task(step(&g)));
        EXPECT_TRUE(co_await step(&g));
        EXPECT_TRUE(co_await create_task(step(&g)));
    };
    run_virtual(main());
}

// --- athrow ---

TEST(AsyncGenerator, AthrowCaughtByTheBodyLetsItContinueWithTheRemainingValues) {
    auto main = []() -> Coro<std::vector<int>> {
        auto g = []() -> AsyncGenerator<int> {
            for (int i = 0; i < 4; ++i) {
                try {
                    co_yield i;
                } catch (const std::logic_error&) {
                    i += 10;  // skip ahead, keep going
                }
            }
        }();
        std::vector<int> out;
        out.push_back(*co_await g.next());  // 0
        auto v = co_await g.athrow(std::make_exception_ptr(std::logic_error("skip")));
        EXPECT_FALSE(v.has_value());  // i became 10 -> loop ends
        EXPECT_TRUE(g.finished());
        co_return out;
    };
    EXPECT_EQ(run_virtual(main()), (std::vector<int>{0}));
}

TEST(AsyncGenerator, AthrowHandledThenYieldingAgainReturnsThatValueAndIterationGoesOn) {
    auto main = []() -> Coro<std::vector<int>> {
        auto g = []() -> AsyncGenerator<int> {
            for (int i = 0; i < 3; ++i) {
                bool thrown = false;
                try {
                    co_yield i;
                } catch (const std::logic_error&) {
                    thrown = true;
                }
                if (thrown) co_yield -1;
            }
        }();
        std::vector<int> out;
        out.push_back(*co_await g.next());  // 0
        auto thrown = co_await g.athrow(std::make_exception_ptr(std::logic_error("x")));
        out.push_back(thrown.value_or(99));
        while (auto v = co_await g.next()) out.push_back(*v);
        co_return out;
    };
    EXPECT_EQ(run_virtual(main()), (std::vector<int>{0, -1, 1, 2}));
}

TEST(AsyncGenerator, AthrowHandlerThatAwaitsBeforeYieldingRunsOnTheVirtualClock) {
    auto main = []() -> Coro<> {
        auto g = []() -> AsyncGenerator<std::string> {
            bool thrown = false;
            try {
                co_yield "a";
            } catch (const std::logic_error&) {
                thrown = true;
            }
            if (thrown) {
                co_await sleep(5);
                co_yield "recovered";
            }
        }();
        co_await g.next();
        double t0 = asyncio_test::now();
        auto v = co_await g.athrow(std::make_exception_ptr(std::logic_error("x")));
        EXPECT_EQ(v.value_or(""), "recovered");
        EXPECT_DOUBLE_EQ(asyncio_test::now() - t0, 5.0);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AthrowHandlerRaisingAnotherExceptionPropagatesThatOne) {
    auto main = []() -> Coro<int> {
        auto g = []() -> AsyncGenerator<int> {
            try {
                co_yield 1;
            } catch (const std::logic_error&) {
                throw GenError(5);
            }
        }();
        co_await g.next();
        try {
            co_await g.athrow(std::make_exception_ptr(std::logic_error("x")));
        } catch (const GenError& e) {
            EXPECT_TRUE(g.finished());
            co_return e.code;
        }
        co_return 0;
    };
    EXPECT_EQ(run_virtual(main()), 5);
}

TEST(AsyncGenerator, AthrowUnwindsTheBodyRunningItsDestructors) {
    auto main = []() -> Coro<> {
        int destroyed = 0;
        auto g = counted_forever(&destroyed);
        co_await g.next();
        EXPECT_THROW(co_await g.athrow(std::make_exception_ptr(GenError(1))), GenError);
        EXPECT_EQ(destroyed, 1);
        EXPECT_FALSE((co_await g.next()).has_value());
        EXPECT_EQ(destroyed, 1);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AthrowOnAnExhaustedGeneratorIsARuntimeError) {
    auto main = []() -> Coro<> {
        auto g = count_to(1);
        while (co_await g.next()) {
        }
        EXPECT_THROW((void)g.athrow(std::make_exception_ptr(std::logic_error("x"))), RuntimeError);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AthrowOnAClosedGeneratorIsARuntimeError) {
    auto main = []() -> Coro<> {
        int destroyed = 0;
        auto g = counted_forever(&destroyed);
        co_await g.next();
        g.aclose();
        EXPECT_THROW((void)g.athrow(std::make_exception_ptr(std::logic_error("x"))), RuntimeError);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AthrowBeforeTheFirstNextLeavesTheGeneratorUsable) {
    auto main = []() -> Coro<std::vector<int>> {
        auto g = count_to(2);
        EXPECT_THROW((void)g.athrow(std::make_exception_ptr(std::logic_error("x"))), RuntimeError);
        std::vector<int> out;
        while (auto v = co_await g.next()) out.push_back(*v);
        co_return out;
    };
    EXPECT_EQ(run_virtual(main()), (std::vector<int>{1, 2}));
}

TEST(AsyncGenerator, AthrowWhileAnotherTaskIsInsideNextIsARuntimeError) {
    auto main = []() -> Coro<> {
        auto g = count_to(3, 1.0);
        auto first = create_task([](AsyncGenerator<int>* gen) -> Coro<int> { co_return *co_await gen->next(); }(&g));
        co_await sleep(0.5);
        std::string msg;
        try {
            co_await g.athrow(std::make_exception_ptr(std::logic_error("x")));
        } catch (const RuntimeError& e) {
            msg = e.what();
        }
        EXPECT_NE(msg.find("already running"), std::string::npos) << msg;
        EXPECT_EQ(co_await first, 1);  // the running step was not disturbed
        EXPECT_EQ(*co_await g.next(), 2);
    };
    run_virtual(main());
}

// --- aclose / finalization ---

TEST(AsyncGenerator, AcloseOnANotStartedGeneratorReleasesItsArgumentsWithoutRunningTheBody) {
    auto main = []() -> Coro<> {
        auto sp = std::make_shared<int>(5);
        bool ran = false;
        auto g = holds(sp, &ran);
        EXPECT_EQ(sp.use_count(), 2);  // the frame holds a copy
        g.aclose();
        EXPECT_EQ(sp.use_count(), 1);
        EXPECT_FALSE(ran);
        EXPECT_TRUE(g.finished());
        EXPECT_FALSE((co_await g.next()).has_value());
        EXPECT_FALSE(ran);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AcloseOnAnExhaustedGeneratorIsANoOp) {
    auto main = []() -> Coro<> {
        auto g = count_to(2);
        while (co_await g.next()) {
        }
        g.aclose();
        EXPECT_TRUE(g.finished());
        EXPECT_FALSE((co_await g.next()).has_value());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AcloseIsIdempotentAndDestroysTheBodyOnce) {
    auto main = []() -> Coro<int> {
        int destroyed = 0;
        {
            auto g = counted_forever(&destroyed);
            co_await g.next();
            g.aclose();
            g.aclose();
            g.aclose();
            EXPECT_EQ(destroyed, 1);
        }  // and the destructor does not finalize it again
        co_return destroyed;
    };
    EXPECT_EQ(run_virtual(main()), 1);
}

TEST(AsyncGenerator, AcloseAfterTheBodyRaisedIsANoOp) {
    auto main = []() -> Coro<> {
        auto g = fails_after(1);
        co_await g.next();
        EXPECT_THROW(co_await g.next(), std::runtime_error);
        g.aclose();
        EXPECT_TRUE(g.finished());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AcloseDestroysEveryLiveScopeOfTheSuspendedBody) {
    auto main = []() -> Coro<> {
        int destroyed = 0;
        auto g = [](int* d) -> AsyncGenerator<int> {
            Counter outer{d};
            for (int i = 0;; ++i) {
                Counter inner{d};
                co_yield i;
            }
        }(&destroyed);
        co_await g.next();
        co_await g.next();
        EXPECT_EQ(destroyed, 1);  // one inner scope ended between the two yields
        g.aclose();
        EXPECT_EQ(destroyed, 3);  // the live inner and the outer
    };
    run_virtual(main());
}

TEST(AsyncGenerator, DestroyingAStartedGeneratorObjectFinalizesTheBody) {
    auto main = []() -> Coro<int> {
        int destroyed = 0;
        {
            auto g = counted_forever(&destroyed);
            co_await g.next();
        }
        co_return destroyed;
    };
    EXPECT_EQ(run_virtual(main()), 1);
}

TEST(AsyncGenerator, MoveAssigningOverAStartedGeneratorFinalizesTheOldOne) {
    auto main = []() -> Coro<> {
        int a = 0, b = 0;
        auto g = counted_forever(&a);
        co_await g.next();
        g = counted_forever(&b);
        EXPECT_EQ(a, 1);
        EXPECT_EQ(b, 0);
        EXPECT_EQ(*co_await g.next(), 0);  // the new one starts from the beginning
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AMovedGeneratorContinuesWhereItLeftOff) {
    auto main = []() -> Coro<std::vector<int>> {
        auto g = count_to(4);
        std::vector<int> out;
        out.push_back(*co_await g.next());
        auto h = std::move(g);
        EXPECT_TRUE(g.finished());  // NOLINT(bugprone-use-after-move): moved-from is empty
        while (auto v = co_await h.next()) out.push_back(*v);
        co_return out;
    };
    EXPECT_EQ(run_virtual(main()), (std::vector<int>{1, 2, 3, 4}));
}

TEST(AsyncGenerator, AMovedStartedGeneratorIsStillFinalizedAtTheEndOfRun) {
    static int destroyed = 0;
    static AsyncGenerator<int> kept;
    destroyed = 0;
    auto main = []() -> Coro<> {
        auto g = counted_forever(&destroyed);
        co_await g.next();
        kept = std::move(g);
    };
    run_virtual(main());
    EXPECT_EQ(destroyed, 1);
    EXPECT_TRUE(kept.finished());
}

TEST(AsyncGenerator, ShutdownAsyncgensFinalizesOnlyTheGeneratorsStillOpen) {
    static int destroyed_open = 0, destroyed_done = 0, destroyed_dropped = 0;
    static AsyncGenerator<int> open1, open2, done;
    destroyed_open = destroyed_done = destroyed_dropped = 0;
    auto main = []() -> Coro<> {
        open1 = counted_forever(&destroyed_open);
        open2 = counted_forever(&destroyed_open);
        co_await open1.next();
        co_await open2.next();
        done = [](int* d) -> AsyncGenerator<int> {
            Counter c{d};
            co_yield 1;
        }(&destroyed_done);
        while (co_await done.next()) {
        }
        EXPECT_EQ(destroyed_done, 1);
        {
            auto dropped = counted_forever(&destroyed_dropped);
            co_await dropped.next();
        }  // destroyed (and unregistered) before the run ends
        EXPECT_EQ(destroyed_dropped, 1);
    };
    run_virtual(main());
    EXPECT_EQ(destroyed_open, 2);
    EXPECT_EQ(destroyed_done, 1);
    EXPECT_EQ(destroyed_dropped, 1);
    EXPECT_TRUE(open1.finished());
    EXPECT_TRUE(open2.finished());
}

TEST(AsyncGenerator, AnExplicitShutdownAsyncgensClosesOpenGeneratorsNow) {
    auto main = []() -> Coro<> {
        int destroyed = 0;
        auto g = counted_forever(&destroyed);
        co_await g.next();
        get_running_loop().shutdown_asyncgens();
        EXPECT_EQ(destroyed, 1);
        EXPECT_TRUE(g.finished());
        EXPECT_FALSE((co_await g.next()).has_value());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AGeneratorLeftOpenInATaskIsFinalizedAfterTheRunEvenIfItsTaskEnded) {
    static int destroyed = 0;
    static AsyncGenerator<int> leftover;
    destroyed = 0;
    auto main = []() -> Coro<> {
        co_await create_task([]() -> Coro<> {
            leftover = counted_forever(&destroyed);
            co_await leftover.next();
        }());
        EXPECT_EQ(destroyed, 0);
    };
    run_virtual(main());
    EXPECT_EQ(destroyed, 1);
}

// --- cancellation ---

TEST(AsyncGenerator, CancellingTheConsumerRaisesCancelledErrorAtTheBodysAwait) {
    auto main = []() -> Coro<> {
        bool body_saw_cancel = false;
        auto g = [](bool* saw) -> AsyncGenerator<int> {
            try {
                co_await sleep(100);
            } catch (const CancelledError&) {
                *saw = true;
                throw;
            }
            co_yield 1;
        }(&body_saw_cancel);
        auto consumer = create_task([](AsyncGenerator<int>* gen) -> Coro<> { co_await gen->next(); }(&g));
        co_await sleep(1);
        consumer.cancel();
        EXPECT_THROW(co_await consumer, CancelledError);
        EXPECT_TRUE(body_saw_cancel);
        EXPECT_TRUE(g.finished());                      // the CancelledError ended the body
        EXPECT_FALSE((co_await g.next()).has_value());  // and it can still be used/closed
        g.aclose();
    };
    run_virtual(main());
}

TEST(AsyncGenerator, ABodyThatSwallowsTheCancellationCanYieldToTheCancelledConsumer) {
    auto main = []() -> Coro<> {
        auto g = []() -> AsyncGenerator<int> {
            bool cancelled = false;
            try {
                co_await sleep(100);
            } catch (const CancelledError&) {
                cancelled = true;
            }
            co_yield cancelled ? -1 : 1;
            co_yield 2;
        }();
        auto consumer = create_task([](AsyncGenerator<int>* gen) -> Coro<int> {
            int v = (co_await gen->next()).value_or(0);
            co_return v;
        }(&g));
        co_await sleep(1);
        consumer.cancel();
        EXPECT_EQ(co_await consumer, -1);
        EXPECT_EQ(*co_await g.next(), 2);  // the generator is intact
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AGeneratorSuspendedAtAYieldCanBeClosedAfterItsConsumerWasCancelled) {
    auto main = []() -> Coro<> {
        int destroyed = 0;
        auto g = counted_forever(&destroyed);
        Future<void> never;
        auto consumer = create_task([](AsyncGenerator<int>* gen, Future<void> f) -> Coro<> {
            co_await gen->next();
            co_await f;  // cancelled here, outside the generator
        }(&g, never));
        co_await sleep(1);
        consumer.cancel();
        EXPECT_THROW(co_await consumer, CancelledError);
        EXPECT_FALSE(g.finished());
        EXPECT_EQ(*co_await g.next(), 1);
        g.aclose();
        EXPECT_EQ(destroyed, 1);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, WaitForTimingOutANextCancelsTheBodyAndEndsTheGenerator) {
    auto main = []() -> Coro<> {
        int destroyed = 0;
        auto g = [](int* d) -> AsyncGenerator<int> {
            Counter c{d};
            co_yield 1;
            co_await sleep(10);
            co_yield 2;
        }(&destroyed);
        auto next_of = [](AsyncGenerator<int>* gen) -> Coro<std::optional<int>> { co_return co_await gen->next(); };
        EXPECT_EQ(*co_await wait_for(next_of(&g), 1.0), 1);
        double t0 = asyncio_test::now();
        EXPECT_THROW(co_await wait_for(next_of(&g), 1.0), TimeoutError);
        EXPECT_DOUBLE_EQ(asyncio_test::now() - t0, 1.0);
        EXPECT_TRUE(g.finished());
        EXPECT_EQ(destroyed, 1);
    };
    run_virtual(main());
}

// --- concurrency ---

TEST(AsyncGenerator, ASecondConcurrentNextSaysAlreadyRunningAndDoesNotDisturbTheFirst) {
    auto main = []() -> Coro<> {
        auto g = count_to(3, 1.0);
        auto first = create_task([](AsyncGenerator<int>* gen) -> Coro<int> { co_return *co_await gen->next(); }(&g));
        co_await sleep(0.5);
        std::string msg;
        try {
            co_await g.next();
        } catch (const RuntimeError& e) {
            msg = e.what();
        }
        EXPECT_NE(msg.find("asynchronous generator is already running"), std::string::npos) << msg;
        EXPECT_EQ(co_await first, 1);
        EXPECT_EQ(*co_await g.next(), 2);
        EXPECT_EQ(*co_await g.next(), 3);
        EXPECT_FALSE((co_await g.next()).has_value());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AcloseWhileAnotherTaskIsInsideNextIsARuntimeError) {
    // Python: aclose() while the generator runs raises RuntimeError "aclose(): asynchronous
    // generator is already running" and the running anext() is unaffected.
    auto main = []() -> Coro<> {
        auto g = count_to(3, 1.0);
        auto first = create_task([](AsyncGenerator<int>* gen) -> Coro<int> { co_return *co_await gen->next(); }(&g));
        co_await sleep(0.5);
        bool refused = false;
        try {
            g.aclose();
        } catch (const RuntimeError&) {
            refused = true;
        }
        EXPECT_TRUE(refused);
        EXPECT_EQ(co_await first, 1);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, TwoTasksTakingTurnsUnderALockGetEveryValueExactlyOnce) {
    auto main = []() -> Coro<std::vector<int>> {
        auto g = count_to(10, 0.1);
        Lock lock;
        std::vector<int> seen;
        auto worker = [](AsyncGenerator<int>* gen, Lock* l, std::vector<int>* out) -> Coro<int> {
            int mine = 0;
            for (;;) {
                co_await l->acquire();
                auto v = co_await gen->next();
                l->release();
                if (!v) co_return mine;
                out->push_back(*v);
                ++mine;
                co_await sleep(0);
            }
        };
        auto a = create_task(worker(&g, &lock, &seen));
        auto b = create_task(worker(&g, &lock, &seen));
        int na = co_await a;
        int nb = co_await b;
        EXPECT_EQ(na + nb, 10);
        EXPECT_GT(na, 0);
        EXPECT_GT(nb, 0);
        co_return seen;
    };
    EXPECT_EQ(run_virtual(main()), (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
}

TEST(AsyncGenerator, GeneratorsIteratedInTaskGroupTasksRunConcurrently) {
    auto main = []() -> Coro<> {
        double t0 = asyncio_test::now();
        Task<int> t1, t2, t3;
        auto sum_of = [](int n) -> Coro<int> {
            int s = 0;
            auto g = count_to(n, 1.0);
            while (auto v = co_await g.next()) s += *v;
            co_return s;
        };
        co_await task_group([&](TaskGroup& tg) -> Coro<> {
            t1 = tg.create_task(sum_of(2));
            t2 = tg.create_task(sum_of(3));
            t3 = tg.create_task(sum_of(4));
            co_return;
        });
        EXPECT_EQ(t1.result(), 3);
        EXPECT_EQ(t2.result(), 6);
        EXPECT_EQ(t3.result(), 10);
        EXPECT_DOUBLE_EQ(asyncio_test::now() - t0, 4.0);  // concurrent, not 9
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AFailingGeneratorInATaskGroupCancelsTheSiblingsGenerator) {
    auto main = []() -> Coro<> {
        int destroyed = 0;
        bool sibling_cancelled = false;
        auto failing = []() -> Coro<> {
            auto g = []() -> AsyncGenerator<int> {
                co_yield 1;
                co_await sleep(1);
                throw GenError(3);
            }();
            while (co_await g.next()) {
            }
        };
        auto sibling = [](int* d, bool* c) -> Coro<> {
            auto g = [](int* d2, bool* c2) -> AsyncGenerator<int> {
                Counter k{d2};
                try {
                    co_await sleep(100);
                } catch (const CancelledError&) {
                    *c2 = true;
                    throw;
                }
                co_yield 1;
            }(d, c);
            co_await g.next();
        };
        int code = 0;
        try {
            co_await task_group([&](TaskGroup& tg) -> Coro<> {
                tg.create_task(failing());
                tg.create_task(sibling(&destroyed, &sibling_cancelled));
                co_return;
            });
        } catch (const ExceptionGroup& eg) {
            EXPECT_EQ(eg.exceptions().size(), 1u);
            try {
                std::rethrow_exception(eg.exceptions().at(0));
            } catch (const GenError& e) {
                code = e.code;
            }
        }
        EXPECT_EQ(code, 3);
        EXPECT_TRUE(sibling_cancelled);
        EXPECT_EQ(destroyed, 1);
    };
    run_virtual(main());
}

// --- values ---

TEST(AsyncGenerator, MoveOnlyValuesStayOwnedByTheConsumerAfterTheNextStep) {
    auto main = []() -> Coro<> {
        auto g = boxes(3);
        auto a = co_await g.next();
        auto b = co_await g.next();
        CO_ASSERT(a && *a && b && *b);
        EXPECT_EQ(**a, 0);  // still valid: the generator did not keep or reuse it
        EXPECT_EQ(**b, 1);
        EXPECT_NE(a->get(), b->get());
    };
    run_virtual(main());
}

TEST(AsyncGenerator, MoveOnlyValuesDroppedByTheConsumerAreDestroyed) {
    struct Tracked {
        int* live;
        explicit Tracked(int* l) : live(l) { ++*live; }
        ~Tracked() { --*live; }
    };
    auto main = []() -> Coro<> {
        int live = 0;
        {
            auto g = [](int* l) -> AsyncGenerator<std::unique_ptr<Tracked>> {
                for (int i = 0; i < 5; ++i) co_yield std::make_unique<Tracked>(l);
            }(&live);
            while (auto v = co_await g.next()) EXPECT_EQ(live, 1);
        }
        EXPECT_EQ(live, 0);
    };
    run_virtual(main());
}

TEST(AsyncGenerator, AnLvalueYieldIsACopyTheBodyMayKeepChanging) {
    auto main = []() -> Coro<std::vector<std::string>> {
        auto g = []() -> AsyncGenerator<std::string> {
            std::string s = "a";
            co_yield s;
            s += "b";
            co_yield s;
        }();
        std::vector<std::string> out;
        while (auto v = co_await g.next()) out.push_back(*v);
        co_return out;
    };
    auto out = run_virtual(main());
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0], "a");
    EXPECT_EQ(out[1], "ab");
}

TEST(AsyncGenerator, AHundredThousandYieldsRunWithoutGrowingTheStack) {
    auto main = []() -> Coro<long long> {
        auto g = []() -> AsyncGenerator<int> {
            for (int i = 0; i < 100000; ++i) co_yield i;
        }();
        long long sum = 0;
        int n = 0;
        while (auto v = co_await g.next()) {
            sum += *v;
            ++n;
        }
        EXPECT_EQ(n, 100000);
        co_return sum;
    };
    EXPECT_EQ(run_virtual(main()), 100000LL * 99999 / 2);
}

TEST(AsyncGenerator, AHundredThousandYieldsThroughANestedGeneratorRunWithoutGrowingTheStack) {
    auto main = []() -> Coro<long long> {
        auto outer = []() -> AsyncGenerator<int> {
            auto inner = []() -> AsyncGenerator<int> {
                for (int i = 0; i < 100000; ++i) co_yield 1;
            }();
            while (auto v = co_await inner.next()) co_yield *v;
        }();
        long long sum = 0;
        while (auto v = co_await outer.next()) sum += *v;
        co_return sum;
    };
    EXPECT_EQ(run_virtual(main()), 100000LL);
}

TEST(AsyncGenerator, AsyncioRunCancelsATaskInsideNextBeforeFinalizingItsGenerator) {
    static bool body_saw_cancel = false;
    static int destroyed = 0;
    static AsyncGenerator<int> shared;
    body_saw_cancel = false;
    destroyed = 0;
    auto main = []() -> Coro<> {
        shared = []() -> AsyncGenerator<int> {
            Counter c{&destroyed};
            try {
                co_await sleep(1000);
            } catch (const CancelledError&) {
                body_saw_cancel = true;
                throw;
            }
            co_yield 1;
        }();
        create_task([]() -> Coro<> { co_await shared.next(); }());
        co_await sleep(1);  // main ends while the task is inside next()
    };
    run_virtual(main());
    EXPECT_TRUE(body_saw_cancel);
    EXPECT_EQ(destroyed, 1);
    EXPECT_TRUE(shared.finished());
}

TEST(AsyncGenerator, AGeneratorThatSwallowedTheShutdownCancelIsStillFinalizedByRun) {
    static int destroyed = 0;
    static int last = 0;
    static AsyncGenerator<int> shared;
    destroyed = 0;
    last = 0;
    auto main = []() -> Coro<> {
        shared = []() -> AsyncGenerator<int> {
            Counter c{&destroyed};
            try {
                co_await sleep(1000);
            } catch (const CancelledError&) {
            }
            for (int i = 1;; ++i) co_yield i;  // never ends by itself
        }();
        create_task([]() -> Coro<> { last = (co_await shared.next()).value_or(-1); }());
        co_await sleep(1);
    };
    run_virtual(main());
    EXPECT_EQ(last, 1);       // the cancelled task got the value yielded after the swallowed cancel
    EXPECT_EQ(destroyed, 1);  // and shutdown_asyncgens() closed the still-open generator
    EXPECT_TRUE(shared.finished());
}

TEST(AsyncGenerator, ShutdownAsyncgensWhileATaskIsInsideNextReportsItAndLeavesItToItsOwner) {
    // Python reports "an error occurred during closing of asynchronous generator"; the
    // generator is not destroyed under the running task.
    asyncio_test::HandlerCapture handler;
    auto main = [&]() -> asyncio::Coro<std::optional<int>> {
        asyncio::EventLoop& loop = asyncio::get_running_loop();
        handler.install(loop);
        asyncio::Future<void> gate;
        auto gen = [](asyncio::Future<void> g) -> asyncio::AsyncGenerator<int> {
            co_await g;
            co_yield 7;
        };
        auto g = gen(gate);
        auto next_value = [&]() -> asyncio::Coro<std::optional<int>> { co_return co_await g.next(); };
        asyncio::Task<std::optional<int>> t = asyncio::create_task(next_value());
        co_await asyncio::sleep(0);  // t is now inside the generator, waiting on the gate
        loop.shutdown_asyncgens();
        gate.set_result();
        std::optional<int> v = co_await t;
        g.aclose();
        co_return v;
    };
    EXPECT_EQ(asyncio_test::run_virtual(main()), std::optional<int>(7));
    EXPECT_TRUE(handler.contains("an error occurred during closing of asynchronous generator"));
}
