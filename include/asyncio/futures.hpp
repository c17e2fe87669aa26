// asyncio/futures.hpp - Future<T> (Python's asyncio.futures).
//
// A Future is a result that is not there yet. It is bound to one loop; it is PENDING, then
// FINISHED (with a result or an exception) or CANCELLED. Done callbacks are never run inline:
// when the future completes each one is scheduled with the loop's call_soon, in the order they
// were added, exactly like Python. Future<T> is a cheap shared handle to one state object.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/detail/future_state.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace asyncio {

/// Identifies a done callback for remove_done_callback().
using CallbackId = std::uint64_t;

/// A type-erased Future handle: everything but the typed result.
class AnyFuture {
public:
    AnyFuture() = default;
    bool done() const { return state().done(); }
    bool cancelled() const { return state().cancelled(); }
    bool cancel(std::string msg = {}) { return state().cancel(std::move(msg)); }
    std::exception_ptr exception() { return state().exception(); }
    void set_exception(std::exception_ptr e) { state().set_exception(std::move(e)); }
    template <class E>
        requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
    void set_exception(E&& e) {
        set_exception(std::make_exception_ptr(std::forward<E>(e)));
    }
    EventLoop& get_loop() const { return state().loop(); }
    std::size_t remove_done_callback(CallbackId id) { return state().remove_done_callback(id); }
    template <class R, class... A>
    std::size_t remove_done_callback(R (*fn)(A...)) {
        return state().remove_done_callback_by_identity(reinterpret_cast<const void*>(fn));
    }
    std::string repr() const { return state().repr(); }
    explicit operator bool() const noexcept { return bool(state_); }
    friend bool operator==(const AnyFuture& a, const AnyFuture& b) noexcept { return a.state_.get() == b.state_.get(); }
    detail::FutureStateBase* state_ptr() const noexcept { return state_.get(); }

protected:
    explicit AnyFuture(detail::RefPtr<detail::FutureStateBase> s) noexcept : state_(std::move(s)) {}
    detail::FutureStateBase& state() const {
        if (!state_) [[unlikely]]
            throw_empty_handle();
        return *state_;
    }
    detail::RefPtr<detail::FutureStateBase> state_;

private:
    [[noreturn]] static void throw_empty_handle();
};

template <class T = void>
class Future : public AnyFuture {
    using State = detail::FutureState<T>;

public:
    using value_type = T;
    /// A future bound to the running loop (RuntimeError "no running event loop" outside one).
    Future() : Future(get_running_loop()) {}
    explicit Future(EventLoop& loop) : AnyFuture(detail::RefPtr<detail::FutureStateBase>::adopt(new State(loop))) {
        detail::LoopAccess::check_open(loop);
    }

    template <class... A>
    void set_result(A&&... args) {
        typed().set_result(std::forward<A>(args)...);
    }
    /// The result; CancelledError if cancelled, InvalidStateError if not done, or the
    /// exception set with set_exception().
    decltype(auto) result() const {
        typed().check_result();
        if constexpr (!std::is_void_v<T>) return static_cast<const T&>(*typed().value);
    }
    template <class F>
    CallbackId add_done_callback(F&& fn) {
        auto identity = detail::callback_identity(fn);
        return state().add_done_callback(detail::wrap_done_callback<F, Future>(std::forward<F>(fn)), identity);
    }
    auto operator co_await() const { return detail::FutureAwaiter<State, T>(detail::RefPtr<State>(&typed())); }
    static Future from_state(detail::FutureStateBase* st) { return Future(st); }

private:
    explicit Future(detail::FutureStateBase* st) : AnyFuture(detail::RefPtr<detail::FutureStateBase>(st)) {}
    State& typed() const { return static_cast<State&>(state()); }
};

template <class T>
Future<T> EventLoop::create_future() {
    return Future<T>(*this);
}

}  // namespace asyncio
