// asyncio/detail/future_state.hpp - the state behind Future<T> and Task<T> (futures.hpp):
// FutureStateBase (status, result or exception, done callbacks, the loop it belongs to), the
// typed FutureState<T>, the awaiter that suspends a task on a future, and ChildNode, the
// allocation-free done callback the combinators register on their children.
#pragma once

#include <asyncio/contextvars.hpp>
#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>

#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace asyncio {

namespace detail {

/// Anything a task can be suspended on that task.cancel() can cancel: a future, a sleep.
/// Python's Task._fut_waiter.
class Cancellable {
public:
    virtual bool cancel(std::string msg) = 0;

protected:
    ~Cancellable() = default;
};

class FutureStateBase;

/// A user's done callback: owned by the future's callback list until the future completes,
/// then queued on the loop (holding a reference to the future) and deleted after it ran.
struct CallbackNode final : ReadyItem, PoolAllocated {
    FutureStateBase* future = nullptr;
    std::function<void(FutureStateBase*)> fn;
    std::uint64_t id = 0;
    const void* identity = nullptr;  // the function pointer, for remove_done_callback(fn)
    static const ReadyItemOps ops_table;
};

enum class FutureStatus : std::uint8_t { pending, cancelled, finished };

class FutureStateBase : public Cancellable {
public:
    explicit FutureStateBase(EventLoop& loop) noexcept : anchor_(LoopAccess::anchor(loop)) {}
    FutureStateBase(const FutureStateBase&) = delete;
    FutureStateBase& operator=(const FutureStateBase&) = delete;

    void add_ref() noexcept { ++refs_; }
    void release() noexcept {
        if (--refs_ == 0) last_release();
    }

    bool done() const noexcept { return status_ != FutureStatus::pending; }
    bool cancelled() const noexcept { return status_ == FutureStatus::cancelled; }
    FutureStatus status() const noexcept { return status_; }

    /// Future.cancel(msg): False if already done; else cancels and schedules callbacks.
    bool cancel(std::string msg) override;
    /// Future.set_exception(); InvalidStateError when done.
    void set_exception(std::exception_ptr e);
    /// Future.exception(): CancelledError if cancelled, InvalidStateError if pending; marks
    /// the exception as retrieved.
    std::exception_ptr exception();
    /// Throws what result() must throw (CancelledError, InvalidStateError, the exception);
    /// returns normally when a value is available. Marks the exception as retrieved.
    void check_result() {
        if (status_ == FutureStatus::finished && !exception_) [[likely]] {
            log_traceback_ = false;
            return;
        }
        throw_result_error();
    }
    /// The CancelledError to raise for a cancelled future (carries the cancel message).
    CancelledError make_cancelled_error() const;
    /// The message given to cancel() ("" when none).
    const std::string& cancel_message() const noexcept;
    void set_cancel_message(std::string msg);

    /// Adds a callback node; if the future is already done it is scheduled at once.
    void add_callback_node(ReadyItem* node) {
        if (!done()) [[likely]]
            callbacks_.push_back(node);
        else
            schedule_callback_node(node);
    }
    /// Removes a not-yet-scheduled node; returns whether it was there.
    bool remove_callback_node(ReadyItem* node) noexcept { return callbacks_.remove(node); }
    std::uint64_t add_done_callback(std::function<void(FutureStateBase*)> fn, const void* identity);
    std::size_t remove_done_callback(std::uint64_t id) noexcept;
    std::size_t remove_done_callback_by_identity(const void* identity) noexcept;

    /// The loop, or RuntimeError("Event loop is closed").
    EventLoop& loop() const { return anchor_->open_loop(); }
    /// The loop object even when closed; nullptr when destroyed.
    EventLoop* loop_or_null() const noexcept { return anchor_->loop; }
    LoopAnchor* anchor() const noexcept { return anchor_.get(); }

