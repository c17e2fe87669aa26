// tests/runtime/test_futures.cpp - Future<T>: states, results, exceptions, cancellation, done callbacks,
// "exception was never retrieved", awaiting from tasks, loop binding and use after close.
// Ports the semantic scenarios of CPython's Lib/test/test_asyncio/test_futures.py.
#include "support.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace asyncio;
using asyncio_test::HandlerCapture;
using asyncio_test::LogCapture;
using asyncio_test::message_of;
using asyncio_test::run_briefly;

namespace {

class FutureTest : public ::testing::Test {
protected:
    EventLoop loop{LoopOptions{.debug = false, .virtual_clock = true}};
};

// Plain functions, so that remove_done_callback(fn) can find them by pointer (the C++ form of
// Python's remove_done_callback(cb), which compares callables).
std::vector<int>* g_bag = nullptr;
void cb_one(Future<std::string>) { g_bag->push_back(1); }
void cb_two(Future<std::string>) { g_bag->push_back(2); }
void cb_three(Future<std::string>) { g_bag->push_back(3); }
void cb_42(Future<std::string>) { g_bag->push_back(42); }
void cb_17(Future<std::string>) { g_bag->push_back(17); }
void cb_100(Future<std::string>) { g_bag->push_back(100); }

class FutureCallbackTest : public FutureTest {
protected:
    void SetUp() override { g_bag = &bag; }
    void TearDown() override { g_bag = nullptr; }
    std::vector<int> bag;
};

}  // namespace

// ---- states ---------------------------------------------------------------------------------

TEST_F(FutureTest, InitialStateIsPendingThenCancelled) {
    Future<int> f(loop);
    EXPECT_FALSE(f.cancelled());
    EXPECT_FALSE(f.done());
    EXPECT_TRUE(f.cancel());
    EXPECT_TRUE(f.cancelled());
}

TEST_F(FutureTest, CreateFutureIsBoundToThatLoop) {
    Future<int> f = loop.create_future<int>();
    EXPECT_EQ(&f.get_loop(), &loop);
    Future<int> g(loop);
    EXPECT_EQ(&g.get_loop(), &loop);
    EXPECT_FALSE(f.done());
}

TEST(FutureConstruct, WithoutRunningLoopThrowsRuntimeError) {
    try {
        Future<int> f;
        ADD_FAILURE() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("no running event loop"), std::string::npos) << e.what();
    }
}

TEST_F(FutureTest, DefaultConstructedInsideCoroutineUsesRunningLoop) {
    auto make = []() -> Coro<Future<int>> {
        Future<int> f;
        co_return f;
    };
    Future<int> f = loop.run_until_complete(make());
    EXPECT_EQ(&f.get_loop(), &loop);
}

TEST_F(FutureTest, CancelMakesItDoneAndCancelled) {
    Future<int> f(loop);
    EXPECT_TRUE(f.cancel());
    EXPECT_TRUE(f.cancelled());
    EXPECT_TRUE(f.done());
    EXPECT_THROW(f.result(), CancelledError);
    EXPECT_THROW(f.exception(), CancelledError);
    EXPECT_THROW(f.set_result(1), InvalidStateError);
    EXPECT_THROW(f.set_exception(std::runtime_error("x")), InvalidStateError);
    EXPECT_FALSE(f.cancel());
    EXPECT_TRUE(f.cancelled());
}

TEST_F(FutureTest, ResultBeforeDoneThrowsInvalidStateError) {
    Future<int> f(loop);
    try {
        (void)f.result();
        ADD_FAILURE() << "expected InvalidStateError";
    } catch (const InvalidStateError& e) {
        EXPECT_STREQ(e.what(), "Result is not set.");
    }
    EXPECT_FALSE(f.done());
}

TEST_F(FutureTest, ExceptionBeforeDoneThrowsInvalidStateError) {
    Future<int> f(loop);
    try {
        (void)f.exception();
        ADD_FAILURE() << "expected InvalidStateError";
    } catch (const InvalidStateError& e) {
        EXPECT_STREQ(e.what(), "Exception is not set.");
    }
}

