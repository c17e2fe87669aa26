// tests/runtime/test_timeouts.cpp - asyncio::timeout / timeout_at and the Timeout object.
//
// The semantic scenarios of CPython's Lib/test/test_asyncio/test_timeouts.py, on the virtual
// clock so that every deadline can be checked exactly. Python's `async with timeout(d) as cm:`
// is spelled either `co_await timeout(d, aw)`, the lambda form
// `co_await timeout(d, [&](Timeout& cm) -> Coro<T> {...})`, or (when the Timeout object has to
// be inspected after the block) a Timeout driven through its public enter()/exit() pair, see
// async_with() below.
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

Coro<> sleep_for(double delay) { co_await sleep(delay); }

/// Python's `async with cm: await body` through the public enter()/exit() pair, so that the
/// Timeout outlives the block and its state can be checked afterwards.
Coro<> async_with(Timeout& cm, Coro<> body) {
    cm.enter();
    std::exception_ptr error;
    try {
        co_await std::move(body);
    } catch (...) {
        error = std::current_exception();
    }
    cm.exit(error);
    if (error) std::rethrow_exception(error);
}

}  // namespace

// ---- basic expiry -----------------------------------------------------------------------------

TEST(Timeout, ExpiresAtTheDeadlineWithTimeoutError) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(1.5, sleep(10)), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.5);
    };
    run_virtual(main());
}

TEST(Timeout, ExpiredTimeoutObjectReportsExpired) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 0.5);
        EXPECT_FALSE(cm.expired());
        EXPECT_THROW(co_await async_with(cm, sleep_for(10)), TimeoutError);
        EXPECT_TRUE(cm.expired());
    };
    run_virtual(main());
}

TEST(Timeout, TimeoutAtExpiresAtTheAbsoluteDeadline) {
    auto main = []() -> Coro<> {
        double deadline = now() + 2.25;
        EXPECT_THROW(co_await timeout_at(deadline, sleep(10)), TimeoutError);
        EXPECT_DOUBLE_EQ(now(), deadline);
    };
    run_virtual(main());
}

TEST(Timeout, TimeoutAtObjectKeepsItsDeadlineAfterExpiry) {
    auto main = []() -> Coro<> {
        double deadline = now() + 0.25;
        Timeout cm(deadline);
        EXPECT_THROW(co_await async_with(cm, sleep_for(10)), TimeoutError);
        EXPECT_TRUE(cm.expired());
        EXPECT_EQ(cm.when().value_or(-1), deadline);
    };
    run_virtual(main());
}

TEST(Timeout, AcceptsChronoDurations) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(1500ms, sleep(10)), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.5);
        int v = co_await timeout(2s, value_after(1, 7));
        EXPECT_EQ(v, 7);
        EXPECT_DOUBLE_EQ(now() - t0, 2.5);
    };
    run_virtual(main());
}

TEST(Timeout, LambdaFormAcceptsChronoDurations) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(250ms,
                                      [&](Timeout& cm) -> Coro<> {
                                          EXPECT_DOUBLE_EQ(*cm.when(), t0 + 0.25);
                                          co_await sleep(10);
                                      }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 0.25);
    };
    run_virtual(main());
}

TEST(Timeout, BodySeesCancelledErrorBeforeItBecomesTimeoutError) {
    auto main = []() -> Coro<> {
        bool cancelled = false;
        EXPECT_THROW(co_await timeout(0.5,
                                      [&](Timeout&) -> Coro<> {
                                          try {
                                              co_await sleep(10);
                                          } catch (const CancelledError&) {
                                              cancelled = true;
                                              throw;
                                          }
                                      }),
                     TimeoutError);
        EXPECT_TRUE(cancelled);
    };
    run_virtual(main());
}

TEST(Timeout, LambdaFormSeesExpiredInsideTheBodyAfterTheCancellation) {
    auto main = []() -> Coro<> {
        bool expired_before = true;
        bool expired_after = false;
        EXPECT_THROW(co_await timeout(0.5,
                                      [&](Timeout& cm) -> Coro<> {
                                          expired_before = cm.expired();
                                          std::exception_ptr e;
                                          try {
                                              co_await sleep(10);
                                          } catch (const CancelledError&) {
                                              e = std::current_exception();
                                          }
                                          expired_after = cm.expired();
                                          if (e) std::rethrow_exception(e);
                                      }),
                     TimeoutError);
        EXPECT_FALSE(expired_before);
        EXPECT_TRUE(expired_after);
    };
    run_virtual(main());
}

