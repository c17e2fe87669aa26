// asyncio/tasks.hpp - Task<T>, create_task, current_task, all_tasks, sleep, and the
// combinators (gather, wait, wait_for, shield, as_completed), like Python's asyncio.tasks.
//
// A Task runs a coroutine on the loop. It is also a future: awaiting it gives the coroutine's
// result or rethrows its exception. Task<T> is a cheap shared handle; while the task is pending
// the loop owns it, so dropping every handle never destroys a running coroutine.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/awaitable.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/detail/gather.hpp>
#include <asyncio/detail/shield.hpp>
#include <asyncio/detail/task_state.hpp>
#include <asyncio/detail/wait.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/timeouts.hpp>  // wait_for is a timeout()

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
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
        return state().add_done_callback(detail::wrap_done_callback<F, AnyTask>(std::forward<F>(fn)), identity);
    }
    auto operator co_await() const {
        return detail::FutureAwaiter<detail::FutureStateBase, void>(detail::RefPtr<detail::FutureStateBase>(&state()));
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
    auto operator co_await() const { return detail::FutureAwaiter<State, T>(detail::RefPtr<State>(&typed())); }
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
    if (coro.handle().promise().started()) throw RuntimeError("create_task(): the coroutine was already awaited");
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
    if (coro.handle().promise().started()) throw RuntimeError("create_task(): the coroutine was already awaited");
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

// ---- create_task of any awaitable -----------------------------------------------------------

/// create_task() of any awaitable that is not a coroutine (a queue's get(), a sleep, a
/// gather...): it is wrapped in a coroutine first (Python's ensure_future).
template <class A>
    requires(detail::Awaitable<A> && !is_coro_v<std::remove_cvref_t<A>> &&
             !std::is_base_of_v<AnyFuture, std::remove_cvref_t<A>>)
Task<detail::await_result_t<A>> create_task(A aw) {
    return create_task(detail::as_coro(std::move(aw)));
}
template <class A>
    requires(detail::Awaitable<A> && !is_coro_v<std::remove_cvref_t<A>> &&
             !std::is_base_of_v<AnyFuture, std::remove_cvref_t<A>>)
Task<detail::await_result_t<A>> create_task(A aw, TaskOptions options) {
    return create_task(detail::as_coro(std::move(aw)), options);
}

template <class A>
auto EventLoop::create_task(A aw, std::string_view name) {
    static_assert(detail::Awaitable<A>, "create_task() needs a coroutine or an awaitable");
    return create_task(detail::as_coro(std::move(aw)), name);
}

// ---- gather ---------------------------------------------------------------------------------

/// The tag selecting gather's return_exceptions=True.
struct ReturnExceptions {};
inline constexpr ReturnExceptions return_exceptions{};

/// A value or the exception that took its place (gather with return_exceptions).
template <class T>
class Result {
public:
    using value_type = detail::stored_t<T>;
    explicit Result(value_type v) : v_(std::in_place_index<0>, std::move(v)) {}
    explicit Result(std::exception_ptr e) : v_(std::in_place_index<1>, std::move(e)) {}
    bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }
    /// The value; rethrows the error when there is none.
    value_type& value() & {
        if (!has_value()) std::rethrow_exception(std::get<1>(v_));
        return std::get<0>(v_);
    }
    const value_type& value() const& {
        if (!has_value()) std::rethrow_exception(std::get<1>(v_));
        return std::get<0>(v_);
    }
    value_type&& value() && { return std::move(value()); }
    /// The exception (null when there is a value).
    std::exception_ptr error() const noexcept { return has_value() ? nullptr : std::get<1>(v_); }

private:
    std::variant<value_type, std::exception_ptr> v_;
};

namespace detail {

/// Makes one of gather's arguments a child: a coroutine or another awaitable becomes a task.
template <class T>
GatherChild<T> gather_child(Coro<T>&& coro) {
    Task<T> t = create_task(std::move(coro));
    auto* st = static_cast<TaskState<T>*>(t.state_ptr());
    return {RefPtr<FutureStateBase>(st), st};
}
template <class T>
GatherChild<T> gather_child(const Task<T>& task) {
    auto* st = static_cast<TaskState<T>*>(task.state_ptr());
    if (!st) throw InvalidStateError("gather(): empty Task handle");
    return {RefPtr<FutureStateBase>(st), st};
}
template <class T>
GatherChild<T> gather_child(const Future<T>& fut) {
    auto* st = static_cast<FutureState<T>*>(fut.state_ptr());
    if (!st) throw InvalidStateError("gather(): empty Future handle");
    return {RefPtr<FutureStateBase>(st), st};
}

inline GatherChild<void> gather_child(const AnyTask& task) {
    if (!task.state_ptr()) throw InvalidStateError("gather(): empty Task handle");
    return {RefPtr<FutureStateBase>(task.state_ptr()), nullptr};
}

template <class A>
    requires(!is_coro_v<std::remove_cvref_t<A>> && !std::is_base_of_v<AnyFuture, std::remove_cvref_t<A>>)
GatherChild<await_result_t<A>> gather_child(A&& aw) {
    using T = await_result_t<A>;
    // A nested gather starts awaiting at once (eagerly), so that cancelling this gather
    // reaches the inner one's children even before the wrapper task's first step, as
    // Python's gather-of-a-gather does.
    constexpr bool eager = is_gathering_v<std::remove_cvref_t<A>>;
    Task<T> t = create_task(as_coro(std::forward<A>(aw)), TaskOptions{{}, eager});
    auto* st = static_cast<TaskState<T>*>(t.state_ptr());
    return {RefPtr<FutureStateBase>(st), st};
}

}  // namespace detail

