// asyncio/taskgroups.hpp - structured concurrency (Python 3.11+'s asyncio.TaskGroup).
//
//     co_await asyncio::task_group([&](asyncio::TaskGroup& tg) -> asyncio::Coro<> {
//         tg.create_task(work(1));
//         tg.create_task(work(2));
//         co_return;
//     });
//
// task_group() returns when the body and every child task are done. The first child failure
// cancels the other children and the body; the failures are then raised together as an
// ExceptionGroup (CancelledErrors are not collected). A cancellation of the parent task from
// outside cancels the children and propagates once they finished. Python's rules, including
// the cancelling()/uncancel() bookkeeping, are followed line by line (src/runtime/taskgroups.cpp).
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/tasks.hpp>

#include <exception>
#include <string>
#include <vector>

namespace asyncio {

class TaskGroup {
public:
    TaskGroup() = default;
    TaskGroup(const TaskGroup&) = delete;
    TaskGroup& operator=(const TaskGroup&) = delete;
    ~TaskGroup();

    /// Creates a child task. RuntimeError if the group was not entered, is finished, or is
    /// shutting down after a failure.
    template <class T>
    Task<T> create_task(Coro<T> coro) {
        return create_task(std::move(coro), TaskOptions{});
    }
    template <class T>
    Task<T> create_task(Coro<T> coro, TaskOptions options) {
        if (!coro) throw RuntimeError("create_task() needs a coroutine (this Coro is empty or moved from)");
        if (coro.handle().promise().started()) throw RuntimeError("create_task(): the coroutine was already awaited");
        if (const char* why = cannot_create()) {
            if (auto h = coro.release()) h.destroy();  // Python closes the coroutine: no warning
            throw RuntimeError(why);
        }
        EventLoop& loop = *loop_;
        auto* st = new detail::TaskState<T>(loop, coro.release(), options.name);
        Task<T> task = Task<T>::adopt(st);
        st->start(options.eager_start || loop.eager_task_factory_enabled());
        try {
            adopt_task(st);
        } catch (...) {
            // The group could not take the child (std::bad_alloc): it must not run outside the
            // group's scope, so it is cancelled before the error reaches the caller.
            task.cancel();
            throw;
        }
        return task;
    }
    /// Any other awaitable (a queue's get(), ...) is wrapped in a coroutine first.
    template <class A>
        requires(detail::Awaitable<A> && !is_coro_v<std::remove_cvref_t<A>>)
    auto create_task(A aw) {
        return create_task(detail::as_coro(std::move(aw)));
    }
    template <class T>
    Task<T> create_task(Coro<T> coro, const std::string& name) {
        return create_task(std::move(coro), TaskOptions{name, false});
    }
    template <class T>
    Task<T> create_task(Coro<T> coro, const char* name) {
        return create_task(std::move(coro), TaskOptions{name, false});
    }

    /// `async with` entry and exit, used by task_group(). aexit() takes the body's exception
    /// (null if none) and throws what Python's __aexit__ raises.
    void enter();
    Coro<> aexit(std::exception_ptr body_exception);
    /// aexit() reading the body's exception from `body_exception` when awaited: task_group()
    /// makes it before the body runs, so that no allocation (its frame) stands between the
    /// body's end and the group's exit - a std::bad_alloc there would leave the children
    /// running and the parent task cancelled.
    Coro<> aexit_from(const std::exception_ptr& body_exception);

private:
    /// Why create_task() must refuse now, or nullptr.
    const char* cannot_create() const noexcept;
    void adopt_task(detail::TaskBase* task);
    void on_task_done(detail::TaskBase* task);
    void abort();
    static bool is_base_error(const std::exception_ptr& e) noexcept { return is_keyboard_interrupt(e); }

    EventLoop* loop_ = nullptr;
    AnyTask parent_task_;
    bool entered_ = false;
    bool exiting_ = false;
    bool aborting_ = false;
    bool parent_cancel_requested_ = false;
    std::vector<AnyTask> tasks_;
    std::vector<std::exception_ptr> errors_;
    std::exception_ptr base_error_;
    std::optional<Future<void>> on_completed_fut_;
};

/// Runs `body(tg)` with a fresh TaskGroup and returns what the body returns.
template <class F>
auto task_group(F body) -> decltype(body(std::declval<TaskGroup&>())) {
    using R = typename decltype(body(std::declval<TaskGroup&>()))::value_type;
    TaskGroup tg;
    tg.enter();
    std::exception_ptr error;
    std::optional<detail::stored_t<R>> result;
    Coro<> exit = tg.aexit_from(error);  // before the first child exists (see aexit_from)
    try {
        if constexpr (std::is_void_v<R>) {
            co_await body(tg);
        } else {
            result.emplace(co_await body(tg));
        }
    } catch (...) {
        error = std::current_exception();
    }
    co_await std::move(exit);
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<R>) co_return std::move(*result);
}

}  // namespace asyncio
