// src/backend/backend.hpp - the I/O backend interface: completion-style operations.
//
// The loop core asks a backend to *perform* an operation on a file descriptor ("receive into
// this buffer", "accept a connection", "tell me when it is writable") and to report its
// completion; it never asks "is fd readable?" and then does the syscall itself. epoll emulates
// completions (wait for readiness, then perform the syscall); io_uring has them natively.
//
// Rules every backend keeps (the layers above rely on them):
//  * A completion is reported from poll() only, never from start() or cancel().
//  * Operations on one fd and one direction (read side / write side) complete in the order
//    they were started.
//  * cancel() of a queued operation removes it without a report: the caller (an awaiter in a
//    coroutine frame that is being destroyed, a transport being closed) may free it at once.
//    An operation whose syscall was performed has already been reported - nothing received is
//    ever dropped by the backend.
//  * A completion callback may start, cancel and forget any operation or fd, including its own.
#pragma once

#include <asyncio/detail/intrusive_list.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>
#include <sys/socket.h>
#include <sys/types.h>

namespace asyncio::detail {

struct IoRegistration;

/// An operation; its ListNode links queue it on its fd's OpQueue while it is in flight.
struct IoOperation : ListNode {
    enum class Kind : std::uint8_t {
        read,           ///< read(fd, buffer, length)
        write,          ///< write(fd, buffer, length)
        recv,           ///< recv(fd, buffer, length, flags) on a stream socket
        recv_provided,  ///< recv into a buffer the backend provides (see `data`), valid only
                        ///< during the completion callback: no per-connection read buffer
        recvfrom,       ///< recvfrom into `buffer` (backend's buffer if null); sender in `addr`
        send,           ///< send(fd, buffer, length, flags|MSG_NOSIGNAL)
        sendto,         ///< sendto(fd, buffer, length, flags|MSG_NOSIGNAL, addr, addrlen)
        accept,         ///< accept4(fd, addr, &addrlen, NONBLOCK|CLOEXEC) -> the new fd
        connect,        ///< completes when a non-blocking connect finished: 0 or -SO_ERROR
        poll_readable,  ///< completes (result 0) when fd is readable
        poll_writable,  ///< completes (result 0) when fd is writable
    };
    Kind kind = Kind::read;
    IoRegistration* reg = nullptr;  ///< from Backend::registration(fd)
    void* buffer = nullptr;
    std::size_t length = 0;
    int flags = 0;
    /// recvfrom/accept: where the peer's address goes; sendto: the destination.
    sockaddr* addr = nullptr;
    socklen_t addrlen = 0;
    /// Bytes transferred (>= 0), the accepted fd, or -errno. Set before `complete` runs.
    ssize_t result = 0;
    /// recv_provided/recvfrom without buffer: the received bytes (valid during `complete`).
    const char* data = nullptr;
    /// Called from Backend::poll() when the operation finished.
    void (*complete)(IoOperation*) = nullptr;
    void* user = nullptr;  ///< free for the owner (the object to call back)

    // backend bookkeeping (and the ListNode links)
    bool in_flight = false;