TEST_F(FutureTest, SetResultFinishesTheFuture) {
    Future<int> f(loop);
    f.set_result(42);
    EXPECT_FALSE(f.cancelled());
    EXPECT_TRUE(f.done());
    EXPECT_EQ(f.result(), 42);
    EXPECT_EQ(f.exception(), nullptr);
    EXPECT_THROW(f.set_result(1), InvalidStateError);
    EXPECT_THROW(f.set_exception(std::runtime_error("x")), InvalidStateError);
    EXPECT_FALSE(f.cancel());
    EXPECT_FALSE(f.cancelled());
    EXPECT_EQ(f.result(), 42);  // unchanged by the failed calls
}

TEST_F(FutureTest, SetExceptionFinishesTheFutureWithIt) {
    Future<int> f(loop);
    auto exc = std::make_exception_ptr(std::runtime_error("boom"));
    f.set_exception(exc);
    EXPECT_FALSE(f.cancelled());
    EXPECT_TRUE(f.done());
    EXPECT_THROW(f.result(), std::runtime_error);
    EXPECT_EQ(f.exception(), exc);
    EXPECT_THROW(f.set_result(1), InvalidStateError);
    EXPECT_THROW(f.set_exception(std::runtime_error("x")), InvalidStateError);
    EXPECT_FALSE(f.cancel());
    EXPECT_EQ(message_of(f.exception()), "boom");
}

TEST_F(FutureTest, SetExceptionAcceptsAnExceptionObject) {
    Future<int> f(loop);
    f.set_exception(std::invalid_argument("bad"));
    try {
        (void)f.result();
        ADD_FAILURE() << "expected invalid_argument";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "bad");
    }
}

TEST_F(FutureTest, SetExceptionWithNullPointerIsRejectedAndFutureStaysPending) {
    Future<int> f(loop);
    EXPECT_THROW(f.set_exception(std::exception_ptr{}), std::invalid_argument);
    EXPECT_FALSE(f.done());
    f.cancel();
}

TEST_F(FutureTest, DoubleSetResultMessageNamesTheStateAndTheFuture) {
    Future<int> f(loop);
    f.set_result(1);
    try {
        f.set_result(2);
        ADD_FAILURE() << "expected InvalidStateError";
    } catch (const InvalidStateError& e) {
        // Python: f'{self._state}: {self!r}'
        EXPECT_EQ(std::string(e.what()).rfind("FINISHED: <Future finished", 0), 0u) << e.what();
    }
    EXPECT_EQ(f.result(), 1);
}

TEST_F(FutureTest, SetExceptionAfterSetResultMessageNamesTheState) {
    Future<int> f(loop);
    f.set_result(1);
    try {
        f.set_exception(std::runtime_error("late"));
        ADD_FAILURE() << "expected InvalidStateError";
    } catch (const InvalidStateError& e) {
        EXPECT_EQ(std::string(e.what()).rfind("FINISHED: ", 0), 0u) << e.what();
    }
}

TEST_F(FutureTest, SetResultAfterCancelMessageNamesCancelledState) {
    Future<int> f(loop);
    f.cancel();
    try {
        f.set_result(1);
        ADD_FAILURE() << "expected InvalidStateError";
    } catch (const InvalidStateError& e) {
        EXPECT_EQ(std::string(e.what()), "CANCELLED: <Future cancelled>");
    }
}

TEST_F(FutureTest, VoidFutureSetResultAndResult) {
    Future<void> f(loop);
    EXPECT_THROW(f.result(), InvalidStateError);
    f.set_result();
    EXPECT_TRUE(f.done());
    EXPECT_NO_THROW(f.result());
    EXPECT_THROW(f.set_result(), InvalidStateError);
}

TEST_F(FutureTest, CopiesShareOneState) {
    Future<std::string> f(loop);
    Future<std::string> g = f;
    EXPECT_TRUE(f == g);
    g.set_result("shared");
    EXPECT_TRUE(f.done());
    EXPECT_EQ(f.result(), "shared");
    Future<std::string> other(loop);
    EXPECT_FALSE(f == other);
    other.cancel();
}

TEST_F(FutureTest, ResultReferenceStaysValidAndCanBeReadRepeatedly) {
    Future<std::vector<int>> f(loop);
    f.set_result(std::vector<int>{1, 2, 3});
    const std::vector<int>& a = f.result();
    const std::vector<int>& b = f.result();
    EXPECT_EQ(&a, &b);
    EXPECT_EQ(a, (std::vector<int>{1, 2, 3}));
}

