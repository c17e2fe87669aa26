// src/net/base_events.cpp - create_connection / create_server / unix variants / Server (Python's
// base_events.BaseEventLoop.create_connection & co, and base_events.Server).
#include <asyncio/base_events.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/tasks.hpp>
#include <asyncio/timeouts.hpp>

#include "sock_argument.hpp"
#include "backend/faults.hpp"
#include "socket_transport.hpp"
#include "tls_seam.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <unordered_set>

#include <netdb.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

namespace asyncio {
namespace detail {

namespace {
/// Python's constants.ACCEPT_RETRY_DELAY.
constexpr double accept_retry_delay = 1.0;

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

/// An address as Python's %r shows it in its messages: ('127.0.0.1', 8080), ('::1', 8080, 0, 0),
/// or a Unix path in quotes.
std::string address_repr(const SockAddr& a) {
    if (a.family() == AF_INET) return "('" + a.host() + "', " + std::to_string(a.port()) + ")";
    if (a.family() == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.data());
        return "('" + a.host() + "', " + std::to_string(a.port()) + ", " + std::to_string(ntohl(in6->sin6_flowinfo)) +
               ", " + std::to_string(in6->sin6_scope_id) + ")";
    }
    return "'" + a.host() + "'";
}

/// Python's bind error: "error while attempting to bind on address ('127.0.0.1', 80): address
/// already in use" (with the errno of the failed bind).
std::system_error bind_error(const std::system_error& e, const SockAddr& address) {
    return std::system_error(e.code(), "error while attempting to bind on address " + address_repr(address) + ": " +
                                           lower(e.code().message()));
}

/// Python's _ensure_resolved: a numeric host needs no resolver (and no executor round-trip).
Coro<std::vector<AddrInfo>> resolve(EventLoop& loop, std::string host, int port, int family, int type, int proto,
                                    int flags) {
    if (!host.empty() && (family == AF_UNSPEC || family == AF_INET || family == AF_INET6)) {
        try {
            SockAddr numeric(host, port, family);
            co_return std::vector<AddrInfo>{AddrInfo{numeric.family(), type, proto, "", numeric}};
        } catch (const std::invalid_argument&) {
            // a name: resolve it
        }
    }
    // Named: GCC 12 destroys a conditional's std::string temporary in a co_await twice.
    std::string service = port ? std::to_string(port) : "0";
    auto infos = co_await loop.getaddrinfo(std::move(host), std::move(service), family, type, proto, flags);
    if (infos.empty())
        throw std::system_error(EADDRNOTAVAIL, std::generic_category(), "getaddrinfo() returned empty list");
    co_return infos;
}

/// Python's _interleave_addrinfos: alternate families, `first_count` of the first family first.
std::vector<AddrInfo> interleave(std::vector<AddrInfo> infos, int first_count) {
    std::vector<int> order;
    std::vector<std::vector<AddrInfo>> by_family;
    for (auto& ai : infos) {
        auto it = std::find(order.begin(), order.end(), ai.family);
        if (it == order.end()) {
            order.push_back(ai.family);
            by_family.emplace_back();
            it = order.end() - 1;
        }
        by_family[static_cast<std::size_t>(it - order.begin())].push_back(std::move(ai));
    }
    std::vector<AddrInfo> out;
    if (first_count > 1 && !by_family.empty()) {
        auto& f = by_family[0];
        std::size_t n = std::min(f.size(), static_cast<std::size_t>(first_count - 1));
        for (std::size_t i = 0; i < n; ++i) out.push_back(std::move(f[i]));
        f.erase(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(n));
    }
    for (std::size_t i = 0;; ++i) {
        bool any = false;
        for (auto& f : by_family) {
            if (i < f.size()) {
                out.push_back(std::move(f[i]));
                any = true;
            }
        }
        if (!any) break;
    }
    return out;
}

std::string error_text(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return describe_exception(e);
    }
}

/// Python's _connect_sock: one attempt; its errors go to `errors` too.
Coro<Socket> connect_sock(EventLoop& loop, std::vector<std::exception_ptr>& errors, AddrInfo info,
                          const std::vector<AddrInfo>* local) {
    Socket sock;
    try {
        sock = Socket(info.family, info.type ? info.type : SOCK_STREAM, info.protocol);
        if (local) {
            bool bound = false;
            std::exception_ptr last;
            for (const AddrInfo& l : *local) {
                if (l.family != info.family) continue;
                try {
                    sock.bind(l.address);
                    bound = true;
                    break;
                } catch (const std::system_error& e) {
                    last = std::make_exception_ptr(bind_error(e, l.address));
                    errors.push_back(last);
                }
            }
            if (!bound) {
                if (last) {
                    errors.pop_back();
                    std::rethrow_exception(last);
                }
                throw std::system_error(
                    EADDRNOTAVAIL, std::generic_category(),
                    "no matching local address with family=" + std::to_string(info.family) + " found");
            }
        }
        co_await loop.sock_connect(sock, info.address);
        co_return sock;
    } catch (const std::system_error&) {
        errors.push_back(std::current_exception());
        throw;
    }
}

/// Python's staggered.staggered_race over the addresses (Happy Eyeballs): an attempt starts
/// when the previous one failed or `delay` passed; the first to connect wins, the others are
/// cancelled (their sockets closed).
Coro<Socket> happy_eyeballs(EventLoop& loop, std::vector<std::exception_ptr>& errors, std::vector<AddrInfo> infos,
                            const std::vector<AddrInfo>* local, double delay) {
    std::vector<Task<Socket>> running;
    std::size_t next = 0;
    auto cancel_all = [&]() -> Coro<void> {
        for (auto& t : running) t.cancel();
        for (auto& t : running) {
            try {
                co_await t;
            } catch (...) {
            }
        }
    };
    try {
        for (;;) {
            if (running.empty()) {
                if (next == infos.size()) break;
                running.push_back(loop.create_task(connect_sock(loop, errors, infos[next++], local)));
            }
            WaitOptions opts;
            opts.return_when = FIRST_COMPLETED;
            if (next < infos.size()) opts.timeout = delay;
            auto [done, pending] = co_await wait(running, opts);
            if (done.empty()) {  // the delay passed: start the next attempt alongside
                running.push_back(loop.create_task(connect_sock(loop, errors, infos[next++], local)));
                continue;
            }
            for (auto& t : done) {
                if (!t.cancelled() && !t.exception()) {
                    Socket winner = co_await t;  // done: moves the socket out
                    running = std::move(pending);
                    co_await cancel_all();
                    co_return winner;
                }
            }
            running = std::move(pending);
            // A failure: the next attempt starts at once.
            if (next < infos.size())
                running.push_back(loop.create_task(connect_sock(loop, errors, infos[next++], local)));
        }
    } catch (...) {
        for (auto& t : running) t.cancel();
        throw;
    }
    co_return Socket();
}

[[noreturn]] void raise_connect_errors(std::vector<std::exception_ptr> errors, bool all_errors) {
    if (errors.empty()) throw std::system_error(ECONNREFUSED, std::generic_category(), "create_connection failed");
    if (all_errors) throw ExceptionGroup("create_connection failed", std::move(errors));
    if (errors.size() == 1) std::rethrow_exception(errors[0]);
    const std::string model = error_text(errors[0]);
    bool same = std::all_of(errors.begin(), errors.end(), [&](auto& e) { return error_text(e) == model; });
    if (same) std::rethrow_exception(errors[0]);
    std::string msg = "Multiple exceptions: ";
    for (std::size_t i = 0; i < errors.size(); ++i) msg += (i ? ", " : "") + error_text(errors[i]);
    int code = ECONNREFUSED;
    try {
        std::rethrow_exception(errors.back());
    } catch (const std::system_error& e) {
        code = e.code().value();
    } catch (...) {
    }
    throw std::system_error(code, std::generic_category(), msg);
}

/// Wraps a connected socket in a transport and waits until connection_made has run
/// (Python's _create_connection_transport). With TLS (opts.ssl), the transport returned is
/// the TLS one, once the handshake is done (src/tls/sslproto.cpp).
Coro<MadeConnection> make_transport(EventLoop& loop, Socket sock, ProtocolFactory& factory,
                                    const ConnectionOptions& opts, std::string_view server_hostname = {},
                                    bool server_side = false) {
    std::shared_ptr<BaseProtocol> protocol = factory();
    Future<void> waiter(loop);
    std::shared_ptr<Transport> transport;
    if (opts.ssl) {
        auto tls = make_ssl_transport(loop, sock, protocol, *opts.ssl, waiter, server_side, server_hostname,
                                      opts.ssl_handshake_timeout, opts.ssl_shutdown_timeout);
        tls.raw->start();
        transport = std::move(tls.app);
    } else {
        auto plain = std::make_shared<SocketTransport>(loop, std::move(sock), protocol);
        plain->start([waiter]() mutable {
            if (!waiter.done()) waiter.set_result();
        });
        transport = std::move(plain);
    }
    try {
        co_await waiter;
    } catch (...) {
        transport->close();
        throw;
    }
    co_return MadeConnection(std::move(transport), std::move(protocol));
}
}  // namespace

