// src/runtime/timeouts.cpp - Timeout, a port of CPython 3.12's asyncio/timeouts.py.
#include <asyncio/timeouts.hpp>

#include <asyncio/tasks.hpp>

namespace asyncio {

Timeout::~Timeout() {
    if (handle_) handle_.cancel();
}

void Timeout::reschedule(std::optional<double> when) {
    if (state_ != State::entered) {
        if (state_ == State::created) throw RuntimeError("Timeout has not been entered");
        const char* what = state_ == State::exited ? "finished" : state_ == State::expired ? "expired" : "expiring";
        throw RuntimeError(std::string("Cannot change state of ") + what + " Timeout");
    }
    when_ = when;
    if (handle_) handle_.cancel();
    handle_ = Handle();
    if (!when) return;
    EventLoop& loop = get_running_loop();
    if (*when <= loop.time())
        handle_ = loop.call_soon([this] { on_timeout(); });  // already due: before the next step
    else
        handle_ = loop.call_at(*when, [this] { on_timeout(); });
}

void Timeout::on_timeout() {
    task_->cancel(std::string());
    state_ = State::expiring;
    handle_ = Handle();
}

void Timeout::enter() {
    if (state_ != State::created) throw RuntimeError("Timeout has already been entered");
    AnyTask task = current_task();
    if (!task) throw RuntimeError("Timeout should be used inside a task");
    task_ = detail::RefPtr<detail::TaskBase>(static_cast<detail::TaskBase*>(task.state_ptr()));
    state_ = State::entered;
    cancelling_ = task_->cancelling();
    reschedule(when_);
}

void Timeout::exit(std::exception_ptr exc) {
    if (handle_) {
        handle_.cancel();
        handle_ = Handle();
    }
    if (state_ == State::expiring) {
        state_ = State::expired;
        if (task_->uncancel() <= cancelling_ && exc && is_cancelled_error(exc)) {
            // No new cancel requests since we entered: this cancellation is ours.
            throw TimeoutError();
        }
    } else if (state_ == State::entered) {
        state_ = State::exited;
    }
}

}  // namespace asyncio