TEST(Timeout, TheTaskIsNotCancelledAfterATimeoutError) {
    auto main = []() -> Coro<> {
        auto outer = []() -> Coro<int> {
            try {
                co_await timeout(0.125, sleep(10));
            } catch (const TimeoutError&) {
                co_return 1;
            }
            co_return 0;
        };
        auto task = create_task(outer());
        int r = co_await task;
        EXPECT_EQ(r, 1);
        EXPECT_TRUE(task.done());
        EXPECT_FALSE(task.cancelled());
        EXPECT_EQ(task.cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, TaskCanKeepAwaitingAfterATimeoutError) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(1, sleep(10)), TimeoutError);
        // No stray cancellation is left behind: the next sleep runs to its end.
        co_await sleep(3);
        EXPECT_DOUBLE_EQ(now() - t0, 4.0);
    };
    run_virtual(main());
}

// ---- not expired ------------------------------------------------------------------------------

TEST(Timeout, BodyFinishingFirstReturnsItsValue) {
    auto main = []() -> Coro<> {
        double t0 = now();
        int v = co_await timeout(10, value_after(0.5, 42));
        EXPECT_EQ(v, 42);
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
    };
    run_virtual(main());
}

TEST(Timeout, NotExpiredWhenBodyFinishesFirst) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 10);
        co_await async_with(cm, sleep_for(0.5));
        double t1 = now();
        EXPECT_FALSE(cm.expired());
        EXPECT_GT(cm.when().value_or(-1), t1);
    };
    run_virtual(main());
}

TEST(Timeout, TimerIsCancelledWhenBodyFinishesFirst) {
    auto main = []() -> Coro<> {
        double t0 = now();
        co_await timeout(1, sleep(0.5));
        // The deadline (t0 + 1) passes during this sleep: it must not cancel anything.
        co_await sleep(5);
        EXPECT_DOUBLE_EQ(now() - t0, 5.5);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, LambdaFormReturnsTheBodyValue) {
    auto main = []() -> Coro<> {
        std::string s = co_await timeout(5, [](Timeout& cm) -> Coro<std::string> {
            co_await sleep(1);
            EXPECT_FALSE(cm.expired());
            co_return "done";
        });
        EXPECT_EQ(s, "done");
    };
    run_virtual(main());
}

TEST(Timeout, MoveOnlyResultPassesThrough) {
    auto main = []() -> Coro<> {
        auto make = []() -> Coro<std::unique_ptr<int>> {
            co_await sleep(0.5);
            co_return std::make_unique<int>(9);
        };
        std::unique_ptr<int> p = co_await timeout(1, make());
        EXPECT_TRUE(p && *p == 9);
    };
    run_virtual(main());
}

TEST(Timeout, BodyThatNeverSuspendsIsNotCancelledEvenWithAPastDeadline) {
    auto main = []() -> Coro<> {
        // The deadline is already due, but the body ends before the loop gets a chance to
        // run the timeout callback; afterwards the task is not cancelled.
        int v = co_await timeout(-1, [](Timeout&) -> Coro<int> { co_return 3; });
        EXPECT_EQ(v, 3);
        co_await sleep(0);
        co_await sleep(1);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

// ---- disabled timeouts ------------------------------------------------------------------------

TEST(Timeout, NoneNeverExpires) {
    auto main = []() -> Coro<> {
        double t0 = now();
        int v = co_await timeout(std::nullopt, value_after(1000, 5));
        EXPECT_EQ(v, 5);
        EXPECT_DOUBLE_EQ(now() - t0, 1000.0);
    };
    run_virtual(main());
}

TEST(Timeout, NoneTimeoutObjectIsNotExpiredAndHasNoDeadline) {
    auto main = []() -> Coro<> {
        Timeout cm(std::nullopt);
        co_await async_with(cm, sleep_for(0.5));
        EXPECT_FALSE(cm.expired());
        EXPECT_FALSE(cm.when().has_value());
    };
    run_virtual(main());
}

TEST(Timeout, LambdaFormWithNoneHasNoDeadline) {
    auto main = []() -> Coro<> {
        bool had_deadline = true;
        co_await timeout(std::nullopt, [&](Timeout& cm) -> Coro<> {
            had_deadline = cm.when().has_value();
            co_await sleep(100);
        });
        EXPECT_FALSE(had_deadline);
    };
    run_virtual(main());
}

TEST(Timeout, TimeoutAtNoneNeverExpires) {
    auto main = []() -> Coro<> {
        double t0 = now();
        int v = co_await timeout_at(std::nullopt, value_after(500, 6));
        EXPECT_EQ(v, 6);
        EXPECT_DOUBLE_EQ(now() - t0, 500.0);
        bool had_deadline = true;
        co_await timeout_at(std::nullopt, [&](Timeout& cm) -> Coro<> {
            had_deadline = cm.when().has_value();
            co_await sleep(1);
        });
        EXPECT_FALSE(had_deadline);
    };
    run_virtual(main());
}

// ---- zero and past deadlines ------------------------------------------------------------------

TEST(Timeout, ZeroExpiresAtOnce) {
    auto main = []() -> Coro<> {
        double t0 = now();
        Timeout cm(t0);
        EXPECT_THROW(co_await async_with(cm, sleep_for(10)), TimeoutError);
        double t1 = now();
        EXPECT_TRUE(cm.expired());
        EXPECT_DOUBLE_EQ(t1, t0);
        EXPECT_LE(t0, *cm.when());
        EXPECT_LE(*cm.when(), t1);
    };
    run_virtual(main());
}

TEST(Timeout, ZeroDelayExpiresAtOnce) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(0, sleep(10)), TimeoutError);
        EXPECT_DOUBLE_EQ(now(), t0);
    };
    run_virtual(main());
}

