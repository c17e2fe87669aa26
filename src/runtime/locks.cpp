// src/runtime/locks.cpp - Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier: the
// slow paths (waiting, waking, error paths, repr). A port of CPython's Lib/asyncio/locks.py;
// include/asyncio/locks.hpp has the classes, their fast paths and the notes on semantics.
#include <asyncio/locks.hpp>

#include <stdexcept>
#include <string>
#include <string_view>

namespace asyncio {

namespace detail {

namespace {

[[noreturn, gnu::noinline, gnu::cold]] void throw_other_loop(const char* what) {
    throw RuntimeError(std::string(what) +
                       " is bound to a different event loop: it has waiters on another event loop "
                       "that is still open (a primitive can move to another loop only when nobody "
                       "waits on it)");
}

/// Throws RuntimeError when `running` (may be null: then nothing is checked) is not the
/// loop of the pending waiters. `what` names the primitive in the message.
void check_loop(WaiterList& q, EventLoop* running, const char* what) {
    q.drop_if_loop_closed();
    if (running == nullptr || q.empty()) return;
    if (q.front()->fut.state_ptr()->anchor() != LoopAccess::anchor(*running)) [[unlikely]]
        throw_other_loop(what);
}

/// The running loop, checked against the pending waiters (Python's `_get_loop()`).
EventLoop& loop_for_new_waiter(WaiterList& q, const char* what) {
    EventLoop& loop = get_running_loop();
    check_loop(q, &loop, what);
    return loop;
}

}  // namespace

void FutureWait::suspend(WaiterList& q, std::coroutine_handle<> h, const char* what) {
    EventLoop& loop = loop_for_new_waiter(q, what);
    waiter_.emplace(loop);
    q.push_back(*waiter_);
    try {
        inner_.emplace(waiter_->fut.operator co_await());
        inner_->await_suspend(h);
    } catch (...) {
        inner_.reset();
        waiter_.reset();  // leaves the queue
        throw;
    }
}

}  // namespace detail

// ---- Lock ----------------------------------------------------------------------------------

void Lock::AcquireAwaiter::resume_after_wait() {
    std::exception_ptr err = wait_.resume();
    wait_.leave();
    if (err) {
        // Keep the invariant: if the lock is not claimed (or about to be claimed by
        // us, who now give up) and tasks wait, the first one must run.
        if (!lock_->locked_) lock_->wake_up_first();
        std::rethrow_exception(err);
    }
    lock_->locked_ = true;
}

void Lock::release_slow() {
    if (!locked_) throw RuntimeError("Lock is not acquired.");
    detail::check_loop(waiters_, get_running_loop_or_null(), "asyncio::Lock");
    locked_ = false;
    wake_up_first();
}

void Lock::wake_up_first() {
    waiters_.drop_if_loop_closed();
    if (waiters_.empty()) return;
    Future<void>& fut = waiters_.front()->fut;
    // done() means that the waiter is already set to wake up (or cancelled: its task will
    // pass the wake-up on when it runs).
    if (!fut.done()) fut.set_result();
}

namespace {
/// Python's primitives' __repr__: "<asyncio::Name [state, waiters:N]>" (no waiters part when
/// nobody waits).
std::string primitive_repr(std::string_view name, std::string_view state, std::size_t waiters) {
    std::string s = "<asyncio::";
    s.append(name).append(" [").append(state);
    if (waiters) s += ", waiters:" + std::to_string(waiters);
    return s + "]>";
}
}  // namespace

std::string Lock::repr() const {
    return primitive_repr("Lock", locked_ ? "locked" : "unlocked", waiters_.empty() ? 0 : waiters_.size());
}

// ---- Event ---------------------------------------------------------------------------------

void Event::WaitAwaiter::resume_after_wait() {
    std::exception_ptr err = wait_.resume();
    wait_.leave();
    if (err) std::rethrow_exception(err);
}

void Event::set() {
    if (value_) return;
    detail::check_loop(waiters_, get_running_loop_or_null(), "asyncio::Event");
    value_ = true;
    for (detail::Waiter& w : waiters_)
        if (!w.fut.done()) w.fut.set_result();
}

std::string Event::repr() const {
    return primitive_repr("Event", value_ ? "set" : "unset", waiters_.empty() ? 0 : waiters_.size());
}

// ---- Condition -----------------------------------------------------------------------------

Coro<> Condition::wait() {
    if (!locked()) throw RuntimeError("cannot wait on un-acquired lock");
    EventLoop& loop = detail::loop_for_new_waiter(waiters_, "asyncio::Condition");
    detail::Waiter waiter(loop);
    release();

    std::exception_ptr err;  // what the wait ends with (Python's exception in flight)
    waiters_.push_back(waiter);
    try {
        co_await waiter.fut;
    } catch (...) {
        err = std::current_exception();
    }
    waiter.leave();

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

void Condition::notify(int n) {
    if (!locked()) throw RuntimeError("cannot notify on un-acquired lock");
    detail::check_loop(waiters_, get_running_loop_or_null(), "asyncio::Condition");
    if (n > 0) notify_internal(static_cast<std::size_t>(n));
}

void Condition::notify_all() {
    if (!locked()) throw RuntimeError("cannot notify on un-acquired lock");
    detail::check_loop(waiters_, get_running_loop_or_null(), "asyncio::Condition");
    notify_internal(waiters_.size());
}

std::string Condition::repr() const {
    return primitive_repr("Condition", locked() ? "locked" : "unlocked", waiters_.empty() ? 0 : waiters_.size());
}

void Condition::notify_internal(std::size_t n) {
    waiters_.drop_if_loop_closed();
    std::size_t idx = 0;
    for (detail::Waiter& w : waiters_) {
        if (idx >= n) break;
        if (!w.fut.done()) {
            ++idx;
            w.fut.set_result();
        }
    }
}

// ---- Semaphore -----------------------------------------------------------------------------

void Semaphore::AcquireAwaiter::resume_after_wait() {
    std::exception_ptr err = wait_.resume();
    const Future<void>& fut = wait_.future();
    wait_.leave();
    // Our future was set by _wake_up_next() (which took a unit of the value for us),
    // but we are not going to acquire: give the unit back.
    if (err && fut.done() && !fut.cancelled()) ++sem_->value_;
    // New waiters may have arrived but had to wait due to FIFO: wake as many as the
    // value allows.
    while (sem_->value_ > 0)
        if (!sem_->wake_up_next()) break;
    if (err) std::rethrow_exception(err);
}

Semaphore::Semaphore(int value) : value_(value) {
    if (value < 0) throw std::invalid_argument("Semaphore initial value must be >= 0");
}

Semaphore::~Semaphore() = default;

void Semaphore::release_slow() {
    detail::check_loop(waiters_, get_running_loop_or_null(), "asyncio::Semaphore");
    ++value_;
    wake_up_next();
}

std::string Semaphore::repr() const {
    const std::string state = locked() ? std::string("locked") : "unlocked, value:" + std::to_string(value_);
    return primitive_repr(kind(), state, waiters_.empty() ? 0 : waiters_.size());
}

bool Semaphore::wake_up_next() {
    waiters_.drop_if_loop_closed();
    for (detail::Waiter& w : waiters_) {
        if (!w.fut.done()) {
            --value_;
            w.fut.set_result();
            return true;
        }
    }
    return false;
}

[[gnu::noinline, gnu::cold]] void BoundedSemaphore::throw_released_too_many() {
    throw std::invalid_argument("BoundedSemaphore released too many times");
}

// ---- Barrier -------------------------------------------------------------------------------

Barrier::Barrier(int parties) : parties_(parties) {
    if (parties < 1) throw std::invalid_argument("parties must be >= 1");
}

Coro<int> Barrier::wait() {
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

void Barrier::reset() {
    if (count_ > 0) {
        if (state_ != State::resetting) state_ = State::resetting;
    } else {
        state_ = State::filling;
    }
    notify_all_internal();
}

void Barrier::abort() {
    state_ = State::broken;
    notify_all_internal();
}

std::string Barrier::repr() const {
    static const char* const names[] = {"filling", "draining", "resetting", "broken"};
    std::string s = "<asyncio::Barrier [";
    s += names[static_cast<int>(state_)];
    if (!broken()) s += ", waiters:" + std::to_string(n_waiting()) + "/" + std::to_string(parties_);
    return s + "]>";
}

Coro<> Barrier::block() {
    co_await cond_.wait_for([this] { return state_ != State::draining && state_ != State::resetting; });
    if (state_ == State::broken) throw BrokenBarrierError();
}

void Barrier::release_all() {
    state_ = State::draining;  // later tasks block until draining ends
    cond_.notify_all();
}

Coro<> Barrier::wait_released() {
    co_await cond_.wait_for([this] { return state_ != State::filling; });
    if (state_ == State::broken || state_ == State::resetting) throw BrokenBarrierError();
}

void Barrier::exit_barrier() {
    // The last task out of the barrier signals the tasks waiting for it to drain.
    if (count_ == 0) {
        if (state_ == State::resetting || state_ == State::draining) state_ = State::filling;
        cond_.notify_all();
    }
}

void Barrier::notify_all_internal() {
    detail::check_loop(cond_.waiters_, get_running_loop_or_null(), "asyncio::Barrier");
    cond_.notify_internal(cond_.waiters_.size());
}

}  // namespace asyncio
