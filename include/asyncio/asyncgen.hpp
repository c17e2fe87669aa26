// asyncio/asyncgen.hpp - asynchronous generators (Python's `async def` with `yield`, PEP 525).
//
//     asyncio::AsyncGenerator<int> ticks(int n) {
//         for (int i = 0; i < n; ++i) {
//             co_await asyncio::sleep(0.1);
//             co_yield i;
//         }
//     }
//     auto g = ticks(3);
//     while (auto v = co_await g.next()) use(*v);     // std::optional<T>; nullopt at the end
//
// The generator's body runs inside the task that calls next(), like Python's. An exception in
// the body reaches the consumer at next(). aclose() finalizes a generator that was not
// exhausted (its frame is destroyed: RAII destructors run - C++ cannot run `co_await` in a
// `finally`); athrow(e) raises `e` at the generator's current co_yield. Generators still open
// when asyncio::run ends are finalized by the loop's shutdown_asyncgens(), as in Python.
#pragma once

#include <asyncio/detail/frame_pool.hpp>
#include <asyncio/detail/intrusive_list.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/exceptions.hpp>

#include <coroutine>
#include <cstdio>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace asyncio {

namespace detail {
/// What the loop knows of a started generator, so shutdown_asyncgens() can finalize it.
struct AsyncGenHook : ListNode {
    void* owner = nullptr;
    /// Finalizes the generator; false (and nothing done) while a task is inside it.
    bool (*finalize)(void* owner) noexcept = nullptr;
    EventLoop* loop = nullptr;  // registered with this loop (null: not registered)
};
/// Registers with `loop` (Python's firstiter hook); `loop` may be null (nothing happens).
void register_asyncgen(AsyncGenHook* hook, EventLoop* loop);
void unregister_asyncgen(AsyncGenHook* hook) noexcept;
}  // namespace detail

/// An asynchronous generator yielding T. With a second argument `Send`, the generator also
/// receives values (Python's asend): inside the body, `std::optional<Send> got = co_yield x;`
/// is the value passed to asend(), or nullopt when it was resumed by next() (Python's None).
template <class T, class Send = void>
class [[nodiscard]] AsyncGenerator {
    static_assert(!std::is_reference_v<T>, "AsyncGenerator<T&> is not supported");
    static_assert(!std::is_reference_v<Send>, "AsyncGenerator<T, Send&> is not supported");
    struct NoSend {};
    using SentSlot = std::conditional_t<std::is_void_v<Send>, NoSend, std::optional<Send>>;

public:
    struct promise_type : detail::PoolAllocated {
        std::optional<T> current;
        [[no_unique_address]] SentSlot sent;  // asend()'s value for the current co_yield
        std::coroutine_handle<> consumer;     // the coroutine awaiting next()/athrow()
        std::exception_ptr exception;         // raised by the body
        std::exception_ptr thrown_in;         // athrow(): raised at the co_yield

        AsyncGenerator get_return_object() {
            return AsyncGenerator(std::coroutine_handle<promise_type>::from_promise(*this));
        }
        std::suspend_always initial_suspend() noexcept { return {}; }

