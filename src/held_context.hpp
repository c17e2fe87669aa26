// src/held_context.hpp - a call's own reference to the TLS context it was given.
//
// Python's coroutines hold the SSLContext object passed as ssl=, so the caller may drop its
// own reference at any time. Ours receive an ssl::ContextRef (a plain pointer: option structs
// stay trivially destructible, docs/compilers.md), and a coroutine runs only when awaited. So
// every entry point that takes a context calls hold_context() when it is *called*: the call
// (its coroutine frame, a server, a connection) owns a copy of the context handle from then
// on, and the ref is re-pointed at that copy for the code below.
#pragma once

#include <asyncio/detail/net_options.hpp>

#include <memory>

namespace asyncio::detail {

using HeldContext = std::shared_ptr<ssl::Context>;

/// A copy of *ref (null when ref is empty); ref then points at the copy.
HeldContext hold_context(ssl::ContextRef& ref);

}  // namespace asyncio::detail
