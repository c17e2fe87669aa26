// src/net/sock_ops.cpp - loop.sock_* and the resolver (Python's BaseSelectorEventLoop.sock_*
// and base_events.getaddrinfo). Each operation first tries the syscall (the common case
// finishes without waiting, as in Python), then waits on the backend.
#include <asyncio/sockets.hpp>
#include <asyncio/tasks.hpp>
#include <asyncio/threads.hpp>

#include "io_awaiter.hpp"
#include "backend/faults.hpp"

#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>

namespace asyncio {

namespace {
using Kind = detail::IoOperation::Kind;

void check_socket(const EventLoop& loop, const Socket& sock, const char* what) {
    if (!sock.is_open())
        throw std::system_error(EBADF, std::generic_category(), std::string(what) + ": the socket is closed");
    // Python's debug mode: a blocking socket would block the whole loop.
    if (loop.get_debug() && !(::fcntl(sock.fileno(), F_GETFL) & O_NONBLOCK))
        throw std::invalid_argument(std::string(what) + ": the socket must be non-blocking");
}

[[noreturn]] void throw_result(ssize_t r, const char* what) { detail::throw_errno(static_cast<int>(-r), what); }

class GaiCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "getaddrinfo"; }
    std::string message(int code) const override { return ::gai_strerror(code); }
};
const GaiCategory gai_category_instance;
}  // namespace

const std::error_category& gai_category() noexcept { return gai_category_instance; }

Coro<std::size_t> EventLoop::sock_recv_into(Socket& sock, std::span<char> buffer) {
    check_socket(*this, sock, "sock_recv_into");
    // Bytes the backend kept from a cancelled receive come first: then no direct recv().
    if (!detail::IoAccess::backend(*this).registration(sock.fileno())->holds_input) {
        ssize_t r = detail::sys::recv(sock.fileno(), buffer.data(), buffer.size(), 0);
        if (r >= 0) co_return static_cast<std::size_t>(r);
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) detail::throw_errno(errno, "recv");
    }
    detail::IoAwaiter aw(*this, sock.fileno(), Kind::recv);
    aw.op.buffer = buffer.data();
    aw.op.length = buffer.size();
    const ssize_t r = co_await aw;
    if (r < 0) throw_result(r, "recv");
    co_return static_cast<std::size_t>(r);
}

Coro<std::string> EventLoop::sock_recv(Socket& sock, std::size_t n) {
    std::string data(n, '\0');
    std::size_t got = co_await sock_recv_into(sock, std::span<char>(data.data(), n));
    data.resize(got);
    co_return data;
}

Coro<std::pair<std::size_t, SockAddr>> EventLoop::sock_recvfrom_into(Socket& sock, std::span<char> buffer,
                                                                     std::size_t nbytes) {
    check_socket(*this, sock, "sock_recvfrom_into");
    if (nbytes == 0) nbytes = buffer.size();  // Python: 0 means the whole buffer
    // Python's socket.recvfrom_into refuses to write past the buffer.
    if (nbytes > buffer.size()) throw std::invalid_argument("nbytes is greater than the length of the buffer");
    SockAddr from;
    socklen_t len = SockAddr::capacity();
    ssize_t r = detail::sys::recvfrom(sock.fileno(), buffer.data(), nbytes, 0, from.data(), &len);
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) detail::throw_errno(errno, "recvfrom");
        detail::IoAwaiter aw(*this, sock.fileno(), Kind::recvfrom);
        aw.op.buffer = buffer.data();
        aw.op.length = nbytes;
        aw.op.addr = from.data();
        aw.op.addrlen = SockAddr::capacity();
        r = co_await aw;
        if (r < 0) throw_result(r, "recvfrom");
        len = aw.op.addrlen;
    }
    from.set_size(len);
    co_return std::pair<std::size_t, SockAddr>(static_cast<std::size_t>(r), from);
}

Coro<std::pair<std::string, SockAddr>> EventLoop::sock_recvfrom(Socket& sock, std::size_t n) {
    std::string data(n, '\0');
    auto [got, from] = co_await sock_recvfrom_into(sock, std::span<char>(data.data(), n));
    data.resize(got);
    co_return std::pair<std::string, SockAddr>(std::move(data), from);
}