TEST(FutureEmptyHandle, OperationsOnEmptyHandleThrowInvalidStateError) {
    AnyFuture f;
    EXPECT_FALSE(static_cast<bool>(f));
    EXPECT_THROW(f.done(), InvalidStateError);
    EXPECT_THROW(f.cancel(), InvalidStateError);
    EXPECT_THROW(f.exception(), InvalidStateError);
}

TEST_F(FutureTest, AnyFutureViewSeesTheSameState) {
    Future<int> f(loop);
    AnyFuture any = f;
    EXPECT_TRUE(static_cast<bool>(any));
    EXPECT_TRUE(any.cancel("via any"));
    EXPECT_TRUE(f.cancelled());
    EXPECT_TRUE(any.cancelled());
}

// ---- cancel message -------------------------------------------------------------------------

TEST_F(FutureTest, CancelMessageIsCarriedByCancelledError) {
    Future<int> f(loop);
    f.cancel("my message");
    try {
        (void)f.result();
        ADD_FAILURE() << "expected CancelledError";
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "my message");
    }
    try {
        (void)f.exception();
        ADD_FAILURE() << "expected CancelledError";
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "my message");
    }
}

TEST_F(FutureTest, RunUntilCompleteOfCancelledFutureThrowsCancelledErrorWithMessage) {
    Future<int> f(loop);
    f.cancel("my message");
    try {
        loop.run_until_complete(f);
        ADD_FAILURE() << "expected CancelledError";
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "my message");
    }
}

TEST_F(FutureTest, CancelWithoutMessageGivesEmptyMessage) {
    Future<int> f(loop);
    f.cancel();
    try {
        (void)f.result();
        ADD_FAILURE() << "expected CancelledError";
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "");
    }
}

TEST_F(FutureTest, SecondCancelDoesNotReplaceTheMessage) {
    Future<int> f(loop);
    EXPECT_TRUE(f.cancel("first"));
    EXPECT_FALSE(f.cancel("second"));
    try {
        (void)f.result();
        ADD_FAILURE() << "expected CancelledError";
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "first");
    }
}

// ---- done callbacks -------------------------------------------------------------------------

TEST_F(FutureCallbackTest, CallbacksRunInOrderOnSetResultButNotInline) {
    Future<std::string> f(loop);
    f.add_done_callback(cb_42);
    f.add_done_callback(cb_17);
    EXPECT_TRUE(bag.empty());
    f.set_result("foo");
    EXPECT_TRUE(bag.empty()) << "done callbacks must be scheduled with call_soon, not run inline";
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{42, 17}));
    EXPECT_EQ(f.result(), "foo");
}

TEST_F(FutureCallbackTest, CallbacksRunOnSetException) {
    Future<std::string> f(loop);
    f.add_done_callback(cb_100);
    auto exc = std::make_exception_ptr(std::runtime_error("x"));
    f.set_exception(exc);
    EXPECT_TRUE(bag.empty());
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{100}));
    EXPECT_EQ(f.exception(), exc);
}

TEST_F(FutureCallbackTest, CallbacksRunOnCancel) {
    Future<std::string> f(loop);
    bool saw_cancelled = false;
    f.add_done_callback([&](const Future<std::string>& fut) { saw_cancelled = fut.cancelled(); });
    f.cancel();
    EXPECT_FALSE(saw_cancelled);
    run_briefly(loop);
    EXPECT_TRUE(saw_cancelled);
}

TEST_F(FutureCallbackTest, CallbackReceivesTheFutureHandle) {
    Future<std::string> f(loop);
    std::string seen;
    f.add_done_callback([&](Future<std::string> fut) {
        EXPECT_TRUE(fut == f);
        seen = fut.result();
    });
    f.set_result("value");
    run_briefly(loop);
    EXPECT_EQ(seen, "value");
}

TEST_F(FutureCallbackTest, CallbackWithoutParameterIsAccepted) {
    Future<std::string> f(loop);
    int calls = 0;
    f.add_done_callback([&] { ++calls; });
    f.set_result("x");
    run_briefly(loop);
    EXPECT_EQ(calls, 1);
}

TEST_F(FutureCallbackTest, CallbacksWaitForTheLoopToRun) {
    Future<std::string> f(loop);
    f.add_done_callback(cb_one);
    f.set_result("x");
    EXPECT_EQ(asyncio_test::ready_count(loop), 1u);
    EXPECT_TRUE(bag.empty());
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{1}));
    EXPECT_EQ(asyncio_test::ready_count(loop), 0u);
}

