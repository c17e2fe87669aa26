// asyncio/tasks.hpp - Task<T>, create_task, current_task, all_tasks, sleep, and the
// combinators (gather, wait, wait_for, shield, as_completed), like Python's asyncio.tasks.
//
// A Task runs a coroutine on the loop. It is also a future: awaiting it gives the coroutine's
// result or rethrows its exception. Task<T> is a cheap shared handle; while the task is pending
// the loop owns it, so dropping every handle never destroys a running coroutine.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/task_state.hpp>
#include <asyncio/events.hpp>
#include <asyncio/futures.hpp>

#include <chrono>
#include <coroutine>
#include <string>
#include <utility>
#include <vector>

namespace asyncio {

/// A type-erased Task handle (Python's Task[Any]): what current_task() and all_tasks()
/// return. Awaiting it waits for the task and rethrows its exception, discarding the value.
class AnyTask : public AnyFuture {
public:
    AnyTask() = default;
    bool cancel(std::string msg = {}) { return task().cancel(std::move(msg)); }
    int cancelling() const { return task().cancelling(); }
    int uncancel() { return task().uncancel(); }
    std::string get_name() const { return task().name(); }
    void set_name(std::string name) { task().set_name(std::move(name)); }
    template <class F>
    CallbackId add_done_callback(F&& fn) {
        auto identity = detail::callback_identity(fn);
        return state().add_done_callback(detail::wrap_done_callback<F, AnyTask>(std::forward<F>(fn)),
                                         identity);
    }
    auto operator co_await() const {
        return detail::FutureAwaiter<detail::FutureStateBase, void>(
            detail::RefPtr<detail::FutureStateBase>(&state()));
    }
    static AnyTask from_state(detail::FutureStateBase* st) { return AnyTask(static_cast<detail::TaskBase*>(st)); }
    explicit AnyTask(detail::TaskBase* st) : AnyFuture(detail::RefPtr<detail::FutureStateBase>(st)) {}

protected:
    detail::TaskBase& task() const { return static_cast<detail::TaskBase&>(state()); }
};

template <class T = void>
class Task : public AnyTask {
    using State = detail::TaskState<T>;

public:
    using value_type = T;
    /// An empty handle (assign a task to it later).
    Task() = default;