        struct YieldAwaiter {
            promise_type* p;
            bool await_ready() const noexcept { return false; }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<>) noexcept { return p->consumer; }
            auto await_resume() {
                if (p->thrown_in) std::rethrow_exception(std::exchange(p->thrown_in, nullptr));
                if constexpr (!std::is_void_v<Send>) return std::exchange(p->sent, std::nullopt);
            }
        };
        template <class U = T>
            requires std::is_constructible_v<T, U&&>
        YieldAwaiter yield_value(U&& v) {
            current.emplace(std::forward<U>(v));
            return YieldAwaiter{this};
        }
        struct FinalAwaiter {
            bool await_ready() const noexcept { return false; }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
                return h.promise().consumer;
            }
            void await_resume() const noexcept {}
        };
        FinalAwaiter final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { exception = std::current_exception(); }
    };
    using handle_type = std::coroutine_handle<promise_type>;

    AsyncGenerator() = default;
    AsyncGenerator(AsyncGenerator&& o) noexcept : h_(std::exchange(o.h_, nullptr)) { move_hook(o); }
    AsyncGenerator& operator=(AsyncGenerator&& o) noexcept {
        if (this != &o) {
            if (running_) die_running("assigned to");
            finalize();
            h_ = std::exchange(o.h_, nullptr);
            move_hook(o);
        }
        return *this;
    }
    AsyncGenerator(const AsyncGenerator&) = delete;
    AsyncGenerator& operator=(const AsyncGenerator&) = delete;
    /// Finalizes an unfinished generator. Destroying one while a task is inside next() (the
    /// task would resume a destroyed body) is a bug that cannot be reported by an exception
    /// from a destructor: the process terminates with a message.
    ~AsyncGenerator() {
        if (running_) die_running("destroyed");
        finalize();
    }

    /// Resumes the generator: the next value, or nullopt once it is exhausted (Python's
    /// StopAsyncIteration). An exception from the body is rethrown here.
    auto next() { return Step{this, nullptr}; }
    /// Raises `e` at the generator's current co_yield (Python's athrow); returns the next
    /// value it yields, or nullopt if it ends. RuntimeError before the first next().
    auto athrow(std::exception_ptr e) {
        if (!h_ || h_.done()) throw RuntimeError("athrow() on a finished async generator");
        if (!started_) throw RuntimeError("athrow() before the async generator was started");
        return Step{this, std::move(e)};
    }
    /// Resumes the generator with `value` as the result of its current co_yield (Python's
    /// asend); returns the next value it yields, or nullopt if it ends. As in Python, a value
    /// cannot be sent to a generator that has not started: call next() first (RuntimeError).
    template <class S = Send>
        requires(std::is_same_v<S, Send> && !std::is_void_v<S>)
    auto asend(std::type_identity_t<S> value) {
        if (!h_ || h_.done()) throw RuntimeError("asend() on a finished async generator");
        if (!started_)
            throw RuntimeError("can't send non-None value to a just-started async generator; call next() first");
        if (running_) throw RuntimeError("asend(): asynchronous generator is already running");
        h_.promise().sent.emplace(std::move(value));
        return Step{this, nullptr};
    }
    /// Finalizes the generator now (Python's aclose): an unfinished body is abandoned at its
    /// co_yield and its locals are destroyed. Later next() calls return nullopt.
    /// RuntimeError while another task is inside next()/asend()/athrow(), as in Python.
    void aclose() {
        if (running_) throw RuntimeError("aclose(): asynchronous generator is already running");
        finalize();
    }
    /// True once exhausted or closed.
    bool finished() const noexcept { return !h_ || h_.done(); }

private:
    explicit AsyncGenerator(handle_type h) : h_(h) {}

    struct Step {
        AsyncGenerator* gen;
        std::exception_ptr throw_in;
        bool await_ready() const noexcept { return gen->finished(); }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> consumer) {
            if (gen->running_) throw RuntimeError("anext(): asynchronous generator is already running");
            gen->start_once();
            auto& p = gen->h_.promise();
            p.consumer = consumer;
            p.current.reset();
            p.thrown_in = std::move(throw_in);
            gen->running_ = true;
            return gen->h_;
        }
        std::optional<T> await_resume() {
            gen->running_ = false;
            if (gen->finished()) {
                if (gen->h_) {
                    std::exception_ptr e = std::exchange(gen->h_.promise().exception, nullptr);
                    gen->finalize();
                    if (e) std::rethrow_exception(e);
                }
                return std::nullopt;
            }
            return std::move(gen->h_.promise().current);
        }
    };

    void start_once() {
        if (started_) return;
        started_ = true;
        hook_.owner = this;
        hook_.finalize = [](void* owner) noexcept {
            auto* self = static_cast<AsyncGenerator*>(owner);
            if (self->running_) return false;
            self->finalize();
            return true;
        };
        detail::register_asyncgen(&hook_, get_running_loop_or_null());
    }
    void move_hook(AsyncGenerator& o) noexcept {
        started_ = std::exchange(o.started_, false);
        running_ = false;
        if (EventLoop* loop = o.hook_.loop) {
            detail::unregister_asyncgen(&o.hook_);
            hook_.owner = this;
            hook_.finalize = o.hook_.finalize;
            detail::register_asyncgen(&hook_, loop);
        }
    }
    [[noreturn]] static void die_running(const char* what) noexcept {
        std::fprintf(stderr,
                     "asyncio: an AsyncGenerator was %s while a task was inside it (next/asend/athrow); "
                     "keep the generator alive until that call returns\n",
                     what);
        std::terminate();
    }
    void finalize() noexcept {
        if (hook_.loop) detail::unregister_asyncgen(&hook_);
        if (h_) std::exchange(h_, nullptr).destroy();
    }

    handle_type h_;
    detail::AsyncGenHook hook_;
    bool started_ = false;
    bool running_ = false;
};

}  // namespace asyncio
