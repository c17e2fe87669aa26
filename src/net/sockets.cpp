// src/net/sockets.cpp - SockAddr, Socket, TransportSocket: thin, exception-raising wrappers of
// the BSD socket calls (Python's socket module).
#include <asyncio/sockets.hpp>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

namespace asyncio {

void detail::throw_errno(int err, const char* what) { throw std::system_error(err, std::generic_category(), what); }

// ---- SockAddr ------------------------------------------------------------------------------
SockAddr::SockAddr() noexcept = default;

SockAddr::SockAddr(std::string_view host, int port, int family) {
    if (port < 0 || port > 65535) throw std::invalid_argument("port must be 0-65535, got " + std::to_string(port));
    std::string h(host);
    if (!h.empty() && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    if ((family == AF_UNSPEC || family == AF_INET)) {
        auto* in = reinterpret_cast<sockaddr_in*>(&storage_);
        if (h.empty() || h == "0.0.0.0") {
            if (family == AF_INET || h == "0.0.0.0" || h.empty()) {
                in->sin_family = AF_INET;
                in->sin_addr.s_addr = htonl(INADDR_ANY);
                in->sin_port = htons(static_cast<std::uint16_t>(port));
                len_ = sizeof(sockaddr_in);
                return;
            }
        } else if (::inet_pton(AF_INET, h.c_str(), &in->sin_addr) == 1) {
            in->sin_family = AF_INET;
            in->sin_port = htons(static_cast<std::uint16_t>(port));
            len_ = sizeof(sockaddr_in);
            return;
        }
    }
    if (family == AF_UNSPEC || family == AF_INET6) {
        storage_ = {};
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage_);
        if (h.empty() || ::inet_pton(AF_INET6, h.c_str(), &in6->sin6_addr) == 1) {
            if (h.empty()) in6->sin6_addr = in6addr_any;
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(static_cast<std::uint16_t>(port));
            len_ = sizeof(sockaddr_in6);
            return;
        }
    }
    storage_ = {};
    throw std::invalid_argument("not a numeric address: '" + std::string(host) +
                                "' (resolve host names with loop.getaddrinfo())");
}

SockAddr::SockAddr(const sockaddr* addr, socklen_t len) noexcept {
    if (!addr || len == 0) return;
    if (len > sizeof storage_) len = sizeof storage_;
    std::memcpy(&storage_, addr, len);
    len_ = len;
}

SockAddr SockAddr::unix_path(std::string_view path) {
    SockAddr a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
    if (path.size() >= sizeof un->sun_path)
        throw std::invalid_argument("AF_UNIX path too long (" + std::to_string(path.size()) + " bytes)");
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                    (path.empty() || path[0] != '\0' ? 1 : 0));
    return a;
}

std::string SockAddr::host() const {
    char buf[INET6_ADDRSTRLEN] = {};
    switch (storage_.ss_family) {
        case AF_INET:
            ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof buf);
            return buf;
        case AF_INET6:
            ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof buf);
            return buf;
        case AF_UNIX: {
            const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
            std::size_t n = len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
            if (n > 0 && un->sun_path[0] != '\0') return std::string(un->sun_path, strnlen(un->sun_path, n));
            return std::string(un->sun_path, n);  // abstract (or unnamed: "")
        }
        default:
            return "";
    }
}

int SockAddr::port() const noexcept {
    switch (storage_.ss_family) {
        case AF_INET:
            return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
        case AF_INET6:
            return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
        default:
            return 0;
    }
}

std::string SockAddr::to_string() const {
    switch (storage_.ss_family) {
        case AF_INET:
            return host() + ":" + std::to_string(port());
        case AF_INET6: {
            std::string out = "[";  // built step by step: GCC 12 warns (-Wrestrict) on a + chain
            out += host();
            out += "]:";
            out += std::to_string(port());
            return out;
        }
        case AF_UNIX:
            return host();
        default:
            return "<no address>";
    }
}

bool operator==(const SockAddr& a, const SockAddr& b) noexcept {
    return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
}

// ---- TransportSocket -----------------------------------------------------------------------
int TransportSocket::getsockopt(int level, int option) const {
    int value = 0;
    socklen_t len = sizeof value;
    if (::getsockopt(fd_, level, option, &value, &len) < 0) detail::throw_errno(errno, "getsockopt");
    return value;
}

void TransportSocket::setsockopt(int level, int option, int value) const {
    if (::setsockopt(fd_, level, option, &value, sizeof value) < 0) detail::throw_errno(errno, "setsockopt");
}

int TransportSocket::family() const { return getsockopt(SOL_SOCKET, SO_DOMAIN); }
int TransportSocket::type() const { return getsockopt(SOL_SOCKET, SO_TYPE); }

SockAddr TransportSocket::getsockname() const {
    SockAddr a;
    socklen_t len = SockAddr::capacity();
    if (::getsockname(fd_, a.data(), &len) < 0) detail::throw_errno(errno, "getsockname");
    a.set_size(len);
    return a;
}

SockAddr TransportSocket::getpeername() const {
    SockAddr a;
    socklen_t len = SockAddr::capacity();
    if (::getpeername(fd_, a.data(), &len) < 0) detail::throw_errno(errno, "getpeername");
    a.set_size(len);
    return a;
}

// ---- Socket --------------------------------------------------------------------------------
Socket::Socket(int family, int type, int proto) {
    fd_ = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd_ < 0) detail::throw_errno(errno, "socket");
}

Socket Socket::adopt(int fd) {
    if (fd < 0) throw std::invalid_argument("Socket::adopt: invalid file descriptor");
    Socket s;
    s.fd_ = fd;
    s.setblocking(false);
    return s;
}

Socket& Socket::operator=(Socket&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

void Socket::close() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

void Socket::bind(const SockAddr& address) {
    if (::bind(fd_, address.data(), address.size()) < 0)
        throw std::system_error(errno, std::generic_category(), "bind(" + address.to_string() + ")");
}

void Socket::listen(int backlog) {
    if (::listen(fd_, backlog) < 0) detail::throw_errno(errno, "listen");
}

void Socket::setblocking(bool blocking) {
    int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0) detail::throw_errno(errno, "fcntl");
    flags = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
    if (::fcntl(fd_, F_SETFL, flags) < 0) detail::throw_errno(errno, "fcntl");
}

void Socket::shutdown(int how) {
    if (::shutdown(fd_, how) < 0) detail::throw_errno(errno, "shutdown");
}

std::pair<Socket, Socket> socketpair(int family, int type, int proto) {
    int fds[2];
    if (::socketpair(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto, fds) < 0)
        detail::throw_errno(errno, "socketpair");
    return {Socket::adopt(fds[0]), Socket::adopt(fds[1])};
}

}  // namespace asyncio
