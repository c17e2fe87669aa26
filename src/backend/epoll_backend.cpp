// src/backend/epoll_backend.cpp - completion-style operations emulated on epoll.
//
// Each fd with queued operations is registered level-triggered for the directions that have
// work (EPOLLIN|EPOLLRDHUP for the read side, EPOLLOUT for the write side). start() only
// queues; poll() applies interest changes (batched: a transport that re-arms its receive from
// inside its completion costs no epoll_ctl), waits, then performs the queued syscalls of each
// ready fd in FIFO order and reports each completion at once.
//
// Per ready fd and direction, poll() performs only the operations that were queued before it
// started on that fd, and stops after a short stream read (the socket is drained): a
// transport that re-arms its receive inside the callback waits for the next readiness report
// instead of paying for a recv() that would say EAGAIN. Level-triggered epoll reports the fd
// again if data is left, so nothing is lost and no fd is starved.
#include "backend.hpp"
#include "perform.hpp"

#include <cerrno>
#include <system_error>
#include <vector>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace asyncio::detail {
namespace {

constexpr std::uint32_t read_events = EPOLLIN | EPOLLRDHUP;
constexpr std::uint32_t write_events = EPOLLOUT;

class EpollBackend final : public Backend {
public:
    // The fd is made last: an allocation failing before it leaves nothing open.
    EpollBackend() : provided_(new char[provided_buffer_size]) {
        epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    }
    ~EpollBackend() override { ::close(epfd_); }

    const char* name() const noexcept override { return "epoll"; }

    IoRegistration* registration(int fd) override { return slots_.get(fd); }

    void start(IoOperation* op) override {
        IoRegistration* reg = op->reg;
        op->in_flight = true;
        ++in_flight_;
        (op->read_side() ? reg->readers : reg->writers).push_back(*op);
        mark_dirty(reg);
    }

    bool cancel(IoOperation* op) noexcept override {
        if (!op->in_flight) return false;
        IoRegistration* reg = op->reg;
        if (!OpQueue::remove(*op)) return false;
        op->in_flight = false;
        --in_flight_;
        mark_dirty(reg);
        return true;
    }

    void release_interest(IoRegistration* reg) noexcept override {
        if (!reg->readers.empty() || !reg->writers.empty() || !reg->added) return;
        epoll_event ev{};
        ::epoll_ctl(epfd_, EPOLL_CTL_DEL, reg->fd, &ev);  // ENOENT/EBADF: already gone, fine
        reg->added = false;
        reg->registered = 0;
    }

    void forget(int fd) noexcept override {
        IoRegistration* reg = fd < 0 ? nullptr : slots_.find(static_cast<std::size_t>(fd));
        if (!reg) return;
        for (OpQueue* q : {&reg->readers, &reg->writers}) {
            while (IoOperation* op = q->pop_front()) {
                op->in_flight = false;
                --in_flight_;
            }
        }
        if (reg->added) {
            epoll_event ev{};
            ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);  // may fail if already closed: fine
        }
        reg->added = false;
        reg->registered = 0;
        ++reg->generation;  // events already fetched for the old fd are ignored
    }

    int poll(double timeout) override {
        int reported = flush_interest();
        int timeout_ms;
        if (timeout == 0 || reported > 0)  // a failed registration was reported: don't block
            timeout_ms = 0;
        else if (timeout < 0)
            timeout_ms = -1;
        else
            timeout_ms = static_cast<int>(timeout * 1000.0 + 0.999);  // round up: never wake early
        epoll_event events[256];
        int n = timeout_ms == 0 ? ::epoll_wait(epfd_, events, 256, 0)
                                : blocking([&] { return ::epoll_wait(epfd_, events, 256, timeout_ms); });
        if (shuffle_ != 0 && n > 1) [[unlikely]]
            shuffle(events, static_cast<std::size_t>(n));  // one event per fd: any order is one
        for (int i = 0; i < n; ++i) {
            const std::uint64_t tag = events[i].data.u64;
            const auto fd = static_cast<std::size_t>(tag & 0xffffffffu);
            const auto generation = static_cast<std::uint32_t>(tag >> 32);
            IoRegistration* reg = slots_.find(fd);
            if (!reg) continue;
            if (reg->generation != generation) continue;  // forgotten since the wait began
            const std::uint32_t ev = events[i].events;
            const bool error = ev & (EPOLLERR | EPOLLHUP);
            if ((ev & read_events) || error) reported += run_queue(reg, reg->readers, generation);
            if (reg->generation != generation) continue;
            if ((ev & write_events) || error) reported += run_queue(reg, reg->writers, generation);
            mark_dirty(reg);
        }
        return reported;
    }

private:
    void mark_dirty(IoRegistration* reg) noexcept {
        if (reg->dirty) return;
        reg->dirty = true;
        reg->next_dirty = dirty_;
        dirty_ = reg;
    }

