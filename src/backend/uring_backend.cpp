// src/backend/uring_backend.cpp - completion-style operations on io_uring (opt-in for now:
// ASYNCIO_BACKEND=io_uring; bench/README.md says why epoll is the default).
//
// start() only queues, as with epoll; poll() turns what was queued into submission entries
// and hands them to the kernel together with the wait, in one io_uring_enter: a loop
// iteration that receives on 100 sockets and sends on 100 others makes one syscall, not 200.
//
// Per fd and direction, only the oldest queued operation is in the kernel (Side::submitted);
// the next one is submitted when it completes. That keeps the backend's ordering rule (one
// direction completes in start order) without relying on the kernel's ordering of linked
// requests, and keeps at most two requests per fd to cancel.
//
// Native opcodes: read, write, recv, send, accept, and recv_provided (a receive into a buffer
// the kernel picks from a ring of the backend's buffers, so idle connections hold none). The
// others - recvfrom, sendto, connect, poll_readable, poll_writable - wait for readiness with
// a one-shot poll request, then perform the syscall here (perform.hpp), as epoll does.
//
// Cancelling. The callers may free an operation (and its buffer) as soon as cancel() returns
// true, so a request in the kernel is cancelled synchronously (IORING_REGISTER_SYNC_CANCEL):
// when it returns, the kernel no longer touches the operation's memory. If the request had
// completed already, its completion is waiting in the completion ring; a receive's bytes (or
// end of file, or an accepted fd) are then kept in a Stash and handed to the next read-side
// operation on that fd - nothing received is ever dropped. Every submission carries a
// sequence number; completions of abandoned requests no longer match it and are ignored.
#include "backend.hpp"

#ifdef ASYNCIO_HAVE_LIBURING

#include "perform.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

namespace asyncio::detail {
namespace {

constexpr unsigned ring_entries = 1024;      // submission queue; the kernel makes the CQ 2x
constexpr unsigned buffer_count = 128;       // provided receive buffers (a power of two)
constexpr unsigned buffer_size = 64 * 1024;  // each
constexpr unsigned short buffer_group = 0;
constexpr std::size_t scratch_size = provided_buffer_size;  // for recvfrom without a buffer

/// What a receive that was cancelled too late had already received, for the next reader.
struct Stash {
    std::string bytes;
    std::size_t offset = 0;
    bool has_end = false;  // after the bytes: end of file (0) or an error (-errno)
    ssize_t end_result = 0;
    int accepted_fd = -1;  // an accept's new connection
    sockaddr_storage addr{};
    socklen_t addrlen = 0;
    bool empty() const noexcept { return offset == bytes.size() && !has_end && accepted_fd < 0; }
};

struct UringRegistration final : IoRegistration {
    struct Side {
        IoOperation* submitted = nullptr;  // the queue's head, while the kernel has it
        std::uint16_t seq = 0;             // bumped when a request is abandoned
        bool polling = false;              // the request is a readiness poll; perform() follows
        bool multishot = false;            // a multishot receive is armed (with tag seq)
        bool single_shot = false;          // this fd's reader stops often: one receive at a time
        bool poll_receive = false;         // no provided buffer was left: wait for readiness, then recv
        socklen_t addrlen = 0;             // accept's in/out length (must outlive the request)
    };
    Side side[2];  // [0] read side, [1] write side
    std::unique_ptr<Stash> stash;
};

constexpr int read_side = 0;
constexpr int write_side = 1;

int side_of(const IoOperation* op) noexcept { return op->read_side() ? read_side : write_side; }

bool is_polled(IoOperation::Kind kind) noexcept {
    switch (kind) {
        case IoOperation::Kind::recvfrom:
        case IoOperation::Kind::sendto:
        case IoOperation::Kind::connect:
        case IoOperation::Kind::poll_readable:
        case IoOperation::Kind::poll_writable:
            return true;
        default:
            return false;
    }
}

// A request's user_data: the registration (8-byte aligned, never freed while the backend
// lives), the side in bit 0 and the sequence number in the top 16 bits (user-space pointers
// fit in 47 bits). 0 marks requests whose completion is of no interest.
std::uint64_t make_tag(UringRegistration* reg, int side, std::uint16_t seq) noexcept {
    return reinterpret_cast<std::uintptr_t>(reg) | static_cast<std::uint64_t>(side) | (std::uint64_t(seq) << 48);
}
UringRegistration* tag_reg(std::uint64_t tag) noexcept {
    return reinterpret_cast<UringRegistration*>(tag & 0x0000fffffffffff8ull);
}
int tag_side(std::uint64_t tag) noexcept { return static_cast<int>(tag & 1); }
std::uint16_t tag_seq(std::uint64_t tag) noexcept { return static_cast<std::uint16_t>(tag >> 48); }

struct Completion {
    std::uint64_t tag;
    std::int32_t res;
    std::uint32_t flags;
};

class UringBackend final : public Backend {
public:
    UringBackend() { prefers_queued_io_ = true; }