TEST(Timeout, ZeroDelayExpiresOnSleepZero) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(0, sleep(0)), TimeoutError);
        EXPECT_DOUBLE_EQ(now(), t0);
    };
    run_virtual(main());
}

TEST(Timeout, DeadlineInThePastExpiresOnSleepZero) {
    auto main = []() -> Coro<> {
        double t0 = now();
        double deadline = -11;
        EXPECT_THROW(co_await timeout(-11,
                                      [&](Timeout& cm) -> Coro<> {
                                          deadline = *cm.when();
                                          co_await sleep(0);
                                      }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(now(), t0);
        EXPECT_DOUBLE_EQ(deadline, t0 - 11);
    };
    run_virtual(main());
}

TEST(Timeout, TimeoutAtInThePastExpiresAtOnce) {
    auto main = []() -> Coro<> {
        co_await sleep(10);
        double t0 = now();
        Timeout cm(t0 - 5);
        EXPECT_THROW(co_await async_with(cm, sleep_for(10)), TimeoutError);
        EXPECT_TRUE(cm.expired());
        EXPECT_DOUBLE_EQ(now(), t0);
        EXPECT_DOUBLE_EQ(*cm.when(), t0 - 5);
    };
    run_virtual(main());
}

// ---- exceptions other than the timeout's cancellation -----------------------------------------

TEST(Timeout, ForeignExceptionPassesThroughUnchanged) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 0.5);
        auto body = []() -> Coro<> {
            co_await sleep(0);
            throw std::out_of_range("key");
        };
        try {
            co_await async_with(cm, body());
            ADD_FAILURE() << "expected std::out_of_range";
        } catch (const std::out_of_range& e) {
            EXPECT_STREQ(e.what(), "key");
        }
        EXPECT_FALSE(cm.expired());
    };
    run_virtual(main());
}

