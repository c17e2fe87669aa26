// src/net/datagram_transport.cpp - DatagramTransport over a UDP (or Unix datagram) socket and
// loop.create_datagram_endpoint (Python's _SelectorDatagramTransport and
// BaseEventLoop.create_datagram_endpoint). Reading is a standing `recvfrom` operation into
// the backend's shared buffer; sendto() sends at once and queues only what would block.
#include <asyncio/base_events.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/futures.hpp>

#include "flow_control.hpp"
#include "backend/faults.hpp"
#include "fd_transport.hpp"
#include "sock_argument.hpp"

#include <cerrno>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <system_error>

#include <sys/stat.h>

namespace asyncio::detail {

namespace {
constexpr int log_threshold_for_connlost_writes = 5;
constexpr std::size_t datagram_header_size = 8;  // Python's _header_size (buffer accounting)

/// Python's extra['peername']: the address the socket is connected to, if it is.
std::optional<SockAddr> peername_of(const Socket& sock) {
    try {
        return sock.getpeername();
    } catch (const std::system_error&) {
        return std::nullopt;
    }
}

class SocketDatagramTransport final : public DatagramTransport,
                                      public FdTransport,
                                      public std::enable_shared_from_this<SocketDatagramTransport> {
public:
    /// `address`: the default destination (Python's remote_addr), or none. `connected`: the
    /// socket is connect()ed - to `address`, or (a caller's socket) to whatever it was
    /// connected to before. With allow_broadcast, `address` is given but not connected: it
    /// only names where sendto() without an address goes, and datagrams from anyone arrive.
    SocketDatagramTransport(EventLoop& loop, Socket sock, std::shared_ptr<BaseProtocol> protocol,
                            std::optional<SockAddr> address, bool connected)
        : FdTransport(loop, std::move(sock)), peer_(std::move(address)), connected_(connected) {
        set_protocol(std::move(protocol));
        // Python's transport keeps its extra info for life: cache it while the socket is open.
        if (connected_) peername_ = peer_ ? peer_ : peername_of(sock_);
        read_op_.kind = IoOperation::Kind::recvfrom;
        read_op_.user = this;
        read_op_.addr = from_.data();
        read_op_.complete = [](IoOperation* op) {
            auto* self = static_cast<SocketDatagramTransport*>(op->user);
            auto keep = self->self_;
            self->read_ready(op);
        };
        write_op_.kind = IoOperation::Kind::poll_writable;
        write_op_.user = this;
        write_op_.complete = [](IoOperation* op) {
            auto* self = static_cast<SocketDatagramTransport*>(op->user);
            auto keep = self->self_;
            self->sendto_ready();
        };
        link();
    }
    ~SocketDatagramTransport() override { release_fd(); }

    void start(std::function<void()> on_made) {
        std::shared_ptr<SocketDatagramTransport> self = shared_from_this();
        prepare_connection_lost();
        // All or nothing, as SocketTransport::start(): a std::bad_alloc leaves no callback
        // queued and no self-reference.
        Handle made = loop_->call_soon([self] {
            if (!self->datagram_protocol_) return;
            self->started_ = true;
            self->datagram_protocol_->connection_made(self);
        });
        Handle reading;
        try {
            reading = loop_->call_soon([self] {
                if (!self->closing_) self->arm_datagram_reading();
            });
            if (on_made) loop_->call_soon(std::move(on_made));
        } catch (...) {
            made.cancel();
            reading.cancel();
            throw;
        }
        self_ = std::move(self);
    }

    // BaseTransport
    void close() override {
        if (closing_) return;
        closing_ = true;
        stop_reading();
        if (buffer_.empty()) {
            ++conn_lost_;
            schedule_connection_lost(nullptr);
        }
    }
    bool is_closing() const noexcept override { return closing_; }
    std::any get_extra_info(std::string_view name) const override { return extra_info(name); }
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
        auto* p = dynamic_cast<DatagramProtocol*>(protocol.get());
        if (!p) throw std::invalid_argument("a datagram transport needs a DatagramProtocol");
        protocol_ = std::move(protocol);
        datagram_protocol_ = p;
    }
    std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

