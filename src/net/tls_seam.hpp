// src/net/tls_seam.hpp - what the net layer asks of TLS, which is built above it (src/tls/).
//
// create_connection/create_server with ssl= and the server's accept path need a TLS transport;
// TLS itself is a protocol layered over our socket transport, so it lives one layer up. The
// net layer declares here the two things it calls; src/tls/ defines them, or, in a build
// without TLS (ASYNCIO_WITH_TLS=OFF), src/net/no_tls.cpp defines them to refuse.
#pragma once

#include <asyncio/detail/event_loop.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/protocols.hpp>
#include <asyncio/sockets.hpp>
#include <asyncio/transports.hpp>

#include <memory>
#include <optional>
#include <string_view>

namespace asyncio::detail {

class SocketTransport;

/// A call's own reference to the TLS context it was given.
///
/// Python's coroutines hold the SSLContext object passed as ssl=, so the caller may drop its
/// own reference at any time. Ours receive an ssl::ContextRef (a plain pointer: option structs
/// stay trivially destructible, docs/compilers.md), and a coroutine runs only when awaited. So
/// every entry point that takes a context calls hold_context() when it is *called*: the call
/// (its coroutine frame, a server, a connection) owns a copy of the context handle from then
/// on, and the ref is re-pointed at that copy for the code below.
using HeldContext = std::shared_ptr<ssl::Context>;

/// A copy of *ref (null when ref is empty); ref then points at the copy.
HeldContext hold_context(ssl::ContextRef& ref);

/// Whether `context` is for the server side (PROTOCOL_TLS_SERVER).
bool is_server_context(const ssl::Context& context);

/// Python's selector loop _make_ssl_transport: a raw SocketTransport over `sock` whose protocol
/// is an SSLProtocol around `app_protocol`. The raw transport is not started yet (attach it to
/// a server first, then start() it); the app transport is what create_connection returns.
struct SSLTransports {
    std::shared_ptr<SocketTransport> raw;
    std::shared_ptr<Transport> app;
};
SSLTransports make_ssl_transport(EventLoop& loop, Socket& sock, std::shared_ptr<BaseProtocol> app_protocol,
                                 const ssl::Context& context, std::optional<Future<void>> waiter, bool server_side,
                                 std::string_view server_hostname, double ssl_handshake_timeout,
                                 double ssl_shutdown_timeout);

}  // namespace asyncio::detail
