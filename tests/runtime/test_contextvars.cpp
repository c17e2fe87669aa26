// Context variables with asyncio (Python's contextvars as tasks use them: test_context.py's
// asyncio parts and test_tasks.py's context tests).
#include "support.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace asyncio;
using asyncio_test::run_virtual;

namespace {
ContextVar<int> g_number("number", 0);
ContextVar<std::string> g_unset("unset");
}  // namespace

TEST(ContextVar, GetReturnsTheDefaultWhenUnset) { EXPECT_EQ(g_number.get(), 0); }

TEST(ContextVar, GetWithoutValueOrDefaultThrowsOutOfRange) {
    EXPECT_THROW(g_unset.get(), std::out_of_range);
    EXPECT_EQ(g_unset.get("fallback"), "fallback");
}

TEST(ContextVar, NameIsKept) { EXPECT_EQ(g_unset.name(), "unset"); }

TEST(ContextVar, SetThenResetRestoresThePreviousValue) {
    auto main = []() -> Coro<> {
        auto t1 = g_number.set(1);
        auto t2 = g_number.set(2);
        EXPECT_EQ(g_number.get(), 2);
        EXPECT_EQ(t2.old_value(), std::optional<int>(1));
        g_number.reset(t2);
        EXPECT_EQ(g_number.get(), 1);
        g_number.reset(t1);
        EXPECT_EQ(g_number.get(), 0);  // unset again: the default
        co_return;
    };
    run_virtual(main());
}

TEST(ContextVar, ATokenCanBeUsedOnlyOnce) {
    auto main = []() -> Coro<> {
        auto t = g_number.set(5);
        g_number.reset(t);
        EXPECT_THROW(g_number.reset(t), RuntimeError);
        co_return;
    };
    run_virtual(main());
}

TEST(ContextVar, ATokenOfAnotherVariableIsRejected) {
    ContextVar<int> other("other");
    auto main = [&]() -> Coro<> {
        auto t = other.set(1);
        EXPECT_THROW(g_number.reset(t), std::invalid_argument);
        other.reset(t);
        co_return;
    };
    run_virtual(main());
}

TEST(ContextVar, EachTaskRunsInACopyOfTheContextAtCreation) {
    auto main = []() -> Coro<> {
        g_number.set(10);
        auto child = create_task([]() -> Coro<int> {
            int seen = g_number.get();  // inherited
            g_number.set(99);           // only in the child's copy
            co_return seen;
        }());
        g_number.set(20);  // after creation: the child does not see it
        EXPECT_EQ(co_await child, 10);
        EXPECT_EQ(g_number.get(), 20);  // the child's set() did not leak out
    };
    run_virtual(main());
}

TEST(ContextVar, SiblingTasksDoNotSeeEachOthersChanges) {
    auto main = []() -> Coro<> {
        std::vector<int> seen(2);
        auto writer = [](int v, int* out) -> Coro<> {
            g_number.set(v);
            co_await sleep(1);
            *out = g_number.get();
        };
        co_await gather(writer(1, &seen[0]), writer(2, &seen[1]));
        EXPECT_EQ(seen, (std::vector<int>{1, 2}));
        EXPECT_EQ(g_number.get(), 0);
    };
    run_virtual(main());
}

TEST(ContextVar, ATokenFromAnotherTaskIsRejected) {
    auto main = []() -> Coro<> {
        auto token = g_number.set(3);
        auto child = create_task([](Token<int>* t) -> Coro<bool> {
            try {
                g_number.reset(*t);
            } catch (const std::invalid_argument&) {
                co_return true;
            }
            co_return false;
        }(&token));
        EXPECT_TRUE(co_await child);
        g_number.reset(token);  // still fine in its own context
    };
    run_virtual(main());
}

TEST(ContextVar, AwaitingACoroutineSharesTheContextOfTheTask) {
    auto main = []() -> Coro<> {
        co_await []() -> Coro<> {
            g_number.set(7);
            co_return;
        }();
        EXPECT_EQ(g_number.get(), 7);  // same task, same context (no copy for an inline await)
    };
    run_virtual(main());
}

TEST(Context, CopyContextIsASnapshot) {
    auto main = []() -> Coro<> {
        g_number.set(1);
        Context snap = copy_context();
        g_number.set(2);
        EXPECT_EQ(snap.run([] { return g_number.get(); }), 1);
        EXPECT_EQ(g_number.get(), 2);
        co_return;
    };
    run_virtual(main());
}

TEST(Context, RunRecordsChangesInTheContextObject) {
    Context ctx;
    ctx.run([] { g_number.set(42); });
    EXPECT_EQ(g_number.get(), 0);
    EXPECT_EQ(ctx.run([] { return g_number.get(); }), 42);
    EXPECT_EQ(ctx.size(), 1u);
}

TEST(Context, EnteringTheSameContextTwiceIsARuntimeError) {
    Context ctx;
    EXPECT_THROW(ctx.run([&] { ctx.run([] {}); }), RuntimeError);
}

TEST(Context, EachThreadOutsideATaskHasItsOwnContext) {
    g_number.set(5);
    int seen_in_thread = -1;
    std::thread t([&] { seen_in_thread = g_number.get(); });
    t.join();
    EXPECT_EQ(seen_in_thread, 0);
    EXPECT_EQ(g_number.get(), 5);
    g_number.set(0);
}

TEST(ContextVar, ToThreadRunsTheFunctionInACopyOfTheCallersContext) {
    auto main = []() -> Coro<> {
        g_number.set(31);
        int seen = co_await to_thread([] {
            int v = g_number.get();
            g_number.set(1000);  // the copy only
            return v;
        });
        EXPECT_EQ(seen, 31);
        EXPECT_EQ(g_number.get(), 31);
    };
    asyncio::run(main());
}

TEST(ContextVar, EagerTasksAlsoRunInACopy) {
    auto main = []() -> Coro<> {
        g_number.set(4);
        TaskOptions eager;
        eager.eager_start = true;
        auto t = create_task(
            []() -> Coro<int> {
                g_number.set(8);
                co_return g_number.get();
            }(),
            eager);
        EXPECT_TRUE(t.done());
        EXPECT_EQ(t.result(), 8);
        EXPECT_EQ(g_number.get(), 4);
        co_return;
    };
    run_virtual(main());
}