    /// Sets the ring up; false (nothing left open) when the kernel lacks something needed.
    bool init() {
        io_uring_params params{};
        // Completions are posted when this thread enters the kernel anyway (no interrupts to
        // post them early). Not SINGLE_ISSUER/DEFER_TASKRUN: a loop may be created on one
        // thread and run on another, as in Python.
        params.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_CLAMP;
        if (io_uring_queue_init_params(ring_entries, &ring_, &params) < 0) return false;
        ring_open_ = true;
        constexpr unsigned needed = IORING_FEAT_NODROP | IORING_FEAT_FAST_POLL | IORING_FEAT_EXT_ARG;
        if ((params.features & needed) != needed) return false;
        // Provided buffers (kernel 5.19+).
        const std::size_t ring_bytes = buffer_count * sizeof(io_uring_buf);
        void* mem = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) return false;
        buf_ring_ = static_cast<io_uring_buf_ring*>(mem);
        io_uring_buf_ring_init(buf_ring_);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uintptr_t>(buf_ring_);
        reg.ring_entries = buffer_count;
        reg.bgid = buffer_group;
        if (io_uring_register_buf_ring(&ring_, &reg, 0) < 0) return false;
        buf_ring_registered_ = true;
        // Untouched pages cost nothing: only the buffers in use become resident.
        void* bufs = ::mmap(nullptr, std::size_t(buffer_count) * buffer_size, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (bufs == MAP_FAILED) return false;
        buffers_ = static_cast<char*>(bufs);
        for (unsigned i = 0; i < buffer_count; ++i)
            io_uring_buf_ring_add(buf_ring_, buffer(i), buffer_size, static_cast<unsigned short>(i),
                                  io_uring_buf_ring_mask(buffer_count), static_cast<int>(i));
        io_uring_buf_ring_advance(buf_ring_, buffer_count);
        // Synchronous cancellation (kernel 6.0+): -ENOENT for an unknown request.
        io_uring_sync_cancel_reg probe{};
        probe.addr = 1;  // no request has this tag
        probe.fd = -1;
        probe.timeout.tv_sec = -1;
        probe.timeout.tv_nsec = -1;
        if (io_uring_register_sync_cancel(&ring_, &probe) != -ENOENT) return false;
        scratch_.reset(new char[scratch_size]);
        return true;
    }

    ~UringBackend() override {
        if (ring_open_) {
            // Nothing may write into memory freed below: cancel every request and wait.
            io_uring_sync_cancel_reg all{};
            all.flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
            all.fd = -1;
            all.timeout.tv_sec = -1;
            all.timeout.tv_nsec = -1;
            if (buf_ring_registered_) {
                io_uring_register_sync_cancel(&ring_, &all);
                io_uring_unregister_buf_ring(&ring_, buffer_group);
            }
            io_uring_queue_exit(&ring_);
        }
        slots_.for_each([](UringRegistration& reg) {
            if (reg.stash && reg.stash->accepted_fd >= 0) ::close(reg.stash->accepted_fd);
        });
        if (buffers_) ::munmap(buffers_, std::size_t(buffer_count) * buffer_size);
        if (buf_ring_) ::munmap(buf_ring_, buffer_count * sizeof(io_uring_buf));
    }

