// tests/runtime/test_locks.cpp - asyncio::Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier.
//
// The semantic scenarios of CPython's Lib/test/test_asyncio/test_locks.py (3.12/3.13), the race
// and cancellation regressions above all (a waiter cancelled after it was woken passes its
// wake-up on; FIFO fairness; Condition.wait re-acquires the lock even when cancelled; the
// Semaphore's 3.12 fairness fix), plus the C++ additions: scoped_acquire() guards, use across
// several loops, one test per misuse, and the allocation-free uncontended paths.
//
// `await asyncio.sleep(0)` in the CPython tests is `co_await asyncio::sleep(0)` here: both let
// exactly one loop iteration run. Python's `lock._waiters` length is `waiter_count()`, a
// semaphore's `_value` is `value()`. Everything runs on a virtual-clock loop.
//
// Lifetime rule: a coroutine handed to create_task() is a free function taking its state by
// pointer (or a lambda object that outlives the task), never a capturing lambda temporary.
#include "support.hpp"

#include <asyncio/locks.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <atomic>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

// ---- Counting global allocations (for the allocation-free uncontended paths) ---------------
namespace {
thread_local long g_news = 0;
}
// GCC sees malloc'ed memory reach free() through operator delete after inlining and warns
// (-Wmismatched-new-delete); the pairing is correct: both replacements use malloc/free.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
    ++g_news;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

using namespace asyncio;
using asyncio_test::Boom;
using asyncio_test::run_virtual;

namespace {

using Log = std::vector<int>;

// ---- Small task bodies ---------------------------------------------------------------------
Coro<> acquire_lock(Lock* l) { co_await l->acquire(); }
Coro<> acquire_sem(Semaphore* s) { co_await s->acquire(); }
Coro<> wait_event(Event* e) { co_await e->wait(); }
Coro<> cond_wait(Condition* c) { co_await c->wait(); }
Coro<int> barrier_wait(Barrier* b) { co_return co_await b->wait(); }

Coro<bool> lock_then_log(Lock* l, Log* log, int tag) {
    co_await l->acquire();
    log->push_back(tag);
    co_return true;
}

// =============================================================================================
// Lock
// =============================================================================================

TEST(Lock, StartsUnlockedAndReleaseNoWaiters) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        CO_ASSERT(!lock.locked());
        co_await lock.acquire();
        CO_ASSERT(lock.locked());
        lock.release();
        CO_ASSERT(!lock.locked());
        CO_ASSERT(lock.waiter_count() == 0);
    }());
}

TEST(Lock, ReleaseUnlockedLockRaisesRuntimeError) {
    Lock lock;
    try {
        lock.release();
        FAIL() << "no exception";
    } catch (const asyncio::RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Lock is not acquired.");
    }
    // Also inside a loop, and after a release too many.
    run_virtual([]() -> Coro<> {
        Lock l;
        co_await l.acquire();
        l.release();
        bool thrown = false;
        try {
            l.release();
        } catch (const asyncio::RuntimeError&) {
            thrown = true;
        }
        CO_ASSERT(thrown);
        CO_ASSERT(!l.locked());
    }());
}

// CPython test_acquire: waiters get the lock one release at a time, in FIFO order.
TEST(Lock, AcquireIsFifoOneReleaseAtATime) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        Log result;
        co_await lock.acquire();
        auto t1 = create_task(lock_then_log(&lock, &result, 1));
        auto t2 = create_task(lock_then_log(&lock, &result, 2));
        co_await sleep(0);
        CO_ASSERT(result.empty());

        lock.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1}));
        co_await sleep(0);
        CO_ASSERT((result == Log{1}));

        auto t3 = create_task(lock_then_log(&lock, &result, 3));
        lock.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1, 2}));

        lock.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1, 2, 3}));
        CO_ASSERT(t1.done() && t1.result());
        CO_ASSERT(t2.done() && t2.result());
        CO_ASSERT(t3.done() && t3.result());
        lock.release();
    }());
}

// CPython test_acquire_cancel.
TEST(Lock, CancelledWaiterRaisesAndLeavesQueue) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        co_await lock.acquire();
        auto task = create_task(acquire_lock(&lock));
        get_running_loop().call_soon([task]() mutable { task.cancel(); });
        auto out = co_await asyncio_test::outcome_of(task);
        CO_ASSERT(out == asyncio_test::Outcome::cancelled);
        CO_ASSERT(lock.waiter_count() == 0);
        CO_ASSERT(lock.locked());
    }());
}

Coro<> lockit(Lock* lock, Future<void>* blocker) {
    co_await lock->acquire();
    std::exception_ptr err;
    try {
        if (blocker) co_await *blocker;
    } catch (...) {
        err = std::current_exception();
    }
    lock->release();
    if (err) std::rethrow_exception(err);
}

// CPython test_cancel_race: B is cancelled while A releases; the wake-up goes to C.
TEST(Lock, CancelRaceReleaseSkipsCancelledWaiter) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        Future<void> fa;
        auto ta = create_task(lockit(&lock, &fa));
        co_await sleep(0);
        CO_ASSERT(lock.locked());
        auto tb = create_task(lockit(&lock, nullptr));
        co_await sleep(0);
        CO_ASSERT(lock.waiter_count() == 1);
        auto tc = create_task(lockit(&lock, nullptr));
        co_await sleep(0);
        CO_ASSERT(lock.waiter_count() == 2);

        fa.set_result();
        tb.cancel();
        co_await sleep(0);
        CO_ASSERT(!lock.locked());
        CO_ASSERT(ta.done());
        CO_ASSERT(tb.cancelled());
        co_await tc;
        CO_ASSERT(!lock.locked());
    }());
}

// Not quite CPython's lockit: no blocker.
Coro<> lockit_count(Lock* lock, int* lock_count, int* call_count) {
    ++*call_count;
    co_await lock->acquire();
    ++*lock_count;
}

// CPython test_cancel_release_race (bpo-32734): cancel the first waiter and release in the
// same callback: exactly one other task gets the lock.
TEST(Lock, CancelReleaseRaceOnlyOneAcquires) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        int lock_count = 0, call_count = 0;
        co_await lock.acquire();
        auto t1 = create_task(lockit_count(&lock, &lock_count, &call_count));
        auto t2 = create_task(lockit_count(&lock, &lock_count, &call_count));
        auto t3 = create_task(lockit_count(&lock, &lock_count, &call_count));
        co_await sleep(0);

        get_running_loop().call_soon([t1, &lock]() mutable {
            t1.cancel();
            lock.release();
        });
        auto out = co_await asyncio_test::outcome_of(t1);
        CO_ASSERT(out == asyncio_test::Outcome::cancelled);
        CO_ASSERT(lock_count == 1);
        CO_ASSERT(call_count == 3);
        CO_ASSERT(t1.cancelled() && t2.done());

        t3.cancel();
        co_await sleep(0);
        CO_ASSERT(t3.cancelled());
    }());
}

// CPython test_finished_waiter_cancelled: the first waiter is woken, then cancelled before it
// runs: it passes the wake-up to the second one (no lost wake-up).
TEST(Lock, WokenThenCancelledWaiterPassesWakeUpOn) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        co_await lock.acquire();
        auto tb = create_task(acquire_lock(&lock));
        co_await sleep(0);
        CO_ASSERT(lock.waiter_count() == 1);

        auto tc = create_task(acquire_lock(&lock));
        tb.cancel();
        lock.release();
        co_await sleep(0);
        CO_ASSERT(lock.locked());
        CO_ASSERT(tb.cancelled());
        co_await tc;
        CO_ASSERT(lock.locked());
    }());
}

// The same race, with the wake-up delivered first and the cancel after (the task's future is
// already done, so the CancelledError comes from the task's pending cancel request).
TEST(Lock, WakeUpThenCancelBeforeRunningPassesWakeUpOn) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        co_await lock.acquire();
        auto tb = create_task(acquire_lock(&lock));
        auto tc = create_task(acquire_lock(&lock));
        co_await sleep(0);
        CO_ASSERT(lock.waiter_count() == 2);
        lock.release();  // wakes tb
        tb.cancel();     // before tb runs
        co_await sleep(0);
        CO_ASSERT(tb.cancelled());
        co_await sleep(0);
        CO_ASSERT(tc.done());
        CO_ASSERT(lock.locked());
        CO_ASSERT(lock.waiter_count() == 0);
    }());
}

Coro<> hold_with_guard(Lock* lock, Log* log, int tag);

// A released lock is not taken by a newcomer while a woken waiter has not run yet (FIFO).
TEST(Lock, NewcomerDoesNotJumpTheQueue) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        Log log;
        co_await lock.acquire();
        auto tb = create_task(hold_with_guard(&lock, &log, 1));
        co_await sleep(0);
        lock.release();
        CO_ASSERT(!lock.locked());
        co_await lock.acquire();  // must queue behind tb
        log.push_back(2);
        CO_ASSERT((log == Log{1, -1, 2}));
        CO_ASSERT(tb.done());
        lock.release();
        CO_ASSERT(!lock.locked());
    }());
}

