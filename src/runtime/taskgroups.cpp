// src/runtime/taskgroups.cpp - TaskGroup, a line-by-line port of CPython 3.12's taskgroups.py.
#include <asyncio/taskgroups.hpp>

#include <algorithm>

namespace asyncio {

TaskGroup::~TaskGroup() = default;

const char* TaskGroup::cannot_create() const noexcept {
    if (!entered_) return "TaskGroup has not been entered";
    if (exiting_ && tasks_.empty()) return "TaskGroup is finished";
    if (aborting_) return "TaskGroup is shutting down";
    return nullptr;
}

void TaskGroup::enter() {
    if (entered_) throw RuntimeError("TaskGroup has already been entered");
    loop_ = &get_running_loop();
    parent_task_ = current_task();
    if (!parent_task_) throw RuntimeError("TaskGroup cannot determine the parent task");
    entered_ = true;
}

void TaskGroup::adopt_task(detail::TaskBase* task) {
    // Even an eager task that is already done goes through the done callback (call_soon):
    // handling it inline would run before the creating task is registered (CPython
    // gh-128550).
    // All or nothing: a task listed without its done callback would never leave tasks_, and
    // the group would wait for it forever.
    tasks_.emplace_back(task);
    try {
        // Room for every error the pending children may report: on_task_done() then records
        // an error without allocating (a std::bad_alloc there would lose the child's error).
        const std::size_t needed = errors_.size() + tasks_.size();
        if (errors_.capacity() < needed) errors_.reserve(std::max(needed, 2 * errors_.capacity()));
        task->add_done_callback(
            [this](detail::FutureStateBase* st) { on_task_done(static_cast<detail::TaskBase*>(st)); }, nullptr);
    } catch (...) {
        tasks_.pop_back();
        throw;
    }
}

void TaskGroup::abort() {
    aborting_ = true;
    for (AnyTask& t : tasks_)
        if (!t.done()) t.cancel();
}

void TaskGroup::on_task_done(detail::TaskBase* task) {
    for (auto it = tasks_.begin(); it != tasks_.end(); ++it) {
        if (it->state_ptr() == task) {
            tasks_.erase(it);
            break;
        }
    }
    if (on_completed_fut_ && tasks_.empty() && !on_completed_fut_->done()) on_completed_fut_->set_result();
    if (task->cancelled()) return;
    std::exception_ptr exc = task->exception();
    if (!exc) return;
    errors_.push_back(exc);
    if (is_base_error(exc) && !base_error_) base_error_ = exc;
    if (parent_task_.done()) {
        loop_->call_exception_handler({"Task " + task->repr() + " has errored out but its parent task " +
                                           parent_task_.repr() + " is already completed",
                                       exc,
                                       task->repr(),
                                       {}});
        return;
    }
    if (!aborting_ && !parent_cancel_requested_) {
        // Cancel the parent so that the body stops at its current await; aexit() uncancels.
        abort();
        parent_cancel_requested_ = true;
        parent_task_.cancel();
    }
}

Coro<> TaskGroup::aexit(std::exception_ptr body_exception) { co_await aexit_from(body_exception); }

Coro<> TaskGroup::aexit_from(const std::exception_ptr& body_exception) {
    const std::exception_ptr exc = body_exception;
    exiting_ = true;
    if (exc && is_base_error(exc) && !base_error_) base_error_ = exc;
    std::exception_ptr propagate_cancellation_error;
    if (exc && is_cancelled_error(exc)) propagate_cancellation_error = exc;
    if (exc && !aborting_) {
        // The parent is being cancelled, or the body raised: cancel the children.
        abort();
    }
    // A loop, because the wait can be cancelled several times if the parent task is being
    // cancelled repeatedly.
    std::exception_ptr out_of_memory;
    while (!tasks_.empty()) {
        if (!on_completed_fut_) {
            try {
                on_completed_fut_.emplace(*loop_);
            } catch (const std::bad_alloc&) {
                // No memory for the future to wait on. The children must still not outlive
                // the group: they are cancelled, the wait goes on by yielding (sleep(0)
                // allocates nothing), and the error is raised with the others.
                if (!out_of_memory) out_of_memory = std::current_exception();
                if (!aborting_) abort();
            }
        }
        std::exception_ptr cancelled;
        try {
            if (on_completed_fut_)
                co_await *on_completed_fut_;
            else
                co_await sleep(0);
        } catch (const CancelledError&) {
            cancelled = std::current_exception();
        }
        if (cancelled && !aborting_) {
            // The parent task is cancelled while children are still running.
            propagate_cancellation_error = cancelled;
            abort();
        }
        on_completed_fut_.reset();
    }
    if (base_error_) std::rethrow_exception(base_error_);
    if (parent_cancel_requested_) {
        // We must call uncancel(); with no cancellations left, don't propagate CancelledError.
        if (parent_task_.uncancel() == 0) propagate_cancellation_error = nullptr;
    }
    if (out_of_memory) errors_.push_back(out_of_memory);  // an error like the children's
    // Propagate CancelledError if there is one, unless other errors take priority.
    if (propagate_cancellation_error && errors_.empty()) std::rethrow_exception(propagate_cancellation_error);
    if (exc && !is_cancelled_error(exc)) errors_.push_back(exc);
    if (!errors_.empty()) {
        // A parent being cancelled from outside: uncancel and re-cancel, keeping the count stable.
        if (parent_task_.cancelling()) {
            parent_task_.uncancel();
            parent_task_.cancel();
        }
        throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors_));
    }
}

}  // namespace asyncio
