// asyncio/coroutines.hpp - Coro<T>, the return type of every asyncio coroutine function.
//
// A Coro is lazy like a Python coroutine object: calling the function creates the frame and
// runs nothing. `co_await coro` runs it inline in the awaiting task (symmetric transfer: no new
// task, no stack growth however deep the chain); `create_task(coro)` makes it a task. A Coro is
// move-only and can be awaited once ("cannot reuse already awaited coroutine", as in Python).
// A Coro destroyed without ever being started is reported in debug mode, the run-time half of
// Python's "coroutine was never awaited" (the compile-time half is [[nodiscard]]).
#pragma once

#include <asyncio/detail/frame_pool.hpp>
#include <asyncio/exceptions.hpp>

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

namespace asyncio {

namespace detail {

/// `void` results are stored and returned as std::monostate where a value is needed
/// (gather's tuple), as the API contract says.
template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// Reports a coroutine destroyed without being started, when the running loop is in debug
/// mode (src/runtime/coroutines.cpp).
void report_never_awaited(const void* frame_address) noexcept;
/// Whether the running loop (if any) is in debug mode.
bool running_loop_debug() noexcept;

/// Kept to two pointers: every byte of a frame counts when a million tasks sleep at once.
struct PromiseBase : PoolAllocated {
    /// Whom to resume when this coroutine finishes. Set by whoever starts it: the awaiting
    /// coroutine, or std::noop_coroutine() for a task's root. Null means "never started".
    std::coroutine_handle<> continuation;
    std::exception_ptr exception;

    bool started() const noexcept { return bool(continuation); }

    struct FinalAwaiter {
        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) const noexcept {
            return h.promise().continuation;
        }
        void await_resume() const noexcept {}
    };

    std::suspend_always initial_suspend() noexcept { return {}; }
    FinalAwaiter final_suspend() noexcept { return {}; }
    void unhandled_exception() noexcept { exception = std::current_exception(); }
};

template <class T>
struct Promise : PromiseBase {
    std::optional<T> value;
    template <class U = T>
        requires std::is_convertible_v<U&&, T>
    void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        value.emplace(std::forward<U>(v));
    }
    /// Moves the result out (rethrowing the coroutine's exception).
    T take() {
        if (exception) std::rethrow_exception(exception);
        return std::move(*value);
    }
};

template <>
struct Promise<void> : PromiseBase {
    void return_void() noexcept {}
    void take() {
        if (exception) std::rethrow_exception(exception);
    }
};

}  // namespace detail

template <class T = void>
class [[nodiscard]] Coro {
    static_assert(!std::is_reference_v<T>, "Coro<T&> is not supported: return a pointer or value");

public:
    using value_type = T;
    struct promise_type : detail::Promise<T> {
        Coro get_return_object() noexcept { return Coro(std::coroutine_handle<promise_type>::from_promise(*this)); }
    };
    using handle_type = std::coroutine_handle<promise_type>;

    Coro() noexcept = default;
    Coro(Coro&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
    Coro& operator=(Coro&& o) noexcept {
        if (this != &o) {
            destroy();
            h_ = std::exchange(o.h_, nullptr);
        }
        return *this;
    }
    Coro(const Coro&) = delete;
    Coro& operator=(const Coro&) = delete;
    ~Coro() { destroy(); }

    /// False for a moved-from or default-constructed Coro.
    explicit operator bool() const noexcept { return bool(h_); }
    /// True once the body ran to completion.
    bool done() const noexcept { return h_ && h_.done(); }

    struct Awaiter {
        handle_type h;
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
            h.promise().continuation = caller;
            return h;
        }
        T await_resume() { return h.promise().take(); }
    };

    Awaiter operator co_await() & { return make_awaiter(); }
    Awaiter operator co_await() && { return make_awaiter(); }

    /// Gives up ownership of the frame (create_task takes it).
    handle_type release() noexcept { return std::exchange(h_, nullptr); }
    handle_type handle() const noexcept { return h_; }

private:
    explicit Coro(handle_type h) noexcept : h_(h) {}
    Awaiter make_awaiter() {
        if (!h_) throw RuntimeError("cannot await an empty Coro (moved from, or default-constructed)");
        if (h_.promise().started())
            throw RuntimeError(
                "cannot reuse already awaited coroutine: a Coro can be awaited once; wrap it in "
                "create_task() to await its result several times");
        return Awaiter{h_};
    }
    void destroy() noexcept {
        if (!h_) return;
        if (!h_.promise().started() && detail::running_loop_debug()) detail::report_never_awaited(h_.address());
        h_.destroy();
        h_ = nullptr;
    }
    handle_type h_;
};

/// True for Coro<T>.
template <class A>
inline constexpr bool is_coro_v = false;
template <class T>
inline constexpr bool is_coro_v<Coro<T>> = true;

}  // namespace asyncio
