// src/runtime/tasks.cpp - the non-template half of Task: stepping the coroutine, cancellation
// (Python's Task.cancel/uncancel/__step), sleep, current_task/all_tasks, run_until_complete.
#include <asyncio/tasks.hpp>

namespace asyncio {
namespace detail {

TaskBase* current_task_for_await(const char* what);

const ReadyItemOps TaskBase::step_ops = {
    /*run=*/[](ReadyItem* item) { static_cast<TaskBase*>(item)->step(); },
    /*discard=*/[](ReadyItem*) noexcept {},
    /*drop=*/[](ReadyItem*) noexcept {},
    /*describe=*/[](const ReadyItem* item) -> std::string { return static_cast<const TaskBase*>(item)->repr(); },
    /*timer_fire=*/
    [](ReadyItem* item) {
        auto* task = static_cast<TaskBase*>(item);
        task->sleeping_ = false;
        task->schedule_step();
    },
    /*add_ref=*/[](ReadyItem* item) noexcept { static_cast<TaskBase*>(item)->add_ref(); },
    /*release=*/[](ReadyItem* item) noexcept { static_cast<TaskBase*>(item)->release(); },
    /*on_schedule=*/nullptr,
    /*abandon=*/
    [](ReadyItem* item) noexcept {
        auto* task = static_cast<TaskBase*>(item);
        RefPtr<TaskBase> keep(task);
        LoopAccess::unregister_task(*task->anchor_->loop, task);
        task->abandon();
    },
};

void TaskBase::init_extras(std::string_view name) {
    if (!name.empty()) extras().name = name;
    // Each task runs in a copy of the context current at its creation (a shared immutable
    // map: copying is a reference; an empty context costs nothing).
    if (tl_context_used) {
        if (const ContextMapPtr& m = current_context_map(); m && !m->empty()) extras().context = m;
    }
}

const std::string& TaskBase::name() const {
    auto& self = const_cast<TaskBase&>(*this);
    std::string& name = self.extras().name;
    if (name.empty()) name = "Task-" + std::to_string(number_);
    return name;
}

void TaskBase::set_name(std::string name) { extras().name = std::move(name); }

std::string TaskBase::repr() const {
    std::string s = "<Task ";
    switch (status()) {
        case FutureStatus::pending:
            s += num_cancels_requested_ > 0 ? "cancelling" : "pending";
            break;
        case FutureStatus::cancelled:
            s += "cancelled";
            break;
        case FutureStatus::finished:
            s += "finished";
            break;
    }
    s += " name='" + name() + "'";
    if (status() == FutureStatus::finished && exception_) s += " exception=" + describe_exception(exception_);
    return s + ">";
}

void TaskBase::start_eager() {
    // Python 3.12 eager start: run the first step now, as the current task.
    if (anchor_->loop->is_running())
        step();
    else
        schedule_step();
}

void TaskBase::step() {
    if (done() || !root_) [[unlikely]]
        return;
    if (!started_) [[unlikely]] {
        started_ = true;
        if (must_cancel) [[unlikely]] {
            cancel_before_start();
            return;
        }
    }
    // No self-reference needed: the loop owns a pending task, and finish_from_root() drops
    // that reference as its very last action.
    fut_waiter = nullptr;
    TaskBase*& current = LoopAccess::current_task(*anchor_->loop);
    TaskBase* previous = current;
    current = this;
    resume_point.resume();
    current = previous;
    if (root_.done()) finish_from_root();
}

void TaskBase::cancel_before_start() {
    // Cancelled before it ever ran: Python throws CancelledError into the fresh coroutine,
    // which ends it at once. The body never runs.
    must_cancel = false;
    destroy_root();
    cancel_now(cancel_message());
    LoopAccess::unregister_task(*anchor_->loop, this);
}

void TaskBase::finish_from_root() {
    std::exception_ptr e = take_root_outcome();
    destroy_root();
    if (!e && !must_cancel) [[likely]]
        finish(FutureStatus::finished);
    else
        finish_abnormally(std::move(e));
    LoopAccess::unregister_task(*anchor_->loop, this);
}

void TaskBase::finish_abnormally(std::exception_ptr e) {
    if (!e) {
        // cancel() was called while the last step ran: the task ends cancelled.
        must_cancel = false;
        cancel_now(cancel_message());
    } else if (is_cancelled_error(e)) {
        std::string msg;
        try {
            std::rethrow_exception(e);
        } catch (const CancelledError& c) {
            msg = c.message();
        }
        must_cancel = false;
        cancel_now(std::move(msg));
    } else {
        set_exception_now(e);
        if (is_keyboard_interrupt(e)) {
            // Like Python's Task.__step: recorded on the task, and raised out of the loop.
            LoopAccess::unregister_task(*anchor_->loop, this);
            std::rethrow_exception(e);
        }
    }
}

void TaskBase::abandon() noexcept {
    destroy_root();
    sleeping_ = false;
    drop_callbacks();
}

bool TaskBase::cancel(std::string msg) {
    anchor_->open_loop();
    log_traceback_ = false;
    if (done()) return false;
    // What may allocate comes before any change: a std::bad_alloc leaves the task as it was
    // (a sleep whose timer was cancelled before the message could be stored slept forever).
    if (!msg.empty()) (void)extras();  // where the message goes
    ++num_cancels_requested_;
    if (fut_waiter) {
        bool waiter_cancelled = false;
        try {
            waiter_cancelled = fut_waiter->cancel(msg);  // copies the message
        } catch (...) {
            --num_cancels_requested_;
            throw;
        }
        // Leave fut_waiter: it may be a task that catches and ignores the cancellation.
        if (waiter_cancelled) return true;
    }
    if (sleep_cancelled_) {
        // The sleep was already cancelled and the wake-up is queued: that CancelledError,
        // with its message, is what the task will see (Python: the cancelled future's error).
        must_cancel = true;
        return true;
    }
    if (sleeping_) {
        // Like cancelling the future Python's sleep() waits on: wake up with CancelledError.
        sleeping_ = false;
        sleep_cancelled_ = true;
        LoopAccess::cancel_timer(*anchor_->loop, this);
        set_cancel_message(std::move(msg));
        schedule_step();
        return true;
    }
    must_cancel = true;
    set_cancel_message(std::move(msg));
    return true;
}

int TaskBase::uncancel() noexcept {
    if (num_cancels_requested_ > 0) {
        --num_cancels_requested_;
        if (num_cancels_requested_ == 0) must_cancel = false;
    }
    return num_cancels_requested_;
}

void TaskBase::sleep_until(double when) {
    LoopAccess::add_timer(*anchor_->loop, this, when);
    sleeping_ = true;
    sleep_cancelled_ = false;
    if (must_cancel) {
        // cancel() was called while this step ran: the sleep is cancelled at once (Python
        // cancels the new _fut_waiter in __step).
        must_cancel = false;
        --num_cancels_requested_;  // cancel() counts it again
        cancel(cancel_message());
    }
}

void TaskBase::finish_sleep() {
    if (sleep_cancelled_) {
        sleep_cancelled_ = false;
        must_cancel = false;
        throw CancelledError(cancel_message());
    }
    throw_if_must_cancel(this, nullptr);
}

// ---- sleep ---------------------------------------------------------------------------------
void SleepAwaiter::await_suspend(std::coroutine_handle<> h) {
    TaskBase* task = current_task_for_await("asyncio::sleep()");
    task->resume_point = h;
    if (delay_ <= 0) {
        // Bare yield: run again on the next iteration. A pending cancel is thrown then.
        task->schedule_step();
        return;
    }
    task->sleep_until(task->anchor()->loop->time() + delay_);
}

void SleepAwaiter::await_resume() { LoopAccess::current_task(*tl_running_loop)->finish_sleep(); }

// ---- run_until_complete --------------------------------------------------------------------
void run_until_done(EventLoop& loop, FutureStateBase* future) {
    LoopAccess::check_can_run_until_complete(loop);
    if (future->anchor() != LoopAccess::anchor(loop))
        throw std::invalid_argument(
            "The future belongs to a different loop than the one specified as the loop argument");
    // Always through run_forever(), even for a done future: what is ready runs first, as in
    // Python (the stop callback is scheduled behind it).
    std::uint64_t id = future->add_done_callback(
        [&loop](FutureStateBase* f) {
            // A KeyboardInterrupt already left run_forever() (CPython issue #22429): stopping
            // now would stop the *next* run of the loop.
            if (f->status() == FutureStatus::finished && is_keyboard_interrupt(f->exception())) return;
            loop.stop();
        },
        nullptr);
    struct Remove {
        FutureStateBase* f;
        std::uint64_t id;
        ~Remove() { f->remove_done_callback(id); }
    } remove{future, id};
    loop.run_forever();
    if (!future->done()) throw RuntimeError("Event loop stopped before Future completed.");
}

}  // namespace detail

void detail::LoopAccess::check_can_run_until_complete(const EventLoop& loop) {
    loop.check_closed();
    if (loop.running_)
        throw RuntimeError(
            "This event loop is already running: run_until_complete() cannot be called from code "
            "running on this loop; await the coroutine (co_await) or schedule it with "
            "create_task() instead");
    if (detail::tl_running_loop)
        throw RuntimeError(
            "Cannot run the event loop while another loop is running in this thread; await the "
            "coroutine on the running loop, or run the other loop in another thread");
}

namespace detail {}  // namespace detail

AnyTask current_task() {
    EventLoop* loop = detail::tl_running_loop;
    if (!loop) throw RuntimeError("no running event loop: current_task() must be called from a coroutine");
    detail::TaskBase* t = detail::LoopAccess::current_task(*loop);
    return t ? AnyTask(t) : AnyTask();
}

std::vector<AnyTask> all_tasks(EventLoop& loop) {
    std::vector<AnyTask> out;
    for (detail::ReadyItem* item : detail::LoopAccess::pending_tasks(loop)) {
        auto* t = static_cast<detail::TaskBase*>(item);
        if (!t->done()) out.emplace_back(t);
    }
    return out;
}

std::vector<AnyTask> all_tasks() { return all_tasks(get_running_loop()); }

}  // namespace asyncio