    const char* name() const noexcept override { return "io_uring"; }

    IoRegistration* registration(int fd) override { return slots_.get(fd); }

    void start(IoOperation* op) override {
        auto* reg = static_cast<UringRegistration*>(op->reg);
        op->in_flight = true;
        ++in_flight_;
        const int s = side_of(op);
        OpQueue& q = queue(reg, s);
        q.push_back(*op);
        UringRegistration::Side& side = reg->side[s];
        if (side.submitted) return;
        // A transport re-arming its receive from the callback: the armed multishot receive
        // delivers its next bytes straight to it (assigning is not reporting).
        if (side.multishot && op->kind == IoOperation::Kind::recv_provided && q.front() == op && !reg->stash)
            side.submitted = op;
        else
            mark_dirty(reg);
    }

    bool cancel(IoOperation* op) noexcept override {
        if (!op->in_flight) return false;
        auto* reg = static_cast<UringRegistration*>(op->reg);
        const int s = side_of(op);
        if (reg->side[s].submitted == op) abandon(reg, s, /*keep_input=*/true);
        if (!OpQueue::remove(*op)) return false;
        op->in_flight = false;
        --in_flight_;
        if (!queue(reg, s).empty())
            mark_dirty(reg);
        else if (reg->side[s].multishot)
            abandon(reg, s, /*keep_input=*/true);  // nobody reads now (paused): stop receiving
        return true;
    }

    void release_interest(IoRegistration*) noexcept override {}  // nothing is kept watching

    void forget(int fd) noexcept override {
        UringRegistration* reg = fd < 0 ? nullptr : slots_.find(static_cast<std::size_t>(fd));
        if (!reg) return;
        for (int s : {read_side, write_side}) {
            if (reg->side[s].submitted || reg->side[s].multishot) abandon(reg, s, /*keep_input=*/false);
            while (IoOperation* op = queue(reg, s).pop_front()) {
                op->in_flight = false;
                --in_flight_;
            }
        }
        drop_stash(reg);
        reg->side[read_side].single_shot = false;  // the fd number's next socket starts afresh
        reg->side[read_side].poll_receive = false;
        ++reg->generation;
    }

    int poll(double timeout) override {
        int reported = flush();
        int rc;
        if (reported > 0 || timeout == 0) {
            rc = io_uring_submit_and_get_events(&ring_);
        } else if (timeout < 0) {
            rc = blocking([&] { return io_uring_submit_and_wait(&ring_, 1); });
        } else {
            // Round up to the microsecond: never wake before the timer is due.
            const auto usec = static_cast<long long>(timeout * 1e6 + 0.999);
            __kernel_timespec ts{};
            ts.tv_sec = usec / 1000000;
            ts.tv_nsec = (usec % 1000000) * 1000;
            io_uring_cqe* cqe = nullptr;
            rc = blocking([&] { return io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr); });
        }
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            throw std::system_error(-rc, std::generic_category(), "io_uring_enter");
        return reported + reap();
    }

private:
    static OpQueue& queue(UringRegistration* reg, int s) noexcept {
        return s == read_side ? reg->readers : reg->writers;
    }
    char* buffer(unsigned id) const noexcept { return buffers_ + std::size_t(id) * buffer_size; }

    void recycle(unsigned id) noexcept {
        io_uring_buf_ring_add(buf_ring_, buffer(id), buffer_size, static_cast<unsigned short>(id),
                              io_uring_buf_ring_mask(buffer_count), 0);
        io_uring_buf_ring_advance(buf_ring_, 1);
    }

    void mark_dirty(UringRegistration* reg) noexcept {
        if (reg->dirty) return;
        reg->dirty = true;
        reg->next_dirty = dirty_;
        dirty_ = reg;
    }

