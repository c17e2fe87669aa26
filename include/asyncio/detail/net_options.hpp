// asyncio/detail/net_options.hpp - option structs of the loop's connection methods
// (declared by events.hpp, documented with the methods in base_events.hpp).
#pragma once

#include <cstddef>
#include <string_view>
#include <type_traits>

namespace asyncio {

namespace ssl {
class Context;

/// The `ssl=` option: a TLS context, or none. Accepts the context itself or a pointer, so
/// both `{.ssl = ctx}` (as in Python and API.md) and `{.ssl = &ctx}` work. It refers to the
/// caller's Context only until the call that receives it is made: that call (and the server
/// or connection it makes) takes its own copy of the handle at once, so the caller's Context
/// may be destroyed at any time after. Trivially destructible, like the option structs.
class ContextRef {
public:
    constexpr ContextRef() noexcept = default;
    constexpr ContextRef(std::nullptr_t) noexcept {}
    constexpr ContextRef(Context& context) noexcept : p_(&context) {}
    constexpr ContextRef(Context* context) noexcept : p_(context) {}
    constexpr explicit operator bool() const noexcept { return p_ != nullptr; }
    constexpr Context& operator*() const noexcept { return *p_; }
    constexpr Context* operator->() const noexcept { return p_; }
    constexpr Context* get() const noexcept { return p_; }

private:
    Context* p_ = nullptr;
};
}  // namespace ssl

/// Options of create_connection/open_connection (Python's keyword arguments). Trivially
/// destructible on purpose (see docs/compilers.md): strings are views, copied at once.
struct ConnectionOptions {
    /// TLS: the context to use (client side), or null for plain TCP (the call keeps a copy).
    ssl::ContextRef ssl;
    /// TLS: the name to check the certificate against and send as SNI (default: host).
    std::string_view server_hostname{};
    int family = 0;  ///< AF_INET, AF_INET6 or 0 (any)
    int proto = 0;
    int flags = 0;  ///< getaddrinfo flags
    /// local_addr: bind to this host/port before connecting (port 0: any).
    std::string_view local_host{};
    int local_port = -1;  ///< -1: no local_addr
    /// Happy Eyeballs (RFC 8305): delay in seconds before starting the next attempt in
    /// parallel; < 0 (the default) tries the addresses one after the other, as Python's None.
    double happy_eyeballs_delay = -1;
    /// Interleave address families (first family count); 0 = Python's default (1 when
    /// happy_eyeballs_delay is set).
    int interleave = 0;
    /// When every attempt failed: raise an ExceptionGroup of all errors instead of one.
    bool all_errors = false;
    double ssl_handshake_timeout = 60.0;
    double ssl_shutdown_timeout = 30.0;
};

/// Options of create_server/start_server.
struct ServerOptions {
    int family = 0;  ///< AF_INET, AF_INET6, or 0: every family the host resolves to
    int flags = 0;   ///< getaddrinfo flags (AI_PASSIVE is always added)
    int backlog = 100;
    bool reuse_address = true;  ///< SO_REUSEADDR (Python's default on Unix)
    bool reuse_port = false;    ///< SO_REUSEPORT: several servers (one per loop/core) on one port
    bool keep_alive = false;    ///< SO_KEEPALIVE on accepted connections
    bool start_serving = true;  ///< accept at once (else on start_serving()/serve_forever())
    ssl::ContextRef ssl;  ///< TLS (server side) or none (the server keeps a copy)
    double ssl_handshake_timeout = 60.0;
    double ssl_shutdown_timeout = 30.0;
};

/// Options of create_datagram_endpoint. With family = AF_UNIX, local_host and remote_host
/// are socket paths (Python's str addresses; "" means none, a leading '\0' an abstract name)
/// and the ports stay -1.
struct DatagramOptions {
    std::string_view local_host{};  ///< bind here (with local_port) ...
    int local_port = -1;          ///< ... -1: don't bind
    std::string_view remote_host{};  ///< connect() to this peer (with remote_port) ...
    int remote_port = -1;          ///< ... -1: unconnected
    int family = 0;  ///< AF_INET, AF_INET6, AF_UNIX, or 0: the addresses' family
    int proto = 0;
    int flags = 0;
    bool reuse_port = false;
    bool allow_broadcast = false;
};

namespace detail {
template <class F>
using factory_result_t = std::invoke_result_t<F&>;
}  // namespace detail

}  // namespace asyncio