TEST(Timeout, ForeignExceptionWithoutSuspendingPassesThrough) {
    auto main = []() -> Coro<> {
        auto body = [](Timeout&) -> Coro<int> {
            if (now() >= 0) throw std::invalid_argument("bad");  // raised before any suspension
            co_return 0;
        };
        try {
            co_await timeout(1, body);
            ADD_FAILURE() << "expected std::invalid_argument";
        } catch (const std::invalid_argument& e) {
            EXPECT_STREQ(e.what(), "bad");
        }
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, ForeignExceptionRaisedWhileHandlingTheTimeoutWins) {
    auto main = []() -> Coro<> {
        auto crash = []() -> Coro<> {
            try {
                co_await sleep(1);
            } catch (...) {
            }
            throw std::domain_error("1/0");
        };
        double t0 = now();
        Timeout cm(t0 + 0.5);
        try {
            co_await async_with(cm, crash());
            ADD_FAILURE() << "expected std::domain_error";
        } catch (const std::domain_error& e) {
            EXPECT_STREQ(e.what(), "1/0");
        }
        EXPECT_TRUE(cm.expired());
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, ExceptionGroupFromATaskGroupPassesThroughOnExpiry) {
    auto main = []() -> Coro<> {
        auto child = []() -> Coro<> {
            try {
                co_await sleep(2);  // interrupted when the timeout cancels the group
            } catch (...) {
            }
            throw std::domain_error("crash in cleanup");
        };
        double t0 = now();
        try {
            co_await timeout(0.5, task_group([&](TaskGroup& tg) -> Coro<> {
                                 tg.create_task(child());
                                 co_await sleep(10);
                             }));
            ADD_FAILURE() << "expected ExceptionGroup";
        } catch (const ExceptionGroup& eg) {
            EXPECT_EQ(eg.exceptions().size(), 1u);
            if (!eg.exceptions().empty()) {
                EXPECT_THROW(std::rethrow_exception(eg.exceptions()[0]), std::domain_error);
            }
        }
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

// ---- cancellations that are not the timeout's -------------------------------------------------

TEST(Timeout, ForeignCancelDoesNotBecomeTimeoutErrorIfNotExpired) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 10);
        auto body = []() -> Coro<> {
            current_task().cancel();
            co_await sleep(10);
        };
        double t0 = now();
        EXPECT_THROW(co_await async_with(cm, body()), CancelledError);
        EXPECT_FALSE(cm.expired());
        EXPECT_DOUBLE_EQ(now(), t0);
        EXPECT_EQ(current_task().cancelling(), 1);
        current_task().uncancel();
    };
    run_virtual(main());
}

TEST(Timeout, ExternalCancelDuringTimeoutStaysCancelledError) {
    auto main = []() -> Coro<> {
        auto worker = []() -> Coro<> { co_await timeout(10, sleep(100)); };
        double t0 = now();
        auto task = create_task(worker());
        co_await sleep(1);
        EXPECT_TRUE(task.cancel("stop"));
        Outcome o = co_await outcome_of(task);
        EXPECT_EQ(o, Outcome::cancelled);
        EXPECT_TRUE(task.cancelled());
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
    };
    run_virtual(main());
}

TEST(Timeout, ExternalCancelKeepsItsMessage) {
    auto main = []() -> Coro<> {
        auto worker = []() -> Coro<> { co_await timeout(10, sleep(100)); };
        auto task = create_task(worker());
        co_await sleep(1);
        task.cancel("external");
        try {
            co_await task;
            ADD_FAILURE() << "expected CancelledError";
        } catch (const CancelledError& e) {
            EXPECT_EQ(e.message(), "external");
        }
    };
    run_virtual(main());
}

TEST(Timeout, ExternalCancelAndExpiryAtTheSameTimeStayCancelledError) {
    auto main = []() -> Coro<> {
        double deadline = now() + 1;
        bool expired = false;
        auto worker = [&]() -> Coro<> {
            co_await timeout_at(deadline, [&](Timeout& cm) -> Coro<> {
                std::exception_ptr e;
                try {
                    co_await sleep(100);
                } catch (const CancelledError&) {
                    e = std::current_exception();
                }
                expired = cm.expired();
                if (e) std::rethrow_exception(e);
            });
        };
        auto task = create_task(worker());
        co_await sleep(0);  // the worker entered its timeout
        // Both the timeout and this cancel fire in the same loop iteration, before the worker
        // runs again: two cancel requests, so the timeout does not claim the cancellation.
        get_running_loop().call_at(deadline, [task]() mutable { task.cancel(); });
        Outcome o = co_await outcome_of(task);
        EXPECT_EQ(o, Outcome::cancelled);
        EXPECT_TRUE(task.cancelled());
        EXPECT_TRUE(expired);
        EXPECT_DOUBLE_EQ(now(), deadline);
    };
    run_virtual(main());
}

TEST(Timeout, CancelAfterExpiryInsideTheBodyStaysCancelledError) {
    auto main = []() -> Coro<> {
        int cancelling_after = -1;
        auto body = [&](Timeout&) -> Coro<> {
            try {
                co_await sleep(10);
            } catch (const CancelledError&) {
                // The timeout's own cancellation, swallowed; now a second one arrives.
            }
            current_task().cancel();
            co_await sleep(0);
        };
        EXPECT_THROW(co_await timeout(1, body), CancelledError);
        cancelling_after = current_task().cancelling();
        EXPECT_EQ(cancelling_after, 1);
        current_task().uncancel();
    };
    run_virtual(main());
}

TEST(Timeout, TimeoutAfterASwallowedCancellationStillRaisesTimeoutError) {
    auto main = []() -> Coro<> {
        try {
            current_task().cancel();
            co_await sleep(1);  // work which is cancelled
        } catch (const CancelledError&) {
        }
        EXPECT_EQ(current_task().cancelling(), 1);
        double t0 = now();
        EXPECT_THROW(co_await timeout(0.0, sleep(1)), TimeoutError);  // some cleanup
        EXPECT_DOUBLE_EQ(now(), t0);
        EXPECT_EQ(current_task().cancelling(), 1);
        current_task().uncancel();
    };
    run_virtual(main());
}

TEST(Timeout, CancelInsideTimeoutAfterASwallowedCancellationStaysCancelledError) {
    auto main = []() -> Coro<> {
        try {
            current_task().cancel();
            co_await sleep(1);
        } catch (const CancelledError&) {
        }
        Timeout cm(now() + 1.0);
        auto body = []() -> Coro<> {
            current_task().cancel();
            co_await sleep(2);
        };
        EXPECT_THROW(co_await async_with(cm, body()), CancelledError);
        EXPECT_FALSE(cm.expired());
        EXPECT_EQ(current_task().cancelling(), 2);
        current_task().uncancel();
        current_task().uncancel();
    };
    run_virtual(main());
}

// ---- cancelling() / uncancel() bookkeeping ---------------------------------------------------

TEST(Timeout, CancellingIsRestoredAfterExpiry) {
    auto main = []() -> Coro<> {
        EXPECT_EQ(current_task().cancelling(), 0);
        int during = -1;
        EXPECT_THROW(co_await timeout(1,
                                      [&](Timeout&) -> Coro<> {
                                          std::exception_ptr e;
                                          try {
                                              co_await sleep(10);
                                          } catch (const CancelledError&) {
                                              e = std::current_exception();
                                          }
                                          during = current_task().cancelling();
                                          if (e) std::rethrow_exception(e);
                                      }),
                     TimeoutError);
        EXPECT_EQ(during, 1);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, CancellingIsRestoredToANonZeroStartingValue) {
    auto main = []() -> Coro<> {
        try {
            current_task().cancel();
            co_await sleep(1);
        } catch (const CancelledError&) {
        }
        EXPECT_EQ(current_task().cancelling(), 1);
        EXPECT_THROW(co_await timeout(1, sleep(10)), TimeoutError);
        EXPECT_EQ(current_task().cancelling(), 1);
        EXPECT_THROW(co_await timeout(1, sleep(10)), TimeoutError);
        EXPECT_EQ(current_task().cancelling(), 1);
        current_task().uncancel();
    };
    run_virtual(main());
}

TEST(Timeout, CancellingStaysZeroWhenNotExpired) {
    auto main = []() -> Coro<> {
        co_await timeout(10, sleep(1));
        EXPECT_EQ(current_task().cancelling(), 0);
        co_await timeout(std::nullopt, sleep(1));
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, ManyConsecutiveExpiriesLeaveNoCancellation) {
    auto main = []() -> Coro<> {
        double t0 = now();
        for (int i = 0; i < 10; ++i) EXPECT_THROW(co_await timeout(0.5, sleep(10)), TimeoutError);
        EXPECT_EQ(current_task().cancelling(), 0);
        EXPECT_DOUBLE_EQ(now() - t0, 5.0);
        co_await sleep(1);
        EXPECT_DOUBLE_EQ(now() - t0, 6.0);
    };
    run_virtual(main());
}

// ---- a body that suppresses CancelledError ------------------------------------------------

TEST(Timeout, BodySuppressingCancellationReturnsItsValue) {
    auto main = []() -> Coro<> {
        double t0 = now();
        bool expired = false;
        int v = co_await timeout(1, [&](Timeout& cm) -> Coro<int> {
            try {
                co_await sleep(10);
            } catch (const CancelledError&) {
                expired = cm.expired();
                co_return 42;
            }
            co_return 0;
        });
        EXPECT_EQ(v, 42);
        EXPECT_TRUE(expired);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
        EXPECT_EQ(current_task().cancelling(), 0);
        co_await sleep(1);  // not cancelled any more
    };
    run_virtual(main());
}

TEST(Timeout, BodySuppressingCancellationIsExpiredButRaisesNothing) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 0.5);
        auto body = []() -> Coro<> {
            try {
                co_await sleep(10);
            } catch (const CancelledError&) {
            }
            co_await sleep(1);  // more work after the swallowed cancellation
        };
        double t0 = now();
        co_await async_with(cm, body());
        EXPECT_TRUE(cm.expired());
        EXPECT_DOUBLE_EQ(now() - t0, 1.5);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

// ---- nested timeouts --------------------------------------------------------------------------

TEST(Timeout, NestedWithTheSameDeadlineOnlyTheOuterRaisesTimeoutError) {
    auto main = []() -> Coro<> {
        double deadline = now() + 0.5;
        Timeout cm1(deadline);
        Timeout cm2(deadline);
        bool cancelled = false;
        auto inner_block = [&]() -> Coro<> {
            try {
                co_await async_with(cm2, sleep_for(10));
            } catch (const CancelledError&) {
                cancelled = true;
                throw;
            }
        };
        EXPECT_THROW(co_await async_with(cm1, inner_block()), TimeoutError);
        EXPECT_TRUE(cancelled);
        EXPECT_TRUE(cm1.expired());
        EXPECT_TRUE(cm2.expired());
        EXPECT_DOUBLE_EQ(now(), deadline);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, NestedInnerExpiresFirstAndTheOuterKeepsRunning) {
    auto main = []() -> Coro<> {
        double t0 = now();
        int v = co_await timeout(10, [&](Timeout& outer) -> Coro<int> {
            EXPECT_THROW(co_await timeout(1, sleep(5)), TimeoutError);
            EXPECT_DOUBLE_EQ(now() - t0, 1.0);
            EXPECT_FALSE(outer.expired());
            co_await sleep(3);
            co_return 8;
        });
        EXPECT_EQ(v, 8);
        EXPECT_DOUBLE_EQ(now() - t0, 4.0);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, NestedOuterInterruptsTheWorkAfterTheInnerExpired) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(2,
                                      [&](Timeout&) -> Coro<> {
                                          EXPECT_THROW(co_await timeout(1, sleep(5)), TimeoutError);
                                          co_await sleep(10);  // interrupted by the outer timeout
                                      }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 2.0);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, NestedOuterExpiresFirstInnerPropagatesCancelledError) {
    auto main = []() -> Coro<> {
        double t0 = now();
        Timeout inner(t0 + 5);
        Outcome inner_outcome = Outcome::value;
        auto outer_body = [&]() -> Coro<> {
            inner_outcome = co_await outcome_of(async_with(inner, sleep_for(10)));
            if (inner_outcome == Outcome::cancelled) throw CancelledError();
        };
        Timeout outer(t0 + 1);
        EXPECT_THROW(co_await async_with(outer, outer_body()), TimeoutError);
        EXPECT_EQ(inner_outcome, Outcome::cancelled);
        EXPECT_FALSE(inner.expired());
        EXPECT_TRUE(outer.expired());
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, NestedLambdaFormsOuterShorterRaisesFromTheOuter) {
    auto main = []() -> Coro<> {
        double t0 = now();
        bool inner_saw_cancel = false;
        EXPECT_THROW(co_await timeout(1,
                                      [&](Timeout&) -> Coro<> {
                                          try {
                                              co_await timeout(5, sleep(10));
                                          } catch (const TimeoutError&) {
                                              ADD_FAILURE() << "the inner timeout must not claim it";
                                          } catch (const CancelledError&) {
                                              inner_saw_cancel = true;
                                              throw;
                                          }
                                      }),
                     TimeoutError);
        EXPECT_TRUE(inner_saw_cancel);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
    };
    run_virtual(main());
}

TEST(Timeout, NestedTimeoutInsideTheCleanupOfAnExpiredOne) {
    auto main = []() -> Coro<> {
        double t0 = now();
        bool inner_timed_out = false;
        EXPECT_THROW(co_await timeout(0.5,
                                      [&](Timeout&) -> Coro<> {
                                          std::exception_ptr e;
                                          try {
                                              co_await sleep(1);
                                          } catch (...) {
                                              e = std::current_exception();
                                          }
                                          // "finally": cleanup with its own timeout.
                                          try {
                                              co_await timeout(0.5, sleep(10));
                                          } catch (const TimeoutError&) {
                                              inner_timed_out = true;
                                          }
                                          if (e) std::rethrow_exception(e);
                                      }),
                     TimeoutError);
        EXPECT_TRUE(inner_timed_out);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, ThreeLevelsOfNestingEachClaimOnlyTheirOwn) {
    auto main = []() -> Coro<> {
        double t0 = now();
        std::vector<std::string> log;
        co_await timeout(100, [&](Timeout&) -> Coro<> {
            try {
                co_await timeout(10, [&](Timeout&) -> Coro<> {
                    try {
                        co_await timeout(1, sleep(50));
                    } catch (const TimeoutError&) {
                        log.push_back("inner@" + std::to_string(int(now() - t0)));
                    }
                    co_await sleep(50);
                });
            } catch (const TimeoutError&) {
                log.push_back("middle@" + std::to_string(int(now() - t0)));
            }
            co_await sleep(5);
            log.push_back("outer body done");
        });
        EXPECT_EQ(log, (std::vector<std::string>{"inner@1", "middle@10", "outer body done"}));
        EXPECT_DOUBLE_EQ(now() - t0, 15.0);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

// ---- reschedule() -----------------------------------------------------------------------------

TEST(Timeout, RescheduleLaterPostponesTheExpiry) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(1,
                                      [&](Timeout& cm) -> Coro<> {
                                          cm.reschedule(now() + 5);
                                          EXPECT_DOUBLE_EQ(*cm.when(), t0 + 5);
                                          co_await sleep(10);
                                      }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 5.0);
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleEarlierAdvancesTheExpiry) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(10,
                                      [&](Timeout& cm) -> Coro<> {
                                          co_await sleep(1);
                                          cm.reschedule(now() + 0.5);
                                          co_await sleep(10);
                                      }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.5);
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleToNoneDisablesTheTimeout) {
    auto main = []() -> Coro<> {
        double t0 = now();
        bool has_deadline = true;
        int v = co_await timeout(1, [&](Timeout& cm) -> Coro<int> {
            cm.reschedule(std::nullopt);
            has_deadline = cm.when().has_value();
            co_await sleep(10);
            co_return 11;
        });
        EXPECT_EQ(v, 11);
        EXPECT_FALSE(has_deadline);
        EXPECT_DOUBLE_EQ(now() - t0, 10.0);
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleFromNoneSetsADeadline) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(std::nullopt,
                                      [&](Timeout& cm) -> Coro<> {
                                          co_await sleep(1);
                                          cm.reschedule(now() + 2);
                                          co_await sleep(100);
                                      }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 3.0);
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleIntoThePastExpiresAtOnce) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(10,
                                      [&](Timeout& cm) -> Coro<> {
                                          co_await sleep(1);
                                          cm.reschedule(now() - 1);
                                          co_await sleep(10);
                                      }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleToNowExpiresOnTheNextYield) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(10,
                                      [&](Timeout& cm) -> Coro<> {
                                          cm.reschedule(now());
                                          co_await sleep(0);
                                      }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(now(), t0);
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleRepeatedlyOnlyTheLastDeadlineCounts) {
    auto main = []() -> Coro<> {
        double t0 = now();
        EXPECT_THROW(co_await timeout(1,
                                      [&](Timeout& cm) -> Coro<> {
                                          for (int i = 0; i < 4; ++i) {
                                              co_await sleep(0.5);
                                              cm.reschedule(now() + 1);  // keep-alive
                                          }
                                          // t0 + 2 now; the deadline is t0 + 3
                                          co_await sleep(10);
                                      }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 3.0);
    };
    run_virtual(main());
}

TEST(Timeout, TimeoutAtLambdaFormCanReschedule) {
    auto main = []() -> Coro<> {
        double t0 = now();
        double when_seen = 0;
        EXPECT_THROW(co_await timeout_at(t0 + 1,
                                         [&](Timeout& cm) -> Coro<> {
                                             when_seen = *cm.when();
                                             cm.reschedule(t0 + 2);
                                             co_await sleep(10);
                                         }),
                     TimeoutError);
        EXPECT_DOUBLE_EQ(when_seen, t0 + 1);
        EXPECT_DOUBLE_EQ(now() - t0, 2.0);
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleFromAnotherTask) {
    auto main = []() -> Coro<> {
        double deadline1 = now() + 10;
        double deadline2 = deadline1 + 20;
        Timeout cm(deadline1);
        Future<> entered;
        auto f = [&]() -> Coro<> {
            cm.enter();
            std::exception_ptr error;
            try {
                entered.set_result();
                co_await sleep(50);
            } catch (...) {
                error = std::current_exception();
            }
            cm.exit(error);
            if (error) std::rethrow_exception(error);
        };
        auto task = create_task(f());
        co_await entered;

        EXPECT_DOUBLE_EQ(*cm.when(), deadline1);
        cm.reschedule(deadline2);
        EXPECT_DOUBLE_EQ(*cm.when(), deadline2);
        cm.reschedule(std::nullopt);
        EXPECT_FALSE(cm.when().has_value());

        task.cancel();
        EXPECT_EQ(co_await outcome_of(task), Outcome::cancelled);
        EXPECT_FALSE(cm.expired());
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleEarlierFromAnotherTaskExpiresTheOwner) {
    auto main = []() -> Coro<> {
        double t0 = now();
        Timeout cm(t0 + 100);
        auto owner = [&]() -> Coro<> { co_await async_with(cm, sleep_for(1000)); };
        auto task = create_task(owner());
        co_await sleep(1);
        cm.reschedule(now() + 2);
        EXPECT_EQ(co_await outcome_of(task), Outcome::timeout);
        EXPECT_TRUE(cm.expired());
        EXPECT_FALSE(task.cancelled());
        EXPECT_DOUBLE_EQ(now() - t0, 3.0);
    };
    run_virtual(main());
}

// ---- misuse: errors raised by the Timeout object -----------------------------------------------

TEST(Timeout, RescheduleBeforeEnterRaises) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 1);
        try {
            cm.reschedule(now() + 2);
            ADD_FAILURE() << "expected RuntimeError";
        } catch (const RuntimeError& e) {
            EXPECT_NE(std::string(e.what()).find("has not been entered"), std::string::npos) << e.what();
        }
        co_return;
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleOnAFinishedTimeoutRaises) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 1);
        co_await async_with(cm, sleep_for(0));
        try {
            cm.reschedule(now() + 2);
            ADD_FAILURE() << "expected RuntimeError";
        } catch (const RuntimeError& e) {
            EXPECT_NE(std::string(e.what()).find("finished"), std::string::npos) << e.what();
        }
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleOnAnExpiredTimeoutRaises) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 0.5);
        EXPECT_THROW(co_await async_with(cm, sleep_for(1)), TimeoutError);
        try {
            cm.reschedule(now() + 2);
            ADD_FAILURE() << "expected RuntimeError";
        } catch (const RuntimeError& e) {
            EXPECT_NE(std::string(e.what()).find("expired"), std::string::npos) << e.what();
        }
    };
    run_virtual(main());
}

TEST(Timeout, RescheduleWhileExpiringRaises) {
    auto main = []() -> Coro<> {
        std::string message;
        co_await timeout(0.5, [&](Timeout& cm) -> Coro<> {
            EXPECT_THROW(co_await sleep(1), CancelledError);
            try {
                cm.reschedule(now() + 2);
                ADD_FAILURE() << "expected RuntimeError";
            } catch (const RuntimeError& e) {
                message = e.what();
            }
        });
        EXPECT_NE(message.find("expiring"), std::string::npos) << message;
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, EnteringAnActiveTimeoutAgainRaises) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 1);
        auto body = [&]() -> Coro<> {
            try {
                cm.enter();
                ADD_FAILURE() << "expected RuntimeError";
            } catch (const RuntimeError& e) {
                EXPECT_NE(std::string(e.what()).find("has already been entered"), std::string::npos) << e.what();
            }
            co_return;
        };
        co_await async_with(cm, body());
        EXPECT_FALSE(cm.expired());
    };
    run_virtual(main());
}