/// gather(a(), b(), ...) -> std::tuple<A, B, ...> (void -> std::monostate).
template <detail::GatherArg... As>
auto gather(As&&... aws) {
    using R = std::tuple<detail::stored_t<detail::await_result_t<As>>...>;
    std::tuple<detail::GatherChild<detail::await_result_t<As>>...> children{
        detail::gather_child(std::forward<As>(aws))...};
    auto states = detail::states_of(children);
    return detail::make_gathering<R>(std::move(children), std::move(states), false);
}

/// gather(return_exceptions, a(), b(), ...) -> std::tuple<Result<A>, Result<B>, ...>.
template <detail::GatherArg... As>
auto gather(ReturnExceptions, As&&... aws) {
    using R = std::tuple<Result<detail::await_result_t<As>>...>;
    std::tuple<detail::GatherChild<detail::await_result_t<As>>...> children{
        detail::gather_child(std::forward<As>(aws))...};
    auto states = detail::states_of(children);
    return detail::make_gathering<R>(std::move(children), std::move(states), true);
}

namespace detail {
/// Whether a vector gather's children are futures (FutureState) rather than tasks.
template <class A>
inline constexpr bool is_plain_future_v = std::is_base_of_v<AnyFuture, A> && !std::is_base_of_v<AnyTask, A>;

template <class A>
std::vector<RefPtr<FutureStateBase>> gather_vector(std::vector<A> aws) {
    std::vector<RefPtr<FutureStateBase>> states;
    states.reserve(aws.size());
    for (auto& a : aws) states.push_back(gather_child(std::move(a)).state);
    return states;  // `aws` is freed here, before the gather starts (peak memory)
}
}  // namespace detail

/// gather(std::vector<Coro<T>> / std::vector<Task<T>> / std::vector<Future<T>>)
///     -> std::vector<T> (void -> std::monostate).
template <class A>
    requires detail::GatherArg<A>
auto gather(std::vector<A> aws) {
    using T = detail::await_result_t<A>;
    return detail::make_gathering<std::vector<detail::stored_t<T>>>(
        detail::VectorChildren<T>{detail::is_plain_future_v<A>}, detail::gather_vector(std::move(aws)), false);
}

/// gather(return_exceptions, vector) -> std::vector<Result<T>>.
template <class A>
    requires detail::GatherArg<A>
auto gather(ReturnExceptions, std::vector<A> aws) {
    using T = detail::await_result_t<A>;
    return detail::make_gathering<std::vector<Result<T>>>(detail::VectorChildren<T>{detail::is_plain_future_v<A>},
                                                          detail::gather_vector(std::move(aws)), true);
}

// ---- wait, wait_for, as_completed -----------------------------------------------------------

enum ReturnWhen : int { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };

/// An optional delay in seconds: empty (Python's None), a double, or a chrono duration.
struct OptionalDelay {
    std::optional<double> seconds;
    OptionalDelay() = default;
    OptionalDelay(std::nullopt_t) {}
    template <detail::Delay D>
    OptionalDelay(D d) : seconds(detail::to_seconds(d)) {}
};

struct WaitOptions {
    OptionalDelay timeout = {};
    ReturnWhen return_when = ALL_COMPLETED;
};

/// What wait() returns: the done and the pending futures (input order, duplicates removed).
template <class F>
struct WaitResult {
    std::vector<F> done;
    std::vector<F> pending;
};

/// wait(futures or tasks, {.timeout, .return_when}) -> {done, pending}. Coroutines are not
/// accepted (as in Python 3.11+): wrap them with create_task().
template <class F>
    requires std::is_base_of_v<AnyFuture, F>
Coro<WaitResult<F>> wait(std::vector<F> fs, WaitOptions options = {}) {
    if (fs.empty()) throw std::invalid_argument("Set of Tasks/Futures is empty.");
    if (options.return_when != FIRST_COMPLETED && options.return_when != FIRST_EXCEPTION &&
        options.return_when != ALL_COMPLETED)
        throw std::invalid_argument("Invalid return_when value: " + std::to_string(int(options.return_when)));
    std::vector<F> unique;
    std::vector<detail::FutureStateBase*> states;
    for (auto& f : fs) {
        detail::FutureStateBase* st = f.state_ptr();
        if (!st) throw InvalidStateError("wait(): empty Task/Future handle");
        bool seen = false;
        for (auto* s : states) seen = seen || s == st;
        if (seen) continue;
        states.push_back(st);
        unique.push_back(f);
    }
    co_await detail::wait_states(states, options.timeout.seconds, options.return_when);
    WaitResult<F> out;
    for (auto& f : unique) (f.done() ? out.done : out.pending).push_back(f);
    co_return out;
}