// ---- create_connection ---------------------------------------------------------------------
// Each entry point below is a plain function that takes its own reference to the TLS context
// (src/net/tls_seam.hpp) and returns the coroutine that does the work, which keeps it.
namespace {
Coro<MadeConnection> create_connection_coro(EventLoop& loop, ProtocolFactory factory, std::string host, int port,
                                            ConnectionOptions opts, HeldContext) {
    if (!opts.server_hostname.empty() && !opts.ssl)
        throw std::invalid_argument("server_hostname is only meaningful with ssl");
    if (opts.ssl && opts.server_hostname.empty() && host.empty())
        throw std::invalid_argument("You must set server_hostname when using ssl without a host");
    auto infos = co_await resolve(loop, host, port, opts.family, SOCK_STREAM, opts.proto, opts.flags);
    std::optional<std::vector<AddrInfo>> local;
    if (opts.local_port >= 0) {
        std::string local_host(opts.local_host);  // named: see resolve()
        local = co_await resolve(loop, std::move(local_host), opts.local_port, opts.family, SOCK_STREAM, opts.proto,
                                 opts.flags);
    }
    int inter = opts.interleave;
    if (inter == 0 && opts.happy_eyeballs_delay >= 0) inter = 1;
    if (inter > 0) infos = interleave(std::move(infos), inter);

    std::vector<std::exception_ptr> errors;
    Socket sock;
    if (opts.happy_eyeballs_delay < 0) {
        for (const AddrInfo& info : infos) {
            try {
                sock = co_await connect_sock(loop, errors, info, local ? &*local : nullptr);
                break;
            } catch (const std::system_error&) {
                continue;
            }
        }
    } else {
        sock = co_await happy_eyeballs(loop, errors, std::move(infos), local ? &*local : nullptr,
                                       opts.happy_eyeballs_delay);
    }
    if (!sock.is_open()) raise_connect_errors(std::move(errors), opts.all_errors);
    // TLS: the certificate is checked against (and SNI names) server_hostname, by default host.
    std::string_view server_hostname = opts.server_hostname.empty() ? std::string_view(host) : opts.server_hostname;
    co_return co_await make_transport(loop, std::move(sock), factory, opts, server_hostname);
}

Coro<MadeConnection> create_unix_connection_coro(EventLoop& loop, ProtocolFactory factory, std::string path,
                                                 ConnectionOptions opts, HeldContext) {
    if (opts.ssl && opts.server_hostname.empty())
        throw std::invalid_argument("you have to pass server_hostname when using ssl");
    if (!opts.server_hostname.empty() && !opts.ssl)
        throw std::invalid_argument("server_hostname is only meaningful with ssl");
    Socket sock(AF_UNIX, SOCK_STREAM);
    co_await loop.sock_connect(sock, SockAddr::unix_path(path));
    co_return co_await make_transport(loop, std::move(sock), factory, opts, opts.server_hostname);
}

Coro<MadeConnection> connect_accepted_socket_coro(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                                  ConnectionOptions opts, HeldContext) {
    check_sock_argument(sock, SockKind::stream, "connect_accepted_socket");
    sock.setblocking(false);
    // Python: an accepted socket is the server side of TLS.
    co_return co_await make_transport(loop, std::move(sock), factory, opts, {}, /*server_side=*/true);
}
}  // namespace