// Python's "jumping the queue if all are cancelled is an optimization".
TEST(Lock, FreeLockWithOnlyCancelledWaitersIsTakenAtOnce) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        co_await lock.acquire();
        auto tb = create_task(acquire_lock(&lock));
        co_await sleep(0);
        tb.cancel();  // its future is cancelled, the task has not run yet
        lock.release();
        CO_ASSERT(lock.waiter_count() == 1);
        auto other_ran_p = std::make_shared<bool>(false);
        bool& other_ran = *other_ran_p;
        get_running_loop().call_soon([other_ran_p] { *other_ran_p = true; });
        co_await lock.acquire();  // fast path: no suspension
        CO_ASSERT(!other_ran);
        CO_ASSERT(lock.locked());
        co_await sleep(0);
        CO_ASSERT(tb.cancelled());
        CO_ASSERT(lock.waiter_count() == 0);
        CO_ASSERT(lock.locked());  // the cancelled waiter did not take it
        lock.release();
    }());
}

TEST(Lock, ScopedAcquireReleasesAtScopeExit) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        {
            auto g = co_await lock.scoped_acquire();
            CO_ASSERT(lock.locked());
            CO_ASSERT(g.owns_lock());
        }
        CO_ASSERT(!lock.locked());
    }());
}

Coro<> guarded_throw(Lock* lock) {
    auto g = co_await lock->scoped_acquire();
    throw std::invalid_argument("boom");
}

TEST(Lock, ScopedAcquireReleasesOnException) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        bool thrown = false;
        try {
            co_await guarded_throw(&lock);
        } catch (const std::invalid_argument&) {
            thrown = true;
        }
        CO_ASSERT(thrown);
        CO_ASSERT(!lock.locked());
    }());
}

TEST(Lock, GuardEarlyReleaseAndMove) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        auto g = co_await lock.scoped_acquire();
        LockGuard<Lock> g2 = std::move(g);
        CO_ASSERT(!g.owns_lock());
        CO_ASSERT(g2.owns_lock());
        g2.release();
        CO_ASSERT(!lock.locked());
        CO_ASSERT(!g2.owns_lock());
    }());
}

Coro<> hold_with_guard(Lock* lock, Log* log, int tag) {
    auto g = co_await lock->scoped_acquire();
    log->push_back(tag);
    co_await sleep(0.01);
    log->push_back(-tag);
}

TEST(Lock, ScopedAcquireSerialisesTasks) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        Log log;
        auto a = create_task(hold_with_guard(&lock, &log, 1));
        auto b = create_task(hold_with_guard(&lock, &log, 2));
        auto c = create_task(hold_with_guard(&lock, &log, 3));
        co_await a;
        co_await b;
        co_await c;
        CO_ASSERT((log == Log{1, -1, 2, -2, 3, -3}));
        CO_ASSERT(!lock.locked());
    }());
}

// A guard cancelled while waiting for the lock owns nothing and releases nothing.
TEST(Lock, ScopedAcquireCancelledWhileWaitingReleasesNothing) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        Log log;
        co_await lock.acquire();
        auto t = create_task(hold_with_guard(&lock, &log, 1));
        co_await sleep(0);
        t.cancel();
        co_await sleep(0);
        CO_ASSERT(t.cancelled());
        CO_ASSERT(lock.locked());  // still ours
        lock.release();
    }());
}

TEST(Lock, Repr) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        CO_ASSERT(lock.repr() == "<asyncio::Lock [unlocked]>");
        co_await lock.acquire();
        CO_ASSERT(lock.repr() == "<asyncio::Lock [locked]>");
        auto t = create_task(acquire_lock(&lock));
        co_await sleep(0);
        CO_ASSERT(lock.repr() == "<asyncio::Lock [locked, waiters:1]>");
        lock.release();
        co_await t;
    }());
}

// ---- Locks and loops -----------------------------------------------------------------------

Lock& static_lock() {
    static Lock lock;
    return lock;
}

Coro<int> use_static_lock() {
    Lock& lock = static_lock();
    Log log;
    co_await lock.acquire();
    auto t = create_task(lock_then_log(&lock, &log, 1));  // a real waiter on this loop
    co_await sleep(0);
    if (lock.waiter_count() != 1) co_return -1;
    lock.release();
    co_await t;
    lock.release();
    co_return static_cast<int>(log.size());
}

// Python <= 3.9 bound a Lock to the loop of its creation; ours moves freely between loops that
// do not overlap.
TEST(LockLoops, StaticLockWorksAcrossConsecutiveRuns) {
    EXPECT_EQ(asyncio::run(use_static_lock()), 1);
    EXPECT_EQ(asyncio::run(use_static_lock()), 1);
    EXPECT_EQ(run_virtual(use_static_lock()), 1);
    EXPECT_FALSE(static_lock().locked());
}

Coro<> leave_waiter_pending(Lock* lock, Task<>* waiter) {
    co_await lock->acquire();
    *waiter = create_task(acquire_lock(lock));
    co_await sleep(0);  // the waiter is now queued on this loop
}

Coro<> acquire_expect_other_loop_error(Lock* lock, std::string* msg) {
    try {
        co_await lock->acquire();
    } catch (const asyncio::RuntimeError& e) {
        *msg = e.what();
    }
}

// A Lock with a waiter of loop A (still open, not running) used from loop B: RuntimeError.
// After loop A is closed its waiter is gone and the lock serves any loop again.
TEST(LockLoops, UseFromSecondLoopWhileFirstHasWaitersThrows) {
    Lock lock;
    Task<> waiter;
    auto loop_a = std::make_unique<EventLoop>();
    loop_a->run_until_complete(leave_waiter_pending(&lock, &waiter));
    ASSERT_TRUE(lock.locked());
    ASSERT_EQ(lock.waiter_count(), 1u);
    ASSERT_FALSE(waiter.done());
    {
        EventLoop loop_b;
        std::string msg;
        loop_b.run_until_complete(acquire_expect_other_loop_error(&lock, &msg));
        EXPECT_NE(msg.find("bound to a different event loop"), std::string::npos) << msg;
        // release() from loop B would wake loop A's waiter: refused too.
        std::string msg2;
        loop_b.run_until_complete([](Lock* l, std::string* m) -> Coro<> {
            try {
                l->release();
            } catch (const asyncio::RuntimeError& e) {
                *m = e.what();
            }
            co_return;
        }(&lock, &msg2));
        EXPECT_NE(msg2.find("bound to a different event loop"), std::string::npos) << msg2;
        EXPECT_TRUE(lock.locked());
    }
    // Outside any loop, release() just wakes loop A's waiter (Python does the same).
    lock.release();
    loop_a->run_until_complete(waiter);
    EXPECT_TRUE(lock.locked());  // taken by the waiter on loop A
    lock.release();
    loop_a->close();
    loop_a.reset();
    // Now any loop may use it, also with contention.
    EXPECT_EQ(asyncio::run(use_static_lock()), 1);
    EventLoop loop_c;
    loop_c.run_until_complete([](Lock* l) -> Coro<> {
        co_await l->acquire();
        auto t = create_task(acquire_lock(l));
        co_await sleep(0);
        l->release();
        co_await t;
        l->release();
    }(&lock));
    EXPECT_FALSE(lock.locked());
}

// Loop A is closed while its task still waits: the stale waiter is dropped, the lock is usable.
TEST(LockLoops, WaitersOfAClosedLoopAreDropped) {
    Lock lock;
    Task<> waiter;
    {
        EventLoop loop_a;
        loop_a.run_until_complete(leave_waiter_pending(&lock, &waiter));
        ASSERT_EQ(lock.waiter_count(), 1u);
        loop_a.close();  // destroys the pending waiter task
    }
    ASSERT_TRUE(lock.locked());  // the main coroutine of loop A never released it
    EventLoop loop_b;
    loop_b.run_until_complete([](Lock* l) -> Coro<> {
        l->release();  // no RuntimeError, no attempt to wake the dead waiter
        CO_ASSERT(l->waiter_count() == 0);
        co_await l->acquire();
        auto t = create_task(acquire_lock(l));
        co_await sleep(0);
        CO_ASSERT(l->waiter_count() == 1);
        l->release();
        co_await t;
        l->release();
    }(&lock));
    EXPECT_FALSE(lock.locked());
}

// ---- Allocation-free uncontended paths -----------------------------------------------------

