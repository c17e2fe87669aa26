// asyncio/base_events.hpp - connections and servers on the loop (Python's
// loop.create_connection / create_server / create_unix_* / create_datagram_endpoint and
// base_events.Server).
//
//   auto [transport, protocol] = co_await loop.create_connection(
//       [] { return std::make_shared<MyProtocol>(); }, "example.com", 80);
//   asyncio::Server server = co_await loop.create_server(factory, "127.0.0.1", 8888);
//   co_await server.serve_forever();
//
// A protocol factory is any callable returning std::shared_ptr<P> for a protocol class P
// (Protocol, BufferedProtocol; DatagramProtocol for datagram endpoints).
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/protocols.hpp>
#include <asyncio/sockets.hpp>
#include <asyncio/transports.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace asyncio {

namespace detail {
struct ServerState;
using ProtocolFactory = std::function<std::shared_ptr<BaseProtocol>()>;

template <class F>
ProtocolFactory erase_factory(F factory) {
    using P = typename factory_result_t<F>::element_type;
    static_assert(std::is_base_of_v<BaseProtocol, P>,
                  "a protocol factory must return std::shared_ptr<P> for a protocol class P");
    return [f = std::move(factory)]() mutable -> std::shared_ptr<BaseProtocol> { return f(); };
}

template <class F>
factory_result_t<F> protocol_of(const std::shared_ptr<BaseProtocol>& p) {
    return std::static_pointer_cast<typename factory_result_t<F>::element_type>(p);
}
/// A connection as made: the transport and the protocol the factory returned (which the
/// transport may already have let go of, if it closed before the call returned).
using MadeConnection = std::pair<std::shared_ptr<Transport>, std::shared_ptr<BaseProtocol>>;
using MadeEndpoint = std::pair<std::shared_ptr<DatagramTransport>, std::shared_ptr<BaseProtocol>>;
}  // namespace detail

/// A listening server (Python's asyncio.Server): a cheap shared handle. While it serves, the
/// loop keeps it alive; close() stops accepting.
class Server {
public:
    Server() = default;
    explicit Server(std::shared_ptr<detail::ServerState> s) : state_(std::move(s)) {}

    EventLoop& get_loop() const;
    /// The listening sockets (empty once closed).
    std::vector<TransportSocket> sockets() const;
    bool is_serving() const noexcept;
    /// Stops listening (the listening sockets are closed). Connections already accepted stay
    /// open: see close_clients()/abort_clients(). Idempotent.
    void close();
    /// close() on every connection accepted by this server.
    void close_clients();
    /// abort() on every connection accepted by this server.
    void abort_clients();
    /// Starts accepting (no-op when already serving).
    Coro<void> start_serving();
    /// Serves until cancelled; then closes the server and waits for it, and re-raises.
    /// RuntimeError if already serving forever or closed.
    Coro<void> serve_forever();
    /// Waits until the server is closed and all its connections are gone (Python 3.12.1+).
    Coro<void> wait_closed();

    explicit operator bool() const noexcept { return bool(state_); }

private:
    std::shared_ptr<detail::ServerState> state_;
};

// ---- EventLoop members (non-template parts in src/net/base_events.cpp) ------------------------
// The ConnectionAccess functions are called when the EventLoop member is called (not when its
// coroutine is awaited), so that the call takes its own reference to a TLS context at once.
namespace detail {
struct ConnectionAccess {
    static Coro<MadeConnection> create_connection(EventLoop& loop, ProtocolFactory factory, std::string host, int port,
                                                  ConnectionOptions opts);
    static Coro<MadeConnection> create_unix_connection(EventLoop& loop, ProtocolFactory factory, std::string path,
                                                       ConnectionOptions opts);
    static Coro<MadeConnection> connect_accepted_socket(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                                        ConnectionOptions opts);
    /// connect_read_pipe / connect_write_pipe (src/net/pipe_transport.cpp).
    static Coro<MadeConnection> connect_read_pipe(EventLoop& loop, ProtocolFactory factory, int fd);
    static Coro<MadeConnection> connect_write_pipe(EventLoop& loop, ProtocolFactory factory, int fd);
    /// create_connection / create_unix_connection with sock= (the latter requires AF_UNIX).
    static Coro<MadeConnection> connect_socket(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                               ConnectionOptions opts);
    static Coro<MadeConnection> connect_unix_socket(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                                    ConnectionOptions opts);
    /// create_server / create_unix_server with sock= (the latter requires AF_UNIX).
    static Coro<Server> serve_socket(EventLoop& loop, ProtocolFactory factory, Socket sock, ServerOptions opts);
    static Coro<Server> serve_unix_socket(EventLoop& loop, ProtocolFactory factory, Socket sock, ServerOptions opts);
    static Coro<Server> create_server(EventLoop& loop, ProtocolFactory factory, std::vector<std::string> hosts,
                                      int port, ServerOptions opts);
    static Coro<Server> create_unix_server(EventLoop& loop, ProtocolFactory factory, std::string path,
                                           ServerOptions opts);
    static Coro<MadeEndpoint> create_datagram_endpoint(EventLoop& loop, ProtocolFactory factory, DatagramOptions opts);
    /// create_datagram_endpoint with sock=.
    static Coro<MadeEndpoint> datagram_socket(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                              DatagramOptions opts);
};

/// The connection `made` will give, with the protocol as the factory's own type.
template <class F>
Coro<std::pair<std::shared_ptr<Transport>, factory_result_t<F>>> typed_connection(Coro<MadeConnection> made) {
    MadeConnection m = co_await std::move(made);
    co_return std::pair<std::shared_ptr<Transport>, factory_result_t<F>>(std::move(m.first), protocol_of<F>(m.second));
}
}  // namespace detail

