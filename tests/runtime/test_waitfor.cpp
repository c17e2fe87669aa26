// tests/runtime/test_waitfor.cpp - asyncio::wait_for with Python 3.12 semantics.
//
// The semantic scenarios of CPython's Lib/test/test_asyncio/test_waitfor.py, on the virtual
// clock so that every deadline can be checked exactly. Python's real-time SlowTask becomes a
// coroutine that ignores cancellation until a point on the loop's clock.
#include "support.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace asyncio;
using asyncio_test::now;
using asyncio_test::Outcome;
using asyncio_test::outcome_of;
using asyncio_test::run_virtual;
using asyncio_test::value_after;
using namespace std::chrono_literals;

namespace {

Coro<std::string> done_immediately() { co_return "done"; }

/// Runs for `duration` seconds of loop time, ignoring every cancel request (Python's SlowTask).
struct SlowTask {
    static constexpr double duration = 2.0;
    bool exited = false;

    Coro<> run() {
        double exit_at = now() + duration;
        while (true) {
            double to_sleep = exit_at - now();
            if (to_sleep <= 0) break;
            try {
                co_await sleep(to_sleep);
            } catch (const CancelledError&) {
            }
        }
        exited = true;
    }
};

/// Sleeps `delay`; records whether it is running (Python's `foo_running` with try/finally).
Coro<std::string> tracked_sleep(double delay, bool& running) {
    running = true;
    try {
        co_await sleep(delay);
    } catch (...) {
        running = false;
        throw;
    }
    running = false;
    co_return "done";
}

/// On cancellation, spends `cleanup` seconds cleaning up, then re-raises.
Coro<> slow_to_cancel(double cleanup, bool& finished) {
    std::exception_ptr e;
    try {
        co_await sleep(100);
    } catch (const CancelledError&) {
        e = std::current_exception();
    }
    if (e) co_await sleep(cleanup);
    finished = true;
    if (e) std::rethrow_exception(e);
}

/// Swallows the cancellation and returns 42 instead.
Coro<int> return_42_on_cancel() {
    try {
        co_await sleep(100);
    } catch (const CancelledError&) {
        co_return 42;
    }
    co_return 0;
}

struct FooException : std::runtime_error {
    FooException() : std::runtime_error("foo") {}
};

/// Raises FooException when interrupted (Python's `finally: raise FooException`).
Coro<> raises_foo_when_cancelled(double delay) {
    try {
        co_await sleep(delay);
    } catch (...) {
    }
    throw FooException();
}

}  // namespace

// ---- result before the timeout ----------------------------------------------------------------

TEST(WaitFor, ReturnsTheResultOfACoroutineBeforeTheTimeout) {
    auto main = []() -> Coro<> {
        double t0 = now();
        int v = co_await wait_for(value_after(0.5, 3), 1.0);
        EXPECT_EQ(v, 3);
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
    };
    run_virtual(main());
}

TEST(WaitFor, ReturnsTheResultOfATaskBeforeTheTimeout) {
    auto main = []() -> Coro<> {
        auto task = create_task(value_after(0.5, 4));
        int v = co_await wait_for(task, 1.0);
        EXPECT_EQ(v, 4);
        EXPECT_TRUE(task.done());
        EXPECT_FALSE(task.cancelled());
    };
    run_virtual(main());
}

TEST(WaitFor, ReturnsTheResultOfAFutureSetBeforeTheTimeout) {
    auto main = []() -> Coro<> {
        Future<std::string> fut;
        get_running_loop().call_later(1.0, [fut]() mutable { fut.set_result("ok"); });
        double t0 = now();
        std::string r = co_await wait_for(fut, 2.0);
        EXPECT_EQ(r, "ok");
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
    };
    run_virtual(main());
}

TEST(WaitFor, VoidCoroutine) {
    auto main = []() -> Coro<> {
        double t0 = now();
        co_await wait_for(sleep(0.5), 1.0);
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
        EXPECT_THROW(co_await wait_for(sleep(5), 1.0), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.5);
    };
    run_virtual(main());
}