    /// Submits the head of each changed queue that the kernel does not have yet, or hands it
    /// what a cancelled receive left behind. Returns how many operations that completed.
    int flush() {
        int reported = 0;
        // Take the list: what callbacks mark from here on waits for the next poll(), so a
        // stash that keeps an fd "readable" cannot spin here.
        IoRegistration* list = dirty_;
        dirty_ = nullptr;
        while (list) {
            auto* reg = static_cast<UringRegistration*>(list);
            list = reg->next_dirty;
            reg->dirty = false;
            reg->next_dirty = nullptr;
            for (int s : {read_side, write_side}) {
                UringRegistration::Side& side = reg->side[s];
                IoOperation* op = queue(reg, s).front();
                if (!op || side.submitted) continue;
                if (side.multishot && op->kind != IoOperation::Kind::recv_provided)
                    abandon(reg, s, /*keep_input=*/true);  // another kind of read is next
                if (s == read_side && reg->stash && deliver_stash(reg, op))
                    ++reported;
                else if (side.multishot)
                    side.submitted = op;  // the armed receive delivers to it
                else
                    submit(reg, s, op);
            }
        }
        return reported;
    }

    io_uring_sqe* next_sqe() {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (!sqe) {
            io_uring_submit(&ring_);  // the queue is full: hand it over and go on
            sqe = io_uring_get_sqe(&ring_);
            if (!sqe) throw std::system_error(EBUSY, std::generic_category(), "io_uring submission queue full");
        }
        return sqe;
    }

    void submit(UringRegistration* reg, int s, IoOperation* op) {
        UringRegistration::Side& side = reg->side[s];
        // A request's length is 32 bits; a short transfer is reported, as by the syscalls.
        const auto length = static_cast<unsigned>(std::min<std::size_t>(op->length, 1u << 30));
        io_uring_sqe* sqe = next_sqe();
        const int fd = reg->fd;
        side.polling = is_polled(op->kind);
        if (op->kind == IoOperation::Kind::recv_provided && side.poll_receive) {
            // The last try found every provided buffer in use: wait for readiness and receive
            // into the scratch buffer (perform(), as epoll does) - not a retry for a buffer,
            // which under a flood of connections with bytes waiting (more than the ring has
            // buffers) a few win each poll while the others, real clients too, wait on.
            io_uring_prep_poll_add(sqe, fd, POLLIN | POLLRDHUP);
            side.polling = true;
            io_uring_sqe_set_data64(sqe, make_tag(reg, s, side.seq));
            side.submitted = op;
            return;
        }
        switch (op->kind) {
            case IoOperation::Kind::read:
                io_uring_prep_read(sqe, fd, op->buffer, length, static_cast<__u64>(-1));
                break;
            case IoOperation::Kind::write:
                io_uring_prep_write(sqe, fd, op->buffer, length, static_cast<__u64>(-1));
                break;
            case IoOperation::Kind::recv:
                io_uring_prep_recv(sqe, fd, op->buffer, length, op->flags);
                break;
            case IoOperation::Kind::recv_provided:
                // Multishot: the request stays armed and delivers each arrival, so a
                // connection's receive is submitted once, not once per message - unless its
                // reader was found to stop while bytes kept coming (see abandon()).
                if (side.single_shot) {
                    io_uring_prep_recv(sqe, fd, nullptr, buffer_size, op->flags);
                } else {
                    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, op->flags);
                    side.multishot = true;
                }
                sqe->flags |= IOSQE_BUFFER_SELECT;
                sqe->buf_group = buffer_group;
                break;
            case IoOperation::Kind::send:
                io_uring_prep_send(sqe, fd, op->buffer, length, op->flags | MSG_NOSIGNAL);
                break;
            case IoOperation::Kind::accept:
                side.addrlen = op->addrlen;
                io_uring_prep_accept(sqe, fd, op->addr, op->addr ? &side.addrlen : nullptr,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC);
                break;
            case IoOperation::Kind::recvfrom:
            case IoOperation::Kind::poll_readable:
                io_uring_prep_poll_add(sqe, fd, POLLIN | POLLRDHUP);
                break;
            case IoOperation::Kind::sendto:
            case IoOperation::Kind::connect:
            case IoOperation::Kind::poll_writable:
                io_uring_prep_poll_add(sqe, fd, POLLOUT);
                break;
        }
        io_uring_sqe_set_data64(sqe, make_tag(reg, s, side.seq));
        side.submitted = op;
    }