TEST(Timeout, EnteringAFinishedTimeoutAgainRaises) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 1);
        co_await async_with(cm, sleep_for(0));
        try {
            cm.enter();
            ADD_FAILURE() << "expected RuntimeError";
        } catch (const RuntimeError& e) {
            EXPECT_NE(std::string(e.what()).find("has already been entered"), std::string::npos) << e.what();
        }
    };
    run_virtual(main());
}

TEST(Timeout, EnteringOutsideATaskRaises) {
    auto main = []() -> Coro<> {
        Timeout cm(now() + 1);
        std::string enter_error;
        std::string reschedule_error;
        Future<> ran;
        // A plain loop callback: inside the loop but not inside a task.
        get_running_loop().call_soon([&]() mutable {
            try {
                cm.enter();
            } catch (const RuntimeError& e) {
                enter_error = e.what();
            }
            try {
                cm.reschedule(2);
            } catch (const RuntimeError& e) {
                reschedule_error = e.what();
            }
            ran.set_result();
        });
        co_await ran;
        EXPECT_NE(enter_error.find("task"), std::string::npos) << enter_error;
        EXPECT_NE(reschedule_error.find("has not been entered"), std::string::npos) << reschedule_error;
    };
    run_virtual(main());
}

// ---- what can be awaited under a timeout ------------------------------------------------------