namespace detail {
template <class A>
auto ensure_task(A&& aw) {
    if constexpr (is_coro_v<std::remove_cvref_t<A>>)
        return create_task(std::move(aw));
    else if constexpr (std::is_base_of_v<AnyFuture, std::remove_cvref_t<A>>)
        return aw;
    else
        return create_task(as_coro(std::forward<A>(aw)));
}
}  // namespace detail

/// wait_for(aw, timeout) -> T: waits for `aw`; on expiry cancels it, waits until it is
/// cancelled, and throws TimeoutError (Python 3.12 semantics: a timeout <= 0 cancels at
/// once; an empty timeout waits forever).
template <class A>
    requires detail::GatherArg<A>
Coro<detail::await_result_t<A>> wait_for(A aw, OptionalDelay timeout) {
    using T = detail::await_result_t<A>;
    if (timeout.seconds && *timeout.seconds <= 0) {
        auto fut = detail::ensure_task(std::move(aw));
        if (!fut.done()) {
            co_await detail::cancel_and_wait(detail::RefPtr<detail::FutureStateBase>(fut.state_ptr()));
            if (fut.cancelled()) throw TimeoutError();
        }
        if constexpr (std::is_void_v<T>)
            co_return co_await fut;
        else
            co_return co_await fut;
    }
    co_return co_await asyncio::timeout(timeout.seconds, std::move(aw));
}

/// as_completed(tasks or futures, timeout) -> a range of N awaitables; the k-th yields the
/// result of the k-th task to complete (or throws its exception, or TimeoutError).
template <class F>
class AsCompleted {
public:
    using T = detail::await_result_t<F>;
    AsCompleted(std::vector<F> fs, OptionalDelay timeout) {
        std::vector<detail::RefPtr<detail::FutureStateBase>> states;
        for (auto& f : fs) {
            if (!f.state_ptr()) throw InvalidStateError("as_completed(): empty Task/Future handle");
            bool seen = false;
            for (auto& s : states) seen = seen || s.get() == f.state_ptr();
            if (!seen) states.emplace_back(f.state_ptr());
        }
        EventLoop& loop = get_running_loop();
        state_ = detail::RefPtr<detail::AsCompletedState>::adopt(
            new detail::AsCompletedState(loop, std::move(states), timeout.seconds));
        state_->start();
    }

    class iterator {
    public:
        using difference_type = std::ptrdiff_t;
        using value_type = Coro<T>;
        Coro<T> operator*() const {
            ++state_->handed_out;
            return next(state_);
        }
        iterator& operator++() {
            ++i_;
            return *this;
        }
        void operator++(int) { ++i_; }
        bool operator==(const iterator& o) const { return i_ == o.i_; }

    private:
        friend class AsCompleted;
        iterator(detail::RefPtr<detail::AsCompletedState> s, std::size_t i) : state_(std::move(s)), i_(i) {}
        detail::RefPtr<detail::AsCompletedState> state_;
        std::size_t i_;
    };
    /// Iteration resumes after the awaitables already handed out (as Python's iterator).
    iterator begin() const { return iterator(state_, state_->handed_out); }
    iterator end() const { return iterator(state_, state_->size()); }
    std::size_t size() const { return state_->size(); }

private:
    static Coro<T> next(detail::RefPtr<detail::AsCompletedState> st) {
        detail::FutureStateBase* f = co_await st->next_done();
        if (!f) throw TimeoutError();
        f->check_result();
        if constexpr (!std::is_void_v<T>) {
            using S = std::conditional_t<std::is_base_of_v<AnyTask, F>, detail::TaskState<T>, detail::FutureState<T>>;
            co_return static_cast<S*>(f)->get_for_await();
        }
    }
    detail::RefPtr<detail::AsCompletedState> state_;
};

template <class F>
    requires std::is_base_of_v<AnyFuture, F>
AsCompleted<F> as_completed(std::vector<F> fs, OptionalDelay timeout = {}) {
    return AsCompleted<F>(std::move(fs), timeout);
}

// ---- shield ---------------------------------------------------------------------------------

/// Protects `aw` from cancellation: returns a Future<T> mirroring it. A coroutine is wrapped
/// in a task first.
template <class T>
Future<T> shield(Coro<T> coro) {
    Task<T> inner = create_task(std::move(coro));
    return detail::shield_state<T>(
        detail::RefPtr<detail::TaskState<T>>(static_cast<detail::TaskState<T>*>(inner.state_ptr())));
}
template <class T>
Future<T> shield(const Task<T>& task) {
    return detail::shield_state<T>(
        detail::RefPtr<detail::TaskState<T>>(static_cast<detail::TaskState<T>*>(task.state_ptr())));
}
template <class T>
Future<T> shield(const Future<T>& fut) {
    return detail::shield_state<T>(
        detail::RefPtr<detail::FutureState<T>>(static_cast<detail::FutureState<T>*>(fut.state_ptr())));
}

}  // namespace asyncio