    /// Reports every completion the kernel has posted; returns how many operations completed.
    /// A completion of a shuffled batch (reap_shuffled) and whether it was dispatched yet.
    struct Pending {
        Completion completion;
        bool dispatched;
    };
    std::vector<Pending> shuffled_;
    std::vector<std::pair<std::uint64_t, std::size_t>> order_;           // (group's key, index)
    std::vector<std::pair<std::pair<void*, int>, std::uint64_t>> keys_;  // fd side -> group key

    int reap() {
        if (shuffle_ != 0) [[unlikely]]
            return reap_shuffled();
        int reported = 0;
        io_uring_cqe* cqe;
        while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
            const Completion c{cqe->user_data, cqe->res, cqe->flags};
            io_uring_cqe_seen(&ring_, cqe);  // before any callback: cancel() scans from here
            reported += dispatch(c);
        }
        return reported;
    }

    /// reap() for shuffled scheduling: the batch's completions grouped by fd side, the groups
    /// in a random order, each group in the kernel's order (a side's completions - a
    /// multishot receive's chunks - must stay in order). The batch leaves the ring at once,
    /// so while it is dispatched the ring scan of abandon() looks at its undispatched rest
    /// first (for_each_completion), as it would find them in the ring otherwise.
    int reap_shuffled() {
        // Room for a whole completion ring, made before the first completion leaves it: once
        // completions are taken out nothing may allocate (an allocation failure would lose
        // them - an accepted fd, say).
        const std::size_t room = ring_.cq.ring_entries;
        if (shuffled_.capacity() < room) {
            shuffled_.reserve(room);
            order_.reserve(room);
            keys_.reserve(room);
        }
        shuffled_.clear();
        order_.clear();
        keys_.clear();
        io_uring_cqe* cqe;
        while (shuffled_.size() < room && io_uring_peek_cqe(&ring_, &cqe) == 0) {
            shuffled_.push_back(Pending{Completion{cqe->user_data, cqe->res, cqe->flags}, false});
            io_uring_cqe_seen(&ring_, cqe);
        }
        auto& order = order_;
        auto& keys = keys_;
        for (std::size_t i = 0; i < shuffled_.size(); ++i) {
            const Completion& c = shuffled_[i].completion;
            const std::pair<void*, int> side(tag_reg(c.tag), tag_side(c.tag));
            auto known = std::find_if(keys.begin(), keys.end(), [&](const auto& k) { return k.first == side; });
            const std::uint64_t key =
                known != keys.end() ? known->second : keys.emplace_back(side, shuffle_next()).second;
            order.emplace_back(key, i);
        }
        std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        int reported = 0;
        for (auto& [key, i] : order) {
            shuffled_[i].dispatched = true;
            reported += dispatch(shuffled_[i].completion);
        }
        shuffled_.clear();
        return reported;
    }

    int dispatch(const Completion& c) {
        const bool has_buffer = c.flags & IORING_CQE_F_BUFFER;
        const unsigned buffer_id = c.flags >> IORING_CQE_BUFFER_SHIFT;
        UringRegistration* reg = tag_reg(c.tag);
        if (!reg) return 0;
        const int s = tag_side(c.tag);
        UringRegistration::Side& side = reg->side[s];
        if (tag_seq(c.tag) != side.seq) {  // abandoned: cancelled, or the fd forgotten
            if (has_buffer) recycle(buffer_id);
            return 0;
        }
        if (side.multishot && !(c.flags & IORING_CQE_F_MORE)) side.multishot = false;  // it ended
        IoOperation* op = side.submitted;
        if (!op) {
            // The armed multishot receive delivered while no operation waits: keep it.
            stash_completion(reg, IoOperation::Kind::recv_provided, nullptr, c);
            if (has_buffer) recycle(buffer_id);
            return 0;
        }
        if (side.polling) {
            if (c.res >= 0) {
                if (perform(op, scratch_.get(), scratch_size) == Outcome::would_block) {
                    side.submitted = nullptr;  // not ready after all: poll again
                    mark_dirty(reg);
                    return 0;
                }
                side.poll_receive = false;  // the next receive tries a provided buffer again
            } else {
                op->result = c.res;
            }
        } else {
            if (c.res == -ENOBUFS && op->kind == IoOperation::Kind::recv_provided) {
                side.submitted = nullptr;  // every buffer is in use: receive without one
                side.poll_receive = true;
                mark_dirty(reg);
                return 0;
            }
            op->result = c.res;
            if (op->kind == IoOperation::Kind::accept && c.res >= 0) op->addrlen = side.addrlen;
            if (has_buffer) op->data = buffer(buffer_id);
        }
        complete(reg, s, op);
        if (has_buffer) recycle(buffer_id);
        return 1;
    }

    /// Takes the finished head `op` off its queue and reports it.
    void complete(UringRegistration* reg, int s, IoOperation* op) {
        reg->side[s].submitted = nullptr;
        reg->side[s].polling = false;
        op->unlink();  // the head of its queue
        op->in_flight = false;
        --in_flight_;
        if (!queue(reg, s).empty()) mark_dirty(reg);
        op->complete(op);
        // Not re-armed by its callback (a paused or closing transport): stop the multishot
        // receive, so unread bytes stay in the socket and TCP's flow control holds the peer.
        if (reg->side[s].multishot && queue(reg, s).empty()) abandon(reg, s, /*keep_input=*/true);
    }

    /// The kernel gives the side's request up: cancelled synchronously, or - if it finished
    /// already - its completion is found in the ring and, for a receive and `keep_input`,
    /// what it received is stashed for the next reader. Its completion is ignored later.
    void abandon(UringRegistration* reg, int s, bool keep_input) noexcept {
        UringRegistration::Side& side = reg->side[s];
        IoOperation* op = side.submitted;
        const bool was_polling = side.polling;
        const bool was_multishot = side.multishot;
        const std::uint64_t tag = make_tag(reg, s, side.seq);
        side.submitted = nullptr;
        side.polling = false;
        side.multishot = false;
        ++side.seq;
        io_uring_sync_cancel_reg cancel{};
        cancel.addr = tag;
        cancel.fd = -1;
        cancel.timeout.tv_sec = -1;
        cancel.timeout.tv_nsec = -1;
        const int rc = io_uring_register_sync_cancel(&ring_, &cancel);
        if (was_polling) return;  // only a readiness poll: nothing was performed
        if (was_multishot) {
            // Whatever the cancel found, deliveries posted before it wait in the ring.
            if (keep_input)
                for_each_completion(tag, [&](const Completion& c) {
                    stash_completion(reg, IoOperation::Kind::recv_provided, nullptr, c);
                });
            // A reader that stops (flow control) while a multishot receive runs ahead of it
            // makes every stop copy what ran ahead: from now on, one receive at a time.
            if (reg->stash) side.single_shot = true;
            return;
        }
        if (rc != -ENOENT) return;  // cancelled before anything was performed
        bool found = false;
        for (int attempt = 0; attempt < 2 && !found; ++attempt) {
            if (attempt == 1) io_uring_get_events(&ring_);  // completions the kernel held back
            for_each_completion(tag, [&](const Completion& c) {
                found = true;
                if (s == read_side && keep_input)
                    stash_completion(reg, op->kind, op, c);
                else if (op->kind == IoOperation::Kind::accept && c.res >= 0)
                    ::close(c.res);  // nobody will take this connection: don't leak it
            });
        }
    }

    /// Calls `fn` for each completion with `tag` still in the ring (not yet reaped).
    template <class F>
    void for_each_completion(std::uint64_t tag, F fn) {
        for (const Pending& p : shuffled_)  // a shuffled batch's rest: older than the ring's
            if (!p.dispatched && p.completion.tag == tag) fn(p.completion);
        unsigned head;
        io_uring_cqe* cqe;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            if (cqe->user_data == tag) fn(Completion{cqe->user_data, cqe->res, cqe->flags});
        }
    }

    /// Keeps what a read-side request of `kind` received (`op`: its operation, if any).
    void stash_completion(UringRegistration* reg, IoOperation::Kind kind, const IoOperation* op, const Completion& c) {
        if (c.res == -ENOBUFS || c.res == -ECANCELED) return;  // nothing was received
        try {
            if (!reg->stash) reg->stash = std::make_unique<Stash>();
            Stash& st = *reg->stash;
            if (kind == IoOperation::Kind::accept) {
                if (c.res < 0) return;  // a failed accept is retried by the next one
                st.accepted_fd = c.res;
                st.addrlen = std::min<socklen_t>(reg->side[read_side].addrlen, sizeof st.addr);
                if (op && op->addr) std::memcpy(&st.addr, op->addr, st.addrlen);
            } else if (c.res > 0) {
                const char* src = (c.flags & IORING_CQE_F_BUFFER) ? buffer(c.flags >> IORING_CQE_BUFFER_SHIFT)
                                                                  : static_cast<const char*>(op ? op->buffer : nullptr);
                if (!src) return;
                st.bytes.append(src, static_cast<std::size_t>(c.res));
            } else {
                st.has_end = true;
                st.end_result = c.res;
            }
            reg->holds_input = true;
        } catch (const std::bad_alloc&) {
            // Out of memory while keeping a cancelled receive's bytes: they are lost.
        }
        if (reg->stash && reg->stash->empty()) drop_stash(reg);
    }

    void drop_stash(UringRegistration* reg) noexcept {
        if (reg->stash && reg->stash->accepted_fd >= 0) ::close(reg->stash->accepted_fd);
        reg->stash.reset();
        reg->holds_input = false;
    }

    /// Completes read-side `op` (the queue's head) from the stash; false when the stash has
    /// nothing for this kind of operation (it is then submitted as usual).
    bool deliver_stash(UringRegistration* reg, IoOperation* op) {
        Stash& st = *reg->stash;
        switch (op->kind) {
            case IoOperation::Kind::read:
            case IoOperation::Kind::recv:
            case IoOperation::Kind::recv_provided: {
                // recv_provided gets the bytes in the scratch buffer, valid during the callback.
                const bool provided = op->kind == IoOperation::Kind::recv_provided;
                char* dst = provided ? scratch_.get() : static_cast<char*>(op->buffer);
                const std::size_t left = st.bytes.size() - st.offset;
                if (left > 0) {
                    const std::size_t n = std::min(left, provided ? scratch_size : op->length);
                    std::memcpy(dst, st.bytes.data() + st.offset, n);
                    st.offset += n;
                    op->result = static_cast<ssize_t>(n);
                    op->data = dst;
                } else if (st.has_end) {
                    op->result = st.end_result;
                    st.has_end = false;
                } else {
                    return false;
                }
                break;
            }
            case IoOperation::Kind::accept:
                if (st.accepted_fd < 0) return false;
                op->result = st.accepted_fd;
                st.accepted_fd = -1;
                if (op->addr) {
                    const socklen_t n = std::min(op->addrlen, st.addrlen);
                    std::memcpy(op->addr, &st.addr, n);
                    op->addrlen = st.addrlen;
                }
                break;
            case IoOperation::Kind::poll_readable:
                op->result = 0;  // readable: the stash has something (it stays for the read)
                break;
            default:
                return false;
        }
        if (st.empty()) {
            reg->stash.reset();
            reg->holds_input = false;
        }
        complete(reg, read_side, op);
        return true;
    }

    io_uring ring_{};
    bool ring_open_ = false;
    io_uring_buf_ring* buf_ring_ = nullptr;
    bool buf_ring_registered_ = false;
    char* buffers_ = nullptr;
    std::unique_ptr<char[]> scratch_;
    RegistrationTable<UringRegistration> slots_;
    IoRegistration* dirty_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_uring_backend() {
    auto backend = std::make_unique<UringBackend>();
    if (!backend->init()) return nullptr;
    return backend;
}

}  // namespace asyncio::detail

#else  // built without liburing

namespace asyncio::detail {
std::unique_ptr<Backend> make_uring_backend() { return nullptr; }
}  // namespace asyncio::detail

#endif