    // DatagramTransport
    void sendto(std::string_view data, const std::optional<SockAddr>& addr) override {
        std::optional<SockAddr> to = addr;
        if (peer_) {
            if (to && !(*to == *peer_))
                throw std::invalid_argument("Invalid address: must be None or " + peer_->to_string());
            to = peer_;
        } else if (!to && !connected_) {
            throw std::invalid_argument("sendto() needs an address on an unconnected datagram transport");
        }
        // Python drops what a connected transport is asked to send once it is closing; once
        // the socket is gone (connection_lost delivered) there is nothing to send with, for
        // any transport (Python fails on its None socket there).
        if ((conn_lost_ && peer_) || released_) {
            if (conn_lost_ >= log_threshold_for_connlost_writes) log_message("socket.send() raised exception.");
            ++conn_lost_;
            return;
        }
        // A connected socket ignores the address (Python calls send() then).
        const SockAddr dest = to.value_or(SockAddr());
        if (buffer_.empty()) {
            // Try to send it right away first.
            ssize_t r = send_one(data, dest);
            if (r >= 0) return;
            if (r != -EAGAIN && r != -EWOULDBLOCK) {
                error_received(static_cast<int>(-r));
                return;
            }
            if (!write_op_.in_flight && !released_) backend_->start(&write_op_);
        }
        buffer_.push_back({std::string(data), dest});
        buffer_size_ += data.size() + datagram_header_size;
        flow_.maybe_pause(*loop_, datagram_protocol_, buffer_size_);
    }
    void abort() override { force_close(nullptr); }
    void set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) override {
        flow_.set_limits(high, low);
        flow_.maybe_pause(*loop_, datagram_protocol_, buffer_size_);
    }
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept override { return flow_.limits(); }
    std::size_t get_write_buffer_size() const noexcept override { return buffer_size_; }

private:
    struct Pending {
        std::string data;
        SockAddr to;
    };

    ssize_t send_one(std::string_view data, const SockAddr& to) noexcept {
        ssize_t r;
        do {
            r = connected_
                    ? detail::sys::sendto(sock_.fileno(), data.data(), data.size(), MSG_NOSIGNAL, nullptr, 0)
                    : detail::sys::sendto(sock_.fileno(), data.data(), data.size(), MSG_NOSIGNAL, to.data(), to.size());
        } while (r < 0 && errno == EINTR);
        return r < 0 ? -errno : r;
    }

    void arm_datagram_reading() {
        if (read_op_.in_flight || released_) return;  // the kernel may be using addrlen
        read_op_.addrlen = SockAddr::capacity();      // recvfrom's address buffer, per datagram
        arm_reading();
    }

    /// Unlike a stream transport's, a datagram protocol's exceptions are not fatal: in
    /// Python they escape _read_ready/_sendto_ready into the loop, which logs "Exception in
    /// callback" and goes on; the endpoint stays open and keeps reading.
    void read_ready(IoOperation* op) {
        if (conn_lost_) return;
        try {
            if (op->result < 0) {
                error_received(static_cast<int>(-op->result));
            } else {
                from_.set_size(op->addrlen);
                datagram_protocol_->datagram_received(std::string_view(op->data, static_cast<std::size_t>(op->result)),
                                                      from_);
            }
        } catch (const KeyboardInterrupt&) {
            throw;
        } catch (...) {
            report_callback_error(op->result < 0 ? "error_received" : "datagram_received");
        }
        if (!closing_) arm_datagram_reading();
    }

    void report_callback_error(const char* callback) {
        loop_->call_exception_handler({std::string("Exception in callback DatagramProtocol.") + callback + "()",
                                       std::current_exception(),
                                       {},
                                       "<DatagramTransport>"});
    }

    /// An OSError of a send or receive goes to the protocol (may throw: see read_ready).
    void error_received(int err) {
        datagram_protocol_->error_received(
            std::make_exception_ptr(std::system_error(err, std::generic_category(), "datagram")));
    }

    void sendto_ready() {
        while (!buffer_.empty()) {
            Pending& p = buffer_.front();
            ssize_t r = send_one(p.data, p.to);
            if (r == -EAGAIN || r == -EWOULDBLOCK) {
                // The rest when writable again; a partial drain may still have reached the
                // low-water mark (Python breaks out to _maybe_resume_protocol here).
                if (!released_) backend_->start(&write_op_);
                break;
            }
            buffer_size_ -= p.data.size() + datagram_header_size;
            buffer_.pop_front();
            if (r < 0) {
                // That datagram is dropped; the rest are sent when the socket is writable
                // again (Python stays registered as a writer after error_received).
                if (!released_) backend_->start(&write_op_);
                try {
                    error_received(static_cast<int>(-r));
                } catch (const KeyboardInterrupt&) {
                    throw;
                } catch (...) {
                    report_callback_error("error_received");
                }
                return;
            }
        }
        flow_.maybe_resume(*loop_, datagram_protocol_, buffer_size_);
        if (buffer_.empty() && closing_) call_connection_lost(nullptr);
    }

