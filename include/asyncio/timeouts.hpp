// asyncio/timeouts.hpp - timeout / timeout_at and the Timeout object (Python's
// asyncio.timeouts, 3.11+).
//
// `co_await asyncio::timeout(delay, aw)` awaits `aw` inside the current task and cancels the
// task when the deadline passes; only the cancellation the timeout caused becomes
// TimeoutError. A cancellation from elsewhere stays CancelledError, and nested timeouts each
// claim only their own: the bookkeeping goes through task.cancelling()/uncancel(), exactly as
// in Python. A body taking `Timeout&` can reschedule() the deadline while it runs.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/awaitable.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/detail/task_state.hpp>

#include <optional>

namespace asyncio {

class Timeout {
public:
    /// A deadline at absolute loop time `when` (nullopt: none).
    explicit Timeout(std::optional<double> when) noexcept : when_(when) {}
    Timeout(const Timeout&) = delete;
    Timeout& operator=(const Timeout&) = delete;
    ~Timeout();

    std::optional<double> when() const noexcept { return when_; }
    /// Moves the deadline (nullopt removes it). RuntimeError unless the timeout is active.
    void reschedule(std::optional<double> when);
    /// Whether the deadline passed and the task was cancelled because of it.
    bool expired() const noexcept { return state_ == State::expiring || state_ == State::expired; }

    /// `async with` entry: binds to the current task. RuntimeError outside a task or twice.
    void enter();
    /// `async with` exit with the body's exception (null if none). Throws TimeoutError when
    /// the body ended with the CancelledError this timeout caused; otherwise returns and the
    /// caller re-raises the body's exception, if any.
    void exit(std::exception_ptr body_exception);

private:
    enum class State { created, entered, expiring, expired, exited };
    void on_timeout();
    std::optional<double> when_;
    State state_ = State::created;
    detail::RefPtr<detail::TaskBase> task_;  // the task the timeout cancels (set by enter())
    int cancelling_ = 0;
    Handle handle_;
};

namespace detail {

template <class A>
auto with_timeout(Timeout& cm, A aw) -> Coro<await_result_t<A>>;

template <class A>
auto with_timeout(Timeout& cm, A aw) -> Coro<await_result_t<A>> {
    using T = await_result_t<A>;
    cm.enter();
    std::exception_ptr error;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(aw);
        } else {
            T value = co_await std::move(aw);
            cm.exit(nullptr);
            co_return value;
        }
    } catch (...) {
        error = std::current_exception();
    }
    cm.exit(error);
    if constexpr (std::is_void_v<T>) {
        if (error) std::rethrow_exception(error);
    } else {
        std::rethrow_exception(error);  // the value path returned above
    }
}

template <class F>
concept TimeoutBody = requires(F f, Timeout& cm) {
    { f(cm) } -> std::same_as<Coro<typename decltype(f(cm))::value_type>>;
};

}  // namespace detail

/// Awaits `aw` with a deadline `delay` seconds from now (nullopt: no deadline).
template <class A>
    requires detail::GatherArg<A>
Coro<detail::await_result_t<A>> timeout(std::optional<double> delay, A aw) {
    Timeout cm(delay ? std::optional<double>(get_running_loop().time() + *delay) : std::nullopt);
    co_return co_await detail::with_timeout(cm, std::move(aw));
}
template <detail::Delay D, class A>
    requires detail::GatherArg<A>
Coro<detail::await_result_t<A>> timeout(D delay, A aw) {
    return timeout(std::optional<double>(detail::to_seconds(delay)), std::move(aw));
}
/// Awaits `aw` with a deadline at absolute loop time `when`.
template <class A>
    requires detail::GatherArg<A>
Coro<detail::await_result_t<A>> timeout_at(std::optional<double> when, A aw) {
    Timeout cm(when);
    co_return co_await detail::with_timeout(cm, std::move(aw));
}

/// timeout(delay, [&](Timeout& cm) -> Coro<T> {...}): the body can read and reschedule its
/// deadline (Python's `async with asyncio.timeout(d) as cm:`).
template <class F>
    requires detail::TimeoutBody<F>
auto timeout(std::optional<double> delay, F body) -> decltype(body(std::declval<Timeout&>())) {
    Timeout cm(delay ? std::optional<double>(get_running_loop().time() + *delay) : std::nullopt);
    co_return co_await detail::with_timeout(cm, body(cm));
}
template <detail::Delay D, class F>
    requires detail::TimeoutBody<F>
auto timeout(D delay, F body) -> decltype(body(std::declval<Timeout&>())) {
    return timeout(std::optional<double>(detail::to_seconds(delay)), std::move(body));
}
template <class F>
    requires detail::TimeoutBody<F>
auto timeout_at(std::optional<double> when, F body) -> decltype(body(std::declval<Timeout&>())) {
    Timeout cm(when);
    co_return co_await detail::with_timeout(cm, body(cm));
}

}  // namespace asyncio
