// asyncio/detail/connections.hpp - what the loop's connection templates (base_events.hpp)
// need: the type-erased protocol factory and the non-template door into src/net.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/protocols.hpp>
#include <asyncio/sockets.hpp>
#include <asyncio/transports.hpp>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace asyncio {

class Server;  // base_events.hpp

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

// The ConnectionAccess functions are called when the EventLoop member is called (not when its
// coroutine is awaited), so that the call takes its own reference to a TLS context at once.
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
/// A child process as started: its transport and the protocol the factory returned.
using MadeSubprocess = std::pair<std::shared_ptr<SubprocessTransport>, std::shared_ptr<BaseProtocol>>;

/// The loop's subprocess methods (src/net/subprocess_transport.cpp). Called when the member is
/// called: the options' views (cwd, env, pass_fds) are copied before anything is awaited.
struct SubprocessAccess {
    static Coro<MadeSubprocess> subprocess_exec(EventLoop& loop, ProtocolFactory factory, std::vector<std::string> argv,
                                                const SubprocessOptions& opts);
    static Coro<MadeSubprocess> subprocess_shell(EventLoop& loop, ProtocolFactory factory, std::string cmd,
                                                 const SubprocessOptions& opts);
    /// Python's transport._wait(): the return code, once the child exited and its pipes closed.
    static Coro<int> wait(SubprocessTransport& transport);
};

/// Python's defaults of loop.subprocess_exec: stdin, stdout and stderr are pipes.
inline SubprocessOptions three_pipes() noexcept {
    SubprocessOptions o;
    o.stdin_ = PIPE;
    o.stdout_ = PIPE;
    o.stderr_ = PIPE;
    return o;
}

template <class F>
Coro<std::pair<std::shared_ptr<SubprocessTransport>, factory_result_t<F>>> typed_subprocess(Coro<MadeSubprocess> made) {
    MadeSubprocess m = co_await std::move(made);
    co_return std::pair<std::shared_ptr<SubprocessTransport>, factory_result_t<F>>(std::move(m.first),
                                                                                   protocol_of<F>(m.second));
}
}  // namespace detail

}  // namespace asyncio