TEST_F(FutureCallbackTest, CallbacksAreQueuedBehindEarlierCallSoonAndBeforeLaterOnes) {
    Future<std::string> f(loop);
    std::vector<std::string> order;
    loop.call_soon([&] { order.push_back("soon-before"); });
    f.add_done_callback([&] { order.push_back("done-1"); });
    f.add_done_callback([&] { order.push_back("done-2"); });
    f.set_result("x");
    loop.call_soon([&] { order.push_back("soon-after"); });
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<std::string>{"soon-before", "done-1", "done-2", "soon-after"}));
}

TEST_F(FutureCallbackTest, CallbackAddedAfterDoneIsScheduledNotRunInline) {
    Future<std::string> f(loop);
    f.set_result("x");
    f.add_done_callback(cb_one);
    EXPECT_TRUE(bag.empty());
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{1}));
}

TEST_F(FutureCallbackTest, CallbackAddedByACallbackOfADoneFutureRunsInTheNextIteration) {
    Future<std::string> f(loop);
    std::vector<std::string> order;
    f.add_done_callback([&](Future<std::string> fut) {
        order.push_back("first");
        fut.add_done_callback([&] { order.push_back("added-late"); });
    });
    f.set_result("x");
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<std::string>{"first"}));
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<std::string>{"first", "added-late"}));
}

TEST_F(FutureCallbackTest, EachCallbackRunsOnce) {
    Future<std::string> f(loop);
    int calls = 0;
    f.add_done_callback([&] { ++calls; });
    f.set_result("x");
    run_briefly(loop);
    run_briefly(loop);
    EXPECT_EQ(calls, 1);
}

TEST_F(FutureCallbackTest, RemoveFirstCallbackByFunction) {
    Future<std::string> f(loop);
    f.add_done_callback(cb_42);
    f.add_done_callback(cb_17);
    f.add_done_callback(cb_100);
    EXPECT_EQ(f.remove_done_callback(cb_42), 1u);
    EXPECT_EQ(f.remove_done_callback(cb_42), 0u);
    EXPECT_TRUE(bag.empty());
    f.set_result("foo");
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{17, 100}));
    EXPECT_EQ(f.result(), "foo");
}

TEST_F(FutureCallbackTest, RemoveFirstAndSecondCallbackByFunction) {
    Future<std::string> f(loop);
    f.add_done_callback(cb_42);
    f.add_done_callback(cb_17);
    f.add_done_callback(cb_100);
    f.remove_done_callback(cb_42);
    f.remove_done_callback(cb_17);
    f.remove_done_callback(cb_42);
    f.set_result("foo");
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{100}));
}

TEST_F(FutureCallbackTest, RemoveThirdCallbackByFunctionPointer) {
    Future<std::string> f(loop);
    f.add_done_callback(&cb_42);
    f.add_done_callback(&cb_17);
    f.add_done_callback(&cb_100);
    EXPECT_EQ(f.remove_done_callback(&cb_100), 1u);
    EXPECT_EQ(f.remove_done_callback(&cb_100), 0u);
    f.set_result("foo");
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{42, 17}));
}

TEST_F(FutureCallbackTest, RemoveByFunctionRemovesEveryInstanceAndReturnsTheCount) {
    Future<std::string> f(loop);
    f.add_done_callback(cb_one);
    f.add_done_callback(cb_two);
    EXPECT_EQ(f.remove_done_callback(cb_two), 1u);
    EXPECT_EQ(f.remove_done_callback(cb_three), 0u);  // never added
    f.add_done_callback(cb_two);
    for (int i = 0; i < 5; ++i) f.add_done_callback(cb_one);
    EXPECT_EQ(f.remove_done_callback(cb_one), 6u);
    EXPECT_TRUE(bag.empty());
    f.set_result("foo");
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{2}));
}

TEST_F(FutureCallbackTest, RemoveByIdRemovesExactlyThatRegistration) {
    Future<std::string> f(loop);
    std::vector<std::string> order;
    CallbackId a = f.add_done_callback([&] { order.push_back("a"); });
    CallbackId b = f.add_done_callback([&] { order.push_back("b"); });
    CallbackId c = f.add_done_callback([&] { order.push_back("c"); });
    EXPECT_NE(a, b);
    EXPECT_NE(b, c);
    EXPECT_EQ(f.remove_done_callback(b), 1u);
    EXPECT_EQ(f.remove_done_callback(b), 0u);
    f.set_result("x");
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<std::string>{"a", "c"}));
}

