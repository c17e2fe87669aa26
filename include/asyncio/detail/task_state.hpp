// asyncio/detail/task_state.hpp - the state behind Task<T>: a future plus a coroutine plus
// cancellation bookkeeping (Python's asyncio.Task internals).
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/events.hpp>
#include <asyncio/futures.hpp>

#include <coroutine>
#include <cstdint>
#include <string>

namespace asyncio::detail {

class TaskBase : public FutureStateBase, public TimerNode, private ReadyItem {
public:
    TaskBase(EventLoop& loop, std::coroutine_handle<> root, std::string name);

    bool is_task() const noexcept override { return true; }
    std::string repr() const override;

    /// Task.cancel(msg): requests cancellation (see Python's Task.cancel).
    bool cancel(std::string msg) override;
    int cancelling() const noexcept { return num_cancels_requested_; }
    int uncancel() noexcept;
    const std::string& name() const;
    void set_name(std::string name) { name_ = std::move(name); }

    /// Schedules the first step (or runs it now, for an eager task). Called once.
    void start(bool eager);

    // ---- used by awaiters (see futures.hpp / sleep) ---------------------------------------
    /// The step to run when this task is woken (queued by a future, a timer or sleep(0)):
    /// the task itself is the ready-queue item.
    ReadyItem* step_item() noexcept { return this; }
    /// The innermost suspended coroutine, resumed by the next step.
    std::coroutine_handle<> resume_point;
    /// What the task is suspended on (Python's _fut_waiter), or nullptr.
    Cancellable* fut_waiter = nullptr;
    bool must_cancel = false;

    /// Wakes the task at loop time `when` (sleep). Replaces any earlier wake-up timer.
    void wake_at(double when);
    /// Cancels the wake-up timer set by wake_at().
    void cancel_wake_timer() noexcept;
    bool wake_timer_armed() const noexcept { return timer_armed_; }
    /// Queues the next step on the loop.
    void schedule_step() noexcept;

    // intrusive list of the loop's pending tasks
    TaskBase* prev_task = nullptr;
    TaskBase* next_task = nullptr;

protected:
    ~TaskBase() override;
    /// The finished root coroutine's exception; or, when it returned, stores its value in
    /// the state and returns null.
    virtual std::exception_ptr take_root_outcome() = 0;
    void destroy_root() noexcept;

private:
    friend class ::asyncio::EventLoop;
    static const ReadyItemOps step_ops;
    static const TimerOps timer_ops_table;
    void step();
    void finish_from_root();
    /// Destroys the coroutine of a task abandoned by a closing loop.
    void abandon() noexcept;

    std::coroutine_handle<> root_;
    int num_cancels_requested_ = 0;
    bool started_ = false;
    bool timer_armed_ = false;
    std::uint64_t number_ = 0;
    mutable std::string name_;
};

template <class T>
class TaskState final : public TaskBase, public ValueHolder<T>, public PoolAllocated {
public:
    using Handle = typename Coro<T>::handle_type;
    using PoolAllocated::operator new;
    using PoolAllocated::operator delete;

    TaskState(EventLoop& loop, Handle root, std::string name)
        : TaskBase(loop, root, std::move(name)), root_handle_(root) {}

private:
    ~TaskState() override = default;
    std::exception_ptr take_root_outcome() override {
        auto& promise = root_handle_.promise();
        if (promise.exception) return promise.exception;
        if constexpr (std::is_void_v<T>) {
            this->value.emplace();
        } else {
            this->value.emplace(std::move(*promise.value));
        }
        return nullptr;
    }
    void last_release() noexcept override {
        FutureStateBase::last_release();
        delete this;
    }
    Handle root_handle_;
};

}  // namespace asyncio::detail
