// src/runtime/runners.cpp - Runner, a port of CPython's asyncio/runners.py.
#include <asyncio/runners.hpp>

#include "loop/signals.hpp"

#include <csignal>

#include <unistd.h>

namespace asyncio {

Runner::~Runner() {
    try {
        close();
    } catch (...) {
    }
}

void Runner::check_can_run() const {
    if (get_running_loop_or_null())
        throw RuntimeError(
            "Runner.run() cannot be called from a running event loop: inside a coroutine, use "
            "`co_await coro` or create_task(coro) instead");
    if (state_ == State::closed) throw RuntimeError("Runner is closed");
}

void Runner::lazy_init() {
    if (state_ == State::closed) throw RuntimeError("Runner is closed");
    if (state_ == State::initialized) return;
    loop_ = std::make_unique<EventLoop>(LoopOptions{options_.debug, options_.virtual_clock});
    context_ = copy_context();
    state_ = State::initialized;
}

bool Runner::enters_context(const Context& context) noexcept { return context.size() > 0 || detail::tl_context_used; }

EventLoop& Runner::get_loop() {
    lazy_init();
    return *loop_;
}

namespace {
/// Cancels every pending task and waits for them; failures are reported (Python's
/// _cancel_all_tasks).
void cancel_all_tasks(EventLoop& loop) {
    std::vector<AnyTask> to_cancel = all_tasks(loop);
    if (to_cancel.empty()) return;
    for (AnyTask& t : to_cancel) t.cancel();
    loop.run_until_complete(
        [](std::vector<AnyTask> tasks) -> Coro<> { co_await gather(return_exceptions, std::move(tasks)); }(to_cancel));
    for (AnyTask& t : to_cancel) {
        if (t.cancelled()) continue;
        if (std::exception_ptr e = t.exception())
            loop.call_exception_handler({"unhandled exception during asyncio.run() shutdown", e, t.repr(), {}});
    }
}
}  // namespace

void Runner::close() {
    if (state_ != State::initialized) return;
    struct Finally {
        Runner* r;
        ~Finally() {
            r->loop_->close();
            r->loop_.reset();
            r->state_ = State::closed;
        }
    } finally{this};
    cancel_all_tasks(*loop_);
    loop_->shutdown_asyncgens();
    loop_->run_until_complete(loop_->shutdown_default_executor());
}

Runner::RunGuard::RunGuard(Runner& runner, AnyTask main_task, Context& context)
    : runner_(runner), main_task_(std::move(main_task)), context_(context) {
    // Like Python: only in the main thread, and only if nobody installed a SIGINT handler.
    if (::getpid() != static_cast<pid_t>(::gettid())) return;
    struct sigaction current {};
    if (::sigaction(SIGINT, nullptr, &current) < 0 || current.sa_handler != SIG_DFL) return;
    detail::signals::arm_hard_interrupt(true);
    runner_.loop_->add_signal_handler(SIGINT, [this] {
        if (!main_task_.done()) {
            main_task_.cancel();
            interrupted_ = true;
        }
    });
    installed_ = true;
}

Runner::RunGuard::~RunGuard() {
    // The main task ran in the context (Python passes context= to create_task): its sets
    // are the context's now. A task that never set anything keeps the map it started with.
    auto& task = static_cast<detail::TaskBase&>(*main_task_.state_ptr());
    if (detail::ContextMapPtr* map = task.context_slot(false)) context_ = Context(*map);
    if (!installed_) return;
    detail::signals::arm_hard_interrupt(false);
    if (runner_.loop_) runner_.loop_->remove_signal_handler(SIGINT);
}

void Runner::RunGuard::on_cancelled() {
    // Only a cancellation that Ctrl-C caused becomes KeyboardInterrupt (a main task that
    // was already cancelled by someone else stays CancelledError).
    if (interrupted_ && main_task_.uncancel() == 0) throw KeyboardInterrupt();
}

}  // namespace asyncio