TEST(LockAllocations, UncontendedAcquireReleaseAllocatesNothing) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        Semaphore sem(2);
        BoundedSemaphore bsem(1);
        Event ev;
        ev.set();
        Condition cond;
        // Warm up (first-time allocations in the loop).
        co_await lock.acquire();
        lock.release();
        const std::size_t slabs = asyncio::detail::frame_pool_slab_count();
        auto other_ran_p = std::make_shared<bool>(false);
        bool& other_ran = *other_ran_p;
        get_running_loop().call_soon([other_ran_p] { *other_ran_p = true; });
        const long before = g_news;
        for (int i = 0; i < 10000; ++i) {
            co_await lock.acquire();
            lock.release();
            { auto g = co_await lock.scoped_acquire(); }
            co_await sem.acquire();
            co_await sem.acquire();
            sem.release();
            sem.release();
            { auto g = co_await bsem.scoped_acquire(); }
            co_await ev.wait();
            co_await cond.acquire();
            cond.notify_all();
            cond.release();
        }
        const long after = g_news;
        CO_ASSERT(after == before);
        CO_ASSERT(asyncio::detail::frame_pool_slab_count() == slabs);
        // None of these suspended: the callback scheduled before the loop has not run.
        CO_ASSERT(!other_ran);
        // Constructing primitives allocates nothing either.
        const long before2 = g_news;
        {
            Lock l2;
            Event e2;
            Condition c2;
            Semaphore s2(3);
            Barrier b2(2);
        }
        CO_ASSERT(g_news == before2);
    }());
}

// =============================================================================================
// Event
// =============================================================================================

Coro<bool> wait_then_log(Event* ev, Log* log, int tag) {
    co_await ev->wait();
    log->push_back(tag);
    co_return true;
}

// CPython test_wait: set() wakes every waiter; a task started after set() does not block.
TEST(Event, SetWakesAllWaiters) {
    run_virtual([]() -> Coro<> {
        Event ev;
        CO_ASSERT(!ev.is_set());
        Log result;
        auto t1 = create_task(wait_then_log(&ev, &result, 1));
        auto t2 = create_task(wait_then_log(&ev, &result, 2));
        co_await sleep(0);
        CO_ASSERT(result.empty());
        auto t3 = create_task(wait_then_log(&ev, &result, 3));
        ev.set();
        co_await sleep(0);
        CO_ASSERT((result == Log{3, 1, 2}));
        CO_ASSERT(t1.done() && t2.done() && t3.done());
    }());
}

TEST(Event, WaitOnSetReturnsAtOnce) {
    run_virtual([]() -> Coro<> {
        Event ev;
        ev.set();
        auto other_ran_p = std::make_shared<bool>(false);
        bool& other_ran = *other_ran_p;
        get_running_loop().call_soon([other_ran_p] { *other_ran_p = true; });
        co_await ev.wait();
        CO_ASSERT(!other_ran);
    }());
}

TEST(Event, WaitCancelLeavesNoWaiter) {
    run_virtual([]() -> Coro<> {
        Event ev;
        auto wait = create_task(wait_event(&ev));
        get_running_loop().call_soon([wait]() mutable { wait.cancel(); });
        auto out = co_await asyncio_test::outcome_of(wait);
        CO_ASSERT(out == asyncio_test::Outcome::cancelled);
        CO_ASSERT(ev.waiter_count() == 0);
    }());
}

TEST(Event, Clear) {
    Event ev;
    EXPECT_FALSE(ev.is_set());
    ev.set();
    EXPECT_TRUE(ev.is_set());
    ev.clear();
    EXPECT_FALSE(ev.is_set());
}

// CPython test_clear_with_waiters: set-clear-set wakes a waiter exactly once, even though the
// flag was cleared before it ran.
TEST(Event, ClearWithWaiters) {
    run_virtual([]() -> Coro<> {
        Event ev;
        Log result;
        auto t = create_task(wait_then_log(&ev, &result, 1));
        co_await sleep(0);
        CO_ASSERT(result.empty());
        ev.set();
        ev.clear();
        CO_ASSERT(!ev.is_set());
        ev.set();
        ev.set();
        CO_ASSERT(ev.waiter_count() == 1);
        co_await sleep(0);
        CO_ASSERT((result == Log{1}));
        CO_ASSERT(ev.waiter_count() == 0);
        CO_ASSERT(t.done() && t.result());
    }());
}

TEST(Event, ClearedBeforeWaiterRunsStillWakesIt) {
    run_virtual([]() -> Coro<> {
        Event ev;
        Log result;
        auto t = create_task(wait_then_log(&ev, &result, 1));
        co_await sleep(0);
        ev.set();
        ev.clear();
        co_await t;
        CO_ASSERT((result == Log{1}));
        CO_ASSERT(!ev.is_set());
    }());
}

TEST(Event, Repr) {
    run_virtual([]() -> Coro<> {
        Event ev;
        CO_ASSERT(ev.repr() == "<asyncio::Event [unset]>");
        auto t = create_task(wait_event(&ev));
        co_await sleep(0);
        CO_ASSERT(ev.repr() == "<asyncio::Event [unset, waiters:1]>");
        ev.set();
        CO_ASSERT(ev.repr() == "<asyncio::Event [set, waiters:1]>");
        co_await t;
    }());
}

Event& static_event() {
    static Event ev;
    return ev;
}
Coro<> use_static_event() {
    Event& ev = static_event();
    ev.clear();
    auto t = create_task(wait_event(&ev));
    co_await sleep(0);
    ev.set();
    co_await t;
}

TEST(Event, StaticEventWorksAcrossConsecutiveRuns) {
    asyncio::run(use_static_event());
    asyncio::run(use_static_event());
    EXPECT_TRUE(static_event().is_set());
}

// =============================================================================================
// Condition
// =============================================================================================

Coro<bool> cond_acquire_wait_log(Condition* cond, Log* log, int tag, bool release) {
    co_await cond->acquire();
    co_await cond->wait();
    log->push_back(tag);
    if (release) cond->release();
    co_return true;
}

// CPython ConditionTests.test_wait.
TEST(Condition, WaitNotifyReacquiresTheLockInOrder) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        Log result;
        auto t1 = create_task(cond_acquire_wait_log(&cond, &result, 1, false));
        auto t2 = create_task(cond_acquire_wait_log(&cond, &result, 2, false));
        auto t3 = create_task(cond_acquire_wait_log(&cond, &result, 3, false));
        co_await sleep(0);
        CO_ASSERT(result.empty());
        CO_ASSERT(!cond.locked());

        co_await cond.acquire();
        cond.notify();
        co_await sleep(0);
        CO_ASSERT(result.empty());
        CO_ASSERT(cond.locked());

        cond.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1}));
        CO_ASSERT(cond.locked());

        cond.notify(2);
        co_await sleep(0);
        CO_ASSERT((result == Log{1}));
        CO_ASSERT(cond.locked());

        cond.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1, 2}));
        CO_ASSERT(cond.locked());

        cond.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1, 2, 3}));
        CO_ASSERT(cond.locked());
        CO_ASSERT(t1.done() && t2.done() && t3.done());
        cond.release();
    }());
}

// CPython test_wait_cancel: the lock is held again after the cancelled wait.
TEST(Condition, WaitCancelledStillReacquiresLock) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        co_await cond.acquire();
        auto wait = create_task(cond_wait(&cond));
        get_running_loop().call_soon([wait]() mutable { wait.cancel(); });
        auto out = co_await asyncio_test::outcome_of(wait);
        CO_ASSERT(out == asyncio_test::Outcome::cancelled);
        CO_ASSERT(cond.waiter_count() == 0);
        CO_ASSERT(cond.locked());
    }());
}

// CPython test_wait_cancel_contested: notified, then cancelled while the lock is contested:
// the wait completes (no cancellation point left) holding the lock.
TEST(Condition, WaitCancelContested) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        co_await cond.acquire();
        CO_ASSERT(cond.locked());
        auto wait_task = create_task(cond_wait(&cond));
        co_await sleep(0);
        CO_ASSERT(!cond.locked());

        co_await cond.acquire();
        CO_ASSERT(cond.locked());
        cond.notify();
        get_running_loop().call_soon([wait_task]() mutable { wait_task.cancel(); });
        get_running_loop().call_soon([&cond] { cond.release(); });
        (void)co_await asyncio_test::outcome_of(wait_task);
        CO_ASSERT(cond.locked());
    }());
}

Coro<> wait_on_cond(Condition* cond, bool* waited) {
    auto g = co_await cond->scoped_acquire();
    *waited = true;
    co_await cond->wait();
}