Coro<void> EventLoop::sock_sendall(Socket& sock, std::string_view data) {
    check_socket(*this, sock, "sock_sendall");
    std::size_t sent = 0;
    while (sent < data.size()) {
        ssize_t r = detail::sys::send(sock.fileno(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (r >= 0) {
            sent += static_cast<std::size_t>(r);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) detail::throw_errno(errno, "send");
        detail::IoAwaiter aw(*this, sock.fileno(), Kind::send);
        aw.op.buffer = const_cast<char*>(data.data() + sent);
        aw.op.length = data.size() - sent;
        r = co_await aw;
        if (r < 0) throw_result(r, "send");
        sent += static_cast<std::size_t>(r);
    }
}

Coro<std::size_t> EventLoop::sock_sendto(Socket& sock, std::string_view data, const SockAddr& address) {
    check_socket(*this, sock, "sock_sendto");
    ssize_t r =
        detail::sys::sendto(sock.fileno(), data.data(), data.size(), MSG_NOSIGNAL, address.data(), address.size());
    if (r >= 0) co_return static_cast<std::size_t>(r);
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) detail::throw_errno(errno, "sendto");
    SockAddr to = address;
    detail::IoAwaiter aw(*this, sock.fileno(), Kind::sendto);
    aw.op.buffer = const_cast<char*>(data.data());
    aw.op.length = data.size();
    aw.op.addr = to.data();
    aw.op.addrlen = to.size();
    r = co_await aw;
    if (r < 0) throw_result(r, "sendto");
    co_return static_cast<std::size_t>(r);
}

Coro<std::pair<Socket, SockAddr>> EventLoop::sock_accept(Socket& sock) {
    check_socket(*this, sock, "sock_accept");
    SockAddr peer;
    socklen_t len = SockAddr::capacity();
    int fd = detail::sys::accept4(sock.fileno(), peer.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) detail::throw_errno(errno, "accept");
        detail::IoAwaiter aw(*this, sock.fileno(), Kind::accept);
        aw.op.addr = peer.data();
        aw.op.addrlen = SockAddr::capacity();
        ssize_t r = co_await aw;
        if (r < 0) throw_result(r, "accept");
        fd = static_cast<int>(r);
        len = aw.op.addrlen;
    }
    peer.set_size(len);
    Socket conn;
    // adopt() sets O_NONBLOCK again: harmless, and keeps the one way to wrap an fd.
    conn = Socket::adopt(fd);
    co_return std::pair<Socket, SockAddr>(std::move(conn), peer);
}

Coro<void> EventLoop::sock_connect(Socket& sock, const SockAddr& address) {
    check_socket(*this, sock, "sock_connect");
    if (::connect(sock.fileno(), address.data(), address.size()) == 0) co_return;
    // EALREADY: an earlier (cancelled) connect on this socket is still in progress - wait for
    // it, as Python does.
    if (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN && errno != EALREADY)
        throw std::system_error(errno, std::generic_category(), "connect(" + address.to_string() + ")");
    detail::IoAwaiter aw(*this, sock.fileno(), Kind::connect);
    ssize_t r = co_await aw;
    if (r < 0)
        throw std::system_error(static_cast<int>(-r), std::generic_category(), "connect(" + address.to_string() + ")");
}

Coro<std::vector<AddrInfo>> EventLoop::getaddrinfo(std::string host, std::string port, int family, int type, int proto,
                                                   int flags) {
    auto resolve = [host = std::move(host), port = std::move(port), family, type, proto, flags]() {
        addrinfo hints{};
        hints.ai_family = family;
        hints.ai_socktype = type;
        hints.ai_protocol = proto;
        hints.ai_flags = flags;
        addrinfo* res = nullptr;
        int rc =
            ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.empty() ? nullptr : port.c_str(), &hints, &res);
        if (rc != 0) {
            if (rc == EAI_SYSTEM) detail::throw_errno(errno, "getaddrinfo");
            throw std::system_error(rc, gai_category(), "getaddrinfo(" + host + ")");
        }
        std::vector<AddrInfo> out;
        for (addrinfo* ai = res; ai; ai = ai->ai_next)
            out.push_back(AddrInfo{ai->ai_family, ai->ai_socktype, ai->ai_protocol,
                                   ai->ai_canonname ? ai->ai_canonname : "", SockAddr(ai->ai_addr, ai->ai_addrlen)});
        ::freeaddrinfo(res);
        return out;
    };
    co_return co_await run_in_executor(nullptr, std::move(resolve));
}

Coro<std::vector<AddrInfo>> EventLoop::getaddrinfo(std::string host, int port) {
    return getaddrinfo(std::move(host), port ? std::to_string(port) : std::string(), 0, 0, 0, 0);
}

Coro<std::pair<std::string, std::string>> EventLoop::getnameinfo(const SockAddr& address, int flags) {
    SockAddr addr = address;
    auto lookup = [addr, flags]() {
        char host[NI_MAXHOST];
        char serv[NI_MAXSERV];
        int rc = ::getnameinfo(addr.data(), addr.size(), host, sizeof host, serv, sizeof serv, flags);
        if (rc != 0) {
            if (rc == EAI_SYSTEM) detail::throw_errno(errno, "getnameinfo");
            throw std::system_error(rc, gai_category(), "getnameinfo");
        }
        return std::pair<std::string, std::string>(host, serv);
    };
    co_return co_await run_in_executor(nullptr, std::move(lookup));
}

}  // namespace asyncio
