// src/backend/backend.hpp - the I/O backend interface: completion-style operations.
//
// The loop core asks a backend to *perform* an operation on a file descriptor ("read into this
// buffer", "tell me when it is readable") and to report its completion; it never asks "is fd
// readable?" and does the syscall itself. epoll emulates completions (try the syscall, on
// EAGAIN wait for readiness and retry); io_uring has them natively. A backend never resumes
// anything itself: completions are reported from poll(), and the operation's callback queues
// the continuation on the loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <sys/types.h>

namespace asyncio::detail {

struct IoOperation {
    enum class Kind : std::uint8_t {
        read,            ///< read(fd, buf, len)
        write,           ///< write(fd, buf, len)
        poll_readable,   ///< completes (result 0) when fd is readable
        poll_writable,   ///< completes (result 0) when fd is writable
    };
    Kind kind = Kind::read;
    int fd = -1;
    void* buffer = nullptr;
    std::size_t length = 0;
    /// Bytes transferred (>= 0) or -errno. Set before `complete` is called.
    ssize_t result = 0;
    /// Called from Backend::poll() when the operation finished (or was cancelled: -ECANCELED).
    void (*complete)(IoOperation*) = nullptr;
    // backend bookkeeping
    IoOperation* next = nullptr;
    bool in_flight = false;
};

class Backend {
public:
    virtual ~Backend() = default;
    /// Starts `op`. Its completion is reported by a later poll(), never from inside start().
    virtual void start(IoOperation* op) = 0;
    /// Cancels an in-flight operation. If it already completed, its result is still reported
    /// (nothing received is dropped); otherwise it completes with -ECANCELED.
    virtual void cancel(IoOperation* op) = 0;
    /// Waits up to `timeout` seconds (< 0: forever, 0: don't block) and reports completions.
    /// Returns how many operations completed.
    virtual int poll(double timeout) = 0;
    /// True when completions are waiting to be reported (poll must not block).
    bool has_completions() const noexcept { return completions_ != 0; }
    /// Number of operations in flight (the loop checks this every iteration: not virtual).
    std::size_t in_flight() const noexcept { return in_flight_; }

protected:
    std::size_t in_flight_ = 0;    // started and not yet reported
    std::size_t completions_ = 0;  // finished, waiting to be reported by poll()
};

/// The epoll backend (always available on Linux).
std::unique_ptr<Backend> make_epoll_backend();

}  // namespace asyncio::detail