// CPython test_wait_cancel_after_notify (bpo-32841).
TEST(Condition, WaitCancelAfterNotify) {
    run_virtual([]() -> Coro<> {
        bool waited = false;
        Condition cond;
        auto waiter = create_task(wait_on_cond(&cond, &waited));
        co_await sleep(0);  // start waiting
        co_await cond.acquire();
        cond.notify();
        co_await sleep(0);  // get to acquire()
        waiter.cancel();
        co_await sleep(0);  // activate cancellation
        cond.release();
        co_await sleep(0);  // cancellation should occur
        CO_ASSERT(waiter.cancelled());
        CO_ASSERT(waited);
        CO_ASSERT(!cond.locked());  // released by the waiter's guard
    }());
}

TEST(Condition, WaitUnacquiredRaisesRuntimeError) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        std::string msg;
        try {
            co_await cond.wait();
        } catch (const asyncio::RuntimeError& e) {
            msg = e.what();
        }
        CO_ASSERT(msg == "cannot wait on un-acquired lock");
    }());
}

Coro<bool> cond_wait_for_pred(Condition* cond, const bool* presult, Log* log) {
    co_await cond->acquire();
    if (co_await cond->wait_for([presult] { return *presult; })) {
        log->push_back(1);
        cond->release();
    }
    co_return true;
}

// CPython test_wait_for.
TEST(Condition, WaitForReturnsWhenPredicateTrue) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        bool presult = false;
        Log result;
        auto t = create_task(cond_wait_for_pred(&cond, &presult, &result));
        co_await sleep(0);
        CO_ASSERT(result.empty());

        co_await cond.acquire();
        cond.notify();
        cond.release();
        co_await sleep(0);
        CO_ASSERT(result.empty());

        presult = true;
        co_await cond.acquire();
        cond.notify();
        cond.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1}));
        CO_ASSERT(t.done() && t.result());
    }());
}

// CPython test_wait_for_unacquired: a predicate already true needs no lock; else RuntimeError.
TEST(Condition, WaitForUnacquired) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        int res = co_await cond.wait_for([] { return 123; });
        CO_ASSERT(res == 123);
        bool thrown = false;
        try {
            (void)co_await cond.wait_for([] { return false; });
        } catch (const asyncio::RuntimeError&) {
            thrown = true;
        }
        CO_ASSERT(thrown);
    }());
}

// CPython test_notify: notify(n) wakes at most n; notify(2048) wakes the rest.
TEST(Condition, NotifyWakesAtMostN) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        Log result;
        auto t1 = create_task(cond_acquire_wait_log(&cond, &result, 1, true));
        auto t2 = create_task(cond_acquire_wait_log(&cond, &result, 2, true));
        auto t3 = create_task(cond_acquire_wait_log(&cond, &result, 3, true));
        co_await sleep(0);
        CO_ASSERT(result.empty());

        co_await cond.acquire();
        cond.notify(1);
        cond.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1}));

        co_await cond.acquire();
        cond.notify(1);
        cond.notify(2048);
        cond.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1, 2, 3}));
        CO_ASSERT(t1.done() && t2.done() && t3.done());
    }());
}

TEST(Condition, NotifyAll) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        Log result;
        auto t1 = create_task(cond_acquire_wait_log(&cond, &result, 1, true));
        auto t2 = create_task(cond_acquire_wait_log(&cond, &result, 2, true));
        co_await sleep(0);
        CO_ASSERT(result.empty());
        co_await cond.acquire();
        cond.notify_all();
        cond.release();
        co_await sleep(0);
        CO_ASSERT((result == Log{1, 2}));
        CO_ASSERT(t1.done() && t2.done());
    }());
}

TEST(Condition, NotifyUnacquiredRaisesRuntimeError) {
    Condition cond;
    try {
        cond.notify();
        FAIL() << "no exception";
    } catch (const asyncio::RuntimeError& e) {
        EXPECT_STREQ(e.what(), "cannot notify on un-acquired lock");
    }
    EXPECT_THROW(cond.notify_all(), asyncio::RuntimeError);
}

TEST(Condition, ScopedAcquire) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        CO_ASSERT(!cond.locked());
        {
            auto g = co_await cond.scoped_acquire();
            CO_ASSERT(cond.locked());
        }
        CO_ASSERT(!cond.locked());
    }());
}

Coro<> explicit_lock_check(Lock* lock, Condition* cond) {
    CO_ASSERT(&cond->lock() == lock);
    CO_ASSERT(!lock->locked() && !cond->locked());
    {
        auto g = co_await cond->scoped_acquire();
        CO_ASSERT(lock->locked() && cond->locked());
    }
    CO_ASSERT(!lock->locked() && !cond->locked());
    {
        auto g = co_await lock->scoped_acquire();
        CO_ASSERT(lock->locked() && cond->locked());
    }
    CO_ASSERT(!lock->locked() && !cond->locked());
}

// CPython test_explicit_lock: a Condition over a shared Lock.
TEST(Condition, ExplicitSharedLock) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        Condition cond(lock);
        co_await explicit_lock_check(&lock, &cond);
        Lock lock2;
        Condition cond2(lock2);
        Condition cond3(lock2);  // two conditions over one lock
        co_await explicit_lock_check(&lock2, &cond2);
        co_await explicit_lock_check(&lock2, &cond3);
    }());
}

// Waiting on a Condition releases the shared Lock for plain Lock users too.
TEST(Condition, SharedLockIsReleasedDuringWait) {
    run_virtual([]() -> Coro<> {
        Lock lock;
        Condition cond(lock);
        co_await lock.acquire();
        auto w = create_task(cond_wait(&cond));
        co_await sleep(0);
        CO_ASSERT(!lock.locked());
        co_await lock.acquire();
        cond.notify();
        lock.release();
        co_await w;
        CO_ASSERT(lock.locked());
        lock.release();
    }());
}

// CPython test_timeout_in_block: wait_for(cond.wait(), 0.5) times out and the lock is held
// again.
TEST(Condition, TimeoutInBlockReacquires) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        auto g = co_await cond.scoped_acquire();
        auto out = co_await asyncio_test::outcome_of(asyncio::wait_for(cond.wait(), 0.5));
        CO_ASSERT(out == asyncio_test::Outcome::timeout);
        CO_ASSERT(cond.locked());
        CO_ASSERT(cond.waiter_count() == 0);
    }());
}

Coro<> cancelled_error_func(Condition* cond, const bool* wake, std::string* seen) {
    auto g = co_await cond->scoped_acquire();
    std::exception_ptr err;
    try {
        (void)co_await cond->wait_for([wake] { return *wake; });
    } catch (const CancelledError& e) {
        *seen = e.message();
        err = std::current_exception();
    }
    CO_ASSERT(err);
    CO_ASSERT(cond->locked());
    std::rethrow_exception(err);
}

// CPython test_cancelled_error_wakeup: the CancelledError (and its message) from the wait
// itself comes out unchanged.
TEST(Condition, CancelledErrorWakeupKeepsMessage) {
    run_virtual([]() -> Coro<> {
        bool wake = false;
        std::string seen;
        Condition cond;
        auto task = create_task(cancelled_error_func(&cond, &wake, &seen));
        co_await sleep(0);
        task.cancel("foo");
        std::string msg;
        try {
            co_await task;
        } catch (const CancelledError& e) {
            msg = e.message();
        }
        CO_ASSERT(msg == "foo");
        CO_ASSERT(seen == "foo");
        CO_ASSERT(!cond.locked());
    }());
}

// CPython test_cancelled_error_re_aquire: cancelled while re-acquiring the lock after being
// notified: the lock is still re-acquired and the CancelledError keeps its message.
TEST(Condition, CancelledErrorWhileReacquiringKeepsMessage) {
    run_virtual([]() -> Coro<> {
        bool wake = false;
        std::string seen;
        Condition cond;
        auto task = create_task(cancelled_error_func(&cond, &wake, &seen));
        co_await sleep(0);
        co_await cond.acquire();
        wake = true;
        cond.notify();
        co_await sleep(0);  // the task now tries to re-acquire the lock
        task.cancel("foo");
        cond.release();
        std::string msg;
        try {
            co_await task;
        } catch (const CancelledError& e) {
            msg = e.message();
        }
        CO_ASSERT(msg == "foo");
        CO_ASSERT(seen == "foo");
        CO_ASSERT(!cond.locked());
    }());
}

Coro<> consumer(Condition* condition, int* state) {
    auto g = co_await condition->scoped_acquire();
    for (;;) {
        (void)co_await condition->wait_for([state] { return *state != 0; });
        if (*state < 0) co_return;
        --*state;
    }
}

// CPython test_cancelled_wakeup: a consumer cancelled while its notify is pending passes the
// notification on (no lost wake-up).
TEST(Condition, CancelledWhileNotifiedDoesNotLoseWakeup) {
    run_virtual([]() -> Coro<> {
        Condition condition;
        int state = 0;
        auto c0 = create_task(consumer(&condition, &state));
        auto c1 = create_task(consumer(&condition, &state));
        co_await sleep(0);
        {
            auto g = co_await condition.scoped_acquire();
            state += 1;
            condition.notify(1);
            c0.cancel();  // cancel it while it waits to run
            (void)co_await asyncio_test::outcome_of(
                asyncio::wait_for(condition.wait_for([&] { return state == 0; }), 0.01));
            CO_ASSERT(state == 0);
            state = -1;
            condition.notify_all();
        }
        co_await c1;
        CO_ASSERT(c0.cancelled());
    }());
}