Coro<MadeConnection> ConnectionAccess::create_connection(EventLoop& loop, ProtocolFactory factory, std::string host,
                                                         int port, ConnectionOptions opts) {
    HeldContext held = hold_context(opts.ssl);
    return create_connection_coro(loop, std::move(factory), std::move(host), port, opts, std::move(held));
}

Coro<MadeConnection> ConnectionAccess::create_unix_connection(EventLoop& loop, ProtocolFactory factory,
                                                              std::string path, ConnectionOptions opts) {
    HeldContext held = hold_context(opts.ssl);
    return create_unix_connection_coro(loop, std::move(factory), std::move(path), opts, std::move(held));
}

Coro<MadeConnection> ConnectionAccess::connect_accepted_socket(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                                               ConnectionOptions opts) {
    HeldContext held = hold_context(opts.ssl);
    return connect_accepted_socket_coro(loop, std::move(factory), std::move(sock), opts, std::move(held));
}

namespace {
bool is_kind(const Socket& sock, SockKind kind) {
    switch (kind) {
        case SockKind::stream:
            return sock.type() == SOCK_STREAM;
        case SockKind::unix_stream:
            return sock.type() == SOCK_STREAM && sock.family() == AF_UNIX;
        case SockKind::datagram:
            return sock.type() != SOCK_STREAM;
    }
    return false;
}

const char* expected_socket(SockKind kind) {
    switch (kind) {
        case SockKind::stream:
            return "A Stream Socket";
        case SockKind::unix_stream:
            return "A UNIX Domain Stream Socket";
        case SockKind::datagram:
            return "A datagram socket";
    }
    return "A socket";
}

/// Python's socket repr, without the addresses.
std::string describe(const Socket& sock) {
    return "<socket fd=" + std::to_string(sock.fileno()) + ", family=" + std::to_string(sock.family()) +
           ", type=" + std::to_string(sock.type()) +
           ", proto=" + std::to_string(sock.getsockopt(SOL_SOCKET, SO_PROTOCOL)) + ">";
}

}  // namespace

