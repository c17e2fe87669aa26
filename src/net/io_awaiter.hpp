// src/net/io_awaiter.hpp - suspends the current task on one backend operation.
//
// `co_await IoAwaiter(loop, fd, kind)` starts the operation and resumes the task with its
// result (bytes, an fd, or -errno). Like awaiting a future in Python, task.cancel() cancels
// the operation (if the backend has not performed it yet) and CancelledError is thrown at the
// co_await; if it was performed already, the task ends up cancelled at its next suspension
// instead, as when a Python task is cancelled while its future's result is being delivered.
// No allocation: the operation lives in the awaiter, in the coroutine frame.
#pragma once

#include <asyncio/detail/task_state.hpp>

#include "backend/backend.hpp"
#include "loop/loop_impl.hpp"

#include <coroutine>
#include <string>

namespace asyncio::detail {

TaskBase* current_task_for_await(const char* what);

class IoAwaiter final : public Cancellable {
public:
    IoAwaiter(EventLoop& loop, int fd, IoOperation::Kind kind) : backend_(&IoAccess::backend(loop)) {
        op.kind = kind;
        op.reg = backend_->registration(fd);
        op.user = this;
        op.complete = [](IoOperation* o) {
            auto* self = static_cast<IoAwaiter*>(o->user);
            self->backend_->release_interest(o->reg);  // the fd may be closed right after
            self->task_->schedule_step();
        };
    }
    IoAwaiter(const IoAwaiter&) = delete;
    IoAwaiter& operator=(const IoAwaiter&) = delete;
    ~IoAwaiter() {
        // Only when the frame is destroyed while suspended (the loop closing).
        if (op.in_flight && backend_->cancel(&op)) backend_->release_interest(op.reg);
        if (task_ && task_->fut_waiter == this) task_->fut_waiter = nullptr;
    }

    IoOperation op;

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        task_ = current_task_for_await("a socket operation");
        task_->resume_point = h;
        task_->fut_waiter = this;
        backend_->start(&op);
        if (task_->must_cancel && cancel(task_->cancel_message())) task_->must_cancel = false;
    }
    /// The operation's result: >= 0, or -errno.
    ssize_t await_resume() {
        if (cancelled_) throw CancelledError(std::move(message_));
        throw_if_must_cancel(task_, nullptr);
        return op.result;
    }

    bool cancel(std::string msg) override {
        if (!backend_->cancel(&op)) return false;  // performed: its step is already queued
        backend_->release_interest(op.reg);
        cancelled_ = true;
        message_ = std::move(msg);
        task_->schedule_step();
        return true;
    }

private:
    Backend* backend_;
    TaskBase* task_ = nullptr;
    bool cancelled_ = false;
    std::string message_;
};

}  // namespace asyncio::detail