TEST(WaitFor, AcceptsChronoDurations) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_EQ(co_await wait_for(value_after(0.25, 1), 500ms), 1);
        EXPECT_THROW(co_await wait_for(value_after(10, 1), 1500ms), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.75);
        EXPECT_THROW(co_await wait_for(value_after(10, 1), 0s), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.75);
    };
    run_virtual(main());
}

TEST(WaitFor, MoveOnlyResult) {
    auto main = []() -> Coro<> {
        auto make = []() -> Coro<std::unique_ptr<int>> {
            co_await sleep(0.5);
            co_return std::make_unique<int>(5);
        };
        std::unique_ptr<int> p = co_await wait_for(make(), 1.0);
        EXPECT_TRUE(p && *p == 5);
    };
    run_virtual(main());
}

TEST(WaitFor, DoneTaskWithAPositiveTimeoutReturnsAtOnce) {
    auto main = []() -> Coro<> {
        auto task = create_task(value_after(0, 6));
        co_await sleep(0.5);
        EXPECT_TRUE(task.done());
        double t0 = now();
        EXPECT_EQ(co_await wait_for(task, 1.0), 6);
        EXPECT_DOUBLE_EQ(now(), t0);
    };
    run_virtual(main());
}

TEST(WaitFor, DeadlineAfterTheResultHasNoEffect) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_EQ(co_await wait_for(value_after(0.5, 1), 1.0), 1);
        co_await sleep(2);  // the deadline passes during this sleep
        EXPECT_DOUBLE_EQ(now() - t0, 2.5);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

// ---- expiry -----------------------------------------------------------------------------------

TEST(WaitFor, TimeoutCancelsTheTaskAndRaisesTimeoutError) {
    auto main = []() -> Coro<> {
        bool running = false;
        auto task = create_task(tracked_sleep(10, running));
        double t0 = now();
        EXPECT_THROW(co_await wait_for(task, 1.5), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.5);
        EXPECT_TRUE(task.done());
        EXPECT_TRUE(task.cancelled());  // cancelled because of the timeout
        EXPECT_FALSE(running);
    };
    run_virtual(main());
}

TEST(WaitFor, TimeoutCancelsTheCoroutineAndRaisesTimeoutError) {
    auto main = []() -> Coro<> {
        bool running = false;
        double t0 = now();
        EXPECT_THROW(co_await wait_for(tracked_sleep(10, running), 1.5), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.5);
        EXPECT_FALSE(running);
    };
    run_virtual(main());
}