// CPython test_cancelled_wakeup_relock: same, cancelled while re-acquiring the lock.
TEST(Condition, CancelledWhileRelockingDoesNotLoseWakeup) {
    run_virtual([]() -> Coro<> {
        Condition condition;
        int state = 0;
        auto c0 = create_task(consumer(&condition, &state));
        auto c1 = create_task(consumer(&condition, &state));
        co_await sleep(0);
        {
            auto g = co_await condition.scoped_acquire();
            state += 1;
            condition.notify(1);
            co_await sleep(0);  // c0 wakes and settles on re-acquiring the lock
            c0.cancel();
            (void)co_await asyncio_test::outcome_of(
                asyncio::wait_for(condition.wait_for([&] { return state == 0; }), 0.01));
            CO_ASSERT(state == 0);
            state = -1;
            condition.notify_all();
        }
        co_await c1;
        CO_ASSERT(c0.cancelled());
    }());
}

TEST(Condition, Repr) {
    run_virtual([]() -> Coro<> {
        Condition cond;
        CO_ASSERT(cond.repr() == "<asyncio::Condition [unlocked]>");
        Log log;
        co_await cond.acquire();
        auto w = create_task(cond_acquire_wait_log(&cond, &log, 1, true));  // waits for the lock
        co_await sleep(0);
        CO_ASSERT(cond.repr() == "<asyncio::Condition [locked]>");
        cond.release();
        co_await sleep(0);
        CO_ASSERT(cond.repr() == "<asyncio::Condition [unlocked, waiters:1]>");
        co_await cond.acquire();
        cond.notify();
        cond.release();
        co_await w;
        CO_ASSERT(!cond.locked());
    }());
}

Coro<> acquire_and_wait(Condition* c) {
    auto g = co_await c->scoped_acquire();
    co_await c->wait();
}

// A Condition used from a second loop while a task of the first waits on it.
TEST(Condition, UseFromSecondLoopWhileFirstHasWaitersThrows) {
    Condition cond;
    Task<> waiter;
    EventLoop loop_a;
    loop_a.run_until_complete([](Condition* c, Task<>* w) -> Coro<> {
        *w = create_task(acquire_and_wait(c));
        co_await sleep(0);
    }(&cond, &waiter));
    ASSERT_EQ(cond.waiter_count(), 1u);
    {
        EventLoop loop_b;
        std::string msg;
        loop_b.run_until_complete([](Condition* c, std::string* m) -> Coro<> {
            co_await c->acquire();  // the lock itself has no waiters: fine
            try {
                c->notify();
            } catch (const asyncio::RuntimeError& e) {
                *m = e.what();
            }
            std::string m2;
            try {
                co_await c->wait();
            } catch (const asyncio::RuntimeError& e) {
                m2 = e.what();
            }
            CO_ASSERT(m2.find("bound to a different event loop") != std::string::npos);
            CO_ASSERT(c->locked());  // not released by the refused wait
            c->release();
        }(&cond, &msg));
        EXPECT_NE(msg.find("bound to a different event loop"), std::string::npos) << msg;
    }
    loop_a.close();
}

// =============================================================================================
// Semaphore / BoundedSemaphore
// =============================================================================================

TEST(Semaphore, InitialValueZeroIsLocked) {
    Semaphore sem(0);
    EXPECT_TRUE(sem.locked());
    Semaphore def;
    EXPECT_FALSE(def.locked());
    EXPECT_EQ(def.value(), 1);
}

TEST(Semaphore, NegativeValueRaisesInvalidArgument) {
    try {
        Semaphore sem(-1);
        FAIL() << "no exception";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "Semaphore initial value must be >= 0");
    }
    EXPECT_THROW(BoundedSemaphore(-1), std::invalid_argument);
}

Coro<bool> sem_then_log(Semaphore* sem, Log* log, int tag) {
    co_await sem->acquire();
    log->push_back(tag);
    co_return true;
}

// CPython SemaphoreTests.test_acquire.
TEST(Semaphore, AcquireCountsDownAndQueues) {
    run_virtual([]() -> Coro<> {
        Semaphore sem(3);
        Log result;
        co_await sem.acquire();
        co_await sem.acquire();
        CO_ASSERT(!sem.locked());

        auto t1 = create_task(sem_then_log(&sem, &result, 1));
        auto t2 = create_task(sem_then_log(&sem, &result, 2));
        auto t3 = create_task(sem_then_log(&sem, &result, 3));
        co_await sleep(0);
        CO_ASSERT((result == Log{1}));
        CO_ASSERT(sem.locked());
        CO_ASSERT(sem.waiter_count() == 2);
        CO_ASSERT(sem.value() == 0);

        auto t4 = create_task(sem_then_log(&sem, &result, 4));
        sem.release();
        sem.release();
        CO_ASSERT(sem.value() == 0);  // taken for the two woken waiters

        co_await sleep(0);
        CO_ASSERT(sem.value() == 0);
        CO_ASSERT(result.size() == 3);
        CO_ASSERT(sem.locked());
        CO_ASSERT(sem.waiter_count() == 1);
        CO_ASSERT(t1.done() && t1.result());
        int done = (t2.done() ? 1 : 0) + (t3.done() ? 1 : 0) + (t4.done() ? 1 : 0);
        CO_ASSERT(done == 2);

        sem.release();
        co_await t2;
        co_await t3;
        co_await t4;
    }());
}

TEST(Semaphore, AcquireCancelLeavesNoLiveWaiter) {
    run_virtual([]() -> Coro<> {
        Semaphore sem;
        co_await sem.acquire();
        auto acq = create_task(acquire_sem(&sem));
        get_running_loop().call_soon([acq]() mutable { acq.cancel(); });
        auto out = co_await asyncio_test::outcome_of(acq);
        CO_ASSERT(out == asyncio_test::Outcome::cancelled);
        CO_ASSERT(sem.waiter_count() == 0);
        CO_ASSERT(sem.value() == 0);
    }());
}

// CPython test_acquire_cancel_before_awoken.
TEST(Semaphore, CancelBeforeAwokenWakesNextInLine) {
    run_virtual([]() -> Coro<> {
        Semaphore sem(0);
        auto t1 = create_task(acquire_sem(&sem));
        auto t2 = create_task(acquire_sem(&sem));
        auto t3 = create_task(acquire_sem(&sem));
        auto t4 = create_task(acquire_sem(&sem));
        co_await sleep(0);

        t1.cancel();
        t2.cancel();
        sem.release();
        co_await sleep(0);
        co_await sleep(0);
        CO_ASSERT(t3.done());
        CO_ASSERT(!t4.done());
        t4.cancel();
        co_await sleep(0);
        CO_ASSERT(t1.cancelled() && t2.cancelled() && t4.cancelled());
        CO_ASSERT(sem.value() == 0);
    }());
}

// CPython test_acquire_hang.
TEST(Semaphore, AcquireDoesNotHangAfterCancel) {
    run_virtual([]() -> Coro<> {
        Semaphore sem(0);
        auto t1 = create_task(acquire_sem(&sem));
        auto t2 = create_task(acquire_sem(&sem));
        co_await sleep(0);
        t1.cancel();
        sem.release();
        co_await sleep(0);
        co_await sleep(0);
        CO_ASSERT(sem.locked());
        CO_ASSERT(t2.done());
    }());
}

// A waiter woken by release() and cancelled before it runs gives its unit back and passes
// the wake-up to the next waiter.
TEST(Semaphore, WokenThenCancelledWaiterGivesUnitBack) {
    run_virtual([]() -> Coro<> {
        Semaphore sem(0);
        auto t1 = create_task(acquire_sem(&sem));
        auto t2 = create_task(acquire_sem(&sem));
        co_await sleep(0);
        sem.release();  // wakes t1, value back to 0
        CO_ASSERT(sem.value() == 0);
        t1.cancel();
        co_await sleep(0);
        CO_ASSERT(t1.cancelled());
        co_await sleep(0);
        CO_ASSERT(t2.done());
        CO_ASSERT(sem.value() == 0);
        CO_ASSERT(sem.waiter_count() == 0);
        sem.release();
        CO_ASSERT(sem.value() == 1);
        CO_ASSERT(!sem.locked());
    }());
}

