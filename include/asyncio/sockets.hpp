// asyncio/sockets.hpp - sockets and addresses: the parts of Python's `socket` module that
// asyncio code touches (socket objects for loop.sock_*, addresses, getaddrinfo results).
//
//   asyncio::Socket s(AF_INET, SOCK_STREAM);     // non-blocking, close-on-exec
//   co_await loop.sock_connect(s, asyncio::SockAddr("127.0.0.1", 8080));
//   co_await loop.sock_sendall(s, "ping");
//   std::string reply = co_await loop.sock_recv(s, 1024);
//
// Errors are std::system_error carrying the errno (Python's OSError and its subclasses:
// ConnectionResetError is errc::connection_reset, and so on).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

namespace asyncio {

/// A socket address: IPv4, IPv6 or a Unix path. Python's address tuples (`(host, port)`,
/// `(host, port, flowinfo, scope_id)`, a path string) as one value type.
class SockAddr {
public:
    SockAddr() noexcept;
    /// A numeric host ("127.0.0.1", "::1", "" for the wildcard) and a port. No DNS here (use
    /// loop.getaddrinfo); std::invalid_argument for anything else.
    SockAddr(std::string_view host, int port, int family = AF_UNSPEC);
    /// From a raw address (as returned by accept, getsockname...).
    SockAddr(const sockaddr* addr, socklen_t len) noexcept;
    /// A Unix-domain socket path (a leading '\0' makes it abstract).
    static SockAddr unix_path(std::string_view path);

    int family() const noexcept { return storage_.ss_family; }
    /// The numeric host ("127.0.0.1", "::1") or the Unix path.
    std::string host() const;
    /// The port (0 for Unix addresses).
    int port() const noexcept;
    /// "127.0.0.1:8080", "[::1]:8080" or the Unix path - for logs and messages.
    std::string to_string() const;
    bool empty() const noexcept { return len_ == 0; }

    const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
    sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
    socklen_t size() const noexcept { return len_; }
    void set_size(socklen_t len) noexcept { len_ = len; }
    static constexpr socklen_t capacity() noexcept { return sizeof(sockaddr_storage); }

    friend bool operator==(const SockAddr& a, const SockAddr& b) noexcept;

private:
    sockaddr_storage storage_{};
    socklen_t len_ = 0;
};

/// A socket that does not own its fd: what Server::sockets() and
/// get_extra_info("socket") give (Python's asyncio.trsock.TransportSocket). Valid while the
/// transport or server that owns the fd is open.
class TransportSocket {
public:
    TransportSocket() = default;
    explicit TransportSocket(int fd) noexcept : fd_(fd) {}
    int fileno() const noexcept { return fd_; }
    int family() const;
    int type() const;
    SockAddr getsockname() const;
    SockAddr getpeername() const;
    int getsockopt(int level, int option) const;
    void setsockopt(int level, int option, int value) const;

protected:
    int fd_ = -1;
};

/// An owning, move-only socket (Python's socket.socket). Created non-blocking and
/// close-on-exec, as asyncio needs; closed by the destructor.
class Socket : public TransportSocket {
public:
    Socket() = default;
    /// socket(2); std::system_error on failure.
    Socket(int family, int type, int proto = 0);
    /// Takes ownership of an fd (made non-blocking).
    static Socket adopt(int fd);
    Socket(Socket&& other) noexcept : TransportSocket(std::exchange(other.fd_, -1)) {}
    Socket& operator=(Socket&& other) noexcept;
    ~Socket() { close(); }

    bool is_open() const noexcept { return fd_ >= 0; }
    /// Gives up ownership: returns the fd, leaves this socket closed.
    int detach() noexcept { return std::exchange(fd_, -1); }
    void close() noexcept;
    void bind(const SockAddr& address);
    void listen(int backlog = 100);
    void setblocking(bool blocking);
    /// shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR.
    void shutdown(int how);
};

/// One result of getaddrinfo: Python's (family, type, proto, canonname, sockaddr).
struct AddrInfo {
    int family = 0;
    int type = 0;
    int protocol = 0;
    std::string canonname;
    SockAddr address;
};

/// Creates a socketpair (AF_UNIX, SOCK_STREAM by default), both ends non-blocking.
std::pair<Socket, Socket> socketpair(int family = AF_UNIX, int type = SOCK_STREAM, int proto = 0);

/// The error category of getaddrinfo/getnameinfo failures (Python's socket.gaierror): the
/// code is the EAI_* value, the message gai_strerror's.
const std::error_category& gai_category() noexcept;

namespace detail {
/// Throws std::system_error(errno) with `what` as context.
[[noreturn]] void throw_errno(int err, const char* what);
}  // namespace detail

}  // namespace asyncio
