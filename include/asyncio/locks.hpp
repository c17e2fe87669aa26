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
// Loops: a primitive is not tied to one loop forever. Its waiters belong to the loop that was
// running when they were created; it may be used from another loop once it has no waiters
// (a `static asyncio::Lock` works across consecutive asyncio::run calls). Using it from another
// loop while waiters of a still-open loop are pending throws asyncio::RuntimeError; waiters of
// a closed loop (whose tasks are gone) are dropped. Not thread-safe, like Python's.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/events.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/futures.hpp>

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>  // std::adopt_lock_t
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace asyncio {

namespace detail {

/// The FIFO of waiter futures of one primitive (Python's `collections.deque` of futures,
/// created lazily as Python's `_waiters = None` is: constructing a primitive allocates nothing).
class WaiterQueue {
public:
    using Queue = std::deque<Future<void>>;

    WaiterQueue() noexcept = default;
    WaiterQueue(const WaiterQueue&) = delete;
    WaiterQueue& operator=(const WaiterQueue&) = delete;

    bool empty() const noexcept { return !q_ || q_->empty(); }
    std::size_t size() const noexcept { return q_ ? q_->size() : 0; }
    void push_back(const Future<void>& f) {
        if (!q_) q_.emplace();
        q_->push_back(f);
    }
    /// Python's `_waiters.remove(fut)` (a no-op when it is not there any more).
    void remove(const Future<void>& f) noexcept {
        if (!q_) return;
        auto it = std::find(q_->begin(), q_->end(), f);
        if (it != q_->end()) q_->erase(it);
    }
    Queue::iterator begin() noexcept { return q_ ? q_->begin() : Queue::iterator(); }
    Queue::iterator end() noexcept { return q_ ? q_->end() : Queue::iterator(); }
    Queue::const_iterator begin() const noexcept { return q_ ? q_->cbegin() : Queue::const_iterator(); }
    Queue::const_iterator end() const noexcept { return q_ ? q_->cend() : Queue::const_iterator(); }

    /// The waiters of a loop that has been closed (or destroyed) will never run again: their
    /// tasks are gone. Forget them, so that the primitive can serve another loop. O(1): every
    /// waiter belongs to the same loop.
    void drop_if_loop_closed() noexcept {
        if (empty()) return;
        LoopAnchor* a = q_->front().state_ptr()->anchor();
        if (a->loop == nullptr || a->closed.load(std::memory_order_relaxed)) q_->clear();
    }

    /// Throws RuntimeError when `running` (may be null: then nothing is checked) is not the
    /// loop of the pending waiters. `what` names the primitive in the message.
    void check_loop(EventLoop* running, const char* what) {
        drop_if_loop_closed();
        if (running == nullptr || empty()) return;
        if (q_->front().state_ptr()->anchor() != LoopAccess::anchor(*running)) [[unlikely]]
            throw_other_loop(what);
    }

    /// The running loop, checked against the pending waiters (Python's `_get_loop()`).
    EventLoop& loop_for_new_waiter(const char* what) {
        EventLoop& loop = get_running_loop();
        check_loop(&loop, what);
        return loop;
    }

private:
    [[noreturn]] static void throw_other_loop(const char* what) {
        throw RuntimeError(std::string(what) +
                           " is bound to a different event loop: it has waiters on another event loop "
                           "that is still open (a primitive can move to another loop only when nobody "
                           "waits on it)");
    }

    std::optional<Queue> q_;
};

/// One wait on a fresh waiter future, for the awaiters below: creates the future on the
/// running loop, queues it, suspends the task on it; on resumption reports how the wait ended.
class FutureWait {
public:
    /// Queues a new waiter in `q` and suspends the current task on it.
    void suspend(WaiterQueue& q, std::coroutine_handle<> h, const char* what) {
        EventLoop& loop = q.loop_for_new_waiter(what);
        fut_.emplace(loop);
        q.push_back(*fut_);
        try {
            inner_.emplace(fut_->operator co_await());
            inner_->await_suspend(h);
        } catch (...) {
            inner_.reset();
            q.remove(*fut_);
            fut_.reset();
            throw;
        }
    }
    /// Whether suspend() ran (false: the fast path completed in await_ready).
    bool suspended() const noexcept { return fut_.has_value(); }
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
    const Future<void>& future() const noexcept { return *fut_; }

private:
    using Inner = decltype(std::declval<const Future<void>&>().operator co_await());
    std::optional<Future<void>> fut_;
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
            if (!wait_.suspended()) return;  // acquired in await_ready
            std::exception_ptr err = wait_.resume();
            lock_->waiters_.remove(wait_.future());
            if (err) {
                // Keep the invariant: if the lock is not claimed (or about to be claimed by
                // us, who now give up) and tasks wait, the first one must run.
                if (!lock_->locked_) lock_->wake_up_first();
                std::rethrow_exception(err);
            }
            lock_->locked_ = true;
        }

    private:
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
        if (!locked_) throw RuntimeError("Lock is not acquired.");
        waiters_.check_loop(get_running_loop_or_null(), "asyncio::Lock");
        locked_ = false;
        wake_up_first();
    }

    /// How many tasks wait in acquire() (what Python's repr shows as "waiters:N").
    std::size_t waiter_count() const noexcept { return waiters_.size(); }
    /// "<asyncio::Lock [locked, waiters:2]>", like Python's repr.
    std::string repr() const {
        std::string s = "<asyncio::Lock [";
        s += locked_ ? "locked" : "unlocked";
        if (!waiters_.empty()) s += ", waiters:" + std::to_string(waiters_.size());
        return s + "]>";
    }

private:
    /// Fair scheduling: a free lock is taken at once only when nobody (not cancelled) queues.
    bool try_acquire_fast() noexcept {
        if (locked_) return false;
        waiters_.drop_if_loop_closed();
        for (const auto& w : waiters_)
            if (!w.cancelled()) return false;
        locked_ = true;
        return true;
    }
    /// Python's `_wake_up_first`: wake the head of the queue unless it is already woken.
    void wake_up_first() {
        waiters_.drop_if_loop_closed();
        if (waiters_.empty()) return;
        Future<void>& fut = *waiters_.begin();
        // done() means that the waiter is already set to wake up (or cancelled: its task will
        // pass the wake-up on when it runs).
        if (!fut.done()) fut.set_result();
    }

    detail::WaiterQueue waiters_;
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
            if (!wait_.suspended()) return;
            std::exception_ptr err = wait_.resume();
            ev_->waiters_.remove(wait_.future());
            if (err) std::rethrow_exception(err);
        }

    private:
        Event* ev_;
        detail::FutureWait wait_;
    };

    Event() noexcept = default;
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;

    bool is_set() const noexcept { return value_; }
    /// Sets the flag and wakes every waiter; wait() no longer blocks until clear().
    void set() {
        if (value_) return;
        waiters_.check_loop(get_running_loop_or_null(), "asyncio::Event");
        value_ = true;
        for (auto& fut : waiters_)
            if (!fut.done()) fut.set_result();
    }
    /// Resets the flag: later wait() calls block until set().
    void clear() noexcept { value_ = false; }
    /// `co_await e.wait()`: returns at once when set, else when set() is called.
    [[nodiscard]] WaitAwaiter wait() noexcept { return WaitAwaiter(*this); }

    std::size_t waiter_count() const noexcept { return waiters_.size(); }
    std::string repr() const {
        std::string s = "<asyncio::Event [";
        s += value_ ? "set" : "unset";
        if (!waiters_.empty()) s += ", waiters:" + std::to_string(waiters_.size());
        return s + "]>";
    }