    virtual bool is_task() const noexcept { return false; }
    /// "<Future pending>", "<Task finished name='x' result=...>" ...
    virtual std::string repr() const;
    std::string status_name() const;

protected:
    virtual ~FutureStateBase() {
        if (!callbacks_.empty()) drop_callbacks();
    }
    /// Called once the last handle went away: reports an exception nobody retrieved.
    virtual void last_release() noexcept {
        if (log_traceback_) [[unlikely]]
            report_unretrieved();
    }
    void report_unretrieved() noexcept;
    /// check_result() when there is no value: throws what result() must throw.
    [[noreturn]] void throw_result_error();
    /// Schedules a done callback node now (the future is done).
    void schedule_callback_node(ReadyItem* node);
    /// Marks done and schedules the callbacks.
    void finish(FutureStatus status);
    /// Drops callbacks that will never run.
    void drop_callbacks() noexcept;
    /// Sets cancelled state with message and schedules callbacks (Future.cancel's body).
    void cancel_now(std::string msg);

public:
    /// Completes with an exception without the state checks (the caller knows it is pending).
    void set_exception_now(std::exception_ptr e);

protected:
    /// Throws InvalidStateError("<state>: <repr>") when already done; also checks the loop.
    void check_can_complete() const;

    // Laid out for size: a million pending tasks each carry one of these.
    LocalAnchorRef anchor_;
    CallbackList callbacks_;
    std::exception_ptr exception_;
    /// Rarely used strings, allocated on first use: the cancel message, a task's name.
    struct Extras {
        std::string cancel_message;
        std::string name;
        ContextMapPtr context;  // a task's context (null: empty)
    };
    Extras& extras();
    std::unique_ptr<Extras> extras_;
    std::uint32_t refs_ = 1;
    std::uint32_t next_callback_id_ = 0;
    std::uint32_t task_index_ = 0;  // TaskBase: its slot in the loop's table of pending tasks
    FutureStatus status_ = FutureStatus::pending;
    bool log_traceback_ = false;

public:
    /// Scratch mark for combinators that deduplicate children in O(n) (gather).
    bool mark = false;
};

/// The value half of a future or task state.
template <class T>
struct ValueHolder {
    std::optional<T> value;

    /// Result for `co_await`: copies when T is copyable (any number of awaiters, like
    /// Python); moves a move-only result out (it can be awaited once).
    T get_for_await() {
        if constexpr (std::is_copy_constructible_v<T>) {
            return *value;
        } else {
            return std::move(*value);
        }
    }
};

/// A void future has no value to store: "finished without exception" says it all.
template <>
struct ValueHolder<void> {
    void get_for_await() noexcept {}
};

template <class T>
class FutureState final : public FutureStateBase, public ValueHolder<T>, public PoolAllocated {
public:
    using FutureStateBase::FutureStateBase;
    using PoolAllocated::operator new;
    using PoolAllocated::operator delete;

    template <class... A>
    void set_result(A&&... args) {
        check_can_complete();
        if constexpr (!std::is_void_v<T>) this->value.emplace(std::forward<A>(args)...);
        finish(FutureStatus::finished);
    }
    std::string repr() const override { return FutureStateBase::repr(); }

private:
    ~FutureState() override = default;
    void last_release() noexcept override {
        FutureStateBase::last_release();
        delete this;
    }
};

class TaskBase;

/// Suspends the current task on `target` (a future) from an awaiter's await_suspend.
/// Throws RuntimeError when not called inside a task, when a task awaits itself, or when the
/// future belongs to another loop.
TaskBase* suspend_current_task_on(FutureStateBase* target, std::coroutine_handle<> h);
/// Called by an awaiter's await_resume after a suspension: throws the CancelledError that a
/// cancel() issued while the task could not cancel its waiter has left pending. If what the
/// task awaited (`awaited`, may be null) was itself cancelled, its error wins (Python's
/// Task.__step keeps the CancelledError it was woken with).
void throw_if_must_cancel(TaskBase* task, const FutureStateBase* awaited);
/// Called from an awaiter's destructor: if `task` is still suspended on `target` (the frame
/// is destroyed without resuming, e.g. at loop close) unregisters its wake-up.
void forget_suspension(TaskBase* task, FutureStateBase* target) noexcept;

/// Awaits a future-like state S (FutureState<T> / TaskState<T>) from inside a task.
template <class S, class T>
struct FutureAwaiter {
    RefPtr<S> state;
    TaskBase* task = nullptr;