TEST(Timeout, ExpiryWhileAwaitingATaskCancelsThatTask) {
    auto main = []() -> Coro<> {
        auto task = create_task(value_after(10, 1));
        double t0 = now();
        EXPECT_THROW(co_await timeout(1, task), TimeoutError);
        EXPECT_DOUBLE_EQ(now() - t0, 1.0);
        EXPECT_TRUE(task.done());
        EXPECT_TRUE(task.cancelled());
    };
    run_virtual(main());
}

TEST(Timeout, TaskFinishingFirstGivesItsResult) {
    auto main = []() -> Coro<> {
        auto task = create_task(value_after(1, 12));
        int v = co_await timeout(10, task);
        EXPECT_EQ(v, 12);
        EXPECT_FALSE(task.cancelled());
    };
    run_virtual(main());
}

TEST(Timeout, ExpiryWhileAwaitingAFutureCancelsTheFuture) {
    auto main = []() -> Coro<> {
        Future<int> fut;
        EXPECT_THROW(co_await timeout(1, fut), TimeoutError);
        EXPECT_TRUE(fut.cancelled());
    };
    run_virtual(main());
}

TEST(Timeout, FutureResolvedBeforeTheDeadlineGivesItsResult) {
    auto main = []() -> Coro<> {
        Future<int> fut;
        get_running_loop().call_later(0.5, [fut]() mutable { fut.set_result(77); });
        int v = co_await timeout(1, fut);
        EXPECT_EQ(v, 77);
        co_await sleep(1);  // the deadline passes without effect
        EXPECT_EQ(current_task().cancelling(), 0);
    };
    run_virtual(main());
}