Coro<> no_hang_c1(Semaphore* sem, Task<>* t2) {
    {
        auto g = co_await sem->scoped_acquire();
        co_await sleep(0);
    }
    t2->cancel();
}
Coro<> no_hang_c2(Semaphore* sem) {
    auto g = co_await sem->scoped_acquire();
    ADD_FAILURE() << "c2 must not get the semaphore";
}

// CPython test_acquire_no_hang.
TEST(Semaphore, AcquireNoHang) {
    run_virtual([]() -> Coro<> {
        Semaphore sem(1);
        Task<> t2;
        auto t1 = create_task(no_hang_c1(&sem, &t2));
        t2 = create_task(no_hang_c2(&sem));
        auto [r1, r2] = co_await gather(return_exceptions, t1, t2);
        CO_ASSERT(r1.has_value());
        CO_ASSERT(!r2.has_value() && is_cancelled_error(r2.error()));
        auto out = co_await asyncio_test::outcome_of(asyncio::wait_for(acquire_sem(&sem), 1.0));
        CO_ASSERT(out == asyncio_test::Outcome::value);
    }());
}

TEST(Semaphore, ReleaseNoWaiters) {
    run_virtual([]() -> Coro<> {
        Semaphore sem;
        co_await sem.acquire();
        CO_ASSERT(sem.locked());
        sem.release();
        CO_ASSERT(!sem.locked());
        sem.release();  // an unbounded semaphore may go above its initial value
        CO_ASSERT(sem.value() == 2);
    }());
}

TEST(BoundedSemaphore, OverReleaseRaisesInvalidArgument) {
    BoundedSemaphore sem;
    try {
        sem.release();
        FAIL() << "no exception";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "BoundedSemaphore released too many times");
    }
    EXPECT_EQ(sem.value(), 1);
    // Through the base class too (release is virtual).
    Semaphore& base = sem;
    EXPECT_THROW(base.release(), std::invalid_argument);
}

TEST(BoundedSemaphore, AcquireReleaseWithinBound) {
    run_virtual([]() -> Coro<> {
        BoundedSemaphore sem(2);
        co_await sem.acquire();
        co_await sem.acquire();
        CO_ASSERT(sem.locked());
        sem.release();
        sem.release();
        bool thrown = false;
        try {
            sem.release();
        } catch (const std::invalid_argument&) {
            thrown = true;
        }
        CO_ASSERT(thrown);
        CO_ASSERT(sem.value() == 2);
        {
            auto g = co_await sem.scoped_acquire();
            CO_ASSERT(sem.value() == 1);
        }
        CO_ASSERT(sem.value() == 2);
    }());
}

// With waiters the value is handed to them, so the bound is never hit by a fair release.
TEST(BoundedSemaphore, ReleaseToWaiterDoesNotHitBound) {
    run_virtual([]() -> Coro<> {
        BoundedSemaphore sem(1);
        co_await sem.acquire();
        auto t = create_task(acquire_sem(&sem));
        co_await sleep(0);
        sem.release();
        CO_ASSERT(sem.value() == 0);
        co_await t;
        sem.release();
        CO_ASSERT(sem.value() == 1);
    }());
}

Coro<> fifo_coro(Semaphore* sem, std::vector<std::string>* result, std::string tag) {
    co_await sem->acquire();
    result->push_back(tag + "_1");
    co_await sleep(0.01);
    sem->release();
    co_await sem->acquire();
    result->push_back(tag + "_2");
    co_await sleep(0.01);
    sem->release();
}

// CPython test_acquire_fifo_order.
TEST(Semaphore, AcquireFifoOrder) {
    run_virtual([]() -> Coro<> {
        Semaphore sem(1);
        std::vector<std::string> result;
        co_await task_group([&](TaskGroup& tg) -> Coro<> {
            tg.create_task(fifo_coro(&sem, &result, "c1"));
            tg.create_task(fifo_coro(&sem, &result, "c2"));
            tg.create_task(fifo_coro(&sem, &result, "c3"));
            co_return;
        });
        std::vector<std::string> expected = {"c1_1", "c2_1", "c3_1", "c1_2", "c2_2", "c3_2"};
        CO_ASSERT(result == expected);
    }());
}

Coro<bool> fifo2_c2(Semaphore* sem, Log* result) {
    co_await sem->acquire();
    result->push_back(2);
    sem->release();
    co_await sem->acquire();
    result->push_back(4);
    co_return true;
}

// CPython test_acquire_fifo_order_2: a task re-acquiring queues behind the others.
TEST(Semaphore, AcquireFifoOrder2) {
    run_virtual([]() -> Coro<> {
        Semaphore sem(1);
        Log result;
        auto t1 = create_task(sem_then_log(&sem, &result, 1));
        auto t2 = create_task(fifo2_c2(&sem, &result));
        auto t3 = create_task(sem_then_log(&sem, &result, 3));
        co_await sleep(0);
        sem.release();
        sem.release();
        co_await t1;
        co_await t2;
        co_await t3;
        CO_ASSERT((result == Log{1, 2, 3, 4}));
    }());
}

// CPython test_acquire_fifo_order_3: a cancelled waiter does not take a unit.
TEST(Semaphore, AcquireFifoOrder3) {
    run_virtual([]() -> Coro<> {
        Semaphore sem(0);
        Log result;
        auto t1 = create_task(sem_then_log(&sem, &result, 1));
        auto t2 = create_task(sem_then_log(&sem, &result, 2));
        auto t3 = create_task(sem_then_log(&sem, &result, 3));
        co_await sleep(0);
        t1.cancel();
        co_await sleep(0);
        sem.release();
        sem.release();
        (void)co_await gather(return_exceptions, t1, t2, t3);
        CO_ASSERT((result == Log{2, 3}));
    }());
}

struct Fifo4 {
    Semaphore sem{0};
    Log result;
    Task<bool> t4;
};

Coro<bool> fifo4_c4(Fifo4* s) {
    s->result.push_back(4);
    co_return true;
}
Coro<bool> fifo4_c1(Fifo4* s) {
    // Waits at once; woken by c2.
    EXPECT_EQ(s->sem.value(), 0);
    co_await s->sem.acquire();
    // All waiting tasks have been woken by now.
    EXPECT_EQ(s->sem.value(), 0);
    // A fourth task: it runs after c3, not c2.
    s->t4 = create_task(fifo4_c4(s));
    s->result.push_back(1);
    co_return true;
}
Coro<bool> fifo4_c2(Fifo4* s) {
    // Releases three times: for c1, c2 and c3.
    s->sem.release();
    s->sem.release();
    s->sem.release();
    EXPECT_EQ(s->sem.value(), 2);
    // Locked, because c1 has not woken up yet.
    EXPECT_TRUE(s->sem.locked());
    co_await s->sem.acquire();
    s->result.push_back(2);
    co_return true;
}
Coro<bool> fifo4_c3(Fifo4* s) {
    co_await s->sem.acquire();
    EXPECT_TRUE(s->sem.locked());
    s->result.push_back(3);
    co_return true;
}

// CPython test_acquire_fifo_order_4 (3.12 fairness fix): a successful acquire() wakes every
// task that had to queue only because of FIFO.
TEST(Semaphore, AcquireWakesAllFifoQueuedWaiters) {
    run_virtual([]() -> Coro<> {
        Fifo4 s;
        auto t1 = create_task(fifo4_c1(&s));
        auto t2 = create_task(fifo4_c2(&s));
        auto t3 = create_task(fifo4_c3(&s));
        co_await sleep(0);
        // Three tasks in the queue, the first has not woken up yet.
        CO_ASSERT(s.sem.value() == 2);
        CO_ASSERT(s.sem.waiter_count() == 3);
        co_await sleep(0);
        co_await t1;
        co_await t2;
        co_await t3;
        co_await s.t4;
        CO_ASSERT((s.result == Log{1, 2, 3, 4}));
    }());
}

TEST(Semaphore, ScopedAcquireLimitsConcurrency) {
    run_virtual([]() -> Coro<> {
        Semaphore sem(2);
        int running = 0, peak = 0;
        auto worker = [&](int) -> Coro<> {
            auto g = co_await sem.scoped_acquire();
            ++running;
            peak = std::max(peak, running);
            co_await sleep(0.1);
            --running;
        };
        std::vector<Task<>> tasks;
        for (int i = 0; i < 6; ++i) tasks.push_back(create_task(worker(i)));
        const double t0 = asyncio_test::now();
        for (auto& t : tasks) co_await t;
        CO_ASSERT(peak == 2);
        CO_ASSERT(asyncio_test::now() - t0 > 0.29 && asyncio_test::now() - t0 < 0.31);
        CO_ASSERT(sem.value() == 2);
    }());
}