TEST(WaitFor, TimeoutCancelsThePendingFuture) {
    auto main = []() -> Coro<> {
        Future<int> fut;
        double t0 = now();
        EXPECT_THROW(co_await wait_for(fut, 0.5), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
        EXPECT_TRUE(fut.cancelled());
    };
    run_virtual(main());
}

TEST(WaitFor, CancellingIsRestoredAfterATimeout) {
    auto main = []() -> Coro<> {
        EXPECT_THROW(co_await wait_for(sleep(10), 1.0), TimeoutError);
        EXPECT_EQ(current_task().cancelling(), 0);
        auto task = create_task(value_after(10, 1));
        EXPECT_THROW(co_await wait_for(task, 1.0), TimeoutError);
        EXPECT_EQ(current_task().cancelling(), 0);
        co_await sleep(1);  // not cancelled
    };
    run_virtual(main());
}

TEST(WaitFor, TheWaitingTaskEndsWithTimeoutErrorNotCancelled) {
    auto main = []() -> Coro<> {
        auto waiter = create_task(wait_for(value_after(10, 1), 1.0));
        EXPECT_EQ(co_await outcome_of(waiter), Outcome::timeout);
        EXPECT_TRUE(waiter.done());
        EXPECT_FALSE(waiter.cancelled());
        EXPECT_THROW(std::rethrow_exception(waiter.exception()), TimeoutError);
    };
    run_virtual(main());
}

TEST(WaitFor, WaitsForTheTaskToFinishCancelling) {
    auto main = []() -> Coro<> {
        bool finished = false;
        auto inner = create_task(slow_to_cancel(0.25, finished));
        double t0 = now();
        EXPECT_THROW(co_await wait_for(inner, 0.5), TimeoutError);
        EXPECT_TRUE(finished);
        EXPECT_TRUE(inner.cancelled());
        EXPECT_DOUBLE_EQ(now() - t0, 0.75);
    };
    run_virtual(main());
}

TEST(WaitFor, WaitsForTheCoroutineToFinishCancelling) {
    auto main = []() -> Coro<> {
        bool finished = false;
        double t0 = now();
        EXPECT_THROW(co_await wait_for(slow_to_cancel(0.25, finished), 0.5), TimeoutError);
        EXPECT_TRUE(finished);
        EXPECT_DOUBLE_EQ(now() - t0, 0.75);
    };
    run_virtual(main());
}

TEST(WaitFor, ReraisesAnExceptionRaisedByTheTaskDuringCancellation) {
    auto main = []() -> Coro<> {
        auto inner = create_task(raises_foo_when_cancelled(2));
        double t0 = now();
        EXPECT_THROW(co_await wait_for(inner, 0.5), FooException);
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
        EXPECT_FALSE(inner.cancelled());
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(WaitFor, ReraisesAnExceptionRaisedByTheCoroutineDuringCancellation) {
    auto main = []() -> Coro<> {
        EXPECT_THROW(co_await wait_for(raises_foo_when_cancelled(2), 0.5), FooException);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(WaitFor, CoroutineSuppressingCancellationReturnsItsValue) {
    auto main = []() -> Coro<> {
        double t0 = now();
        int r = co_await wait_for(return_42_on_cancel(), 0.5);
        EXPECT_EQ(r, 42);
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
        EXPECT_EQ(current_task().cancelling(), 0);
        co_await sleep(1);  // not cancelled
    };
    run_virtual(main());
}

TEST(WaitFor, CoroutineCatchingTheCancellationThenReturningGivesTheValue) {
    auto main = []() -> Coro<> {
        auto inner = []() -> Coro<int> {
            EXPECT_THROW(co_await sleep(1), CancelledError);
            co_return 1;
        };
        int r = co_await wait_for(inner(), 0.125);
        EXPECT_EQ(r, 1);
    };
    run_virtual(main());
}

TEST(WaitFor, TaskSuppressingCancellationReturnsItsValue) {
    auto main = []() -> Coro<> {
        auto inner = create_task(return_42_on_cancel());
        double t0 = now();
        int r = co_await wait_for(inner, 0.5);
        EXPECT_EQ(r, 42);
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
        EXPECT_FALSE(inner.cancelled());
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(WaitFor, CoroutineIgnoringCancellationRunsToItsEndWithoutTimeoutError) {
    auto main = []() -> Coro<> {
        SlowTask t;
        double t0 = now();
        Outcome o = co_await outcome_of(wait_for(t.run(), SlowTask::duration / 2));
        EXPECT_EQ(o, Outcome::value);
        EXPECT_TRUE(t.exited);
        EXPECT_DOUBLE_EQ(now() - t0, SlowTask::duration);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(WaitFor, TimeoutErrorRaisedByTheInnerItselfPassesThrough) {
    auto main = []() -> Coro<> {
        auto inner = []() -> Coro<int> {
            co_await sleep(0.5);
            throw TimeoutError("inner");
        };
        try {
            co_await wait_for(inner(), 1.0);
            ADD_FAILURE() << "expected TimeoutError";
        } catch (const TimeoutError& e) {
            EXPECT_STREQ(e.what(), "inner");
        }
    };
    run_virtual(main());
}

// ---- timeout <= 0 -----------------------------------------------------------------------------

TEST(WaitFor, ZeroTimeoutOnADoneFutureReturnsItsResult) {
    auto main = []() -> Coro<> {
        for (double timeout : {0.0, -1.0}) {
            Future<std::string> fut;
            fut.set_result("done");
            double t0 = now();
            std::string r = co_await wait_for(fut, timeout);
            EXPECT_EQ(r, "done");
            EXPECT_TRUE(fut.done());
            EXPECT_DOUBLE_EQ(now(), t0);
        }
    };
    run_virtual(main());
}

TEST(WaitFor, ZeroTimeoutOnADoneTaskReturnsItsResult) {
    auto main = []() -> Coro<> {
        auto task = create_task(done_immediately());
        co_await sleep(0);
        EXPECT_TRUE(task.done());
        EXPECT_EQ(co_await wait_for(task, 0), "done");
        EXPECT_FALSE(task.cancelled());
    };
    run_virtual(main());
}

TEST(WaitFor, ZeroTimeoutOnAFailedFutureRaisesItsException) {
    auto main = []() -> Coro<> {
        Future<int> fut;
        fut.set_exception(std::make_exception_ptr(std::logic_error("failed")));
        try {
            co_await wait_for(fut, 0);
            ADD_FAILURE() << "expected std::logic_error";
        } catch (const std::logic_error& e) {
            EXPECT_STREQ(e.what(), "failed");
        }
    };
    run_virtual(main());
}

TEST(WaitFor, ZeroTimeoutNeverStartsTheCoroutine) {
    auto main = []() -> Coro<> {
        bool started = false;
        auto foo = [](bool& flag) -> Coro<> {
            flag = true;
            co_return;
        };
        double t0 = now();
        EXPECT_THROW(co_await wait_for(foo(started), 0), TimeoutError);
        EXPECT_FALSE(started);
        EXPECT_DOUBLE_EQ(now(), t0);
        EXPECT_THROW(co_await wait_for(foo(started), -1), TimeoutError);
        EXPECT_FALSE(started);
    };
    run_virtual(main());
}

TEST(WaitFor, ZeroOrNegativeTimeoutCancelsARunningTask) {
    auto main = []() -> Coro<> {
        for (double timeout : {0.0, -1.0}) {
            SCOPED_TRACE(timeout);
            bool running = false;
            Future<> started;
            auto foo = [](Future<> started, bool& running) -> Coro<std::string> {
                running = true;
                started.set_result();
                try {
                    co_await sleep(10);
                } catch (...) {
                    running = false;
                    throw;
                }
                running = false;
                co_return "done";
            };
            auto task = create_task(foo(started, running));
            co_await started;
            EXPECT_TRUE(running);
            double t0 = now();
            EXPECT_THROW(co_await wait_for(task, timeout), TimeoutError);
            EXPECT_TRUE(task.done());
            EXPECT_TRUE(task.cancelled());  // cancelled because of the timeout
            EXPECT_FALSE(running);
            EXPECT_DOUBLE_EQ(now(), t0);
        }
    };
    run_virtual(main());
}

TEST(WaitFor, ZeroTimeoutWaitsForTheCancellationToFinish) {
    auto main = []() -> Coro<> {
        bool finished = false;
        auto inner = create_task(slow_to_cancel(0.25, finished));
        co_await sleep(0.125);
        double t0 = now();
        EXPECT_THROW(co_await wait_for(inner, 0), TimeoutError);
        EXPECT_TRUE(finished);
        EXPECT_TRUE(inner.cancelled());
        EXPECT_DOUBLE_EQ(now() - t0, 0.25);
    };
    run_virtual(main());
}

TEST(WaitFor, ZeroTimeoutCancelsAPendingFuture) {
    auto main = []() -> Coro<> {
        Future<int> fut;
        EXPECT_THROW(co_await wait_for(fut, 0), TimeoutError);
        EXPECT_TRUE(fut.cancelled());
    };
    run_virtual(main());
}

TEST(WaitFor, ZeroTimeoutOnATaskSuppressingCancellationReturnsItsValue) {
    auto main = []() -> Coro<> {
        auto inner = create_task(return_42_on_cancel());
        co_await sleep(0);
        EXPECT_EQ(co_await wait_for(inner, 0), 42);
        EXPECT_FALSE(inner.cancelled());
    };
    run_virtual(main());
}

TEST(WaitFor, ZeroTimeoutReraisesAnExceptionRaisedDuringCancellation) {
    auto main = []() -> Coro<> {
        auto inner = create_task(raises_foo_when_cancelled(2));
        co_await sleep(0);
        EXPECT_THROW(co_await wait_for(inner, 0), FooException);
    };
    run_virtual(main());
}

TEST(WaitFor, NegativeChronoTimeoutCancelsAtOnce) {
    auto main = []() -> Coro<> {
        auto task = create_task(value_after(10, 1));
        co_await sleep(0);
        double t0 = now();
        EXPECT_THROW(co_await wait_for(task, -1s), TimeoutError);
        EXPECT_TRUE(task.cancelled());
        EXPECT_DOUBLE_EQ(now(), t0);
    };
    run_virtual(main());
}

TEST(WaitFor, ZeroTimeoutLeavesTheWaitingTaskUncancelled) {
    auto main = []() -> Coro<> {
        auto task = create_task(value_after(10, 1));
        EXPECT_THROW(co_await wait_for(task, 0), TimeoutError);
        EXPECT_EQ(current_task().cancelling(), 0);
        co_await sleep(1);  // not cancelled
    };
    run_virtual(main());
}

// ---- no timeout -------------------------------------------------------------------------------

TEST(WaitFor, NoneWaitsForever) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_EQ(co_await wait_for(value_after(1000, 8), std::nullopt), 8);
        EXPECT_DOUBLE_EQ(now() - t0, 1000.0);
    };
    run_virtual(main());
}

TEST(WaitFor, NoneWithACoroutineThatDoesNotSuspend) {
    auto main = []() -> Coro<> {
        std::string r = co_await wait_for(done_immediately(), std::nullopt);
        EXPECT_EQ(r, "done");
    };
    run_virtual(main());
}

TEST(WaitFor, NoneOnAFutureWaitsForItsResult) {
    auto main = []() -> Coro<> {
        Future<int> fut;
        get_running_loop().call_later(500, [fut]() mutable { fut.set_result(3); });
        double t0 = now();
        EXPECT_EQ(co_await wait_for(fut, std::nullopt), 3);
        EXPECT_DOUBLE_EQ(now() - t0, 500.0);
    };
    run_virtual(main());
}

TEST(WaitFor, DefaultOptionalDelayMeansNoTimeout) {
    auto main = []() -> Coro<> { EXPECT_EQ(co_await wait_for(value_after(100, 9), OptionalDelay{}), 9); };
    run_virtual(main());
}

// ---- cancelling the waiting task -------------------------------------------------------------

namespace {
Coro<> blocking_coroutine() {
    Future<> fut;
    co_await fut;  // never set
}

Coro<> cancel_wait_for_cancels_the_task(OptionalDelay timeout) {
    auto task = create_task(blocking_coroutine());
    auto waiter = create_task(wait_for(task, timeout));
    get_running_loop().call_soon([waiter]() mutable { waiter.cancel(); });
    EXPECT_EQ(co_await outcome_of(waiter), Outcome::cancelled);
    EXPECT_TRUE(waiter.cancelled());
    // Python issue #23219: cancelling the wait must also cancel the task.
    EXPECT_TRUE(task.cancelled());
}
}  // namespace

TEST(WaitFor, CancellingTheWaiterCancelsTheTask) { run_virtual(cancel_wait_for_cancels_the_task(60.0)); }

TEST(WaitFor, CancellingTheWaiterWithoutTimeoutCancelsTheTask) {
    run_virtual(cancel_wait_for_cancels_the_task(std::nullopt));
}

TEST(WaitFor, CancellingTheWaiterCancelsTheCoroutineAndStaysCancelledError) {
    auto main = []() -> Coro<> {
        bool running = false;
        double t0 = now();
        auto waiter = create_task(wait_for(tracked_sleep(100, running), 10.0));
        co_await sleep(1);
        EXPECT_TRUE(running);
        waiter.cancel("stop");
        try {
            co_await waiter;
            ADD_FAILURE() << "expected CancelledError";
        } catch (const CancelledError& e) {
            EXPECT_EQ(e.message(), "stop");
        }
        EXPECT_TRUE(waiter.cancelled());
        EXPECT_FALSE(running);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
    };
    run_virtual(main());
}

TEST(WaitFor, CancellingTheWaiterDuringAZeroTimeoutCancellationStaysCancelledError) {
    auto main = []() -> Coro<> {
        bool finished = false;
        auto inner = create_task(slow_to_cancel(1, finished));
        co_await sleep(0);
        auto waiter = create_task(wait_for(inner, 0));
        co_await sleep(0.5);  // the waiter is waiting for the inner task to finish cancelling
        waiter.cancel();
        EXPECT_EQ(co_await outcome_of(waiter), Outcome::cancelled);
        co_await sleep(1);
        EXPECT_TRUE(finished);
        EXPECT_TRUE(inner.cancelled());
    };
    run_virtual(main());
}

TEST(WaitFor, WaiterCancelledBeforeStartingLeavesTheTaskAlone) {
    auto main = []() -> Coro<> {
        auto inner = []() -> Coro<int> {
            for (int i = 0; i < 3; ++i) {
                try {
                    co_await sleep(3);
                    break;
                } catch (const CancelledError&) {
                }
            }
            co_return 42;
        };
        auto inner_task = create_task(inner());
        auto task = create_task(wait_for(inner_task, 1.0));
        task.cancel();
        EXPECT_EQ(co_await outcome_of(task), Outcome::cancelled);
        EXPECT_EQ(co_await inner_task, 42);
    };
    run_virtual(main());
}

TEST(WaitFor, CancelledWaiterWhoseCoroutineIgnoresTheCancelRunsItToItsEnd) {
    auto main = []() -> Coro<> {
        SlowTask t;
        double t0 = now();
        auto waiter = create_task(wait_for(t.run(), SlowTask::duration * 2));
        co_await sleep(0);
        waiter.cancel();
        std::vector<Task<>> tasks{waiter};  // GCC 12 rejects a braced temporary in co_await
        co_await asyncio::wait(tasks);
        EXPECT_TRUE(t.exited);
        EXPECT_DOUBLE_EQ(now() - t0, SlowTask::duration);
        // The coroutine swallowed the only cancel request: the waiter ends normally.
        EXPECT_FALSE(waiter.cancelled());
    };
    run_virtual(main());
}

TEST(WaitFor, CancelAfterAnImmediateResultIsNotLost) {
    // GH-86296: the inner coroutine completes at once; a cancel arriving later still cancels.
    auto main = []() -> Coro<> {
        bool reached_end = false;
        auto wait_for_coro = [&]() -> Coro<> {
            co_await wait_for(done_immediately(), 100.0);
            co_await sleep(1);
            reached_end = true;
        };
        auto task = create_task(wait_for_coro());
        co_await sleep(0);
        EXPECT_FALSE(task.done());
        task.cancel();
        EXPECT_EQ(co_await outcome_of(task), Outcome::cancelled);
        EXPECT_FALSE(reached_end);
    };
    run_virtual(main());
}

TEST(WaitFor, CancelAfterTheInnerTaskCompletedInTheSameIterationIsNotLost) {
    auto main = []() -> Coro<> {
        auto inner_task = create_task(done_immediately());
        bool reached_end = false;
        auto wait_for_coro = [&]() -> Coro<> {
            co_await wait_for(inner_task, 100.0);
            co_await sleep(1);
            reached_end = true;
        };
        auto task = create_task(wait_for_coro());
        EXPECT_FALSE(task.done());
        co_await sleep(0);  // run the task
        task.cancel();
        EXPECT_EQ(co_await outcome_of(task), Outcome::cancelled);
        EXPECT_TRUE(inner_task.done());
        EXPECT_EQ(co_await inner_task, "done");
        EXPECT_FALSE(reached_end);
    };
    run_virtual(main());
}

TEST(WaitFor, ExternalCancelAtTheDeadlineStaysCancelledError) {
    auto main = []() -> Coro<> {
        double t0 = now();
        auto waiter = create_task(wait_for(value_after(100, 1), 1.0));
        co_await sleep(0);  // the waiter entered its timeout, deadline t0 + 1
        get_running_loop().call_at(t0 + 1.0, [waiter]() mutable { waiter.cancel(); });
        EXPECT_EQ(co_await outcome_of(waiter), Outcome::cancelled);
        EXPECT_TRUE(waiter.cancelled());
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
    };
    run_virtual(main());
}

TEST(WaitFor, InnerTaskCancelledByAnotherPartyGivesCancelledErrorNotTimeout) {
    auto main = []() -> Coro<> {
        auto inner = create_task(value_after(100, 1));
        auto waiter = create_task(wait_for(inner, 10.0));
        co_await sleep(1);
        inner.cancel();
        EXPECT_EQ(co_await outcome_of(waiter), Outcome::cancelled);
        EXPECT_TRUE(inner.cancelled());
        EXPECT_TRUE(waiter.cancelled());
    };
    run_virtual(main());
}

// ---- nesting with other timeouts --------------------------------------------------------------

TEST(WaitFor, NestedInnerShorterRaisesTheInnerTimeoutThroughTheOuter) {
    auto main = []() -> Coro<> {
        double t0 = now();
        auto inner = [&]() -> Coro<int> {
            try {
                co_return co_await wait_for(value_after(10, 1), 1.0);
            } catch (const TimeoutError&) {
                co_return -1;
            }
        };
        EXPECT_EQ(co_await wait_for(inner(), 5.0), -1);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
        EXPECT_THROW(co_await wait_for(wait_for(value_after(10, 1), 1.0), 5.0), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 2.0);
        EXPECT_EQ(current_task().cancelling(), 0);
        co_await sleep(10);  // neither deadline leaves a cancellation behind
    };
    run_virtual(main());
}

TEST(WaitFor, NestedOuterShorterRaisesTheOuterTimeout) {
    auto main = []() -> Coro<> {
        double t0 = now();
        bool inner_claimed = false;
        auto inner = [&]() -> Coro<int> {
            try {
                co_return co_await wait_for(value_after(10, 1), 5.0);
            } catch (const TimeoutError&) {
                inner_claimed = true;
                throw;
            }
        };
        EXPECT_THROW(co_await wait_for(inner(), 1.0), TimeoutError);
        EXPECT_FALSE(inner_claimed);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
        EXPECT_EQ(current_task().cancelling(), 0);
        co_await sleep(10);
    };
    run_virtual(main());
}

TEST(WaitFor, InsideATimeoutTheShorterDeadlineWins) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(1.0, wait_for(sleep(10), 5.0)), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
        EXPECT_THROW(co_await timeout(5.0, wait_for(sleep(10), 1.0)), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 2.0);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

// ---- shield -----------------------------------------------------------------------------------

TEST(WaitFor, ZeroTimeoutOnAShieldCancelsOnlyTheShield) {
    auto main = []() -> Coro<> {
        auto coro = []() -> Coro<std::string> {
            co_await sleep(0.125);
            co_return "done";
        };
        auto task = create_task(coro());
        Future<std::string> shielded = shield(task);
        EXPECT_THROW(co_await wait_for(shielded, 0), TimeoutError);
        // The task runs on in the background.
        EXPECT_FALSE(task.done());
        EXPECT_FALSE(task.cancelled());
        EXPECT_TRUE(shielded.cancelled());
        co_await sleep(1);
        EXPECT_TRUE(task.done());
        EXPECT_EQ(task.result(), "done");
    };
    run_virtual(main());
}

TEST(WaitFor, NoTimeoutOnAShieldWaitsForTheTask) {
    auto main = []() -> Coro<> {
        auto task = create_task(value_after(1, 10));
        EXPECT_EQ(co_await wait_for(shield(task), std::nullopt), 10);
        EXPECT_TRUE(task.done());
        EXPECT_EQ(co_await task, 10);
    };
    run_virtual(main());
}

TEST(WaitFor, ShieldedTaskSurvivesTheTimeout) {
    auto main = []() -> Coro<> {
        auto task = create_task(value_after(1, 11));
        double t0 = now();
        EXPECT_THROW(co_await wait_for(shield(task), 0.125), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 0.125);
        EXPECT_FALSE(task.done());
        EXPECT_FALSE(task.cancelled());
        EXPECT_EQ(co_await task, 11);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
    };
    run_virtual(main());
}

// ---- exceptions pass through ------------------------------------------------------------------

TEST(WaitFor, ExceptionFromTheCoroutinePassesThrough) {
    auto main = []() -> Coro<> {
        auto boom = []() -> Coro<int> {
            co_await sleep(0.5);
            throw std::out_of_range("boom");
        };
        double t0 = now();
        try {
            co_await wait_for(boom(), 1.0);
            ADD_FAILURE() << "expected std::out_of_range";
        } catch (const std::out_of_range& e) {
            EXPECT_STREQ(e.what(), "boom");
        }
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
        EXPECT_EQ(current_task().cancelling(), 0);
        co_await sleep(1);  // the deadline passes without effect
    };
    run_virtual(main());
}

TEST(WaitFor, ExceptionFromTheTaskPassesThrough) {
    auto main = []() -> Coro<> {
        auto boom = []() -> Coro<> {
            co_await sleep(0.5);
            throw std::invalid_argument("bad");
        };
        auto task = create_task(boom());
        try {
            co_await wait_for(task, 1.0);
            ADD_FAILURE() << "expected std::invalid_argument";
        } catch (const std::invalid_argument& e) {
            EXPECT_STREQ(e.what(), "bad");
        }
        EXPECT_FALSE(task.cancelled());
    };
    run_virtual(main());
}

TEST(WaitFor, ExceptionFromTheFuturePassesThrough) {
    auto main = []() -> Coro<> {
        Future<int> fut;
        get_running_loop().call_later(
            0.5, [fut]() mutable { fut.set_exception(std::make_exception_ptr(std::length_error("long"))); });
        EXPECT_THROW(co_await wait_for(fut, 1.0), std::length_error);
        EXPECT_THROW(co_await wait_for(fut, std::nullopt), std::length_error);
    };
    run_virtual(main());
}

TEST(WaitFor, ExceptionBeforeAnySuspensionPassesThrough) {
    auto main = []() -> Coro<> {
        auto boom = []() -> Coro<int> {
            if (now() >= 0) throw std::domain_error("early");
            co_return 0;
        };
        EXPECT_THROW(co_await wait_for(boom(), 1.0), std::domain_error);
        EXPECT_THROW(co_await wait_for(boom(), std::nullopt), std::domain_error);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

// ---- race between completion and timeout ------------------------------------------------------

TEST(WaitFor, ResultJustBeforeTheDeadlineWins) {
    auto main = []() -> Coro<> {
        Future<std::string> fut;
        auto waiting = wait_for(fut, 0.25);
        get_running_loop().call_later(0.125, [fut]() mutable { fut.set_result("ok"); });
        EXPECT_EQ(co_await std::move(waiting), "ok");
    };
    run_virtual(main());
}

TEST(WaitFor, ManyConcurrentWaitersEachGetTheirOwnOutcome) {
    auto main = []() -> Coro<> {
        std::vector<Task<Outcome>> waiters;
        for (int i = 1; i <= 6; ++i) {
            // Even i: the work (i * 0.5 s) finishes before the deadline (i * 0.5 + 0.25 s);
            // odd i: the deadline (i * 0.5 - 0.25 s) comes first.
            double work = i * 0.5;
            double deadline = (i % 2 == 0) ? work + 0.25 : work - 0.25;
            waiters.push_back(create_task(outcome_of(wait_for(value_after(work, i), deadline))));
        }
        auto outcomes = co_await gather(waiters);
        for (int i = 1; i <= 6; ++i) EXPECT_EQ(outcomes[i - 1], i % 2 == 0 ? Outcome::value : Outcome::timeout) << i;
    };
    run_virtual(main());
}