private:
    detail::WaiterQueue waiters_;
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
        return detail::ScopedAcquireAwaiter<LockGuard<Condition>, Condition, Lock::AcquireAwaiter>(
            *this, lock_->acquire());
    }
    /// The underlying lock.
    Lock& lock() const noexcept { return *lock_; }

    /// Releases the lock, waits until notified, re-acquires the lock (even when cancelled: the
    /// CancelledError is raised after the lock is held again). RuntimeError if not locked.
    /// May return spuriously, as Python's: re-check the state (or use wait_for).
    [[nodiscard]] Coro<> wait() {
        if (!locked()) throw RuntimeError("cannot wait on un-acquired lock");
        EventLoop& loop = waiters_.loop_for_new_waiter("asyncio::Condition");
        Future<void> fut(loop);
        release();

        std::exception_ptr err;  // what the wait ends with (Python's exception in flight)
        waiters_.push_back(fut);
        try {
            co_await fut;
        } catch (...) {
            err = std::current_exception();
        }
        waiters_.remove(fut);

        // Must re-acquire the lock even if the wait was cancelled. Only CancelledError is
        // retried: other errors must not make us spin.
        std::exception_ptr reacquire_cancelled;
        for (;;) {
            std::exception_ptr e;
            try {
                co_await lock_->acquire();
            } catch (...) {
                e = std::current_exception();
            }
            if (!e) break;
            if (!is_cancelled_error(e)) {
                reacquire_cancelled = nullptr;
                err = e;
                break;
            }
            reacquire_cancelled = e;  // the most recent one is re-raised
        }
        if (reacquire_cancelled) err = reacquire_cancelled;

        if (err) {
            // Any error out of here may have happened after this task was notified: notify
            // another task instead (a possible spurious wake-up, which the protocol allows).
            notify_internal(1);
            std::rethrow_exception(err);
        }
    }

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
    void notify(int n = 1) {
        if (!locked()) throw RuntimeError("cannot notify on un-acquired lock");
        waiters_.check_loop(get_running_loop_or_null(), "asyncio::Condition");
        if (n > 0) notify_internal(static_cast<std::size_t>(n));
    }
    /// Wakes every waiter. RuntimeError if the lock is not held.
    void notify_all() {
        if (!locked()) throw RuntimeError("cannot notify on un-acquired lock");
        waiters_.check_loop(get_running_loop_or_null(), "asyncio::Condition");
        notify_internal(waiters_.size());
    }

    std::size_t waiter_count() const noexcept { return waiters_.size(); }
    std::string repr() const {
        std::string s = "<asyncio::Condition [";
        s += locked() ? "locked" : "unlocked";
        if (!waiters_.empty()) s += ", waiters:" + std::to_string(waiters_.size());
        return s + "]>";
    }