void check_sock_argument(const Socket& sock, SockKind kind, const char* what) {
    if (!sock.is_open()) throw std::invalid_argument(std::string(what) + ": the socket is closed");
    if (!is_kind(sock, kind))
        throw std::invalid_argument(std::string(expected_socket(kind)) + " was expected, got " + describe(sock));
}

namespace {
/// `kind`: SockKind::stream (create_connection) or SockKind::unix_stream (the Unix form).
Coro<MadeConnection> connect_socket_coro(EventLoop& loop, ProtocolFactory factory, Socket sock, ConnectionOptions opts,
                                         SockKind kind, HeldContext) {
    check_sock_argument(sock, kind, kind == SockKind::unix_stream ? "create_unix_connection" : "create_connection");
    if (!opts.server_hostname.empty() && !opts.ssl)
        throw std::invalid_argument("server_hostname is only meaningful with ssl");
    if (opts.ssl && opts.server_hostname.empty())
        throw std::invalid_argument("You must set server_hostname when using ssl without a host");
    sock.setblocking(false);
    co_return co_await make_transport(loop, std::move(sock), factory, opts, opts.server_hostname);
}
}  // namespace

Coro<MadeConnection> ConnectionAccess::connect_socket(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                                      ConnectionOptions opts) {
    HeldContext held = hold_context(opts.ssl);
    return connect_socket_coro(loop, std::move(factory), std::move(sock), opts, SockKind::stream, std::move(held));
}

Coro<MadeConnection> ConnectionAccess::connect_unix_socket(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                                           ConnectionOptions opts) {
    HeldContext held = hold_context(opts.ssl);
    return connect_socket_coro(loop, std::move(factory), std::move(sock), opts, SockKind::unix_stream, std::move(held));
}

// ---- Server --------------------------------------------------------------------------------
struct ServerState final : LoopResource, std::enable_shared_from_this<ServerState> {
    struct Listener {
        Socket sock;
        IoOperation accept_op;
        TimerHandle retry;
        ServerState* server = nullptr;
        SockAddr peer;
    };
    EventLoop* loop = nullptr;
    ProtocolFactory factory;
    ServerOptions opts;
    std::vector<std::unique_ptr<Listener>> listeners;
    bool sockets_closed = false;  // Python's `_sockets is None`
    bool serving = false;
    int active_count = 0;
    std::unordered_set<SocketTransport*> clients;
    std::vector<Future<void>> waiters;
    std::vector<std::function<void()>> closed_callbacks;  // Server::call_when_closed
    bool waiters_done = false;                            // Python's `_waiters is None`
    std::optional<Future<void>> serving_forever;
    std::shared_ptr<ServerState> self;  // the loop's reference until closed and drained
    HeldContext ssl_context;            // opts.ssl points here: the caller's may be gone
    std::string unix_path;              // removed at close (Python 3.13's cleanup_socket)
    ino_t unix_inode = 0;