    /// Brings each changed fd's registered events in line with its queued operations.
    /// Returns how many operations it failed (an fd epoll refuses).
    int flush_interest() {
        int failed = 0;
        while (IoRegistration* reg = dirty_) {
            dirty_ = reg->next_dirty;
            reg->dirty = false;
            reg->next_dirty = nullptr;
            std::uint32_t want = 0;
            if (!reg->readers.empty()) want |= read_events;
            if (!reg->writers.empty()) want |= write_events;
            if (want == reg->registered) continue;
            epoll_event ev{};
            ev.events = want;
            ev.data.u64 = static_cast<std::uint32_t>(reg->fd) | (std::uint64_t(reg->generation) << 32);
            if (want == 0) {
                // Nothing to wait for: leave epoll entirely (an fd registered for no events
                // would still report EPOLLHUP, level-triggered, on every wait).
                ::epoll_ctl(epfd_, EPOLL_CTL_DEL, reg->fd, &ev);
                reg->added = false;
                reg->registered = 0;
                continue;
            }
            int rc = ::epoll_ctl(epfd_, reg->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, reg->fd, &ev);
            // The kernel's view may differ from ours when the fd was closed (it left epoll)
            // and its number reused: retry with the other call.
            if (rc < 0 && errno == ENOENT && reg->added)
                rc = ::epoll_ctl(epfd_, EPOLL_CTL_ADD, reg->fd, &ev);
            else if (rc < 0 && errno == EEXIST && !reg->added)
                rc = ::epoll_ctl(epfd_, EPOLL_CTL_MOD, reg->fd, &ev);
            if (rc < 0) {
                // A bad fd (closed behind our back, or a regular file): fail its operations
                // instead of leaving them queued forever.
                reg->added = false;
                reg->registered = 0;
                failed += fail_all(reg, -errno);
                continue;
            }
            reg->added = true;
            reg->registered = want;
        }
        return failed;
    }

    /// Reports every queued operation of `reg` with `error`; returns how many.
    int fail_all(IoRegistration* reg, int error) {
        const std::uint32_t generation = reg->generation;
        int n = 0;
        for (OpQueue* q : {&reg->readers, &reg->writers}) {
            while (IoOperation* op = q->pop_front()) {
                op->in_flight = false;
                --in_flight_;
                op->result = error;
                ++n;
                op->complete(op);
                if (reg->generation != generation) return n;
            }
        }
        return n;
    }

    /// Performs the queued operations of one direction of a ready fd; returns how many
    /// completed. Stops at the first that would block, after the last one that was queued
    /// when it started, after a short stream read, or when a callback forgot the fd.
    /// (Tested with empty() rather than front() != nullptr: the latter costs GCC two compares
    /// and, in poll()'s loop, spilled registers - 6 instructions per completion.)
    int run_queue(IoRegistration* reg, OpQueue& q, std::uint32_t generation) {
        if (q.empty()) return 0;
        IoOperation* op = q.front();
        IoOperation* const last = q.back();
        int completed = 0;
        for (;;) {
            const bool was_last = op == last;
            const Outcome outcome = perform(op, provided_.get(), provided_buffer_size);
            if (outcome == Outcome::would_block) break;
            op->unlink();
            op->in_flight = false;
            --in_flight_;
            ++completed;
            op->complete(op);
            if (reg->generation != generation || was_last || outcome == Outcome::drained) break;
            if (q.empty()) break;
            op = q.front();
        }
        return completed;
    }

    int epfd_ = -1;
    std::unique_ptr<char[]> provided_;
    RegistrationTable<IoRegistration> slots_;
    IoRegistration* dirty_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_epoll_backend() { return std::make_unique<EpollBackend>(); }

}  // namespace asyncio::detail
