// src/runtime/contextvars.cpp - where the current context lives: Context::run's context, else the
// running task's, else the thread's own.
#include <asyncio/contextvars.hpp>
#include <asyncio/detail/task_state.hpp>
#include <asyncio/detail/event_loop.hpp>

namespace asyncio::detail {
constinit thread_local bool tl_context_used = false;
namespace {
thread_local ContextMapPtr tl_thread_map;
thread_local Context* tl_run_context = nullptr;

TaskBase* running_task() noexcept {
    EventLoop* loop = tl_running_loop;
    return loop ? LoopAccess::current_task(*loop) : nullptr;
}

const ContextMapPtr kEmpty;
}  // namespace

const ContextMapPtr& current_context_map() noexcept {
    if (tl_run_context) return tl_run_context->map();
    if (TaskBase* task = running_task()) {
        ContextMapPtr* slot = task->context_slot(false);
        return slot ? *slot : kEmpty;
    }
    return tl_thread_map;
}

void set_current_context_map(ContextMapPtr map) {
    tl_context_used = true;
    if (tl_run_context) {
        *tl_run_context = Context(std::move(map));
    } else if (TaskBase* task = running_task()) {
        *task->context_slot(true) = std::move(map);
    } else {
        tl_thread_map = std::move(map);
    }
}

const void* current_context_id() noexcept {
    if (tl_run_context) return tl_run_context;
    if (TaskBase* task = running_task()) return task;
    return &tl_thread_map;
}

ContextRunScope::ContextRunScope(Context& ctx) : ctx_(ctx), previous_(tl_run_context) {
    tl_context_used = true;
    if (previous_ == &ctx) throw RuntimeError("cannot enter context: the context is already entered");
    tl_run_context = &ctx_;
}

ContextRunScope::~ContextRunScope() { tl_run_context = previous_; }

}  // namespace asyncio::detail
