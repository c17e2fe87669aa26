// src/backend/faults.hpp - deterministic fault injection under the library's own I/O
// syscalls, for tests (issue 15).
//
// Every read/write/recv/send/recvfrom/sendto/accept4/sendfile the library makes, and the
// connect completion's SO_ERROR check, goes through the wrappers in `sys` below. They are
// compiled in always and inert unless enabled: the cost is one relaxed load of a global flag
// and a branch predicted not taken, next to a syscall. Enabled - by $ASYNCIO_FAULTS (read
// once, when the library is loaded) or by faults::set() - a chosen share of the calls fail
// before reaching the kernel, decided by a counter-based generator seeded by the seed: the
// same program makes the same calls fail.
//
//   ASYNCIO_FAULTS=seed:rate:kinds     e.g. ASYNCIO_FAULTS=7:0.3:soft
//
// rate is the probability (0..1) that one call is faulted; kinds is a comma-separated list:
//   soft faults, which the library must hide (the bytes arrive, in order, once):
//     eintr   the call fails with EINTR (it must be retried)
//     eagain  the call fails with EAGAIN (a spurious would-block: wait for readiness again;
//             connect completions: reported as "still in progress")
//     short   a stream transfer (read/write/recv/send/sendfile, never a datagram) moves 1 byte
//     soft    = eintr,eagain,short
//   hard faults, which must surface as the documented error (never a crash, hang or leak):
//     reset   ECONNRESET on receives, EPIPE on sends (stream sockets and pipes)
//     emfile  EMFILE or ENFILE on accept4 (the pending connection stays in the backlog)
//     nomem   ENOMEM or ENOBUFS on sends (stream and datagram)
//     hard    = reset,emfile,nomem
//
// What io_uring covers: its native requests (read, write, recv, recv_provided, send, accept)
// are performed by the kernel, and a completed transfer cannot be undone or shortened
// without losing bytes, so none of these kinds is injected into them. Covered there: the
// operations it performs itself after a readiness poll (recvfrom, sendto, the connect
// completion: perform.cpp, which retries EINTR and polls again on EAGAIN), and every direct
// syscall of the transports, which are the same on both backends (the first send of
// SocketTransport::write, the buffered-protocol recv, pipe transports, datagram sends,
// loop.sock_*, the server's accept loop after the first accept, sendfile).
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

namespace asyncio::detail::faults {

/// Kinds of fault (a bit set).
enum Kind : unsigned {
    eintr = 1u << 0,
    eagain = 1u << 1,
    short_io = 1u << 2,
    reset = 1u << 3,
    emfile = 1u << 4,
    nomem = 1u << 5,
    soft = eintr | eagain | short_io,
    hard = reset | emfile | nomem,
};

/// Which call is made (what it may be faulted with).
enum class Call : std::uint8_t {
    read,      ///< read(2) on a pipe, pty or stream socket
    write,     ///< write(2)
    recv,      ///< recv on a stream socket (datagram sockets: checked, never shortened)
    send,      ///< send on a stream socket (idem)
    recvfrom,  ///< a datagram receive
    sendto,    ///< a datagram send (also send() on a connected datagram socket)
    accept,    ///< accept4
    connect,   ///< the SO_ERROR check after a non-blocking connect
    sendfile,  ///< sendfile(2)
};

struct Config {
    std::uint64_t seed = 0;
    double rate = 0;     ///< probability that one call is faulted
    unsigned kinds = 0;  ///< Kind bits
};

/// How many faults of each kind were injected (since the last set()), and calls seen.
struct Counts {
    std::uint64_t calls = 0, eintr = 0, eagain = 0, short_io = 0, reset = 0, emfile = 0, nomem = 0;
};

/// Turns injection on with `config` (kinds 0 or rate 0: off), restarting the generator and
/// the counts. For tests: call it on the loop's thread while no loop runs elsewhere.
void set(const Config& config) noexcept;
/// Turns injection off (the counts stay readable).
void clear() noexcept;
Counts counts() noexcept;
/// Parses "seed:rate:kinds"; false when malformed.
bool parse(const char* text, Config& out) noexcept;

/// The seam's whole state: the generator (seed, rate, kinds, its position) and the counts.
struct Snapshot {
    bool active = false;
    std::uint64_t seed = 0, threshold = 0;
    unsigned kinds = 0;
    Counts counts;  ///< calls: the generator's position
};
Snapshot snapshot() noexcept;
/// Puts the seam back as `snapshot` found it.
void restore(const Snapshot& snapshot) noexcept;

/// For a test that drives the seam itself (set(), clear()): on destruction, the seam is put
/// back as it was at construction - for the tests that follow in the same process, the
/// injection $ASYNCIO_FAULTS asked for, at the same point of its sequence, with its counts.
class Restorer {
public:
    Restorer() noexcept : saved_(snapshot()) {}
    ~Restorer() { restore(saved_); }
    Restorer(const Restorer&) = delete;
    Restorer& operator=(const Restorer&) = delete;

private:
    Snapshot saved_;
};

/// Whether this build has the seam (CMake ASYNCIO_FAULT_INJECTION, on in the test presets).
#ifdef ASYNCIO_FAULT_INJECTION
inline constexpr bool compiled_in = true;
#else
inline constexpr bool compiled_in = false;
#endif

extern std::atomic<bool> active_flag;
inline bool active() noexcept { return active_flag.load(std::memory_order_relaxed); }

/// For a test whose premise is a kernel that takes every write at once (an empty write
/// buffer right after write(), no pause_writing): injection is off while this lives, then
/// as it was (the same generator and counts).
class Suspended {
public:
    Suspended() noexcept : was_(active_flag.exchange(false)) {}
    ~Suspended() { active_flag.store(was_); }
    Suspended(const Suspended&) = delete;
    Suspended& operator=(const Suspended&) = delete;

private:
    bool was_;
};

/// The slow path: 0 to go ahead (with `length` perhaps clamped to 1), or the errno to fail
/// with. `fd` tells stream sockets from datagram ones.
int decide(Call call, int fd, std::size_t& length) noexcept;

}  // namespace asyncio::detail::faults