    void start_serving() {
        if (serving || sockets_closed) return;
        serving = true;
        for (auto& l : listeners) {
            l->sock.listen(opts.backlog);
            arm(*l);
        }
    }

    void arm(Listener& l) {
        if (!l.accept_op.in_flight && serving) IoAccess::backend(*loop).start(&l.accept_op);
    }

    static void on_accept(IoOperation* op) {
        auto* l = static_cast<Listener*>(op->user);
        ServerState* s = l->server;
        std::shared_ptr<ServerState> keep = s->self;
        if (!s->serving) return;
        ssize_t r = op->result;
        // Python accepts up to `backlog` connections per readiness report. Each pass hands
        // on what its last accept4() returned before it counts: a connection taken from the
        // kernel is always served (or closed), never dropped at the end of a pass.
        for (int taken = 0;;) {
            if (r >= 0) {
                l->peer.set_size(op->addrlen);
                s->accepted(static_cast<int>(r));
                if (!s->serving) return;  // a protocol callback closed the server
            } else if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) {
                s->loop->call_exception_handler({"socket.accept() out of system resource",
                                                 std::make_exception_ptr(std::system_error(
                                                     static_cast<int>(-r), std::generic_category(), "accept")),
                                                 {},
                                                 "<Server socket fd=" + std::to_string(l->sock.fileno()) + ">"});
                // Stop accepting for a while; the server keeps serving what it has.
                l->retry = s->loop->call_later(accept_retry_delay, [l, keep] {
                    if (keep->serving) keep->arm(*l);
                });
                return;
            } else if (r != -EAGAIN && r != -EWOULDBLOCK && r != -ECONNABORTED && r != -EINTR && r != -EPROTO) {
                s->loop->call_exception_handler({"Error accepting a connection",
                                                 std::make_exception_ptr(std::system_error(
                                                     static_cast<int>(-r), std::generic_category(), "accept")),
                                                 {},
                                                 {}});
            }
            if (r == -EAGAIN || r == -EWOULDBLOCK) break;
            if (++taken >= s->opts.backlog) break;
            socklen_t len = SockAddr::capacity();
            r = detail::sys::accept4(l->sock.fileno(), l->peer.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (r < 0) r = -errno;
            op->addrlen = len;
        }
        s->arm(*l);
    }