TEST_F(FutureCallbackTest, RemoveByIdOfSameFunctionAddedTwiceKeepsTheOther) {
    Future<std::string> f(loop);
    CallbackId first = f.add_done_callback(cb_one);
    f.add_done_callback(cb_one);
    EXPECT_EQ(f.remove_done_callback(first), 1u);
    f.set_result("x");
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{1}));
}

TEST_F(FutureCallbackTest, RemoveAfterDoneReturnsZeroAndScheduledCallbacksStillRun) {
    Future<std::string> f(loop);
    CallbackId id = f.add_done_callback(cb_one);
    f.add_done_callback(cb_two);
    f.set_result("x");
    // Like Python: completing the future hands its callbacks to the loop.
    EXPECT_EQ(f.remove_done_callback(id), 0u);
    EXPECT_EQ(f.remove_done_callback(cb_two), 0u);
    run_briefly(loop);
    EXPECT_EQ(bag, (std::vector<int>{1, 2}));
}

TEST_F(FutureCallbackTest, CallbackRemovingOthersWhileRunningDoesNotUnscheduleThem) {
    // CPython bpo-28963: a callback that mutates the callback list while the callbacks are
    // being scheduled/run.
    Future<std::string> f(loop);
    std::size_t removed = 99;
    f.add_done_callback([&](Future<std::string> fut) { removed = fut.remove_done_callback(cb_two); });
    f.add_done_callback(cb_two);
    f.add_done_callback(cb_two);
    f.set_result("x");
    run_briefly(loop);
    EXPECT_EQ(removed, 0u);
    EXPECT_EQ(bag, (std::vector<int>{2, 2}));
}