template <class F>
Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> EventLoop::create_connection(
    F factory, std::string host, int port, ConnectionOptions opts) {
    return detail::typed_connection<F>(detail::ConnectionAccess::create_connection(
        *this, detail::erase_factory(std::move(factory)), std::move(host), port, opts));
}

template <class F>
Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> EventLoop::create_unix_connection(
    F factory, std::string path, ConnectionOptions opts) {
    return detail::typed_connection<F>(detail::ConnectionAccess::create_unix_connection(
        *this, detail::erase_factory(std::move(factory)), std::move(path), opts));
}

template <class F>
Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> EventLoop::create_connection(
    F factory, Socket sock, ConnectionOptions opts) {
    return detail::typed_connection<F>(detail::ConnectionAccess::connect_socket(
        *this, detail::erase_factory(std::move(factory)), std::move(sock), opts));
}

template <class F>
Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> EventLoop::create_unix_connection(
    F factory, Socket sock, ConnectionOptions opts) {
    return detail::typed_connection<F>(detail::ConnectionAccess::connect_unix_socket(
        *this, detail::erase_factory(std::move(factory)), std::move(sock), opts));
}

template <class F>
Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> EventLoop::connect_accepted_socket(
    F factory, Socket sock, ConnectionOptions opts) {
    return detail::typed_connection<F>(detail::ConnectionAccess::connect_accepted_socket(
        *this, detail::erase_factory(std::move(factory)), std::move(sock), opts));
}

template <class F>
Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> EventLoop::connect_read_pipe(F factory,
                                                                                                      int fd) {
    return detail::typed_connection<F>(
        detail::ConnectionAccess::connect_read_pipe(*this, detail::erase_factory(std::move(factory)), fd));
}

template <class F>
Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> EventLoop::connect_write_pipe(F factory,
                                                                                                       int fd) {
    return detail::typed_connection<F>(
        detail::ConnectionAccess::connect_write_pipe(*this, detail::erase_factory(std::move(factory)), fd));
}

template <class F>
Coro<Server> EventLoop::create_server(F factory, std::string host, int port, ServerOptions opts) {
    std::vector<std::string> hosts;
    hosts.push_back(std::move(host));
    return detail::ConnectionAccess::create_server(*this, detail::erase_factory(std::move(factory)), std::move(hosts),
                                                   port, opts);
}

template <class F>
Coro<Server> EventLoop::create_server(F factory, std::vector<std::string> hosts, int port, ServerOptions opts) {
    return detail::ConnectionAccess::create_server(*this, detail::erase_factory(std::move(factory)), std::move(hosts),
                                                   port, opts);
}

template <class F>
Coro<Server> EventLoop::create_server(F factory, Socket sock, ServerOptions opts) {
    return detail::ConnectionAccess::serve_socket(*this, detail::erase_factory(std::move(factory)), std::move(sock),
                                                  opts);
}

template <class F>
Coro<Server> EventLoop::create_unix_server(F factory, Socket sock, ServerOptions opts) {
    return detail::ConnectionAccess::serve_unix_socket(*this, detail::erase_factory(std::move(factory)),
                                                       std::move(sock), opts);
}

template <class F>
Coro<Server> EventLoop::create_unix_server(F factory, std::string path, ServerOptions opts) {
    return detail::ConnectionAccess::create_unix_server(*this, detail::erase_factory(std::move(factory)),
                                                        std::move(path), opts);
}

template <class F>
Coro<std::pair<std::shared_ptr<DatagramTransport>, detail::factory_result_t<F>>> EventLoop::create_datagram_endpoint(
    F factory, DatagramOptions opts) {
    auto made = co_await detail::ConnectionAccess::create_datagram_endpoint(
        *this, detail::erase_factory(std::move(factory)), opts);
    co_return std::pair<std::shared_ptr<DatagramTransport>, detail::factory_result_t<F>>(
        std::move(made.first), detail::protocol_of<F>(made.second));
}

template <class F>
Coro<std::pair<std::shared_ptr<DatagramTransport>, detail::factory_result_t<F>>> EventLoop::create_datagram_endpoint(
    F factory, Socket sock, DatagramOptions opts) {
    auto made = co_await detail::ConnectionAccess::datagram_socket(*this, detail::erase_factory(std::move(factory)),
                                                                   std::move(sock), opts);
    co_return std::pair<std::shared_ptr<DatagramTransport>, detail::factory_result_t<F>>(
        std::move(made.first), detail::protocol_of<F>(made.second));
}

}  // namespace asyncio