    // FdTransport
    void drop_unsent() override {
        buffer_.clear();
        buffer_size_ = 0;
    }
    void forget_protocol() noexcept override { datagram_protocol_ = nullptr; }

    std::optional<SockAddr> peer_;                   // the default destination (remote_addr)
    bool connected_ = false;                         // connect()ed to peer_
    DatagramProtocol* datagram_protocol_ = nullptr;  // protocol_ as what it is
    SockAddr from_;
    std::deque<Pending> buffer_;
    std::size_t buffer_size_ = 0;
    WriteFlowControl flow_;
};

Coro<std::vector<AddrInfo>> resolve_dgram(EventLoop& loop, std::string_view host, int port, int family, int proto,
                                          int flags) {
    std::string h(host);
    try {
        SockAddr numeric(h, port, family);
        co_return std::vector<AddrInfo>{AddrInfo{numeric.family(), SOCK_DGRAM, proto, "", numeric}};
    } catch (const std::invalid_argument&) {
    }
    std::string service = std::to_string(port);  // named: GCC 12 (docs/compilers.md)
    auto infos = co_await loop.getaddrinfo(h, std::move(service), family, SOCK_DGRAM, proto, flags);
    if (infos.empty())
        throw std::system_error(EADDRNOTAVAIL, std::generic_category(), "getaddrinfo() returned empty list");
    co_return infos;
}

/// The protocol and its transport over a ready socket (Python's tail of
/// create_datagram_endpoint: the factory is only called once the socket is).
Coro<MadeEndpoint> make_endpoint(EventLoop& loop, ProtocolFactory& factory, Socket sock, std::optional<SockAddr> peer,
                                 bool connected) {
    std::shared_ptr<BaseProtocol> protocol = factory();
    auto transport =
        std::make_shared<SocketDatagramTransport>(loop, std::move(sock), protocol, std::move(peer), connected);
    co_return co_await start_and_wait<MadeEndpoint>(loop, std::move(transport), std::move(protocol));
}

/// One attempt of Python's loop over the address pairs: a socket of `family` with the options
/// asked for, bound to `local` and connected to `remote` - unless allow_broadcast, which
/// leaves it unconnected (`remote` is then only the default destination of sendto()).
Coro<Socket> open_datagram_socket(EventLoop& loop, int family, DatagramOptions opts, std::optional<SockAddr> local,
                                  std::optional<SockAddr> remote) {
    Socket sock(family, SOCK_DGRAM, opts.proto);
    if (opts.reuse_port) sock.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1);
    if (opts.allow_broadcast) sock.setsockopt(SOL_SOCKET, SO_BROADCAST, 1);
    if (local) sock.bind(*local);
    if (remote && !opts.allow_broadcast) co_await loop.sock_connect(sock, *remote);
    co_return sock;
}

/// Python removes a stale socket file at a Unix endpoint's local path before binding (an
/// abstract name has no file). Other failures are only logged: the bind reports what matters.
void remove_stale_unix_socket(const std::string& path) {
    if (path.empty() || path[0] == '\0') return;
    struct stat st {};
    int err = 0;
    if (::stat(path.c_str(), &st) != 0) {
        err = errno == ENOENT ? 0 : errno;
    } else if (S_ISSOCK(st.st_mode) && ::unlink(path.c_str()) != 0) {
        err = errno;
    }
    if (err)
        log_message("Unable to check or remove stale UNIX socket " + path + ": " + std::strerror(err), LogLevel::error);
}

/// family=AF_UNIX: the addresses are paths (Python's str addresses), one socket to try.
Coro<MadeEndpoint> unix_datagram_endpoint(EventLoop& loop, ProtocolFactory factory, DatagramOptions opts) {
    if (opts.local_port >= 0 || opts.remote_port >= 0)
        throw std::invalid_argument("string is expected (AF_UNIX addresses are paths, without a port)");
    std::optional<SockAddr> local, remote;
    if (!opts.local_host.empty()) {
        std::string path(opts.local_host);
        remove_stale_unix_socket(path);
        local = SockAddr::unix_path(path);
    }
    if (!opts.remote_host.empty()) remote = SockAddr::unix_path(opts.remote_host);
    Socket sock = co_await open_datagram_socket(loop, AF_UNIX, opts, local, remote);
    co_return co_await make_endpoint(loop, factory, std::move(sock), remote, remote && !opts.allow_broadcast);
}

