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
#include <asyncio/detail/connections.hpp>
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
    /// What wait_closed() waits for, as a callback: `callback` runs at the moment the server is
    /// closed with no connection left (at once if it is already; never if the loop closes
    /// first). For bridges that wake their own kind of waiter, as the Python face's futures.
    void call_when_closed(std::function<void()> callback);

    explicit operator bool() const noexcept { return bool(state_); }

private:
    std::shared_ptr<detail::ServerState> state_;
};

// ---- EventLoop members (non-template parts in src/net/base_events.cpp) ------------------------

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