namespace asyncio::detail::sys {

// Compiled in only with ASYNCIO_FAULT_INJECTION (the test presets): elsewhere the wrappers are
// the plain system calls, and the seam costs nothing.
#ifdef ASYNCIO_FAULT_INJECTION
#define ASYNCIO_FAULT_POINT(call, fd, len)                        \
    if (faults::active()) [[unlikely]] {                          \
        if (const int injected = faults::decide(call, fd, len)) { \
            errno = injected;                                     \
            return -1;                                            \
        }                                                         \
    }
#else
#define ASYNCIO_FAULT_POINT(call, fd, len) (void)(len);
#endif

inline ssize_t read(int fd, void* buf, std::size_t len) noexcept {
    ASYNCIO_FAULT_POINT(faults::Call::read, fd, len)
    return ::read(fd, buf, len);
}
inline ssize_t write(int fd, const void* buf, std::size_t len) noexcept {
    ASYNCIO_FAULT_POINT(faults::Call::write, fd, len)
    return ::write(fd, buf, len);
}
inline ssize_t recv(int fd, void* buf, std::size_t len, int flags) noexcept {
    ASYNCIO_FAULT_POINT(faults::Call::recv, fd, len)
    return ::recv(fd, buf, len, flags);
}
inline ssize_t send(int fd, const void* buf, std::size_t len, int flags) noexcept {
    ASYNCIO_FAULT_POINT(faults::Call::send, fd, len)
    return ::send(fd, buf, len, flags);
}
inline ssize_t recvfrom(int fd, void* buf, std::size_t len, int flags, sockaddr* addr, socklen_t* alen) noexcept {
    ASYNCIO_FAULT_POINT(faults::Call::recvfrom, fd, len)
    return ::recvfrom(fd, buf, len, flags, addr, alen);
}
inline ssize_t sendto(int fd, const void* buf, std::size_t len, int flags, const sockaddr* addr,
                      socklen_t alen) noexcept {
    ASYNCIO_FAULT_POINT(faults::Call::sendto, fd, len)
    return ::sendto(fd, buf, len, flags, addr, alen);
}
inline int accept4(int fd, sockaddr* addr, socklen_t* alen, int flags) noexcept {
    std::size_t len = 0;
    ASYNCIO_FAULT_POINT(faults::Call::accept, fd, len)
    return ::accept4(fd, addr, alen, flags);
}
inline ssize_t sendfile(int out_fd, int in_fd, off_t* offset, std::size_t count) noexcept {
    ASYNCIO_FAULT_POINT(faults::Call::sendfile, out_fd, count)
    return ::sendfile(out_fd, in_fd, offset, count);
}
/// The connect completion: true when it must be treated as still in progress.
inline bool connect_still_pending(int fd) noexcept {
#ifndef ASYNCIO_FAULT_INJECTION
    (void)fd;
    return false;
#endif
    if (!faults::active()) [[likely]]
        return false;
    std::size_t len = 0;
    return faults::decide(faults::Call::connect, fd, len) != 0;
}

#undef ASYNCIO_FAULT_POINT

}  // namespace asyncio::detail::sys