    /// Python's _accept_connection2.
    void accepted(int fd) {
        Socket conn = Socket::adopt(fd);
        if (opts.keep_alive) conn.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1);
        if (opts.ssl) {
            accepted_tls(conn);
            return;
        }
        std::shared_ptr<SocketTransport> transport;
        bool attached = false;
        try {
            std::shared_ptr<BaseProtocol> protocol = factory();
            transport = std::make_shared<SocketTransport>(*loop, std::move(conn), std::move(protocol));
            attach(transport.get());
            attached = true;
            transport->set_server(shared_from_this());
            transport->start();
        } catch (const KeyboardInterrupt&) {
            throw;
        } catch (...) {
            // A transport that could not start (std::bad_alloc) leaves the server's count, and
            // its destructor closes the connection.
            if (attached) {
                transport->set_server(nullptr);
                detach(transport.get());
            }
            if (loop->get_debug() || !is_connection_error(std::current_exception()))
                loop->call_exception_handler(
                    {"Error on transport creation for incoming connection", std::current_exception(), {}, {}});
        }
    }

    /// Python's _accept_connection2 with sslcontext: the raw transport is attached to the
    /// server at once; the app protocol's connection_made comes after the handshake. A failed
    /// handshake closes the connection and is reported in debug mode only, as in Python.
    void accepted_tls(Socket& conn) {
        try {
            Future<void> waiter(*loop);
            auto tls = make_ssl_transport(*loop, conn, factory(), *opts.ssl, waiter, /*server_side=*/true, {},
                                          opts.ssl_handshake_timeout, opts.ssl_shutdown_timeout);
            attach(tls.raw.get());
            tls.raw->set_server(shared_from_this());
            tls.raw->start();
            std::weak_ptr<Transport> app = tls.app;
            EventLoop* l = loop;
            waiter.add_done_callback([app, l](const Future<void>& f) {
                Future<void> done = f;
                if (done.cancelled()) return;
                std::exception_ptr exc = done.exception();
                if (!exc) return;
                if (auto t = app.lock()) t->close();
                if (l->get_debug())
                    l->call_exception_handler({"Error on transport creation for incoming connection", exc, {}, {}});
            });
        } catch (const KeyboardInterrupt&) {
            throw;
        } catch (...) {
            if (loop->get_debug() || !is_connection_error(std::current_exception()))
                loop->call_exception_handler(
                    {"Error on transport creation for incoming connection", std::current_exception(), {}, {}});
        }
    }

    void attach(SocketTransport* t) {
        clients.insert(t);  // may throw: counted only once listed
        ++active_count;
    }
    void detach(SocketTransport* t) {
        --active_count;
        clients.erase(t);
        if (active_count == 0 && sockets_closed) wakeup();
    }

    void wakeup() {
        if (waiters_done) return;
        waiters_done = true;
        auto ws = std::move(waiters);
        for (auto& w : ws)
            if (!w.done()) w.set_result();
        auto callbacks = std::move(closed_callbacks);
        for (auto& fn : callbacks) fn();
        // Closed and drained: the loop lets go of the server.
        IoAccess::impl(*loop).unlink(this);
        std::shared_ptr<ServerState> keep = std::move(self);
    }

    void close_listeners() noexcept {
        for (auto& l : listeners) {
            if (l->accept_op.in_flight) IoAccess::backend(*loop).cancel(&l->accept_op);
            l->retry.cancel();
            if (l->sock.is_open()) {
                IoAccess::backend(*loop).forget(l->sock.fileno());
                l->sock.close();
            }
        }
        if (!unix_path.empty()) {
            // Remove the socket file unless something else replaced it meanwhile.
            struct stat st {};
            if (::stat(unix_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == unix_inode)
                ::unlink(unix_path.c_str());
            unix_path.clear();
        }
    }

    void close() {
        if (sockets_closed) return;
        sockets_closed = true;
        close_listeners();
        serving = false;
        if (serving_forever && !serving_forever->done()) serving_forever->cancel();
        serving_forever.reset();
        if (active_count == 0) wakeup();
    }

    void loop_closing() noexcept override {
        std::shared_ptr<ServerState> keep = std::move(self);
        sockets_closed = true;
        serving = false;
        close_listeners();
        clients.clear();
        waiters.clear();
        closed_callbacks.clear();
        waiters_done = true;
        serving_forever.reset();
    }

    void add_listener(Socket sock) {
        auto l = std::make_unique<Listener>();
        l->sock = std::move(sock);
        l->server = this;
        l->accept_op.kind = IoOperation::Kind::accept;
        l->accept_op.reg = IoAccess::backend(*loop).registration(l->sock.fileno());
        l->accept_op.user = l.get();
        l->accept_op.addr = l->peer.data();
        l->accept_op.addrlen = SockAddr::capacity();
        l->accept_op.complete = on_accept;
        listeners.push_back(std::move(l));
    }

    ~ServerState() {
        if (!sockets_closed && loop && !loop->is_closed()) close_listeners();
    }
};

void server_attach(ServerState& server, SocketTransport* transport) { server.attach(transport); }
void server_detach(ServerState& server, SocketTransport* transport) { server.detach(transport); }

namespace {
/// The socket file a Unix server removes when it closes, if it is still that file then
/// (Python 3.13's cleanup_socket). Abstract and unnamed sockets have no file.
void remember_unix_path(ServerState& s, const std::string& path) {
    if (!s.opts.cleanup_socket) return;
    if (path.empty() || path[0] == '\0') return;
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        s.unix_path = path;
        s.unix_inode = st.st_ino;
    }
}

