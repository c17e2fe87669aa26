// src/runtime/futures.cpp - the non-template half of Future: state transitions, done callbacks,
// "exception was never retrieved", and suspending a task on a future.
#include <asyncio/detail/task_state.hpp>
#include <asyncio/futures.hpp>

#include <cstdio>

namespace asyncio::detail {

// ---- done callbacks ------------------------------------------------------------------------
const ReadyItemOps CallbackNode::ops_table = {
    /*run=*/[](ReadyItem* item) {
        auto* node = static_cast<CallbackNode*>(item);
        FutureStateBase* fut = node->future;  // the queue holds a reference to it
        try {
            node->fn(fut);
        } catch (...) {
            if (EventLoop* loop = fut->loop_or_null())
                loop->call_exception_handler(
                    {"Exception in callback of " + fut->repr(), std::current_exception(), fut->repr(), {}});
        }
        delete node;
        fut->release();
    },
    /*discard=*/
    [](ReadyItem* item) noexcept {
        auto* node = static_cast<CallbackNode*>(item);
        FutureStateBase* fut = node->future;
        delete node;
        fut->release();
    },
    /*drop=*/[](ReadyItem* item) noexcept { delete static_cast<CallbackNode*>(item); },
    /*describe=*/
    [](const ReadyItem* item) -> std::string {
        return "<done callback of " + static_cast<const CallbackNode*>(item)->future->repr() + ">";
    },
    /*timer_fire=*/nullptr,
    /*add_ref=*/nullptr,
    /*release=*/nullptr,
    /*on_schedule=*/[](ReadyItem* item) noexcept { static_cast<CallbackNode*>(item)->future->add_ref(); },
};

void FutureStateBase::drop_callbacks() noexcept {
    // Callbacks that will never be scheduled (the future never completes).
    while (ReadyItem* item = callbacks_.pop_front()) item->ops->drop(item);
}

void FutureStateBase::report_unretrieved() noexcept {
    log_traceback_ = false;
    ExceptionContext ctx{
        std::string(is_task() ? "Task" : "Future") + " exception was never retrieved", exception_, repr(), {}};
    if (EventLoop* loop = anchor_->loop)
        loop->call_exception_handler(ctx);
    else
        log_message(ctx.message + "\nfuture: " + ctx.future + "\n" + describe_exception(ctx.exception),
                    LogLevel::error);
}

std::string FutureStateBase::status_name() const {
    switch (status_) {
        case FutureStatus::pending:
            return "PENDING";
        case FutureStatus::cancelled:
            return "CANCELLED";
        case FutureStatus::finished:
            return "FINISHED";
    }
    return "?";
}

std::string FutureStateBase::repr() const {
    std::string s = "<Future ";
    switch (status_) {
        case FutureStatus::pending:
            s += "pending";
            break;
        case FutureStatus::cancelled:
            s += "cancelled";
            break;
        case FutureStatus::finished:
            s += exception_ ? "finished exception=" + describe_exception(exception_) : "finished";
            break;
    }
    return s + ">";
}

void FutureStateBase::check_can_complete() const {
    anchor_->open_loop();
    if (done()) throw InvalidStateError(status_name() + ": " + repr());
}

void FutureStateBase::finish(FutureStatus status) {
    status_ = status;
    EventLoop& loop = *anchor_->loop;
    // Schedule each callback with call_soon semantics: to the back of the ready queue.
    while (ReadyItem* item = callbacks_.pop_front()) {
        if (item->ops->on_schedule) item->ops->on_schedule(item);
        LoopAccess::schedule(loop, item);
    }
}

bool FutureStateBase::cancel(std::string msg) {
    anchor_->open_loop();
    log_traceback_ = false;
    if (done()) return false;
    cancel_now(std::move(msg));
    return true;
}

void FutureStateBase::cancel_now(std::string msg) {
    set_cancel_message(std::move(msg));
    finish(FutureStatus::cancelled);
}

const std::string& FutureStateBase::cancel_message() const noexcept {
    static const std::string empty;
    return extras_ ? extras_->cancel_message : empty;
}

void FutureStateBase::set_cancel_message(std::string msg) {
    if (msg.empty() && !extras_) return;
    extras().cancel_message = std::move(msg);
}

FutureStateBase::Extras& FutureStateBase::extras() {
    if (!extras_) extras_ = std::make_unique<Extras>();
    return *extras_;
}

void FutureStateBase::set_exception(std::exception_ptr e) {
    if (is_task()) throw RuntimeError("Task does not support set_exception()");
    check_can_complete();
    if (!e) throw std::invalid_argument("set_exception() needs an exception (got a null exception_ptr)");
    set_exception_now(std::move(e));
}

void FutureStateBase::set_exception_now(std::exception_ptr e) {
    exception_ = std::move(e);
    log_traceback_ = true;
    finish(FutureStatus::finished);
}

}  // namespace asyncio::detail

void asyncio::AnyFuture::throw_empty_handle() { throw InvalidStateError("empty future handle"); }