    /// The result; CancelledError if cancelled, InvalidStateError if not done, or the
    /// coroutine's exception.
    decltype(auto) result() const {
        typed().check_result();
        if constexpr (!std::is_void_v<T>) return static_cast<const T&>(*typed().value);
    }
    template <class F>
    CallbackId add_done_callback(F&& fn) {
        auto identity = detail::callback_identity(fn);
        return state().add_done_callback(detail::wrap_done_callback<F, Task>(std::forward<F>(fn)), identity);
    }
    auto operator co_await() const {
        return detail::FutureAwaiter<State, T>(detail::RefPtr<State>(&typed()));
    }
    static Task from_state(detail::FutureStateBase* st) { return Task(static_cast<State*>(st)); }
    /// Adopts a freshly created state (its initial reference).
    static Task adopt(State* st) {
        Task t;
        t.state_ = detail::RefPtr<detail::FutureStateBase>::adopt(st);
        return t;
    }

private:
    explicit Task(State* st) : AnyTask(st) {}
    State& typed() const { return static_cast<State&>(state()); }
};

/// create_task() options. `eager_start` runs the coroutine synchronously up to its first
/// suspension (Python 3.12's eager tasks); the task is then scheduled as usual.
/// `name` is copied at once. (A string_view, not a std::string: GCC 12 miscompiles aggregate
/// temporaries with non-trivial members inside co_await expressions, docs/compilers.md.)
struct TaskOptions {
    std::string_view name = {};
    bool eager_start = false;
};

template <class T>
Task<T> EventLoop::create_task(Coro<T> coro, std::string_view name) {
    check_closed();
    if (!coro) throw RuntimeError("create_task() needs a coroutine (this Coro is empty or moved from)");
    if (coro.handle().promise().started())
        throw RuntimeError("create_task(): the coroutine was already awaited");
    auto* st = new detail::TaskState<T>(*this, coro.release(), name);
    Task<T> task = Task<T>::adopt(st);
    st->start(eager_tasks_);
    return task;
}

/// Wraps the coroutine in a task on the running loop and schedules it.
template <class T>
Task<T> create_task(Coro<T> coro, TaskOptions options) {
    EventLoop& loop = get_running_loop();  // a running loop is open: close() refuses it
    if (!coro) throw RuntimeError("create_task() needs a coroutine (this Coro is empty or moved from)");
    if (coro.handle().promise().started())
        throw RuntimeError("create_task(): the coroutine was already awaited");
    auto* st = new detail::TaskState<T>(loop, coro.release(), options.name);
    Task<T> task = Task<T>::adopt(st);
    st->start(options.eager_start || loop.eager_task_factory_enabled());
    return task;
}
template <class T>
Task<T> create_task(Coro<T> coro) {
    return create_task(std::move(coro), TaskOptions{});
}
template <class T>
Task<T> create_task(Coro<T> coro, const std::string& name) {
    return create_task(std::move(coro), TaskOptions{name, false});
}
template <class T>
Task<T> create_task(Coro<T> coro, const char* name) {
    return create_task(std::move(coro), TaskOptions{name, false});
}

/// The task running now in this thread's loop, or an empty handle (Python's None).
AnyTask current_task();
/// The pending tasks of the running loop (Python's all_tasks()).
std::vector<AnyTask> all_tasks();
std::vector<AnyTask> all_tasks(EventLoop& loop);

namespace detail {

/// `co_await sleep(d)`: suspends the current task until the loop time reaches now + d.
/// Allocation-free and small (it lives in the coroutine frame): the wake-up timer is the task
/// itself. `sleep(0)` just yields one loop iteration (Python's bare `yield`).
class SleepAwaiter {
public:
    explicit SleepAwaiter(double delay) noexcept : delay_(delay) {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h);
    /// Runs in the step that resumes the task, so the task is the loop's current task. (A
    /// suspended sleep is only ever destroyed by a closing loop, which disarms it itself.)
    void await_resume();

private:
    double delay_;
};

}  // namespace detail

/// Suspends the current task for `delay` seconds (double) or a chrono duration; 0 yields.
template <detail::Delay D>
detail::SleepAwaiter sleep(D delay) {
    return detail::SleepAwaiter(detail::to_seconds(delay));
}

// ---- EventLoop::run_until_complete --------------------------------------------------------
namespace detail {
void run_until_done(EventLoop& loop, FutureStateBase* future);
}

template <class T>
T EventLoop::run_until_complete(Task<T> task) {
    detail::run_until_done(*this, task.state_ptr());
    auto& st = static_cast<detail::TaskState<T>&>(*task.state_ptr());
    st.check_result();
    return st.get_for_await();
}
template <class T>
T EventLoop::run_until_complete(Future<T> future) {
    detail::run_until_done(*this, future.state_ptr());
    auto& st = static_cast<detail::FutureState<T>&>(*future.state_ptr());
    st.check_result();
    return st.get_for_await();
}
template <class T>
T EventLoop::run_until_complete(Coro<T> coro) {
    detail::LoopAccess::check_can_run_until_complete(*this);  // before the coroutine becomes a task
    Task<T> task = create_task(std::move(coro));
    try {
        return run_until_complete(task);
    } catch (...) {
        // The exception reaches the caller: it is retrieved (no "never retrieved" report).
        if (task.done() && !task.cancelled()) (void)task.exception();
        throw;
    }
}

}  // namespace asyncio

// The combinators live in their own headers; timeouts.hpp brings wait/wait_for/as_completed,
// which need Timeout.
#include <asyncio/detail/gather.hpp>
#include <asyncio/detail/shield.hpp>
#include <asyncio/timeouts.hpp>
