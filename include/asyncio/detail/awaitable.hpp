// asyncio/detail/awaitable.hpp - what the combinators' templates need to know of any
// awaitable (gather, wait_for, timeout, create_task of a non-coroutine): its awaiter, the
// type `co_await` gives, and a coroutine that awaits it.
#pragma once

#include <asyncio/coroutines.hpp>

#include <utility>

namespace asyncio::detail {

template <class A>
decltype(auto) get_awaiter(A&& a) {
    if constexpr (requires { std::forward<A>(a).operator co_await(); })
        return std::forward<A>(a).operator co_await();
    else
        return std::forward<A>(a);
}

/// Anything `co_await` accepts inside a Coro: Coro, Task, Future, sleep(), gather(), ...
template <class A>
concept Awaitable = requires(A&& a) { get_awaiter(std::forward<A>(a)).await_resume(); };

/// What the combinators accept as an argument.
template <class A>
concept GatherArg = Awaitable<A>;

/// The type `co_await a` produces.
template <class A>
using await_result_t = decltype(get_awaiter(std::declval<A>()).await_resume());

/// Wraps any awaitable in a Coro (Python's ensure_future on a non-future awaitable).
template <class A>
Coro<await_result_t<A>> as_coro(A aw) {
    co_return co_await std::move(aw);
}

}  // namespace asyncio::detail