namespace asyncio::detail {

CancelledError FutureStateBase::make_cancelled_error() const { return CancelledError(cancel_message()); }

std::exception_ptr FutureStateBase::exception() {
    if (status_ == FutureStatus::cancelled) throw make_cancelled_error();
    if (status_ != FutureStatus::finished) throw InvalidStateError("Exception is not set.");
    log_traceback_ = false;
    return exception_;
}

void FutureStateBase::throw_result_error() {
    if (status_ == FutureStatus::cancelled) throw make_cancelled_error();
    if (status_ != FutureStatus::finished) throw InvalidStateError("Result is not set.");
    log_traceback_ = false;
    std::rethrow_exception(exception_);
}

void FutureStateBase::schedule_callback_node(ReadyItem* node) {
    if (node->ops->on_schedule) node->ops->on_schedule(node);
    LoopAccess::schedule(loop(), node);
}

std::uint64_t FutureStateBase::add_done_callback(std::function<void(FutureStateBase*)> fn, const void* identity) {
    EventLoop& l = loop();  // throws when closed
    (void)l;
    auto* node = new CallbackNode;
    node->ops = &CallbackNode::ops_table;
    node->future = this;
    node->fn = std::move(fn);
    node->id = ++next_callback_id_;
    node->identity = identity;
    add_callback_node(node);
    return node->id;
}

namespace {
template <class Pred>
std::size_t remove_callbacks_if(CallbackList& list, Pred pred) noexcept {
    CallbackList kept;
    std::size_t removed = 0;
    while (ReadyItem* item = list.pop_front()) {
        if (item->ops == &CallbackNode::ops_table && pred(static_cast<CallbackNode*>(item))) {
            item->ops->drop(item);
            ++removed;
        } else {
            kept.push_back(item);
        }
    }
    list = kept.take_all();
    return removed;
}
}  // namespace

std::size_t FutureStateBase::remove_done_callback(std::uint64_t id) noexcept {
    return remove_callbacks_if(callbacks_, [id](CallbackNode* n) { return n->id == id; });
}
std::size_t FutureStateBase::remove_done_callback_by_identity(const void* identity) noexcept {
    if (!identity) return 0;
    return remove_callbacks_if(callbacks_, [identity](CallbackNode* n) { return n->identity == identity; });
}

// ---- suspending a task on a future ---------------------------------------------------------
[[noreturn, gnu::noinline, gnu::cold]] static void throw_not_in_task(const char* what) {
    throw RuntimeError(std::string(what) +
                       " must be awaited from a coroutine running in an asyncio task (start "
                       "one with asyncio::run() or create_task())");
}

inline TaskBase* current_task_in_task(const char* what) {
    EventLoop* loop = tl_running_loop;
    TaskBase* task = loop ? LoopAccess::current_task(*loop) : nullptr;
    if (!task) [[unlikely]]
        throw_not_in_task(what);
    return task;
}

TaskBase* current_task_for_await(const char* what) {
    EventLoop* loop = tl_running_loop;
    TaskBase* task = loop ? LoopAccess::current_task(*loop) : nullptr;
    if (!task) [[unlikely]]
        throw_not_in_task(what);
    return task;
}

[[noreturn, gnu::noinline, gnu::cold]] static void throw_bad_await(TaskBase* task, FutureStateBase* target) {
    target->anchor()->open_loop();  // "Event loop is closed" for a handle that outlived its loop
    if (target == task) throw RuntimeError("Task cannot await on itself: " + task->repr());
    throw RuntimeError("Task " + task->repr() + " got Future " + target->repr() + " attached to a different loop");
}

/// A cancel() that came while the task was running reaches what it now waits on.
[[gnu::noinline]] static void pass_pending_cancel(TaskBase* task, FutureStateBase* target) {
    if (target->cancel(task->cancel_message())) task->must_cancel = false;
}

TaskBase* suspend_current_task_on(FutureStateBase* target, std::coroutine_handle<> h) {
    TaskBase* task = current_task_in_task("a Future or Task");
    // Same anchor as the running task means the same, running (so open) loop.
    if (target->anchor() != task->anchor() || target == task) [[unlikely]]
        throw_bad_await(task, target);
    task->resume_point = h;
    task->fut_waiter = target;
    target->add_callback_node(task->step_item());  // not done: await_ready said so
    if (task->must_cancel) [[unlikely]]
        pass_pending_cancel(task, target);
    return task;
}

void throw_if_must_cancel(TaskBase* task, const FutureStateBase* awaited) {
    if (!task->must_cancel) return;
    task->must_cancel = false;
    if (awaited && awaited->cancelled()) throw awaited->make_cancelled_error();
    throw CancelledError(task->cancel_message());
}

void forget_suspension(TaskBase* task, FutureStateBase* target) noexcept {
    if (task->fut_waiter == target) {
        target->remove_callback_node(task->step_item());
        task->fut_waiter = nullptr;
    }
}

}  // namespace asyncio::detail