private:
    friend class Barrier;
    /// Python's `_notify(n)`: no lock check.
    void notify_internal(std::size_t n) {
        waiters_.drop_if_loop_closed();
        std::size_t idx = 0;
        for (auto& fut : waiters_) {
            if (idx >= n) break;
            if (!fut.done()) {
                ++idx;
                fut.set_result();
            }
        }
    }

    Lock own_lock_;
    Lock* lock_;
    detail::WaiterQueue waiters_;
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
        void await_suspend(std::coroutine_handle<> h) {
            wait_.suspend(sem_->waiters_, h, "asyncio::Semaphore");
        }
        void await_resume() {
            if (!wait_.suspended()) return;
            std::exception_ptr err = wait_.resume();
            const Future<void>& fut = wait_.future();
            sem_->waiters_.remove(fut);
            // Our future was set by _wake_up_next() (which took a unit of the value for us),
            // but we are not going to acquire: give the unit back.
            if (err && fut.done() && !fut.cancelled()) ++sem_->value_;
            // New waiters may have arrived but had to wait due to FIFO: wake as many as the
            // value allows.
            while (sem_->value_ > 0)
                if (!sem_->wake_up_next()) break;
            if (err) std::rethrow_exception(err);
        }

    private:
        Semaphore* sem_;
        detail::FutureWait wait_;
    };

    /// std::invalid_argument (Python's ValueError) when value < 0.
    explicit Semaphore(int value = 1) : value_(value) {
        if (value < 0) throw std::invalid_argument("Semaphore initial value must be >= 0");
    }
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;
    virtual ~Semaphore() = default;

    /// True if acquire() would not return at once: the value is zero, or (FIFO) tasks that
    /// are not cancelled are queued.
    bool locked() const noexcept {
        waiters_.drop_if_loop_closed();
        if (value_ == 0) return true;
        for (const auto& w : waiters_)
            if (!w.cancelled()) return true;
        return false;
    }
    [[nodiscard]] AcquireAwaiter acquire() noexcept { return AcquireAwaiter(*this); }
    [[nodiscard]] auto scoped_acquire() noexcept {
        return detail::ScopedAcquireAwaiter<LockGuard<Semaphore>, Semaphore, AcquireAwaiter>(*this,
                                                                                           acquire());
    }
    /// Increments the value and wakes the first waiter. (BoundedSemaphore checks the bound.)
    virtual void release() {
        waiters_.check_loop(get_running_loop_or_null(), "asyncio::Semaphore");
        ++value_;
        wake_up_next();
    }

    /// The internal counter (Python's `_value`): decremented for a waiter as it is woken.
    int value() const noexcept { return value_; }
    std::size_t waiter_count() const noexcept { return waiters_.size(); }
    std::string repr() const {
        std::string s = "<asyncio::" + std::string(kind()) + " [";
        s += locked() ? std::string("locked") : "unlocked, value:" + std::to_string(value_);
        if (!waiters_.empty()) s += ", waiters:" + std::to_string(waiters_.size());
        return s + "]>";
    }

protected:
    virtual const char* kind() const noexcept { return "Semaphore"; }
    int value_;