TEST_F(FutureCallbackTest, ManyCallbacksAllRunInOrder) {
    Future<std::string> f(loop);
    std::vector<int> order;
    for (int i = 0; i < 100; ++i) f.add_done_callback([&order, i] { order.push_back(i); });
    f.set_result("x");
    run_briefly(loop);
    ASSERT_EQ(order.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST_F(FutureCallbackTest, PendingCallbacksAreReleasedWhenTheFutureIsDropped) {
    auto token = std::make_shared<int>(0);
    {
        Future<std::string> f(loop);
        f.add_done_callback([token] {});
        EXPECT_EQ(token.use_count(), 2);
    }
    EXPECT_EQ(token.use_count(), 1);
}

TEST_F(FutureCallbackTest, RemovedCallbackIsReleasedAtOnce) {
    auto token = std::make_shared<int>(0);
    Future<std::string> f(loop);
    CallbackId id = f.add_done_callback([token] {});
    EXPECT_EQ(token.use_count(), 2);
    f.remove_done_callback(id);
    EXPECT_EQ(token.use_count(), 1);
    f.cancel();
}

TEST_F(FutureCallbackTest, CallbackExceptionGoesToTheExceptionHandler) {
    HandlerCapture handler;
    handler.install(loop);
    Future<std::string> f(loop);
    f.add_done_callback([] { throw std::runtime_error("callback failed"); });
    f.add_done_callback(cb_one);
    f.set_result("x");
    run_briefly(loop);
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_NE(handler.contexts[0].message.find("Exception in callback"), std::string::npos)
        << handler.contexts[0].message;
    ASSERT_TRUE(handler.contexts[0].exception);
    EXPECT_EQ(message_of(handler.contexts[0].exception), "callback failed");
    // The next callback still ran.
    EXPECT_EQ(bag, (std::vector<int>{1}));
}

TEST_F(FutureCallbackTest, CallbackExceptionIsLoggedByTheDefaultHandler) {
    LogCapture log;
    Future<std::string> f(loop);
    f.add_done_callback([] { throw std::runtime_error("logged failure"); });
    f.set_result("x");
    run_briefly(loop);
    EXPECT_TRUE(log.contains("Exception in callback")) << log.joined();
    EXPECT_TRUE(log.contains("logged failure")) << log.joined();
}

// ---- "Future exception was never retrieved" -------------------------------------------------

TEST_F(FutureTest, AbandonedPendingFutureIsNotReported) {
    HandlerCapture handler;
    handler.install(loop);
    { Future<int> f(loop); }
    run_briefly(loop);
    EXPECT_TRUE(handler.contexts.empty());
}

TEST_F(FutureTest, UnretrievedResultIsNotReported) {
    HandlerCapture handler;
    handler.install(loop);
    {
        Future<int> f(loop);
        f.set_result(42);
    }
    run_briefly(loop);
    EXPECT_TRUE(handler.contexts.empty());
}

TEST_F(FutureTest, RetrievedResultIsNotReported) {
    HandlerCapture handler;
    handler.install(loop);
    {
        Future<int> f(loop);
        f.set_result(42);
        EXPECT_EQ(f.result(), 42);
    }
    EXPECT_TRUE(handler.contexts.empty());
}

TEST_F(FutureTest, UnretrievedExceptionIsReportedWhenTheLastHandleIsDropped) {
    HandlerCapture handler;
    handler.install(loop);
    {
        Future<int> f(loop);
        f.set_exception(std::runtime_error("boom"));
        Future<int> copy = f;
        { Future<int> dropped = std::move(copy); }
        EXPECT_TRUE(handler.contexts.empty()) << "reported while a handle is still alive";
    }
    ASSERT_EQ(handler.contexts.size(), 1u);
    const ExceptionContext& ctx = handler.contexts[0];
    EXPECT_EQ(ctx.message, "Future exception was never retrieved");
    ASSERT_TRUE(ctx.exception);
    EXPECT_EQ(message_of(ctx.exception), "boom");
    EXPECT_NE(ctx.future.find("Future"), std::string::npos) << ctx.future;
}

TEST_F(FutureTest, UnretrievedExceptionIsReportedInDebugModeToo) {
    loop.set_debug(true);
    HandlerCapture handler;
    handler.install(loop);
    {
        Future<int> f(loop);
        f.set_exception(std::runtime_error("boom"));
    }
    run_briefly(loop);
    EXPECT_EQ(handler.contexts.size(), 1u);
    EXPECT_TRUE(handler.contains("Future exception was never retrieved"));
}

TEST_F(FutureTest, UnretrievedExceptionIsLoggedByTheDefaultHandler) {
    LogCapture log;
    {
        Future<int> f(loop);
        f.set_exception(std::runtime_error("never seen"));
    }
    EXPECT_TRUE(log.contains("Future exception was never retrieved")) << log.joined();
    EXPECT_TRUE(log.contains("never seen")) << log.joined();
}

TEST_F(FutureTest, ExceptionRetrievedWithExceptionIsNotReported) {
    HandlerCapture handler;
    handler.install(loop);
    {
        Future<int> f(loop);
        f.set_exception(std::runtime_error("boom"));
        EXPECT_TRUE(f.exception());
    }
    EXPECT_TRUE(handler.contexts.empty());
}

TEST_F(FutureTest, ExceptionRetrievedWithResultIsNotReported) {
    HandlerCapture handler;
    handler.install(loop);
    {
        Future<int> f(loop);
        f.set_exception(std::runtime_error("boom"));
        EXPECT_THROW(f.result(), std::runtime_error);
    }
    EXPECT_TRUE(handler.contexts.empty());
}

TEST_F(FutureTest, CancelAfterSetExceptionSilencesTheReport) {
    // Python: cancel() clears __log_traceback even when it returns False.
    HandlerCapture handler;
    handler.install(loop);
    {
        Future<int> f(loop);
        f.set_exception(std::runtime_error("boom"));
        EXPECT_FALSE(f.cancel());
    }
    EXPECT_TRUE(handler.contexts.empty());
}

TEST_F(FutureTest, ExceptionAwaitedByATaskIsNotReported) {
    HandlerCapture handler;
    handler.install(loop);
    auto main = [](EventLoop& l) -> Coro<bool> {
        Future<int> f(l);
        l.call_soon([f]() mutable { f.set_exception(std::runtime_error("awaited")); });
        try {
            co_await f;
        } catch (const std::runtime_error&) {
            co_return true;
        }
        co_return false;
    };
    EXPECT_TRUE(loop.run_until_complete(main(loop)));
    run_briefly(loop);
    EXPECT_TRUE(handler.contexts.empty());
}

TEST_F(FutureTest, ReportWaitsUntilQueuedDoneCallbacksLetGo) {
    HandlerCapture handler;
    handler.install(loop);
    bool callback_ran = false;
    {
        Future<int> f(loop);
        f.add_done_callback([&] { callback_ran = true; });
        f.set_exception(std::runtime_error("boom"));
    }
    // The queued callback keeps the future alive: no report yet.
    EXPECT_TRUE(handler.contexts.empty());
    run_briefly(loop);
    EXPECT_TRUE(callback_ran);
    EXPECT_EQ(handler.contexts.size(), 1u);
}

TEST(FutureNeverRetrieved, ReportedToTheLogWhenTheLoopIsGone) {
    LogCapture log;
    std::optional<Future<int>> f;
    {
        EventLoop loop;
        f.emplace(loop);
        f->set_exception(std::runtime_error("orphan"));
    }
    f.reset();  // must not crash; there is no loop left to ask
    EXPECT_TRUE(log.contains("exception was never retrieved")) << log.joined();
}

// ---- awaiting futures from tasks ------------------------------------------------------------

TEST_F(FutureTest, TaskAwaitsFutureResult) {
    auto main = [](EventLoop& l) -> Coro<int> {
        Future<int> f(l);
        l.call_later(2.0, [f]() mutable { f.set_result(7); });
        int v = co_await f;
        co_return v;
    };
    double t0 = loop.time();
    EXPECT_EQ(loop.run_until_complete(main(loop)), 7);
    EXPECT_DOUBLE_EQ(loop.time() - t0, 2.0);
}

TEST_F(FutureTest, TaskAwaitingFutureGetsItsException) {
    auto main = [](EventLoop& l) -> Coro<std::string> {
        Future<int> f(l);
        l.call_soon([f]() mutable { f.set_exception(std::logic_error("nope")); });
        try {
            co_await f;
        } catch (const std::logic_error& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_EQ(loop.run_until_complete(main(loop)), "nope");
}

TEST_F(FutureTest, TaskAwaitingCancelledFutureGetsCancelledErrorWithMessage) {
    auto main = [](EventLoop& l) -> Coro<std::string> {
        Future<int> f(l);
        l.call_soon([f]() mutable { f.cancel("gone"); });
        try {
            co_await f;
        } catch (const CancelledError& e) {
            co_return "cancelled:" + e.message();
        }
        co_return "not cancelled";
    };
    EXPECT_EQ(loop.run_until_complete(main(loop)), "cancelled:gone");
}

TEST_F(FutureTest, AwaitingTheSameFutureTwiceGivesTheSameResult) {
    // test_yield_from_twice: the second await of a done future does not suspend.
    auto main = [](EventLoop& l) -> Coro<std::vector<int>> {
        Future<int> f(l);
        l.call_soon([f]() mutable { f.set_result(42); });
        int x = co_await f;
        int y = co_await f;
        co_return std::vector<int>{x, y};
    };
    EXPECT_EQ(loop.run_until_complete(main(loop)), (std::vector<int>{42, 42}));
}

TEST_F(FutureTest, AwaitingADoneFutureDoesNotYieldToTheLoop) {
    bool other_ran = false;
    auto main = [&](EventLoop& l) -> Coro<bool> {
        Future<int> f(l);
        f.set_result(1);
        l.call_soon([&] { other_ran = true; });
        co_await f;
        co_return other_ran;
    };
    EXPECT_FALSE(loop.run_until_complete(main(loop)));
}

TEST_F(FutureTest, SeveralTasksAwaitOneFuture) {
    auto waiter = [](Future<int> f) -> Coro<int> { co_return co_await f + 1; };
    auto main = [&](EventLoop& l) -> Coro<int> {
        Future<int> f(l);
        auto a = create_task(waiter(f));
        auto b = create_task(waiter(f));
        co_await sleep(1);
        EXPECT_FALSE(a.done());
        f.set_result(10);
        co_return co_await a + co_await b;
    };
    EXPECT_EQ(loop.run_until_complete(main(loop)), 22);
}

TEST_F(FutureTest, AwaitingMoveOnlyResultMovesItOut) {
    auto main = [](EventLoop& l) -> Coro<int> {
        Future<std::unique_ptr<int>> f(l);
        l.call_soon([f]() mutable { f.set_result(std::make_unique<int>(5)); });
        std::unique_ptr<int> p = co_await f;
        co_return p ? *p : -1;
    };
    EXPECT_EQ(loop.run_until_complete(main(loop)), 5);
}

TEST_F(FutureTest, CancellingTheAwaitingTaskCancelsTheFuture) {
    Future<int> f(loop);
    auto waiter = [](Future<int> fut) -> Coro<int> { co_return co_await fut; };
    auto main = [&]() -> Coro<> {
        auto t = create_task(waiter(f));
        co_await sleep(0);
        EXPECT_TRUE(t.cancel("stop waiting"));
        EXPECT_THROW(co_await t, CancelledError);
    };
    loop.run_until_complete(main());
    EXPECT_TRUE(f.cancelled());
}

TEST_F(FutureTest, RunUntilCompleteReturnsTheFutureResult) {
    Future<std::string> f(loop);
    loop.call_later(3.0, [f]() mutable { f.set_result("done"); });
    double t0 = loop.time();
    EXPECT_EQ(loop.run_until_complete(f), "done");
    EXPECT_DOUBLE_EQ(loop.time() - t0, 3.0);
}

TEST_F(FutureTest, RunUntilCompleteRethrowsTheFutureException) {
    Future<int> f(loop);
    loop.call_soon([f]() mutable { f.set_exception(std::runtime_error("bad")); });
    EXPECT_THROW(loop.run_until_complete(f), std::runtime_error);
}

TEST_F(FutureTest, AwaitingAFutureOfAnotherLoopThrowsRuntimeError) {
    EventLoop other;
    Future<int> foreign(other);
    auto main = [&]() -> Coro<std::string> {
        try {
            co_await foreign;
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "";
    };
    std::string msg = loop.run_until_complete(main());
    EXPECT_NE(msg.find("attached to a different loop"), std::string::npos) << msg;
    EXPECT_FALSE(foreign.done());
    foreign.cancel();
}

// ---- use after the loop is closed -----------------------------------------------------------

namespace {
void expect_loop_closed(const std::function<void()>& fn) {
    try {
        fn();
        ADD_FAILURE() << "expected RuntimeError(\"Event loop is closed\")";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop is closed");
    }
}
}  // namespace

TEST(FutureAfterClose, EveryMutationThrowsEventLoopIsClosed) {
    EventLoop loop;
    Future<int> f(loop);
    loop.close();
    expect_loop_closed([&] { f.set_result(1); });
    expect_loop_closed([&] { f.set_exception(std::runtime_error("x")); });
    expect_loop_closed([&] { f.cancel(); });
    expect_loop_closed([&] { f.add_done_callback([] {}); });
    expect_loop_closed([&] { (void)f.get_loop(); });
    EXPECT_FALSE(f.done());
    EXPECT_FALSE(f.cancelled());
    EXPECT_THROW(f.result(), InvalidStateError);
}

TEST(FutureAfterClose, CreatingAFutureOnAClosedLoopThrows) {
    EventLoop loop;
    loop.close();
    expect_loop_closed([&] { Future<int> f(loop); });
    expect_loop_closed([&] { (void)loop.create_future<int>(); });
}

TEST(FutureAfterClose, DoneFutureKeepsItsResultAfterClose) {
    EventLoop loop;
    Future<int> f(loop);
    f.set_result(5);
    loop.close();
    EXPECT_TRUE(f.done());
    EXPECT_EQ(f.result(), 5);
}

TEST(FutureAfterClose, HandleOutlivingTheLoopObjectThrowsInsteadOfCrashing) {
    auto loop = std::make_unique<EventLoop>();
    Future<int> f(*loop);
    bool ran = false;
    f.add_done_callback([&] { ran = true; });
    loop.reset();
    expect_loop_closed([&] { f.set_result(1); });
    expect_loop_closed([&] { f.cancel(); });
    expect_loop_closed([&] { (void)f.get_loop(); });
    EXPECT_FALSE(f.done());
    EXPECT_FALSE(ran);
}

TEST(FutureAfterClose, CallbacksQueuedAtCloseNeverRun) {
    EventLoop loop;
    Future<int> f(loop);
    bool ran = false;
    f.add_done_callback([&] { ran = true; });
    f.set_result(1);
    loop.close();
    EXPECT_FALSE(ran);
    EXPECT_EQ(f.result(), 1);
}