    bool await_ready() const noexcept { return state->done(); }
    void await_suspend(std::coroutine_handle<> h) { task = suspend_current_task_on(state.get(), h); }
    T await_resume() {
        if (task) {
            TaskBase* t = std::exchange(task, nullptr);
            throw_if_must_cancel(t, state.get());
        }
        state->check_result();
        if constexpr (!std::is_void_v<T>) return state->get_for_await();
    }
    ~FutureAwaiter() {
        if (task) forget_suspension(task, state.get());
    }
    FutureAwaiter(RefPtr<S> s) noexcept : state(std::move(s)) {}
    FutureAwaiter(FutureAwaiter&& o) noexcept : state(std::move(o.state)), task(std::exchange(o.task, nullptr)) {}
};

template <class F, class H>
std::function<void(FutureStateBase*)> wrap_done_callback(F&& fn) {
    return [fn = std::forward<F>(fn)](FutureStateBase* st) mutable {
        if constexpr (std::is_invocable_v<F&, const H&>) {
            H h = H::from_state(st);
            fn(h);
        } else {
            fn();
        }
    };
}

template <class F>
const void* callback_identity(const F& fn) noexcept {
    if constexpr (std::is_pointer_v<std::decay_t<F>> && std::is_function_v<std::remove_pointer_t<std::decay_t<F>>>)
        return reinterpret_cast<const void*>(fn);
    else
        return nullptr;
}

}  // namespace detail

}  // namespace asyncio

namespace asyncio::detail {

/// An internal done callback of a combinator (gather, wait, shield, TaskGroup...) that is
/// registered on a child future and calls `owner->on_child_done(node)`. It keeps the owner
/// alive while registered or queued, and never allocates: owners embed their nodes.
template <class Owner>
struct ChildNode : ReadyItem {
    Owner* owner = nullptr;
    FutureStateBase* child = nullptr;
    std::size_t index = 0;

    void attach(Owner* o, FutureStateBase* c, std::size_t i) {
        owner = o;
        child = c;
        index = i;
        ops = &ops_table;
        o->add_ref();
        c->add_callback_node(this);
    }
    /// Unregisters from a child that has not completed yet; true if it was registered.
    bool detach() noexcept {
        if (child && child->remove_callback_node(this)) {
            child = nullptr;
            owner->release();
            return true;
        }
        return false;
    }
    static const ReadyItemOps ops_table;
};

template <class Owner>
const ReadyItemOps ChildNode<Owner>::ops_table = {
    /*run=*/[](ReadyItem* item) {
        auto* n = static_cast<ChildNode*>(item);
        Owner* o = n->owner;
        try {
            o->on_child_done(*n);
        } catch (...) {
            if (EventLoop* loop = o->loop_or_null())
                loop->call_exception_handler(
                    {"Exception in internal done callback", std::current_exception(), o->repr(), {}});
        }
        n->child = nullptr;
        o->release();
    },
    /*discard=*/[](ReadyItem* item) noexcept { static_cast<ChildNode*>(item)->owner->release(); },
    /*drop=*/
    [](ReadyItem* item) noexcept {
        auto* n = static_cast<ChildNode*>(item);
        Owner* o = n->owner;
        n->child = nullptr;
        if constexpr (requires { o->on_child_dropped(*n); }) o->on_child_dropped(*n);
        o->release();
    },
    /*describe=*/
    [](const ReadyItem* item) -> std::string {
        return "<internal callback of " + static_cast<const ChildNode*>(item)->owner->repr() + ">";
    },
};

/// A future with no value of its own, used as the outer future of combinators.
class PlainFutureState : public FutureStateBase, public PoolAllocated {
public:
    using FutureStateBase::FutureStateBase;
    using PoolAllocated::operator new;
    using PoolAllocated::operator delete;
    void set_done() {
        check_can_complete();
        finish(FutureStatus::finished);
    }
    using FutureStateBase::set_exception_now;

protected:
    ~PlainFutureState() override = default;
    void last_release() noexcept override {
        FutureStateBase::last_release();
        delete this;
    }
};

}  // namespace asyncio::detail
