// asyncio/locks.hpp - Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier
// (Python's asyncio.locks, 3.12/3.13 semantics).
//
// A port of CPython's Lib/asyncio/locks.py. Each waiter is a Future<void> created on the running
// loop and kept in a FIFO queue; the waiting task awaits it, so cancelling the task cancels the
// waiter exactly like Python's `await fut`. The fairness and race fixes of CPython are kept:
//  * Lock: FIFO; a waiter that is woken and then cancelled passes the wake-up on
//    (`_wake_up_first`), so a release is never lost;
//  * Condition.wait re-acquires the lock even when cancelled, then re-raises, and notifies
//    another waiter when it leaves with an error (no lost notify);
//  * Semaphore: FIFO (`locked()` is true while non-cancelled waiters queue), `_wake_up_next`
//    decrements the value for the woken waiter, a woken-then-cancelled waiter gives it back,
//    and a successful acquire wakes as many queued waiters as the value allows (3.12 fix).
//
// Uncontended paths allocate nothing: acquire() of a free Lock/Semaphore and wait() of a set
// Event complete in await_ready, without a coroutine frame or a future.
//
// Those fast paths are inline here (the waiter queue is detail/waiters.hpp, shared with the
// queues); waiting, waking,
// the error paths and repr() are in src/runtime/locks.cpp.
//
// Loops: a primitive is not tied to one loop forever. Its waiters belong to the loop that was
// running when they were created; it may be used from another loop once it has no waiters
// (a `static asyncio::Lock` works across consecutive asyncio::run calls). Using it from another
// loop while waiters of a still-open loop are pending throws asyncio::RuntimeError; waiters of
// a closed loop (whose tasks are gone) are dropped. Not thread-safe, like Python's.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/detail/waiters.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/futures.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <mutex>  // std::adopt_lock_t
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace asyncio {

namespace detail {

/// One wait on a fresh waiter future, for the awaiters below: creates the future on the
/// running loop, queues it, suspends the task on it; on resumption reports how the wait ended.
class FutureWait {
public:
    FutureWait() noexcept = default;
    /// An awaiter is moved only before it suspends (ScopedAcquireAwaiter takes a fresh one),
    /// when there is nothing to move yet: a queued waiter stays where it was linked.
    FutureWait(FutureWait&&) noexcept {}
    FutureWait& operator=(FutureWait&&) = delete;
    /// Queues a new waiter in `q` and suspends the current task on it.
    void suspend(WaiterList& q, std::coroutine_handle<> h, const char* what);
    /// Whether suspend() ran (false: the fast path completed in await_ready).
    bool suspended() const noexcept { return waiter_.has_value(); }
    /// Finishes the `await fut`: null when woken normally, else what it raised
    /// (CancelledError when the task was cancelled, also after it had been woken).
    std::exception_ptr resume() noexcept {
        try {
            inner_->await_resume();
        } catch (...) {
            return std::current_exception();
        }
        return nullptr;
    }
    const Future<void>& future() const noexcept { return waiter_->fut; }
    /// Leaves the queue (Python's `_waiters.remove(fut)` after the `await`).
    void leave() noexcept { waiter_->leave(); }

private:
    using Inner = decltype(std::declval<const Future<void>&>().operator co_await());
    std::optional<Waiter> waiter_;
    std::optional<Inner> inner_;
};

/// Wraps an acquire awaiter so that `co_await` returns a guard owning the acquisition.
template <class Guard, class M, class Inner>
class ScopedAcquireAwaiter {
public:
    ScopedAcquireAwaiter(M& m, Inner inner) noexcept : m_(&m), inner_(std::move(inner)) {}
    bool await_ready() { return inner_.await_ready(); }
    void await_suspend(std::coroutine_handle<> h) { inner_.await_suspend(h); }
    Guard await_resume() {
        inner_.await_resume();
        return Guard(*m_, std::adopt_lock);
    }

private:
    M* m_;
    Inner inner_;
};

}  // namespace detail

/// RAII ownership of one acquisition of a Lock, Condition or Semaphore, returned by
/// `co_await x.scoped_acquire()`: releases at scope exit (Python's `async with x:`).
template <class M>
class [[nodiscard]] LockGuard {
public:
    LockGuard() noexcept = default;
    /// Adopts an acquisition the caller already holds: `LockGuard<Lock> g(lock, std::adopt_lock);`
    LockGuard(M& m, std::adopt_lock_t) noexcept : m_(&m) {}
    LockGuard(LockGuard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    LockGuard& operator=(LockGuard&& o) noexcept {
        if (this != &o) {
            release_noexcept();
            m_ = std::exchange(o.m_, nullptr);
        }
        return *this;
    }
    LockGuard(const LockGuard&) = delete;
    LockGuard& operator=(const LockGuard&) = delete;
    ~LockGuard() { release_noexcept(); }

    /// Releases now (throws what the primitive's release() throws).
    void release() {
        if (m_) std::exchange(m_, nullptr)->release();
    }
    /// Gives up ownership without releasing.
    M* detach() noexcept { return std::exchange(m_, nullptr); }
    bool owns_lock() const noexcept { return m_ != nullptr; }
    explicit operator bool() const noexcept { return m_ != nullptr; }

private:
    void release_noexcept() noexcept {
        if (!m_) return;
        try {
            release();
        } catch (const std::exception& e) {
            log_message(std::string("asyncio::LockGuard: release at scope exit failed: ") + e.what());
        } catch (...) {
            log_message("asyncio::LockGuard: release at scope exit failed");
        }
    }
    M* m_ = nullptr;
};

// ---- Lock ----------------------------------------------------------------------------------

/// Python's asyncio.Lock: a non-reentrant mutex, not owned by a task; FIFO among waiters.
class Lock {
public:
    class AcquireAwaiter {
    public:
        explicit AcquireAwaiter(Lock& l) noexcept : lock_(&l) {}
        bool await_ready() noexcept { return lock_->try_acquire_fast(); }
        void await_suspend(std::coroutine_handle<> h) { wait_.suspend(lock_->waiters_, h, "asyncio::Lock"); }
        void await_resume() {
            if (wait_.suspended()) resume_after_wait();  // else acquired in await_ready
        }

    private:
        void resume_after_wait();

        Lock* lock_;
        detail::FutureWait wait_;
    };

    Lock() noexcept = default;
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

    /// True if the lock is acquired.
    bool locked() const noexcept { return locked_; }

    /// `co_await l.acquire()`: waits until the lock is free (FIFO), then takes it.
    [[nodiscard]] AcquireAwaiter acquire() noexcept { return AcquireAwaiter(*this); }

    /// `auto g = co_await l.scoped_acquire();` - acquire, released when `g` goes out of scope.
    [[nodiscard]] auto scoped_acquire() noexcept {
        return detail::ScopedAcquireAwaiter<LockGuard<Lock>, Lock, AcquireAwaiter>(*this, acquire());
    }

    /// Unlocks and wakes the first waiter. RuntimeError("Lock is not acquired.") when unlocked.
    void release() {
        if (locked_ && waiters_.empty()) [[likely]] {
            locked_ = false;  // nobody to check the loop against or to wake
            return;
        }
        release_slow();
    }

    /// How many tasks wait in acquire() (what Python's repr shows as "waiters:N").
    std::size_t waiter_count() const noexcept { return waiters_.size(); }
    /// "<asyncio::Lock [locked, waiters:2]>", like Python's repr.
    std::string repr() const;

private:
    /// Fair scheduling: a free lock is taken at once only when nobody (not cancelled) queues.
    bool try_acquire_fast() noexcept {
        if (locked_) return false;
        waiters_.drop_if_loop_closed();
        for (const detail::Waiter& w : waiters_)
            if (!w.fut.cancelled()) return false;
        locked_ = true;
        return true;
    }
    /// release() when the lock is not held or tasks wait.
    void release_slow();
    /// Python's `_wake_up_first`: wake the head of the queue unless it is already woken.
    void wake_up_first();

    detail::WaiterList waiters_;
    bool locked_ = false;
};

// ---- Event ---------------------------------------------------------------------------------

/// Python's asyncio.Event: a flag tasks can wait for.
class Event {
public:
    class WaitAwaiter {
    public:
        explicit WaitAwaiter(Event& e) noexcept : ev_(&e) {}
        bool await_ready() const noexcept { return ev_->value_; }
        void await_suspend(std::coroutine_handle<> h) { wait_.suspend(ev_->waiters_, h, "asyncio::Event"); }
        void await_resume() {
            if (wait_.suspended()) resume_after_wait();
        }

    private:
        void resume_after_wait();

        Event* ev_;
        detail::FutureWait wait_;
    };

    Event() noexcept = default;
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;

    bool is_set() const noexcept { return value_; }
    /// Sets the flag and wakes every waiter; wait() no longer blocks until clear().
    void set();
    /// Resets the flag: later wait() calls block until set().
    void clear() noexcept { value_ = false; }
    /// `co_await e.wait()`: returns at once when set, else when set() is called.
    [[nodiscard]] WaitAwaiter wait() noexcept { return WaitAwaiter(*this); }

    std::size_t waiter_count() const noexcept { return waiters_.size(); }
    std::string repr() const;

private:
    detail::WaiterList waiters_;
    bool value_ = false;
};

// ---- Condition -----------------------------------------------------------------------------

/// Python's asyncio.Condition: a condition variable over a Lock (its own, or one given to the
/// constructor and shared). Not copyable or movable.
class Condition {
public:
    /// A condition with its own lock.
    Condition() noexcept : lock_(&own_lock_) {}
    /// A condition over `lock` (shared; it must outlive the condition).
    explicit Condition(Lock& lock) noexcept : lock_(&lock) {}
    Condition(const Condition&) = delete;
    Condition& operator=(const Condition&) = delete;

    bool locked() const noexcept { return lock_->locked(); }
    [[nodiscard]] Lock::AcquireAwaiter acquire() noexcept { return lock_->acquire(); }
    void release() { lock_->release(); }
    [[nodiscard]] auto scoped_acquire() noexcept {
        return detail::ScopedAcquireAwaiter<LockGuard<Condition>, Condition, Lock::AcquireAwaiter>(*this,
                                                                                                   lock_->acquire());
    }
    /// The underlying lock.
    Lock& lock() const noexcept { return *lock_; }

    /// Releases the lock, waits until notified, re-acquires the lock (even when cancelled: the
    /// CancelledError is raised after the lock is held again). RuntimeError if not locked.
    /// May return spuriously, as Python's: re-check the state (or use wait_for).
    [[nodiscard]] Coro<> wait();

    /// Waits until `pred()` is true (checked with the lock held); returns its last value.
    template <class Pred>
    [[nodiscard]] Coro<std::decay_t<std::invoke_result_t<Pred&>>> wait_for(Pred pred) {
        auto result = pred();
        while (!result) {
            co_await wait();
            result = pred();
        }
        co_return result;
    }

    /// Wakes up to `n` waiters (they return from wait() once they re-acquire the lock).
    /// RuntimeError if the lock is not held.
    void notify(int n = 1);
    /// Wakes every waiter. RuntimeError if the lock is not held.
    void notify_all();

    std::size_t waiter_count() const noexcept { return waiters_.size(); }
    std::string repr() const;

private:
    friend class Barrier;
    /// Python's `_notify(n)`: no lock check.
    void notify_internal(std::size_t n);

    Lock own_lock_;
    Lock* lock_;
    detail::WaiterList waiters_;
};

// ---- Semaphore -----------------------------------------------------------------------------

/// Python's asyncio.Semaphore: a counter; acquire() waits (FIFO) while it is zero.
class Semaphore {
public:
    class AcquireAwaiter {
    public:
        explicit AcquireAwaiter(Semaphore& s) noexcept : sem_(&s) {}
        bool await_ready() noexcept {
            if (sem_->locked()) return false;
            // Maintain FIFO: wait for others to start even if value > 0 (locked() says so).
            --sem_->value_;
            return true;
        }
        void await_suspend(std::coroutine_handle<> h) { wait_.suspend(sem_->waiters_, h, "asyncio::Semaphore"); }
        void await_resume() {
            if (wait_.suspended()) resume_after_wait();
        }

    private:
        void resume_after_wait();

        Semaphore* sem_;
        detail::FutureWait wait_;
    };

    /// std::invalid_argument (Python's ValueError) when value < 0.
    explicit Semaphore(int value = 1);
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;
    virtual ~Semaphore();

    /// True if acquire() would not return at once: the value is zero, or (FIFO) tasks that
    /// are not cancelled are queued.
    bool locked() const noexcept {
        waiters_.drop_if_loop_closed();
        if (value_ == 0) return true;
        for (const detail::Waiter& w : waiters_)
            if (!w.fut.cancelled()) return true;
        return false;
    }
    [[nodiscard]] AcquireAwaiter acquire() noexcept { return AcquireAwaiter(*this); }
    [[nodiscard]] auto scoped_acquire() noexcept {
        return detail::ScopedAcquireAwaiter<LockGuard<Semaphore>, Semaphore, AcquireAwaiter>(*this, acquire());
    }
    /// Increments the value and wakes the first waiter. (BoundedSemaphore checks the bound.)
    virtual void release() {
        if (waiters_.empty()) [[likely]] {
            ++value_;  // nobody to check the loop against or to wake
            return;
        }
        release_slow();
    }

    /// The internal counter (Python's `_value`): decremented for a waiter as it is woken.
    int value() const noexcept { return value_; }
    std::size_t waiter_count() const noexcept { return waiters_.size(); }
    std::string repr() const;

protected:
    virtual const char* kind() const noexcept { return "Semaphore"; }
    int value_;

private:
    /// release() when tasks wait.
    void release_slow();
    /// Python's `_wake_up_next`: wake the first waiter that is not done, taking a unit of the
    /// value for it. False when there was nobody to wake.
    bool wake_up_next();

    mutable detail::WaiterList waiters_;
};

/// Python's asyncio.BoundedSemaphore: release() above the initial value raises
/// std::invalid_argument("BoundedSemaphore released too many times").
class BoundedSemaphore : public Semaphore {
public:
    explicit BoundedSemaphore(int value = 1) : Semaphore(value), bound_value_(value) {}
    void release() override {
        if (value_ >= bound_value_) [[unlikely]]
            throw_released_too_many();
        Semaphore::release();
    }
    [[nodiscard]] auto scoped_acquire() noexcept {
        return detail::ScopedAcquireAwaiter<LockGuard<BoundedSemaphore>, BoundedSemaphore, AcquireAwaiter>(*this,
                                                                                                           acquire());
    }

protected:
    const char* kind() const noexcept override { return "BoundedSemaphore"; }

private:
    [[noreturn]] static void throw_released_too_many();

    int bound_value_;
};

// ---- Barrier -------------------------------------------------------------------------------

/// Python's asyncio.Barrier: `parties` tasks wait() until all have arrived; each gets a
/// distinct index in [0, parties). States: filling, draining, resetting, broken.
///
/// reset() and abort() are plain calls here (Python's are coroutines that take the internal
/// lock first): no task ever holds the barrier's lock across a suspension, so doing the same
/// work synchronously is equivalent.
class Barrier {
public:
    enum class State { filling, draining, resetting, broken };

    /// std::invalid_argument (Python's ValueError) when parties < 1.
    explicit Barrier(int parties);
    Barrier(const Barrier&) = delete;
    Barrier& operator=(const Barrier&) = delete;

    /// Waits until `parties` tasks are waiting; returns this task's index (0..parties-1).
    /// BrokenBarrierError if the barrier is broken, or reset/aborted while waiting.
    [[nodiscard]] Coro<int> wait();

    /// Back to the initial (filling) state; tasks waiting get BrokenBarrierError.
    void reset();
    /// Puts the barrier in the broken state: current and future wait() calls raise
    /// BrokenBarrierError.
    void abort();

    int parties() const noexcept { return parties_; }
    /// Tasks waiting in the filling state.
    int n_waiting() const noexcept { return state_ == State::filling ? count_ : 0; }
    bool broken() const noexcept { return state_ == State::broken; }
    State state() const noexcept { return state_; }
    std::string repr() const;

private:
    Coro<> block();
    void release_all();
    Coro<> wait_released();
    void exit_barrier();
    void notify_all_internal();

    Condition cond_;  // notifies all tasks when the state changes
    int parties_;
    int count_ = 0;  // tasks in the barrier
    State state_ = State::filling;
};

}  // namespace asyncio