TEST(Timeout, ExpiryWhileAwaitingGatherCancelsTheChildren) {
    auto main = []() -> Coro<> {
        auto a = create_task(value_after(5, 1));
        auto b = create_task(value_after(6, 2));
        EXPECT_THROW(co_await timeout(1, gather(a, b)), TimeoutError);
        co_await sleep(0);
        EXPECT_TRUE(a.cancelled());
        EXPECT_TRUE(b.cancelled());
    };
    run_virtual(main());
}

TEST(Timeout, ExpiryDoesNotCancelOtherTasks) {
    auto main = []() -> Coro<> {
        auto other = create_task(value_after(3, 4));
        EXPECT_THROW(co_await timeout(1, sleep(10)), TimeoutError);
        EXPECT_FALSE(other.done());
        EXPECT_EQ(co_await other, 4);
    };
    run_virtual(main());
}

TEST(Timeout, ConcurrentTasksExpireIndependently) {
    auto main = []() -> Coro<> {
        std::vector<double> expired_at(3, -1);
        auto worker = [&](int i, double delay) -> Coro<> {
            try {
                co_await timeout(delay, sleep(100));
            } catch (const TimeoutError&) {
                expired_at[i] = now();
            }
        };
        double t0 = now();
        auto t1 = create_task(worker(0, 3));
        auto t2 = create_task(worker(1, 1));
        auto t3 = create_task(worker(2, 2));
        co_await gather(t1, t2, t3);
        EXPECT_DOUBLE_EQ(expired_at[0] - t0, 3.0);
        EXPECT_DOUBLE_EQ(expired_at[1] - t0, 1.0);
        EXPECT_DOUBLE_EQ(expired_at[2] - t0, 2.0);
    };
    run_virtual(main());
}

TEST(Timeout, TimeoutErrorIsAStdException) {
    auto main = []() -> Coro<> {
        bool caught = false;
        try {
            co_await timeout(0.5, sleep(1));
        } catch (const std::exception&) {
            caught = true;
        }
        EXPECT_TRUE(caught);
    };
    run_virtual(main());
}