TEST(Semaphore, Repr) {
    run_virtual([]() -> Coro<> {
        Semaphore sem;
        CO_ASSERT(sem.repr() == "<asyncio::Semaphore [unlocked, value:1]>");
        co_await sem.acquire();
        CO_ASSERT(sem.repr() == "<asyncio::Semaphore [locked]>");
        auto t = create_task(acquire_sem(&sem));
        co_await sleep(0);
        CO_ASSERT(sem.repr() == "<asyncio::Semaphore [locked, waiters:1]>");
        sem.release();
        co_await t;
        BoundedSemaphore b(2);
        CO_ASSERT(b.repr() == "<asyncio::BoundedSemaphore [unlocked, value:2]>");
    }());
}

// =============================================================================================
// Barrier
// =============================================================================================

constexpr int N = 5;

template <class F>
Coro<std::vector<int>> gather_n(int n, F& coro) {
    std::vector<Task<int>> tasks;
    for (int i = 0; i < n; ++i) tasks.push_back(create_task(coro()));
    co_return co_await gather(std::move(tasks));
}

TEST(Barrier, PartiesMustBePositive) {
    EXPECT_THROW(Barrier(0), std::invalid_argument);
    EXPECT_THROW(Barrier(-4), std::invalid_argument);
    Barrier b(N);
    EXPECT_EQ(b.parties(), N);
    EXPECT_EQ(b.n_waiting(), 0);
    EXPECT_FALSE(b.broken());
}

// CPython test_context_manager: every task gets a distinct index.
TEST(Barrier, WaitReturnsDistinctIndices) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(3);
        auto coro = [&]() -> Coro<int> { co_return co_await barrier.wait(); };
        auto res = co_await gather_n(3, coro);
        std::sort(res.begin(), res.end());
        CO_ASSERT((res == std::vector<int>{0, 1, 2}));
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(!barrier.broken());
    }());
}

// CPython test_filling_one_task.
TEST(Barrier, FillingOneTask) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(1);
        int i = co_await barrier.wait();
        CO_ASSERT(i == 0);
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(!barrier.broken());
    }());
}

// CPython test_filling_one_task_twice.
TEST(Barrier, FillingOneTaskTwice) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(1);
        auto t1 = create_task(barrier_wait(&barrier));
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 0);
        auto t2 = create_task(barrier_wait(&barrier));
        co_await sleep(0);
        CO_ASSERT(t1.done() && t2.done());
        CO_ASSERT(t1.result() == t2.result());
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(!barrier.broken());
    }());
}

// CPython test_filling_task_by_task.
TEST(Barrier, FillingTaskByTask) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(3);
        auto t1 = create_task(barrier_wait(&barrier));
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 1);
        CO_ASSERT(barrier.state() == Barrier::State::filling);
        auto t2 = create_task(barrier_wait(&barrier));
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 2);
        auto t3 = create_task(barrier_wait(&barrier));
        co_await sleep(0);
        co_await t1;
        co_await t2;
        co_await t3;
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(!barrier.broken());
    }());
}

// CPython test_filling_tasks_wait_twice / check_return_value.
TEST(Barrier, TasksWaitTwice) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        int first = 0, second = 0;
        auto coro = [&]() -> Coro<int> {
            (void)co_await barrier.wait();
            ++first;
            int i = co_await barrier.wait();
            ++second;
            co_return i;
        };
        auto res = co_await gather_n(N, coro);
        CO_ASSERT(first == N && second == N);
        std::sort(res.begin(), res.end());
        CO_ASSERT((res == std::vector<int>{0, 1, 2, 3, 4}));
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(!barrier.broken());
    }());
}

// CPython test_draining_state: every task but the last leaves while draining.
TEST(Barrier, DrainingState) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        std::vector<bool> results;
        auto coro = [&]() -> Coro<int> {
            int i = co_await barrier.wait();
            results.push_back(barrier.state() == Barrier::State::draining);
            co_return i;
        };
        (void)co_await gather_n(N, coro);
        CO_ASSERT(results.size() == static_cast<std::size_t>(N));
        CO_ASSERT(results.back() == false);
        for (int k = 0; k < N - 1; ++k) CO_ASSERT(results[static_cast<std::size_t>(k)]);
        CO_ASSERT(barrier.n_waiting() == 0);
    }());
}

// CPython test_blocking_tasks_while_draining.
TEST(Barrier, BlockingTasksWhileDraining) {
    run_virtual([]() -> Coro<> {
        const int rewait = 2;
        Barrier barrier(N);
        Barrier barrier_nowaiting(N - rewait);
        int rewait_n = rewait;
        auto coro = [&]() -> Coro<int> {
            (void)co_await barrier.wait();
            if (rewait_n > 0) {
                --rewait_n;
                (void)co_await barrier.wait();
            } else {
                (void)co_await barrier_nowaiting.wait();
                (void)co_await barrier.wait();
            }
            co_return 0;
        };
        (void)co_await gather_n(N, coro);
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(!barrier.broken());
    }());
}

Coro<> barrier_append(Barrier* b, int* results) {
    (void)co_await b->wait();
    ++*results;
}

// CPython test_filling_tasks_cancel_one: a cancelled waiter leaves the count.
TEST(Barrier, CancelledWaiterLeavesTheCount) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(3);
        int results = 0;
        auto t1 = create_task(barrier_append(&barrier, &results));
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 1);
        auto t2 = create_task(barrier_append(&barrier, &results));
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 2);

        t1.cancel();
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 1);
        auto out = co_await asyncio_test::outcome_of(t1);
        CO_ASSERT(out == asyncio_test::Outcome::cancelled);
        CO_ASSERT(t1.cancelled());

        auto t3 = create_task(barrier_append(&barrier, &results));
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 2);
        auto t4 = create_task(barrier_append(&barrier, &results));
        co_await gather(t2, t3, t4);
        CO_ASSERT(results == 3);
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(!barrier.broken());
    }());
}

// CPython test_reset_barrier.
TEST(Barrier, ResetEmptyBarrier) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(1);
        barrier.reset();
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(!barrier.broken());
        CO_ASSERT(barrier.state() == Barrier::State::filling);
    }());
}

Coro<> catch_broken(Barrier* b, int* broken) {
    try {
        (void)co_await b->wait();
    } catch (const BrokenBarrierError&) {
        ++*broken;
    }
}

// CPython test_reset_barrier_while_tasks_waiting.
TEST(Barrier, ResetWhileTasksWaitingBreaksThem) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        int results = 0;
        std::vector<Task<>> tasks;
        for (int i = 0; i < N - 1; ++i) tasks.push_back(create_task(catch_broken(&barrier, &results)));
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == N - 1);
        barrier.reset();
        CO_ASSERT(barrier.state() == Barrier::State::resetting);
        co_await gather(tasks);
        CO_ASSERT(results == N - 1);
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(barrier.state() == Barrier::State::filling);
        CO_ASSERT(!barrier.broken());
    }());
}

// CPython test_reset_barrier_when_tasks_half_draining.
TEST(Barrier, ResetWhenTasksHalfDraining) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        int results1 = 0;
        int rest_of_tasks = N / 2;
        int exited = 0;
        auto coro = [&]() -> Coro<int> {
            bool broken = false;
            try {
                (void)co_await barrier.wait();
            } catch (const BrokenBarrierError&) {
                broken = true;
            }
            if (broken) {
                ++results1;
            } else {
                // Python compares barrier._count (tasks still inside); here: tasks that left.
                ++exited;
                if (exited == N - rest_of_tasks) barrier.reset();
            }
            co_return 0;
        };
        (void)co_await gather_n(N, coro);
        // The tasks that had not left the barrier yet when it was reset get BrokenBarrierError.
        CO_ASSERT(results1 == rest_of_tasks);
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(barrier.state() != Barrier::State::resetting);
        CO_ASSERT(!barrier.broken());
    }());
}

// CPython test_reset_barrier_when_tasks_half_draining_half_blocking.
TEST(Barrier, ResetWhenHalfDrainingHalfBlocking) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        int results1 = 0, results2 = 0;
        const int blocking_tasks = N / 2;
        int count = 0;
        auto coro = [&]() -> Coro<int> {
            bool broken = false;
            try {
                (void)co_await barrier.wait();
            } catch (const BrokenBarrierError&) {
                broken = true;
            }
            if (broken) {
                ++results1;
                (void)co_await barrier.wait();
                co_return 0;
            }
            ++count;
            if (count > blocking_tasks) {
                barrier.reset();  // BrokenBarrierError for the waiting tasks
                (void)co_await barrier.wait();
            } else {
                bool broken2 = false;
                try {
                    (void)co_await barrier.wait();
                } catch (const BrokenBarrierError&) {
                    broken2 = true;
                }
                if (broken2) ++results2;
            }
            co_return 0;
        };
        (void)co_await gather_n(N, coro);
        CO_ASSERT(results1 == blocking_tasks);
        CO_ASSERT(results2 == 0);
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(barrier.state() != Barrier::State::resetting);
        CO_ASSERT(!barrier.broken());
    }());
}