std::shared_ptr<ServerState> new_server(EventLoop& loop, ProtocolFactory factory, ServerOptions opts,
                                        HeldContext held) {
    auto s = std::make_shared<ServerState>();
    s->loop = &loop;
    s->factory = std::move(factory);
    s->opts = opts;
    s->ssl_context = std::move(held);
    s->self = s;
    IoAccess::impl(loop).link(s.get());
    return s;
}

Coro<Server> finish_server(std::shared_ptr<ServerState> s) {
    if (s->opts.start_serving) {
        s->start_serving();
        co_await sleep(0);  // Python: let the accept handlers get registered
    }
    co_return Server(std::move(s));
}

Coro<Server> create_server_coro(EventLoop& loop, ProtocolFactory factory, std::vector<std::string> hosts, int port,
                                ServerOptions opts, HeldContext held) {
    if (opts.backlog <= 0) opts.backlog = 100;
    std::vector<AddrInfo> infos;
    for (const std::string& host : hosts) {
        if (host.empty()) {
            // Every interface: getaddrinfo(NULL, port, AI_PASSIVE) does no lookup, so it is
            // safe to call here.
            addrinfo hints{};
            hints.ai_family = opts.family;
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_flags = AI_PASSIVE | opts.flags;
            addrinfo* res = nullptr;
            std::string service = std::to_string(port);
            int rc = ::getaddrinfo(nullptr, service.c_str(), &hints, &res);
            if (rc != 0) throw std::system_error(rc, gai_category(), "getaddrinfo");
            for (addrinfo* ai = res; ai; ai = ai->ai_next)
                infos.push_back(AddrInfo{ai->ai_family, ai->ai_socktype, ai->ai_protocol, "",
                                         SockAddr(ai->ai_addr, ai->ai_addrlen)});
            ::freeaddrinfo(res);
        } else {
            auto more = co_await resolve(loop, host, port, opts.family, SOCK_STREAM, 0, AI_PASSIVE | opts.flags);
            infos.insert(infos.end(), more.begin(), more.end());
        }
    }
    auto s = new_server(loop, std::move(factory), opts, std::move(held));
    try {
        std::vector<SockAddr> seen;
        for (const AddrInfo& info : infos) {
            if (std::find(seen.begin(), seen.end(), info.address) != seen.end()) continue;  // Python dedups
            seen.push_back(info.address);
            Socket sock(info.family, SOCK_STREAM, info.protocol);
            if (opts.reuse_address) sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
            if (opts.reuse_port) sock.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1);
            // Python disables IPv4-mapped addresses so "::" and "0.0.0.0" can both be bound.
            if (info.family == AF_INET6) sock.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1);
            try {
                sock.bind(info.address);
            } catch (const std::system_error& e) {
                throw bind_error(e, info.address);
            }
            s->add_listener(std::move(sock));
        }
        if (s->listeners.empty())
            throw std::system_error(EADDRNOTAVAIL, std::generic_category(), "create_server: no address to listen on");
    } catch (...) {
        s->close();
        throw;
    }
    co_return co_await finish_server(std::move(s));
}

Coro<Server> create_unix_server_coro(EventLoop& loop, ProtocolFactory factory, std::string path, ServerOptions opts,
                                     HeldContext held) {
    if (opts.backlog <= 0) opts.backlog = 100;
    // Python removes a stale socket file left by a previous server.
    if (!path.empty() && path[0] != '\0') {
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
    }
    auto s = new_server(loop, std::move(factory), opts, std::move(held));
    try {
        Socket sock(AF_UNIX, SOCK_STREAM);
        sock.bind(SockAddr::unix_path(path));
        remember_unix_path(*s, path);
        s->add_listener(std::move(sock));
    } catch (...) {
        s->close();
        throw;
    }
    co_return co_await finish_server(std::move(s));
}

/// `kind`: SockKind::stream (create_server) or SockKind::unix_stream (the Unix form).
Coro<Server> serve_socket_coro(EventLoop& loop, ProtocolFactory factory, Socket sock, ServerOptions opts, SockKind kind,
                               HeldContext held) {
    check_sock_argument(sock, kind, kind == SockKind::unix_stream ? "create_unix_server" : "create_server");
    if (opts.backlog <= 0) opts.backlog = 100;
    sock.setblocking(false);
    auto s = new_server(loop, std::move(factory), opts, std::move(held));
    try {
        if (sock.family() == AF_UNIX) remember_unix_path(*s, sock.getsockname().host());
        s->add_listener(std::move(sock));
    } catch (...) {
        s->close();
        throw;
    }
    co_return co_await finish_server(std::move(s));
}
}  // namespace

