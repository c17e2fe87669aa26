// src/backend/epoll_backend.cpp - completion-style operations emulated on epoll.
//
// start(): a read/write is tried at once; if it would block it waits in its fd's queue and
// the fd is registered for the matching readiness. poll(): epoll_wait, then retry the queued
// operations of each ready fd in FIFO order until one would block again. Finished operations
// wait in `completed_` until reported, so a completion is never reported from start().
#include "backend.hpp"

#include <cerrno>
#include <system_error>
#include <unordered_map>

#include <sys/epoll.h>
#include <unistd.h>

namespace asyncio::detail {
namespace {

struct OpQueue {
    IoOperation* head = nullptr;
    IoOperation* tail = nullptr;
    bool empty() const noexcept { return head == nullptr; }
    void push(IoOperation* op) noexcept {
        op->next = nullptr;
        if (tail) tail->next = op; else head = op;
        tail = op;
    }
    IoOperation* pop() noexcept {
        IoOperation* op = head;
        if (op) {
            head = op->next;
            if (!head) tail = nullptr;
            op->next = nullptr;
        }
        return op;
    }
    bool remove(IoOperation* op) noexcept {
        IoOperation* prev = nullptr;
        for (IoOperation* it = head; it; prev = it, it = it->next) {
            if (it != op) continue;
            if (prev) prev->next = it->next; else head = it->next;
            if (tail == it) tail = prev;
            it->next = nullptr;
            return true;
        }
        return false;
    }
};

bool is_read_side(IoOperation::Kind k) noexcept {
    return k == IoOperation::Kind::read || k == IoOperation::Kind::poll_readable;
}

class EpollBackend final : public Backend {
public:
    EpollBackend() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    }
    ~EpollBackend() override { ::close(epfd_); }

    void start(IoOperation* op) override {
        op->in_flight = true;
        ++in_flight_;
        FdState& fs = fds_[op->fd];
        OpQueue& q = is_read_side(op->kind) ? fs.readers : fs.writers;
        // Keep FIFO order per direction: only try at once when nobody is queued ahead.
        if (q.empty() && try_perform(op)) {
            complete_later(op);
            if (!fs.added && fs.readers.empty() && fs.writers.empty()) fds_.erase(op->fd);
            return;
        }
        q.push(op);
        update_interest(op->fd, fs);
    }

    void cancel(IoOperation* op) override {
        if (!op->in_flight) return;
        auto it = fds_.find(op->fd);
        if (it == fds_.end()) return;  // already completed, waiting to be reported
        OpQueue& q = is_read_side(op->kind) ? it->second.readers : it->second.writers;
        if (q.remove(op)) {
            op->result = -ECANCELED;
            complete_later(op);
            update_interest(op->fd, it->second);
        }
    }

    int poll(double timeout) override {
        int timeout_ms;
        if (!completed_.empty() || timeout == 0)
            timeout_ms = 0;
        else if (timeout < 0)
            timeout_ms = -1;
        else
            timeout_ms = static_cast<int>(timeout * 1000.0 + 0.999);  // round up: never wake early
        if (!fds_.empty() || timeout_ms != 0) {
            epoll_event events[128];
            int n = ::epoll_wait(epfd_, events, 128, timeout_ms);
            for (int i = 0; i < n; ++i) {
                int fd = events[i].data.fd;
                auto it = fds_.find(fd);
                if (it == fds_.end()) continue;
                std::uint32_t ev = events[i].events;
                bool err = ev & (EPOLLERR | EPOLLHUP);
                if (ev & (EPOLLIN | EPOLLRDHUP) || err) drain(it->second.readers);
                if (ev & EPOLLOUT || err) drain(it->second.writers);
                update_interest(fd, it->second);
            }
        }
        int reported = 0;
        while (IoOperation* op = completed_.pop()) {
            --completions_;
            op->in_flight = false;
            --in_flight_;
            ++reported;
            op->complete(op);
        }
        return reported;
    }


private:
    struct FdState {
        OpQueue readers;
        OpQueue writers;
        std::uint32_t registered = 0;  // events currently registered with epoll (0: none)
        bool added = false;
    };

    /// Performs the syscall; false when it would block (the op stays queued).
    static bool try_perform(IoOperation* op) noexcept {
        ssize_t r;
        switch (op->kind) {
            case IoOperation::Kind::read:
                r = ::read(op->fd, op->buffer, op->length);
                break;
            case IoOperation::Kind::write:
                r = ::write(op->fd, op->buffer, op->length);
                break;
            default:
                return false;  // readiness ops complete from poll()
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
            if (errno == EINTR) return try_perform(op);
            op->result = -errno;
        } else {
            op->result = r;
        }
        return true;
    }

    void complete_later(IoOperation* op) noexcept {
        completed_.push(op);
        ++completions_;
    }

    void drain(OpQueue& q) {
        while (IoOperation* op = q.head) {
            if (op->kind == IoOperation::Kind::poll_readable || op->kind == IoOperation::Kind::poll_writable) {
                op->result = 0;
            } else if (!try_perform(op)) {
                return;
            }
            q.pop();
            complete_later(op);
        }
    }

    void update_interest(int fd, FdState& fs) {
        std::uint32_t want = 0;
        if (!fs.readers.empty()) want |= EPOLLIN | EPOLLRDHUP;
        if (!fs.writers.empty()) want |= EPOLLOUT;
        if (want == fs.registered) {
            if (!want && !fs.added) fds_.erase(fd);
            return;
        }
        epoll_event ev{};
        ev.events = want;
        ev.data.fd = fd;
        if (!want) {
            ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
            fds_.erase(fd);
            return;
        }
        int op = fs.added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (::epoll_ctl(epfd_, op, fd, &ev) < 0)
            throw std::system_error(errno, std::generic_category(), "epoll_ctl");
        fs.added = true;
        fs.registered = want;
    }

    int epfd_;
    std::unordered_map<int, FdState> fds_;
    OpQueue completed_;
};

}  // namespace

std::unique_ptr<Backend> make_epoll_backend() { return std::make_unique<EpollBackend>(); }

}  // namespace asyncio::detail