private:
    /// Python's `_wake_up_next`: wake the first waiter that is not done, taking a unit of the
    /// value for it. False when there was nobody to wake.
    bool wake_up_next() {
        waiters_.drop_if_loop_closed();
        for (auto& fut : waiters_) {
            if (!fut.done()) {
                --value_;
                fut.set_result();
                return true;
            }
        }
        return false;
    }

    mutable detail::WaiterQueue waiters_;
};

/// Python's asyncio.BoundedSemaphore: release() above the initial value raises
/// std::invalid_argument("BoundedSemaphore released too many times").
class BoundedSemaphore : public Semaphore {
public:
    explicit BoundedSemaphore(int value = 1) : Semaphore(value), bound_value_(value) {}
    void release() override {
        if (value_ >= bound_value_) throw std::invalid_argument("BoundedSemaphore released too many times");
        Semaphore::release();
    }
    [[nodiscard]] auto scoped_acquire() noexcept {
        return detail::ScopedAcquireAwaiter<LockGuard<BoundedSemaphore>, BoundedSemaphore, AcquireAwaiter>(
            *this, acquire());
    }

protected:
    const char* kind() const noexcept override { return "BoundedSemaphore"; }

private:
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
    explicit Barrier(int parties) : parties_(parties) {
        if (parties < 1) throw std::invalid_argument("parties must be >= 1");
    }
    Barrier(const Barrier&) = delete;
    Barrier& operator=(const Barrier&) = delete;

    /// Waits until `parties` tasks are waiting; returns this task's index (0..parties-1).
    /// BrokenBarrierError if the barrier is broken, or reset/aborted while waiting.
    [[nodiscard]] Coro<int> wait() {
        co_await cond_.acquire();
        std::exception_ptr err;
        int index = 0;
        try {
            co_await block();  // block while the barrier drains or resets
        } catch (...) {
            err = std::current_exception();
        }
        if (!err) {
            index = count_++;
            try {
                if (index + 1 == parties_)
                    release_all();  // we release the barrier
                else
                    co_await wait_released();
            } catch (...) {
                err = std::current_exception();
            }
            --count_;
            exit_barrier();  // wake up any tasks waiting for the barrier to drain
        }
        cond_.release();
        if (err) std::rethrow_exception(err);
        co_return index;
    }

    /// Back to the initial (filling) state; tasks waiting get BrokenBarrierError.
    void reset() {
        if (count_ > 0) {
            if (state_ != State::resetting) state_ = State::resetting;
        } else {
            state_ = State::filling;
        }
        notify_all_internal();
    }
    /// Puts the barrier in the broken state: current and future wait() calls raise
    /// BrokenBarrierError.
    void abort() {
        state_ = State::broken;
        notify_all_internal();
    }

    int parties() const noexcept { return parties_; }
    /// Tasks waiting in the filling state.
    int n_waiting() const noexcept { return state_ == State::filling ? count_ : 0; }
    bool broken() const noexcept { return state_ == State::broken; }
    State state() const noexcept { return state_; }
    std::string repr() const {
        static const char* const names[] = {"filling", "draining", "resetting", "broken"};
        std::string s = "<asyncio::Barrier [";
        s += names[static_cast<int>(state_)];
        if (!broken()) s += ", waiters:" + std::to_string(n_waiting()) + "/" + std::to_string(parties_);
        return s + "]>";
    }

private:
    Coro<> block() {
        co_await cond_.wait_for([this] { return state_ != State::draining && state_ != State::resetting; });
        if (state_ == State::broken) throw BrokenBarrierError();
    }
    void release_all() {
        state_ = State::draining;  // later tasks block until draining ends
        cond_.notify_all();
    }
    Coro<> wait_released() {
        co_await cond_.wait_for([this] { return state_ != State::filling; });
        if (state_ == State::broken || state_ == State::resetting) throw BrokenBarrierError();
    }
    void exit_barrier() {
        // The last task out of the barrier signals the tasks waiting for it to drain.
        if (count_ == 0) {
            if (state_ == State::resetting || state_ == State::draining) state_ = State::filling;
            cond_.notify_all();
        }
    }
    void notify_all_internal() {
        cond_.waiters_.check_loop(get_running_loop_or_null(), "asyncio::Barrier");
        cond_.notify_internal(cond_.waiters_.size());
    }

    Condition cond_;  // notifies all tasks when the state changes
    int parties_;
    int count_ = 0;   // tasks in the barrier
    State state_ = State::filling;
};

}  // namespace asyncio