    bool read_side() const noexcept {
        return kind == Kind::read || kind == Kind::recv || kind == Kind::recv_provided || kind == Kind::recvfrom ||
               kind == Kind::accept || kind == Kind::poll_readable;
    }
};

/// FIFO of queued operations, one per fd and direction.
using OpQueue = IntrusiveList<IoOperation>;

/// A backend's per-fd record: the queued operations of each direction. Owned by the backend
/// and kept for the fd number's whole life (slots are reused, never freed while the backend
/// lives), so a pointer to it never dangles.
struct IoRegistration {
    int fd = -1;
    OpQueue readers;
    OpQueue writers;
    std::uint32_t registered = 0;  ///< events currently registered with the kernel
    std::uint32_t generation = 0;  ///< bumped by forget(): stale kernel events are ignored
    bool added = false;
    bool dirty = false;  ///< interest must be recomputed before the next wait
    /// The backend holds input that was received for a cancelled operation (io_uring: the
    /// kernel finished a receive just before it was cancelled). It goes to the next read-side
    /// operation on this fd, so a reader must not bypass the backend with a direct syscall
    /// while this is set, or it would read later bytes first.
    bool holds_input = false;
    IoRegistration* next_dirty = nullptr;
};

/// A backend's per-fd records (`Reg` derives from IoRegistration), indexed by fd: created on
/// first use and never freed while the backend lives, so pointers to them stay valid; the
/// fd number's next file reuses its record.
template <class Reg>
class RegistrationTable {
public:
    Reg* get(int fd) {
        if (fd < 0) throw std::system_error(EBADF, std::generic_category(), "invalid file descriptor");
        const auto i = static_cast<std::size_t>(fd);
        if (i >= slots_.size()) slots_.resize(i + 64);
        if (!slots_[i]) {
            slots_[i].reset(new Reg);
            slots_[i]->fd = fd;
        }
        return slots_[i].get();
    }
    /// The record of `fd`, or null when it never had one.
    Reg* find(std::size_t fd) const noexcept { return fd < slots_.size() ? slots_[fd].get() : nullptr; }
    template <class F>
    void for_each(F fn) const {
        for (const auto& slot : slots_)
            if (slot) fn(*slot);
    }

private:
    std::vector<std::unique_ptr<Reg>> slots_;
};

class Backend {
public:
    virtual ~Backend() = default;
    /// The record for `fd` (created on first use).
    virtual IoRegistration* registration(int fd) = 0;
    /// Starts `op` (op->reg set). Its completion is reported by a later poll().
    virtual void start(IoOperation* op) = 0;
    /// Removes a queued operation without reporting it; false when it was not queued.
    virtual bool cancel(IoOperation* op) noexcept = 0;
    /// Stops watching `reg`'s fd at once when nothing is queued on it (Python's selector loop
    /// unregisters as soon as a sock_* call ends). One-shot users call this after their
    /// operation: the fd may be closed right after, and a closed fd silently leaves epoll, so
    /// a lazily kept registration would be wrong for the next fd with the same number.
    virtual void release_interest(IoRegistration* reg) noexcept = 0;
    /// The fd is about to be closed: drops its queued operations (unreported; their owners
    /// must be gone or know) and stops watching it. Call before close(fd).
    virtual void forget(int fd) noexcept = 0;
    /// Waits up to `timeout` seconds (< 0: forever, 0: don't block), performs what became
    /// possible and reports completions. Returns how many operations completed.
    virtual int poll(double timeout) = 0;
    /// Number of operations in flight (the loop checks this every iteration: not virtual).
    std::size_t in_flight() const noexcept { return in_flight_; }
    /// True when receiving by a queued operation is cheaper than a readiness report plus the
    /// syscall (io_uring: a loop iteration's operations go to the kernel in one batch), and
    /// when the kernel reads a queued send's buffer after start() returns (so the buffer must
    /// not move until the send completes).
    bool prefers_queued_io() const noexcept { return prefers_queued_io_; }
    /// "epoll" or "io_uring".
    virtual const char* name() const noexcept = 0;

    /// Shuffled scheduling, for tests (Seastar's SHUFFLE_TASK_QUEUE): from now on each poll()
    /// reports the completions of different fds (and sides) in an order drawn from `seed`
    /// (0: the kernel's order again), while the completions of one fd's side keep theirs. That
    /// is the order Python leaves unspecified - whatever the selector reports - so code that
    /// depends on it shows up. make_backend() sets it from $ASYNCIO_SHUFFLE_SEED.
    void shuffle_completions(std::uint64_t seed) noexcept { shuffle_ = seed; }

    /// What an embedding does while poll() waits in the kernel: `leave` just before a wait
    /// that may block, `enter` right after it, before any completion is reported. The Python
    /// face releases CPython's GIL there, so other Python threads run while the loop sleeps
    /// and every completion (which may call Python) runs with the GIL held again.
    struct BlockingHooks {
        void (*leave)(void* arg) noexcept;
        void (*enter)(void* arg) noexcept;
        void* arg;
    };
    /// Sets the hooks (null: none). `hooks` must outlive the backend or be reset first.
    void set_blocking_hooks(const BlockingHooks* hooks) noexcept { hooks_ = hooks; }

protected:
    /// The next number of the shuffle's generator (splitmix64).
    std::uint64_t shuffle_next() noexcept {
        std::uint64_t z = (shuffle_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    /// Fisher-Yates over `items[0, n)` with the shuffle's generator.
    template <class T>
    void shuffle(T* items, std::size_t n) noexcept {
        for (std::size_t i = n; i > 1; --i) std::swap(items[i - 1], items[shuffle_next() % i]);
    }

    /// Runs `wait()` (a blocking kernel wait) between the embedding's hooks, if any.
    template <class Wait>
    auto blocking(Wait wait) {
        if (!hooks_) [[likely]]
            return wait();
        hooks_->leave(hooks_->arg);
        auto result = wait();
        hooks_->enter(hooks_->arg);
        return result;
    }

    std::size_t in_flight_ = 0;  // started and not yet reported
    const BlockingHooks* hooks_ = nullptr;
    bool prefers_queued_io_ = false;
    std::uint64_t shuffle_ = 0;  // the generator's state; 0: no shuffle
};

/// The epoll backend (always available on Linux).
std::unique_ptr<Backend> make_epoll_backend();
/// The io_uring backend, or null when this kernel (or its settings, or a seccomp filter)
/// does not offer what it needs, or when the library was built without liburing.
std::unique_ptr<Backend> make_uring_backend();
/// The backend a new loop gets: $ASYNCIO_BACKEND ("epoll" or "io_uring") when set, else
/// epoll (measured faster here: bench/README.md). Asking for io_uring where it is
/// unavailable throws.
std::unique_ptr<Backend> make_backend();

/// Size of the buffer a backend provides to recv_provided/recvfrom operations.
inline constexpr std::size_t provided_buffer_size = 256 * 1024;

}  // namespace asyncio::detail