Coro<Server> ConnectionAccess::create_server(EventLoop& loop, ProtocolFactory factory, std::vector<std::string> hosts,
                                             int port, ServerOptions opts) {
    HeldContext held = hold_context(opts.ssl);
    return create_server_coro(loop, std::move(factory), std::move(hosts), port, opts, std::move(held));
}

Coro<Server> ConnectionAccess::create_unix_server(EventLoop& loop, ProtocolFactory factory, std::string path,
                                                  ServerOptions opts) {
    HeldContext held = hold_context(opts.ssl);
    return create_unix_server_coro(loop, std::move(factory), std::move(path), opts, std::move(held));
}

Coro<Server> ConnectionAccess::serve_socket(EventLoop& loop, ProtocolFactory factory, Socket sock, ServerOptions opts) {
    HeldContext held = hold_context(opts.ssl);
    return serve_socket_coro(loop, std::move(factory), std::move(sock), opts, SockKind::stream, std::move(held));
}

Coro<Server> ConnectionAccess::serve_unix_socket(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                                 ServerOptions opts) {
    HeldContext held = hold_context(opts.ssl);
    return serve_socket_coro(loop, std::move(factory), std::move(sock), opts, SockKind::unix_stream, std::move(held));
}

}  // namespace detail

// ---- Server handle -------------------------------------------------------------------------
namespace {
detail::ServerState& state_of(const std::shared_ptr<detail::ServerState>& s) {
    if (!s) throw InvalidStateError("empty Server handle");
    return *s;
}
}  // namespace

EventLoop& Server::get_loop() const { return *state_of(state_).loop; }

std::vector<TransportSocket> Server::sockets() const {
    std::vector<TransportSocket> out;
    auto& s = state_of(state_);
    if (s.sockets_closed) return out;
    for (auto& l : s.listeners) out.emplace_back(l->sock.fileno());
    return out;
}

bool Server::is_serving() const noexcept { return state_ && state_->serving; }

void Server::close() { state_of(state_).close(); }

void Server::close_clients() {
    auto& s = state_of(state_);
    std::vector<std::shared_ptr<detail::SocketTransport>> cs;
    for (auto* t : s.clients) cs.push_back(t->shared_from_this());
    for (auto& t : cs) t->close();
}

void Server::abort_clients() {
    auto& s = state_of(state_);
    std::vector<std::shared_ptr<detail::SocketTransport>> cs;
    for (auto* t : s.clients) cs.push_back(t->shared_from_this());
    for (auto& t : cs) t->abort();
}

Coro<void> Server::start_serving() {
    auto keep = state_;
    state_of(keep).loop->is_closed() ? throw RuntimeError("Event loop is closed") : void();
    keep->start_serving();
    co_await sleep(0);
}

Coro<void> Server::serve_forever() {
    auto keep = state_;
    auto& s = state_of(keep);
    if (s.serving_forever) throw RuntimeError("server is already being awaited on serve_forever()");
    if (s.sockets_closed) throw RuntimeError("server is closed");
    s.start_serving();
    s.serving_forever.emplace(*s.loop);
    Future<void> fut = *s.serving_forever;
    std::exception_ptr cancelled;
    try {
        co_await fut;
    } catch (const CancelledError&) {
        cancelled = std::current_exception();
    }
    s.serving_forever.reset();
    if (cancelled) {
        // Python: close the server, wait until its connections are gone, then re-raise.
        s.close();
        co_await Server(keep).wait_closed();
        std::rethrow_exception(cancelled);
    }
}

void Server::call_when_closed(std::function<void()> callback) {
    auto& s = state_of(state_);
    if (s.waiters_done) {
        callback();
        return;
    }
    s.closed_callbacks.push_back(std::move(callback));
}

Coro<void> Server::wait_closed() {
    auto keep = state_;
    auto& s = state_of(keep);
    if (s.waiters_done) co_return;
    Future<void> w(*s.loop);
    s.waiters.push_back(w);
    co_await w;
}

}  // namespace asyncio
