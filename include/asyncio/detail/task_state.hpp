// asyncio/detail/task_state.hpp - the state behind Task<T>: a future plus a coroutine plus
// cancellation bookkeeping (Python's asyncio.Task internals).
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/futures.hpp>

#include <coroutine>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace asyncio::detail {

/// The task is its own ready-queue item (its next step) and its own timer node (sleep's
/// wake-up), so neither scheduling nor sleeping allocates.
class TaskBase : public FutureStateBase, public TimerNode {
    // Small fields first: they fill the tail padding of the TimerNode base, so a task state
    // is 112 bytes (a million pending tasks is a real workload).
    std::uint32_t number_ = 0;  // "Task-N"
    std::int32_t num_cancels_requested_ = 0;
    bool started_ = false;
    bool sleeping_ = false;         // suspended in sleep() with its timer armed
    bool sleep_cancelled_ = false;  // cancel() interrupted that sleep

public:
    /// cancel() was called while the task could not cancel what it waits on (Python's
    /// _must_cancel): the next resumption throws CancelledError.
    bool must_cancel = false;

    TaskBase(EventLoop& loop, std::coroutine_handle<> root, std::string_view name)
        : FutureStateBase(loop), resume_point(root), root_(root) {
        ReadyItem::ops = &step_ops;
        number_ = static_cast<std::uint32_t>(LoopAccess::next_task_number(loop));
        if (!name.empty() || tl_context_used) [[unlikely]]
            init_extras(name);
    }

    bool is_task() const noexcept override { return true; }
    std::string repr() const override;

    /// Task.cancel(msg): requests cancellation (see Python's Task.cancel).
    bool cancel(std::string msg) override;
    int cancelling() const noexcept { return num_cancels_requested_; }
    int uncancel() noexcept;
    const std::string& name() const;
    void set_name(std::string name);

    /// Schedules the first step (or runs it now, for an eager task). Called once.
    void start(bool eager) {
        LoopAccess::register_task(*anchor_->loop, this);
        if (eager) [[unlikely]]
            start_eager();
        else
            schedule_step();
    }

    // ---- used by awaiters (see futures.hpp / sleep) ---------------------------------------
    ReadyItem* step_item() noexcept { return this; }
    /// The innermost suspended coroutine, resumed by the next step.
    std::coroutine_handle<> resume_point;
    /// What the task is suspended on (Python's _fut_waiter), or nullptr.
    Cancellable* fut_waiter = nullptr;

    /// sleep(): suspends until loop time `when`; cancel() then cancels the sleep.
    void sleep_until(double when);
    /// After a sleep: throws CancelledError if cancel() interrupted it.
    void finish_sleep();
    /// Queues the next step on the loop.
    void schedule_step() noexcept { LoopAccess::schedule(*anchor_->loop, this); }

    /// The task's context (Python's Task._context): where ContextVar reads and writes go
    /// while this task runs. Null pointer: the empty context (no allocation for it).
    ContextMapPtr* context_slot(bool create) {
        if (!create && !extras_) return nullptr;
        return &extras().context;
    }
    /// Slot in the loop's table of pending tasks (the loop owns them).
    std::uint32_t& task_index() noexcept { return task_index_; }

protected:
    ~TaskBase() override { destroy_root(); }
    /// The finished root coroutine's exception; or, when it returned, stores its value in
    /// the state and returns null.
    virtual std::exception_ptr take_root_outcome() = 0;
    void destroy_root() noexcept {
        if (root_) std::exchange(root_, nullptr).destroy();
    }
    std::coroutine_handle<> root_;

private:
    friend class ::asyncio::EventLoop;
    static const ReadyItemOps step_ops;
    void step();
    void cancel_before_start();
    void start_eager();
    /// The name and the context, when the task has either (allocates its Extras).
    void init_extras(std::string_view name);
    void finish_from_root();
    void finish_abnormally(std::exception_ptr e);
    /// Destroys the coroutine of a task abandoned by a closing loop.
    void abandon() noexcept;
};

template <class T>
class TaskState final : public TaskBase, public ValueHolder<T>, public PoolAllocated {
public:
    using Handle = typename Coro<T>::handle_type;
    using PoolAllocated::operator new;
    using PoolAllocated::operator delete;

    TaskState(EventLoop& loop, Handle root, std::string_view name) : TaskBase(loop, root, name) {
        root.promise().continuation = std::noop_coroutine();  // the root returns to the step
    }

private:
    ~TaskState() override = default;
    std::exception_ptr take_root_outcome() override {
        auto& promise = Handle::from_address(root_.address()).promise();
        if (promise.exception) return std::move(promise.exception);
        if constexpr (!std::is_void_v<T>) this->value.emplace(std::move(*promise.value));
        return nullptr;
    }
    void last_release() noexcept override {
        FutureStateBase::last_release();
        delete this;
    }
};

inline void LoopAccess::register_task(EventLoop& loop, TaskBase* task) {
    // The push first: when it fails (std::bad_alloc), the task holds no reference of the loop's
    // and is not listed, so dropping the caller's handle frees it.
    loop.tasks_.push_back(task);
    task->task_index() = static_cast<std::uint32_t>(loop.tasks_.size() - 1);
    task->add_ref();
}
inline void LoopAccess::unregister_task(EventLoop& loop, TaskBase* task) noexcept {
    // Swap-remove: O(1). (Python's all_tasks() is a set: no order to keep.)
    std::uint32_t i = task->task_index();
    // A reference cast: the ReadyItem base is not at offset 0, and a pointer cast would add
    // a null check (3 instructions per task, callgrind).
    TaskBase* last = &static_cast<TaskBase&>(*loop.tasks_.back());
    loop.tasks_[i] = last;
    last->task_index() = i;
    loop.tasks_.pop_back();
    task->release();
}

}  // namespace asyncio::detail