// CPython test_reset_barrier_while_tasks_waiting_and_waiting_again.
TEST(Barrier, ResetWhileTasksWaitingAndWaitingAgain) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        int results1 = 0, results2 = 0;
        auto coro1 = [&]() -> Coro<> {
            try {
                (void)co_await barrier.wait();
            } catch (const BrokenBarrierError&) {
                ++results1;
            }
            (void)co_await barrier.wait();
            ++results2;
        };
        auto coro2 = [&]() -> Coro<> {
            (void)co_await barrier.wait();
            ++results2;
        };
        std::vector<Task<>> tasks;
        for (int i = 0; i < N - 1; ++i) tasks.push_back(create_task(coro1()));
        co_await sleep(0);
        barrier.reset();
        co_await sleep(0);
        auto last = create_task(coro2());
        co_await gather(tasks);
        co_await last;
        CO_ASSERT(!barrier.broken());
        CO_ASSERT(results1 == N - 1);
        CO_ASSERT(results2 == N);
        CO_ASSERT(barrier.n_waiting() == 0);
    }());
}

// CPython test_reset_barrier_while_tasks_draining.
TEST(Barrier, ResetWhileTasksDraining) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        int results1 = 0, results2 = 0, results3 = 0;
        int count = 0;
        auto coro = [&]() -> Coro<int> {
            (void)co_await barrier.wait();
            ++count;
            if (count == N) {
                barrier.reset();  // the last task out of the barrier
                (void)co_await barrier.wait();
            } else {
                try {
                    (void)co_await barrier.wait();
                    ++results1;
                } catch (const std::exception&) {
                    ++results2;
                }
            }
            (void)co_await barrier.wait();
            ++results3;
            co_return 0;
        };
        (void)co_await gather_n(N, coro);
        CO_ASSERT(!barrier.broken());
        CO_ASSERT(results1 == N - 1);
        CO_ASSERT(results2 == 0);
        CO_ASSERT(results3 == N);
        CO_ASSERT(barrier.n_waiting() == 0);
    }());
}

// CPython test_abort_barrier.
TEST(Barrier, AbortBreaksTheBarrier) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(1);
        barrier.abort();
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 0);
        CO_ASSERT(barrier.broken());
        bool thrown = false;
        try {
            (void)co_await barrier.wait();
        } catch (const BrokenBarrierError&) {
            thrown = true;
        }
        CO_ASSERT(thrown);  // also for later wait() calls
    }());
}

TEST(Barrier, AbortWakesWaitersWithBrokenBarrierError) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(3);
        int broken = 0;
        auto t1 = create_task(catch_broken(&barrier, &broken));
        auto t2 = create_task(catch_broken(&barrier, &broken));
        co_await sleep(0);
        CO_ASSERT(barrier.n_waiting() == 2);
        barrier.abort();
        co_await t1;
        co_await t2;
        CO_ASSERT(broken == 2);
        CO_ASSERT(barrier.broken());
        CO_ASSERT(barrier.n_waiting() == 0);
        // reset() repairs a broken barrier.
        barrier.reset();
        CO_ASSERT(!barrier.broken());
        auto coro = [&]() -> Coro<int> { co_return co_await barrier.wait(); };
        auto res = co_await gather_n(3, coro);
        CO_ASSERT(res.size() == 3);
    }());
}

// CPython test_abort_barrier_when_tasks_half_draining_half_blocking.
TEST(Barrier, AbortWhenHalfDrainingHalfBlocking) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        int results1 = 0, results2 = 0;
        const int blocking_tasks = N / 2;
        int count = 0;
        auto coro = [&]() -> Coro<int> {
            bool broken = false;
            try {
                (void)co_await barrier.wait();
            } catch (const BrokenBarrierError&) {
                broken = true;
            }
            if (broken) {
                ++results1;
                co_return 0;
            }
            ++count;
            if (count > blocking_tasks) {
                barrier.abort();
            } else {
                try {
                    (void)co_await barrier.wait();
                } catch (const BrokenBarrierError&) {
                    ++results2;
                }
            }
            co_return 0;
        };
        (void)co_await gather_n(N, coro);
        CO_ASSERT(barrier.broken());
        CO_ASSERT(results1 == blocking_tasks);  // still draining when aborted
        CO_ASSERT(results2 == N - blocking_tasks - 1);
        CO_ASSERT(barrier.n_waiting() == 0);
    }());
}

// CPython test_abort_barrier_when_exception.
TEST(Barrier, AbortWhenException) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        int results1 = 0, results2 = 0;
        auto coro = [&]() -> Coro<int> {
            bool boom = false;
            try {
                int i = co_await barrier.wait();
                if (i == N / 2) throw Boom();
                (void)co_await barrier.wait();
                ++results1;
            } catch (const BrokenBarrierError&) {
                ++results2;
            } catch (const Boom&) {
                boom = true;
            }
            if (boom) barrier.abort();
            co_return 0;
        };
        (void)co_await gather_n(N, coro);
        CO_ASSERT(barrier.broken());
        CO_ASSERT(results1 == 0);
        CO_ASSERT(results2 == N - 1);
        CO_ASSERT(barrier.n_waiting() == 0);
    }());
}

// CPython test_abort_barrier_when_exception_then_resetting.
TEST(Barrier, AbortThenReset) {
    run_virtual([]() -> Coro<> {
        Barrier barrier1(N), barrier2(N);
        int results1 = 0, results2 = 0, results3 = 0;
        auto coro = [&]() -> Coro<int> {
            bool boom = false;
            try {
                int i = co_await barrier1.wait();
                if (i == N / 2) throw Boom();
                (void)co_await barrier1.wait();
                ++results1;
            } catch (const BrokenBarrierError&) {
                ++results2;
            } catch (const Boom&) {
                boom = true;
            }
            if (boom) barrier1.abort();
            // Synchronise and reset: everyone has left barrier1 before, nobody enters after.
            int i = co_await barrier2.wait();
            if (i == N / 2) barrier1.reset();
            (void)co_await barrier2.wait();
            (void)co_await barrier1.wait();
            ++results3;
            co_return 0;
        };
        (void)co_await gather_n(N, coro);
        CO_ASSERT(!barrier1.broken());
        CO_ASSERT(results1 == 0);
        CO_ASSERT(results2 == N - 1);
        CO_ASSERT(results3 == N);
        CO_ASSERT(barrier1.n_waiting() == 0);
    }());
}

// CPython BarrierTests.test_repr.
TEST(Barrier, ReprFollowsTheStates) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(N);
        CO_ASSERT(barrier.repr() == "<asyncio::Barrier [filling, waiters:0/5]>");
        std::vector<Task<int>> waiters;
        for (int i = 0; i < 2; ++i) waiters.push_back(create_task(barrier_wait(&barrier)));
        co_await sleep(0);
        CO_ASSERT(barrier.repr() == "<asyncio::Barrier [filling, waiters:2/5]>");

        for (int i = barrier.n_waiting(); i < barrier.parties(); ++i)
            waiters.push_back(create_task(barrier_wait(&barrier)));
        co_await sleep(0);
        CO_ASSERT(barrier.repr().find("draining") != std::string::npos);

        for (int i = 0; i < 2; ++i) waiters.push_back(create_task(barrier_wait(&barrier)));
        co_await sleep(0);
        barrier.reset();
        CO_ASSERT(barrier.repr().find("resetting") != std::string::npos);

        for (int i = 0; i < 2; ++i) waiters.push_back(create_task(barrier_wait(&barrier)));
        co_await sleep(0);
        barrier.abort();
        CO_ASSERT(barrier.repr() == "<asyncio::Barrier [broken]>");
        CO_ASSERT(barrier.broken());
        (void)co_await gather(return_exceptions, waiters);
    }());
}

// A task cancelled in the middle of the barrier leaves it usable (count and lock restored).
TEST(Barrier, CancelledWhileDrainingBlockedLeavesBarrierConsistent) {
    run_virtual([]() -> Coro<> {
        Barrier barrier(2);
        auto a = create_task(barrier_wait(&barrier));
        auto b = create_task(barrier_wait(&barrier));
        co_await sleep(0);
        co_await a;
        co_await b;
        auto c = create_task(barrier_wait(&barrier));
        co_await sleep(0);
        c.cancel();
        auto out = co_await asyncio_test::outcome_of(c);
        CO_ASSERT(out == asyncio_test::Outcome::cancelled);
        CO_ASSERT(barrier.n_waiting() == 0);
        auto coro = [&]() -> Coro<int> { co_return co_await barrier.wait(); };
        auto res = co_await gather_n(2, coro);
        std::sort(res.begin(), res.end());
        CO_ASSERT((res == std::vector<int>{0, 1}));
    }());
}

}  // namespace