/// Python's repr of an address argument: ('host', port), or 'path'.
std::string address_repr(std::string_view host, int port) {
    std::string quoted = "'" + std::string(host) + "'";
    return port >= 0 ? "(" + quoted + ", " + std::to_string(port) + ")" : quoted;
}

/// Python's ValueError for sock= with options that would set a socket up, naming them.
void check_no_socket_modifiers(const DatagramOptions& opts) {
    std::string problems;
    auto add = [&problems](const std::string& item) { problems += (problems.empty() ? "" : ", ") + item; };
    if (opts.local_port >= 0 || !opts.local_host.empty())
        add("local_addr=" + address_repr(opts.local_host, opts.local_port));
    if (opts.remote_port >= 0 || !opts.remote_host.empty())
        add("remote_addr=" + address_repr(opts.remote_host, opts.remote_port));
    if (opts.family) add("family=" + std::to_string(opts.family));
    if (opts.proto) add("proto=" + std::to_string(opts.proto));
    if (opts.flags) add("flags=" + std::to_string(opts.flags));
    if (opts.reuse_port) add("reuse_port=True");
    if (opts.allow_broadcast) add("allow_broadcast=True");
    if (!problems.empty())
        throw std::invalid_argument("socket modifier keyword arguments can not be used when sock is specified. (" +
                                    problems + ")");
}
}  // namespace

Coro<MadeEndpoint> ConnectionAccess::create_datagram_endpoint(EventLoop& loop, ProtocolFactory factory,
                                                              DatagramOptions opts) {
    const bool has_local = opts.local_port >= 0;
    const bool has_remote = opts.remote_port >= 0;
    if (opts.family == AF_UNIX) co_return co_await unix_datagram_endpoint(loop, std::move(factory), opts);
    std::vector<AddrInfo> locals, remotes;
    if (has_local)
        locals = co_await resolve_dgram(loop, opts.local_host, opts.local_port, opts.family, opts.proto, opts.flags);
    if (has_remote)
        remotes = co_await resolve_dgram(loop, opts.remote_host, opts.remote_port, opts.family, opts.proto, opts.flags);
    if (!has_local && !has_remote && opts.family == 0)
        throw std::invalid_argument("unexpected address family (give local or remote address, or family)");

    // Python: try each (local, remote) pair of one family until one works.
    std::vector<int> families;
    for (auto* v : {&locals, &remotes})
        for (auto& ai : *v)
            if (std::find(families.begin(), families.end(), ai.family) == families.end()) families.push_back(ai.family);
    if (families.empty()) families.push_back(opts.family);

    std::exception_ptr first;
    for (int fam : families) {
        std::optional<SockAddr> local, remote;
        for (auto& ai : locals)
            if (ai.family == fam) {
                local = ai.address;
                break;
            }
        for (auto& ai : remotes)
            if (ai.family == fam) {
                remote = ai.address;
                break;
            }
        if ((has_local && !local) || (has_remote && !remote)) continue;
        Socket sock;
        try {
            sock = co_await open_datagram_socket(loop, fam, opts, local, remote);
        } catch (const std::system_error&) {
            if (!first) first = std::current_exception();  // Python raises exceptions[0]
            continue;
        }
        co_return co_await make_endpoint(loop, factory, std::move(sock), remote, remote && !opts.allow_broadcast);
    }
    if (first) std::rethrow_exception(first);
    throw std::invalid_argument("can not get address information");
}

Coro<MadeEndpoint> ConnectionAccess::datagram_socket(EventLoop& loop, ProtocolFactory factory, Socket sock,
                                                     DatagramOptions opts) {
    check_sock_argument(sock, SockKind::datagram, "create_datagram_endpoint");
    check_no_socket_modifiers(opts);
    sock.setblocking(false);
    // Python passes no address: a connected socket just send()s, an unconnected one needs
    // sendto()'s address.
    const bool connected = peername_of(sock).has_value();
    co_return co_await make_endpoint(loop, factory, std::move(sock), std::nullopt, connected);
}

}  // namespace asyncio::detail
