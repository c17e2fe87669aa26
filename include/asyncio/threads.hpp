// asyncio/threads.hpp - crossing threads: loop.run_in_executor, asyncio::to_thread and
// asyncio::run_coroutine_threadsafe (Python's base_events / asyncio.threads / tasks).
//
//   int n = co_await asyncio::to_thread(count_lines, path);      // blocking work, off the loop
//   auto f = asyncio::run_coroutine_threadsafe(fetch(), loop);   // from another thread
//   f.get();                                                     // a std::future
//
// Futures and tasks stay on their loop's thread: a worker thread only fills in a result and
// hands it to the loop with call_soon_threadsafe, which sets the asyncio Future there.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/executors.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/tasks.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace asyncio {

namespace detail {

/// The outcome of one executor work item, carried from the worker to the loop.
template <class R>
struct ExecutorResult {
    std::optional<stored_t<R>> value;
    std::exception_ptr error;
};

/// From any thread: runs `fn` on the anchor's loop, unless that loop is closed (or gone);
/// then `fn` is destroyed unrun, on the calling thread.
template <class F>
bool post_to_loop(LoopAnchor* anchor, F&& fn) {
    HandleState* h = make_handle_state(anchor, /*shared=*/true, std::forward<F>(fn));
    h->ops = &HandleState::ready_ops;
    if (anchor->post(h)) return true;
    h->release();
    return false;
}

}  // namespace detail

template <class F>
auto EventLoop::run_in_executor(Executor* executor, F fn) -> Future<std::invoke_result_t<F&>> {
    using R = std::invoke_result_t<F&>;
    check_closed();
    Executor& ex = executor ? *executor : default_executor();
    Future<R> fut(*this);
    // Set on the loop thread when the future is cancelled: the work is then skipped if it has
    // not started (Python cancels the concurrent future). Shared: read by the worker.
    auto cancelled = std::make_shared<std::atomic<bool>>(false);
    fut.add_done_callback([cancelled](const Future<R>& f) {
        if (f.cancelled()) cancelled->store(true);
    });
    // Future handles are not thread-safe: the loop keeps this one, and the worker carries only
    // its id (and the loop's anchor, not the loop, which may be gone by the time a
    // user-supplied executor gets to the work).
    const std::uint64_t id = detail::LoopAccess::park_future(*this, fut.state_ptr());
    ex.submit([anchor = detail::RefPtr<detail::LoopAnchor>(anchor_), fn = std::move(fn), cancelled, id]() mutable {
        detail::ExecutorResult<R> result;
        const bool skipped = cancelled->load();  // cancelled before it started: don't run it
        if (!skipped) {
            try {
                if constexpr (std::is_void_v<R>) {
                    fn();
                    result.value.emplace();
                } else {
                    result.value.emplace(fn());
                }
            } catch (...) {
                result.error = std::current_exception();
            }
        }
        detail::LoopAnchor* a = anchor.get();
        detail::post_to_loop(a, [a, id, skipped, result = std::move(result)]() mutable {
            detail::RefPtr<detail::FutureStateBase> parked = detail::LoopAccess::unpark_future(*a->loop, id);
            if (!parked) return;
            auto& f = static_cast<detail::FutureState<R>&>(*parked);
            if (skipped || f.done()) return;  // cancelled meanwhile
            if (result.error)
                f.set_exception(result.error);
            else if constexpr (std::is_void_v<R>)
                f.set_result();
            else
                f.set_result(std::move(*result.value));
        });
    });
    return fut;
}

/// Runs `fn(args...)` on the running loop's default executor and awaits its result (Python's
/// asyncio.to_thread).
template <class F, class... Args>
auto to_thread(F fn, Args... args) -> Future<std::invoke_result_t<F&, Args&...>> {
    // Like Python: the function runs in a copy of the caller's context.
    return get_running_loop().run_in_executor(
        nullptr, [ctx = copy_context(), fn = std::move(fn), ... args = std::move(args)]() mutable {
            return ctx.run([&]() -> decltype(auto) { return std::invoke(fn, args...); });
        });
}

namespace detail {
/// What a ConcurrentFuture shares with the task on the loop.
template <class T>
struct ThreadsafeLink {
    std::promise<T> promise;
    EventLoop* loop = nullptr;
    AnyTask task;                   // loop thread only
    bool cancel_requested = false;  // loop thread only
};
}  // namespace detail

/// The std::future returned by run_coroutine_threadsafe, plus cancel() (Python's
/// concurrent.futures.Future.cancel cancels the task on its loop).
template <class T>
class ConcurrentFuture : public std::future<T> {
public:
    ConcurrentFuture(std::future<T> f, std::shared_ptr<detail::ThreadsafeLink<T>> link)
        : std::future<T>(std::move(f)), link_(std::move(link)) {}
    /// Asks the loop to cancel the task; get() then throws CancelledError (unless the task
    /// suppresses the cancellation). False if the loop is closed.
    bool cancel() {
        try {
            link_->loop->call_soon_threadsafe([link = link_] {
                if (link->task)
                    link->task.cancel();
                else
                    link->cancel_requested = true;
            });
            return true;
        } catch (const RuntimeError&) {
            return false;
        }
    }

private:
    std::shared_ptr<detail::ThreadsafeLink<T>> link_;
};

/// Submits a coroutine to `loop` from another thread; the result arrives in a std::future.
/// The coroutine may have been created on the calling thread.
template <class T>
ConcurrentFuture<T> run_coroutine_threadsafe(Coro<T> coro, EventLoop& loop) {
    auto link = std::make_shared<detail::ThreadsafeLink<T>>();
    link->loop = &loop;
    ConcurrentFuture<T> result(link->promise.get_future(), link);
    loop.call_soon_threadsafe([link, &loop, coro = std::move(coro)]() mutable {
        if (link->cancel_requested) {
            link->promise.set_exception(std::make_exception_ptr(CancelledError()));
            return;
        }
        Task<T> task = loop.create_task(std::move(coro));
        link->task = task;
        task.add_done_callback([link](const Task<T>& t) {
            link->task = AnyTask();  // released on the loop thread
            if (t.cancelled()) {
                link->promise.set_exception(std::make_exception_ptr(t.state_ptr()->make_cancelled_error()));
            } else if (std::exception_ptr e = t.state_ptr()->exception()) {
                link->promise.set_exception(e);
            } else if constexpr (std::is_void_v<T>) {
                link->promise.set_value();
            } else {
                link->promise.set_value(static_cast<detail::TaskState<T>*>(t.state_ptr())->get_for_await());
            }
        });
    });
    return result;
}

}  // namespace asyncio
