// src/loop/event_loop.cpp - the loop core: ready queue, timers, thread-safe inbox, run/stop/
// close, the exception handler. One iteration (run_once) follows CPython's BaseEventLoop:
// poll the backend (not blocking when something is ready), move due timers to the ready
// queue, then run exactly the callbacks that were ready when the iteration began.
#include <asyncio/detail/event_loop.hpp>

#include "loop_impl.hpp"
#include "signals.hpp"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <csignal>
#include <map>
#include <unordered_map>
#include <mutex>
#include <thread>
#include <system_error>
#include <vector>

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace asyncio {

namespace detail {
constinit thread_local EventLoop* tl_running_loop = nullptr;

namespace {
// A process forked while a loop runs starts with no running loop, as Python's does (the
// parent's loop belongs to the parent): the child may make and run its own.
[[maybe_unused]] const int fork_handler_installed =
    ::pthread_atfork(nullptr, nullptr, [] { tl_running_loop = nullptr; });
}  // namespace

void throw_no_running_loop() {
    throw RuntimeError(
        "no running event loop: this must be called from a coroutine or callback running on "
        "an event loop (start one with asyncio::run(main()))");
}

void LoopAnchor::throw_closed() { throw RuntimeError("Event loop is closed"); }

namespace {
double monotonic_now() noexcept {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

// ---- HandleState: a call_soon/call_later callback -----------------------------------------
const ReadyItemOps HandleState::ready_ops = {
    /*run=*/[](ReadyItem* item) {
        auto* h = static_cast<HandleState*>(item);
        RefPtr<HandleState> ref = RefPtr<HandleState>::adopt(h);  // the queue's reference
        if (h->cancelled.load(std::memory_order_relaxed)) return;
        try {
            h->callable->invoke(h);
        } catch (const KeyboardInterrupt&) {
            throw;  // like Python's SystemExit/KeyboardInterrupt: out of the loop
        } catch (...) {
            if (EventLoop* loop = h->anchor->loop) {
                loop->call_exception_handler({"Exception in callback", std::current_exception(), {}, "<Handle>"});
            }
        }
    },
    /*discard=*/[](ReadyItem* item) noexcept { static_cast<HandleState*>(item)->release(); },
    /*drop=*/[](ReadyItem*) noexcept {},
    /*describe=*/[](const ReadyItem*) -> std::string { return "<Handle>"; },
    /*timer_fire=*/
    [](ReadyItem* node) {
        auto* h = static_cast<HandleState*>(node);
        if (EventLoop* loop = h->anchor->loop) {
            h->add_ref();  // the ready queue's reference
            LoopAccess::schedule(*loop, h);
        }
    },
    /*add_ref=*/[](ReadyItem* node) noexcept { static_cast<HandleState*>(node)->add_ref(); },
    /*release=*/[](ReadyItem* node) noexcept { static_cast<HandleState*>(node)->release(); },
};
}  // namespace detail

void Handle::cancel() {
    if (!state_ || state_->cancelled.exchange(true)) return;
    EventLoop* loop = state_->anchor->loop;
    // Drop the callback (and what it captured) at once, as Python does - but only on the
    // loop's own thread, where it cannot be running concurrently.
    if (loop && detail::LoopAccess::on_loop_thread(*loop)) state_->callable->reset(state_.get());
    if (state_->is_timer) {
        EventLoop* loop = state_->anchor->loop;
        if (loop && !loop->is_closed()) detail::LoopAccess::cancel_timer(*loop, state_.get());
    }
}

EventLoop::Impl::~Impl() = default;

EventLoop::Impl& detail::IoAccess::impl(EventLoop& loop) noexcept { return *loop.impl_; }

EventLoop::EventLoop() : EventLoop(LoopOptions{}) {}

EventLoop::EventLoop(LoopOptions options) : anchor_(new detail::LoopAnchor) {
    // No destructor runs for a constructor that throws: whatever fails here (an allocation
    // too) gives back the anchor and the eventfd.
    try {
        impl_ = std::make_unique<Impl>();
        impl_->backend = detail::make_backend();  // may refuse $ASYNCIO_BACKEND
        impl_->wakeup_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (impl_->wakeup_fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
        impl_->arm_wakeup();  // the backend's registration of the fd may allocate
    } catch (...) {
        if (impl_ && impl_->wakeup_fd >= 0) ::close(impl_->wakeup_fd);
        anchor_->release();
        throw;
    }
    anchor_->loop = this;
    debug_ = options.debug;
    impl_->virtual_clock = options.virtual_clock;
    anchor_->wakeup_fd = impl_->wakeup_fd;
}

EventLoop::~EventLoop() {
    if (running_) {
        std::fputs("asyncio: an EventLoop was destroyed while running; aborting\n", stderr);
        std::terminate();
    }
    close();
    // The layers' per-loop state goes while this loop and its anchor still exist (the default
    // executor's threads post results to it until they are joined).
    impl_->states.clear();
    anchor_->detach_loop();
}

double EventLoop::time() const noexcept { return impl_->virtual_clock ? impl_->virtual_now : detail::monotonic_now(); }

std::string_view EventLoop::io_backend() const noexcept { return impl_->backend->name(); }

std::size_t detail::LoopAccess::timer_count(const EventLoop& loop) noexcept { return loop.impl_->timers.live_count(); }
int detail::LoopAccess::visit_queued(const EventLoop& loop, int (*visit)(ReadyItem*, void*), void* arg) {
    for (ReadyItem* item = loop.ready_.front(); item; item = item->next)
        if (int r = visit(item, arg)) return r;
    return loop.impl_->timers.visit([&](TimerNode* node) { return visit(node, arg); });
}

Handle EventLoop::call_soon_impl(detail::HandleState* h) {
    // A call_soon_threadsafe() that happened before this call must run before it.
    if (anchor_->wakeup_pending.load(std::memory_order_acquire)) drain_threadsafe_inbox();
    h->ops = &detail::HandleState::ready_ops;
    h->add_ref();  // the queue's reference
    ready_.push_back(h);
    return Handle(detail::RefPtr<detail::HandleState>::adopt(h));
}

TimerHandle EventLoop::call_at_impl(double when, detail::HandleState* h) {
    TimerHandle handle(detail::RefPtr<detail::HandleState>::adopt(h));  // frees h if the push throws
    h->ops = &detail::HandleState::ready_ops;
    h->is_timer = true;
    h->when = when;
    impl_->timers.push(h, when);
    return handle;
}

Handle EventLoop::call_soon_threadsafe_impl(detail::HandleState* h) {
    h->ops = &detail::HandleState::ready_ops;
    Handle handle(detail::RefPtr<detail::HandleState>::adopt(h));
    h->add_ref();  // the inbox's reference
    if (!anchor_->post(h)) {
        h->release();
        throw RuntimeError("Event loop is closed");
    }
    return handle;
}

bool detail::LoopAnchor::post(HandleState* h) {
    std::lock_guard<std::mutex> lock(inbox_mutex);
    if (closed.load()) return false;
    inbox.push_back(h);
    if (!wakeup_pending.exchange(true)) {
        std::uint64_t one = 1;
        ssize_t r = ::write(wakeup_fd, &one, sizeof one);
        (void)r;  // EAGAIN means the counter is already non-zero: the loop will wake
    }
    return true;
}

void EventLoop::drain_threadsafe_inbox() {
    anchor_->wakeup_pending.store(false);
    std::vector<detail::HandleState*> items;
    {
        std::lock_guard<std::mutex> lock(anchor_->inbox_mutex);
        items.swap(anchor_->inbox);
    }
    for (detail::HandleState* h : items) {
        ready_.push_back(h);  // the inbox's reference moves to the queue
    }
}

bool detail::LoopAccess::on_loop_thread(const EventLoop& loop) noexcept {
    return loop.impl_->owner_thread == std::this_thread::get_id();
}
void detail::LoopAccess::add_timer(EventLoop& loop, TimerNode* node, double when) {
    loop.impl_->timers.push(node, when);
}
void detail::LoopAccess::cancel_timer(EventLoop& loop, TimerNode* node) noexcept { loop.impl_->timers.cancel(node); }
// ---- running -------------------------------------------------------------------------------
void EventLoop::stop() noexcept { stopping_ = true; }

void EventLoop::run_forever() {
    check_closed();
    if (running_)
        throw RuntimeError(
            "This event loop is already running: run_forever()/run_until_complete() cannot be "
            "called from code running on this loop; await the coroutine (co_await) or schedule it "
            "with create_task() instead");
    if (detail::tl_running_loop)
        throw RuntimeError(
            "Cannot run the event loop while another loop is running in this thread; await the "
            "coroutine on the running loop, or run the other loop in another thread");
    running_ = true;
    detail::tl_running_loop = this;
    impl_->owner_thread = std::this_thread::get_id();
    struct Reset {
        EventLoop* loop;
        ~Reset() {
            loop->stopping_ = false;
            loop->running_ = false;
            detail::tl_running_loop = nullptr;
        }
    } reset{this};
    Impl& impl = *impl_;
    do {
        // Fast path: callbacks are ready and there is nothing else to look at (no timer, no
        // I/O but the wake-up eventfd, nothing from other threads or signals). Polling would
        // be a no-op, so just run the batch. (Kept in this loop, not behind a call: a task
        // switch is a few dozen instructions and this check runs once per iteration.)
        if (!ready_.empty() && impl.timers.empty() && !anchor_->wakeup_pending.load(std::memory_order_relaxed) &&
            (impl.signal_handlers.empty() || !detail::signals::pending.load(std::memory_order_relaxed)) &&
            impl.backend->in_flight() <= 1) {
            run_ready_batch();
            if (!after_batch_.empty()) [[unlikely]]
                run_after_batch();
        } else {
            run_once();
        }
    } while (!stopping_);
}

void EventLoop::run_once() {
    Impl& impl = *impl_;
    if (anchor_->wakeup_pending.load(std::memory_order_relaxed)) drain_threadsafe_inbox();
    if (!impl.signal_handlers.empty() && detail::signals::pending.load(std::memory_order_relaxed)) dispatch_signals();

    double timeout = -1;  // forever
    if (!ready_.empty() || stopping_) {
        timeout = 0;
    } else {
        double when;
        if (impl.timers.next_when(when)) timeout = std::max(0.0, when - time());
    }

    // Poll the backend unless nothing but the wake-up eventfd is in flight and we must not
    // block: then the inbox flag (checked above) tells all the eventfd could.
    const bool only_wakeup = impl.backend->in_flight() <= 1;
    if (impl.virtual_clock && timeout > 0) {
        // The virtual clock: poll without blocking; if nothing arrived, jump to the timer.
        impl.backend->poll(0);
        if (!impl.wakeup_read.in_flight) impl.arm_wakeup();
        if (anchor_->wakeup_pending.load()) drain_threadsafe_inbox();
        if (ready_.empty()) impl.virtual_now += timeout;
    } else if (!(timeout == 0 && only_wakeup)) {
        impl.backend->poll(timeout);
        if (!impl.wakeup_read.in_flight) impl.arm_wakeup();
        if (anchor_->wakeup_pending.load()) drain_threadsafe_inbox();
    }
    if (impl.after_poll) [[unlikely]]
        impl.after_poll(impl.after_poll_arg);

    if (!impl.signal_handlers.empty() && detail::signals::pending.load(std::memory_order_relaxed)) dispatch_signals();
    process_timers();
    run_ready_batch();
    if (!after_batch_.empty()) run_after_batch();
}

void EventLoop::run_after_batch() {
    // Taken out first: what these items schedule for "after the batch" waits for the next one.
    detail::ItemList items = after_batch_.take_all();
    while (detail::ReadyItem* item = items.pop_front()) {
        try {
            item->ops->run(item);
        } catch (...) {
            // Put back what has not run (in order) before the exception leaves the loop.
            items.append(std::move(after_batch_));
            after_batch_ = std::move(items);
            throw;
        }
    }
}

// ---- signals -------------------------------------------------------------------------------
namespace {
void check_signal_number(int sig) {
    // Python 3.12's _check_signal: ValueError(f'invalid signal number {sig}').
    if (!detail::signals::valid(sig)) throw std::invalid_argument("invalid signal number " + std::to_string(sig));
}
}  // namespace

void EventLoop::dispatch_signals() {
    std::uint64_t mask = detail::signals::pending.exchange(0);
    for (auto& [sig, fn] : impl_->signal_handlers)
        if (mask & (std::uint64_t(1) << (sig - 1))) call_soon(fn);
}

void EventLoop::add_signal_handler_impl(int sig, std::function<void()> fn) {
    check_closed();
    check_signal_number(sig);
    if (sig == SIGKILL || sig == SIGSTOP)
        throw RuntimeError("sig " + std::to_string(sig) + " cannot be caught (SIGKILL and SIGSTOP never can)");
    if (::getpid() != static_cast<pid_t>(::gettid()))
        throw RuntimeError("add_signal_handler() works only in the main thread (as in Python)");
    int fd = detail::signals::wakeup_fd.load();
    if (fd >= 0 && fd != impl_->wakeup_fd)
        throw RuntimeError("another event loop already handles signals in this process; remove its handlers first");
    detail::signals::install(sig);  // first: a failure leaves nothing registered (Python's too)
    detail::signals::wakeup_fd.store(impl_->wakeup_fd);
    impl_->signal_handlers[sig] = std::move(fn);
}

bool EventLoop::remove_signal_handler(int sig) {
    check_signal_number(sig);
    auto it = impl_->signal_handlers.find(sig);
    if (it == impl_->signal_handlers.end()) return false;
    impl_->signal_handlers.erase(it);
    detail::signals::restore(sig);
    if (impl_->signal_handlers.empty()) detail::signals::wakeup_fd.store(-1);
    return true;
}

void EventLoop::process_timers() {
    if (impl_->timers.empty()) return;  // no clock read when there is no timer
    // Like CPython: a timer is due when it is within the clock's resolution of now.
    const double end_time = time() + 1e-9;
    impl_->timers.pop_due(end_time, [](detail::TimerNode* node) { node->ops->timer_fire(node); });
}

void EventLoop::run_ready_batch() {
    // Only what was ready when the batch began runs now; what it schedules queues up behind
    // `last` and waits for the next iteration. Items leave the queue one at a time as they
    // run (nothing else ever removes one), so if a KeyboardInterrupt escapes a callback the
    // rest of the batch is still queued, in order, for when the loop runs again.
    detail::ReadyItem* const last = ready_.back();
    if (!last) return;
    for (;;) {
        detail::ReadyItem* item = ready_.pop_front();
        const bool was_last = item == last;  // before running: running may free the item
        if (!debug_) [[likely]]
            item->ops->run(item);
        else
            run_item(item);
        if (was_last) return;
    }
}

void EventLoop::run_item(detail::ReadyItem* item) {
    std::string what = item->ops->describe(item);
    const double t0 = detail::monotonic_now();
    item->ops->run(item);
    const double dt = detail::monotonic_now() - t0;
    if (dt >= slow_callback_duration_) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.3f", dt);
        log_message("Executing " + what + " took " + buf + " seconds", LogLevel::warning);
    }
}

void EventLoop::close() {
    if (running_) throw RuntimeError("Cannot close a running event loop; call stop() first");
    if (closed_) return;
    closed_ = true;
    std::vector<detail::HandleState*> unposted;
    {
        std::lock_guard<std::mutex> lock(anchor_->inbox_mutex);
        anchor_->closed.store(true);  // from now on, posts from other threads are refused
        unposted.swap(anchor_->inbox);
        anchor_->wakeup_fd = -1;
    }
    for (detail::HandleState* h : unposted) h->release();
    // Drop queued callbacks, timers and cross-thread callbacks unrun.
    while (detail::ReadyItem* item = ready_.pop_front()) item->ops->discard(item);
    while (detail::ReadyItem* item = after_batch_.pop_front()) item->ops->discard(item);
    impl_->timers.clear();
    // The loop owns pending tasks: each is abandoned - its coroutine destroyed (running the
    // destructors of its locals), the loop's reference dropped. Handles that outlive this see
    // "Event loop is closed".
    while (!tasks_.empty()) {
        detail::ReadyItem* task = tasks_.back();
        task->ops->abandon(task);  // unregisters it
    }
    while (!impl_->signal_handlers.empty()) remove_signal_handler(impl_->signal_handlers.begin()->first);
    // What the layers above keep on the loop (transports, servers, watched fds, the runtime's
    // executor...): released now, without callbacks, so no fd leaks and nothing touches the
    // backend after this.
    while (detail::LoopResource* r = impl_->resources.pop_front()) r->loop_closing();
    impl_->fd_watches.clear();
    impl_->backend->forget(impl_->wakeup_fd);
    ::close(impl_->wakeup_fd);
    impl_->wakeup_fd = -1;
}

// ---- exception handling --------------------------------------------------------------------
void EventLoop::set_exception_handler(ExceptionHandler handler) { impl_->exception_handler = std::move(handler); }
const EventLoop::ExceptionHandler& EventLoop::get_exception_handler() const noexcept {
    return impl_->exception_handler;
}

void EventLoop::default_exception_handler(const ExceptionContext& context) {
    std::string msg = context.message.empty() ? "Unhandled exception in event loop" : context.message;
    // append() rather than `+ "..."`: GCC 12 raises a false -Wrestrict on the latter.
    if (!context.future.empty()) msg.append("\nfuture: ").append(context.future);
    if (!context.handle.empty()) msg.append("\nhandle: ").append(context.handle);
    if (context.exception) msg.append("\n").append(describe_exception(context.exception));
    log_message(msg, LogLevel::error);
}

void EventLoop::call_exception_handler(const ExceptionContext& context) noexcept {
    try {
        if (impl_->exception_handler) {
            try {
                impl_->exception_handler(*this, context);
                return;
            } catch (...) {
                // Like CPython: an exception in the handler is itself reported (by the default
                // handler, so it cannot recurse), together with the original context.
                std::string msg = "Unhandled error in exception handler\ncontext: " + context.message;
                if (context.exception) msg.append(" (").append(describe_exception(context.exception)).append(")");
                default_exception_handler({std::move(msg), std::current_exception(), context.future, context.handle});
                return;
            }
        }
        default_exception_handler(context);
    } catch (...) {
        std::fputs("asyncio: exception in default exception handler\n", stderr);
    }
}

// ---- module-level functions ----------------------------------------------------------------

namespace {
LogHandler& log_handler_slot() {
    static LogHandler handler;
    return handler;
}
LogSink& log_sink_slot() {
    static LogSink sink;
    return sink;
}
}  // namespace

void set_log_handler(LogHandler handler) { log_handler_slot() = std::move(handler); }
void set_log_sink(LogSink sink) { log_sink_slot() = std::move(sink); }

void log_message(std::string_view message, LogLevel level) {
    if (auto& sink = log_sink_slot()) {
        sink(level, message);
        return;
    }
    if (auto& h = log_handler_slot()) {
        h(message);
        return;
    }
    std::fprintf(stderr, "asyncio: %.*s\n", static_cast<int>(message.size()), message.data());
}

}  // namespace asyncio
