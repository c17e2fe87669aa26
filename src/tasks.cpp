// src/tasks.cpp - the non-template half of Task: stepping the coroutine, cancellation
// (Python's Task.cancel/uncancel/__step), sleep, current_task/all_tasks, run_until_complete.
#include <asyncio/tasks.hpp>

namespace asyncio {
namespace detail {

TaskBase* current_task_for_await(const char* what);

const ReadyItemOps TaskBase::step_ops = {
    /*run=*/[](ReadyItem* item) {
        static_cast<TaskBase*>(item)->step();
    },
    /*discard=*/[](ReadyItem*) noexcept {},
    /*drop=*/[](ReadyItem*) noexcept {},
    /*describe=*/[](const ReadyItem* item) -> std::string {
        return static_cast<const TaskBase*>(item)->repr();
    },
};

const TimerOps TaskBase::timer_ops_table = {
    /*fire=*/[](TimerNode* node) {
        auto* task = static_cast<TaskBase*>(node);
        task->timer_armed_ = false;
        task->schedule_step();
    },
    /*add_ref=*/[](TimerNode* node) noexcept { static_cast<TaskBase*>(node)->add_ref(); },
    /*release=*/[](TimerNode* node) noexcept { static_cast<TaskBase*>(node)->release(); },
};

TaskBase::TaskBase(EventLoop& loop, std::coroutine_handle<> root, std::string name)
    : FutureStateBase(loop), root_(root), name_(std::move(name)) {
    ReadyItem::ops = &step_ops;
    timer_ops = &timer_ops_table;
    number_ = LoopAccess::next_task_number(loop);
}

TaskBase::~TaskBase() { destroy_root(); }

void TaskBase::destroy_root() noexcept {
    if (root_) {
        auto r = std::exchange(root_, nullptr);
        r.destroy();
    }
}

const std::string& TaskBase::name() const {
    if (name_.empty()) name_ = "Task-" + std::to_string(number_);
    return name_;
}

std::string TaskBase::repr() const {
    std::string s = "<Task ";
    switch (status()) {
        case FutureStatus::pending: s += must_cancel ? "cancelling" : "pending"; break;
        case FutureStatus::cancelled: s += "cancelled"; break;
        case FutureStatus::finished: s += "finished"; break;
    }
    s += " name='" + name() + "'";
    if (status() == FutureStatus::finished && exception_) s += " exception=" + describe_exception(exception_);
    return s + ">";
}

void TaskBase::start(bool eager) {
    EventLoop& loop = *anchor_->loop;
    LoopAccess::register_task(loop, this);
    if (eager && loop.is_running()) {
        // Python 3.12 eager start: run the first step now, as the current task.
        step();
    } else {
        schedule_step();
    }
}

void TaskBase::schedule_step() noexcept { LoopAccess::schedule(*anchor_->loop, step_item()); }

void TaskBase::step() {
    if (done() || !root_) return;
    EventLoop& loop = *anchor_->loop;
    RefPtr<TaskBase> keep_alive(this);  // finishing drops the loop's reference
    fut_waiter = nullptr;
    TaskBase*& current = LoopAccess::current_task(loop);
    TaskBase* previous = current;
    current = this;
    if (!started_) {
        started_ = true;
        if (must_cancel) {
            // Cancelled before it ever ran: Python throws CancelledError into the fresh
            // coroutine, which ends it at once. The body never runs.
            must_cancel = false;
            current = previous;
            destroy_root();
            cancel_now(cancel_message_);
            LoopAccess::unregister_task(loop, this);
            return;
        }
        resume_point = root_;
    }
    resume_point.resume();
    current = previous;
    if (root_.done()) finish_from_root();
}

void TaskBase::finish_from_root() {
    std::exception_ptr e = take_root_outcome();
    destroy_root();
    if (e) {
        if (is_cancelled_error(e)) {
            std::string msg;
            try {
                std::rethrow_exception(e);
            } catch (const CancelledError& c) {
                msg = c.message();
            }
            must_cancel = false;
            cancel_now(std::move(msg));
        } else {
            set_exception_now(std::move(e));
        }
    } else if (must_cancel) {
        // cancel() was called while the last step ran: the task ends cancelled.
        must_cancel = false;
        cancel_now(cancel_message_);
    } else {
        finish(FutureStatus::finished);
    }
    LoopAccess::unregister_task(*anchor_->loop, this);
}

void TaskBase::abandon() noexcept {
    timer_armed_ = false;
    destroy_root();
    drop_callbacks();
}

bool TaskBase::cancel(std::string msg) {
    anchor_->open_loop();
    log_traceback_ = false;
    if (done()) return false;
    ++num_cancels_requested_;
    if (fut_waiter && fut_waiter->cancel(msg)) {
        // Leave fut_waiter: it may be a task that catches and ignores the cancellation.
        return true;
    }
    must_cancel = true;
    cancel_message_ = std::move(msg);
    return true;
}

int TaskBase::uncancel() noexcept {
    if (num_cancels_requested_ > 0) {
        --num_cancels_requested_;
        if (num_cancels_requested_ == 0) must_cancel = false;
    }
    return num_cancels_requested_;
}

void TaskBase::wake_at(double when) {
    EventLoop& loop = *anchor_->loop;
    if (timer_armed_) LoopAccess::cancel_timer(loop, this);
    LoopAccess::add_timer(loop, this, when);
    timer_armed_ = true;
}

void TaskBase::cancel_wake_timer() noexcept {
    if (!timer_armed_) return;
    timer_armed_ = false;
    if (EventLoop* loop = anchor_->loop; loop && !loop->is_closed()) LoopAccess::cancel_timer(*loop, this);
}

// ---- sleep ---------------------------------------------------------------------------------
void SleepAwaiter::await_suspend(std::coroutine_handle<> h) {
    task_ = current_task_for_await("asyncio::sleep()");
    task_->resume_point = h;
    if (delay_ <= 0) {
        // Bare yield: run again on the next iteration. A pending cancel is thrown then.
        task_->fut_waiter = nullptr;
        task_->schedule_step();
        return;
    }
    EventLoop& loop = *task_->anchor()->loop;
    task_->wake_at(loop.time() + delay_);
    task_->fut_waiter = this;
    if (task_->must_cancel && cancel(task_->cancel_message())) task_->must_cancel = false;
}

bool SleepAwaiter::cancel(std::string msg) {
    // Already woken by its timer (the step is queued): too late, like a done future.
    if (cancelled_ || !task_->wake_timer_armed()) return false;
    cancelled_ = true;
    cancel_message_ = std::move(msg);
    task_->cancel_wake_timer();
    task_->schedule_step();
    return true;
}

void SleepAwaiter::await_resume() {
    if (!task_) return;
    TaskBase* t = std::exchange(task_, nullptr);
    throw_if_must_cancel(t);
    if (cancelled_) throw CancelledError(cancel_message_);
}

SleepAwaiter::~SleepAwaiter() {
    if (task_) {
        // Destroyed while suspended (loop closing): disarm the wake-up.
        if (task_->fut_waiter == this) task_->fut_waiter = nullptr;
        task_->cancel_wake_timer();
    }
}

// ---- run_until_complete --------------------------------------------------------------------
void run_until_done(EventLoop& loop, FutureStateBase* future) {
    LoopAccess::check_open(loop);
    if (loop.is_running())
        throw RuntimeError(
            "This event loop is already running: run_until_complete() cannot be called from code "
            "running on this loop; await the coroutine (co_await) or schedule it with "
            "create_task() instead");
    if (future->anchor() != LoopAccess::anchor(loop))
        throw RuntimeError("run_until_complete(): the future/task belongs to a different loop");
    std::uint64_t id = 0;
    if (!future->done()) {
        id = future->add_done_callback([&loop](FutureStateBase*) { loop.stop(); }, nullptr);
    }
    struct Remove {
        FutureStateBase* f;
        std::uint64_t id;
        ~Remove() {
            if (id) f->remove_done_callback(id);
        }
    } remove{future, id};
    if (!future->done()) loop.run_forever();
    if (!future->done()) throw RuntimeError("Event loop stopped before Future completed.");
}

}  // namespace detail

AnyTask current_task() {
    EventLoop* loop = detail::tl_running_loop;
    if (!loop) throw RuntimeError("no running event loop: current_task() must be called from a coroutine");
    detail::TaskBase* t = detail::LoopAccess::current_task(*loop);
    return t ? AnyTask(t) : AnyTask();
}

std::vector<AnyTask> all_tasks(EventLoop& loop) {
    std::vector<AnyTask> out;
    for (detail::TaskBase* t = detail::LoopAccess::tasks_head(loop); t; t = t->next_task)
        if (!t->done()) out.emplace_back(t);
    return out;
}

std::vector<AnyTask> all_tasks() { return all_tasks(get_running_loop()); }

}  // namespace asyncio
