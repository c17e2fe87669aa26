// src/net/fd_transport.hpp - what the stream and datagram transports over a socket share
// (Python's _SelectorTransport): the socket with its read and write operations, the loop's
// reference and the protocol, the cached addresses, the closing/conn_lost bookkeeping, and
// the teardown - force_close(), connection_lost through call_soon, releasing the fd (cancel
// the operations, backend forget, unlink from the loop, close) and the loop's close hook.
// The pipe transports (pipe_transport.hpp) build on it too: their fd - a pipe, FIFO,
// character device or socket - is held in the same owning Socket (getsockname simply fails
// for a non-socket, so nothing is cached).
#pragma once

#include <asyncio/base_events.hpp>
#include <asyncio/coroutines.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/protocols.hpp>

#include "backend/backend.hpp"
#include "loop/loop_impl.hpp"

#include <any>
#include <exception>
#include <memory>
#include <optional>
#include <string_view>

namespace asyncio::detail {

class FdTransport : public LoopResource {
protected:
    /// Takes the non-blocking socket: registers it with the backend for both operations
    /// (their kind, callback and `user` are the derived class's) and caches its address.
    FdTransport(EventLoop& loop, Socket sock);
    ~FdTransport() override;

    /// Joins the loop's close hook: the last step of the derived constructor.
    void link() noexcept;
    /// Python's extra info: "peername", "sockname" (cached), "socket" (while the fd is open).
    std::any extra_info(std::string_view name) const;
    void stop_reading() noexcept;
    /// Starts the read operation unless it is in flight or the fd is released.
    void arm_reading() {
        if (!read_op_.in_flight && !released_) backend_->start(&read_op_);
    }
    /// The stream transports' reading state (Python's `_paused`): is_reading(),
    /// pause_reading() and resume_reading() of the socket and read-pipe transports.
    bool reading_active() const noexcept { return !paused_ && !closing_; }
    void pause_fd_reading() noexcept {
        if (!reading_active()) return;
        paused_ = true;
        stop_reading();
    }
    void resume_fd_reading() {
        if (closing_ || !paused_) return;
        paused_ = false;
        arm_reading();
    }

    /// Python's _force_close: unsent data is dropped, reading stops, connection_lost(exc)
    /// follows through call_soon. Once only.
    void force_close(std::exception_ptr exc);
    /// Makes the callback that schedule_connection_lost() queues, ahead (at start): closing
    /// then allocates nothing, so a std::bad_alloc cannot leave a transport that never calls
    /// connection_lost, never closes its fd and keeps its server's wait_closed() waiting.
    void prepare_connection_lost();
    void schedule_connection_lost(std::exception_ptr exc);
    /// Python's _call_connection_lost: the protocol's connection_lost (if connection_made
    /// ran), then the fd is released and the loop's reference dropped.
    void call_connection_lost(std::exception_ptr exc) noexcept;
    /// Cancels both operations, forgets the fd in the backend, leaves the loop's close hook
    /// and closes the socket. Once only; the transport counts as closing from then on.
    void release_fd() noexcept;

    // What differs between the transports.
    /// force_close(): drop what is still unsent.
    virtual void drop_unsent() = 0;
    /// The protocol is gone (protocol_ already moved out): clear the derived class's views.
    virtual void forget_protocol() noexcept = 0;
    /// The end of call_connection_lost(), after the fd was released.
    virtual void connection_lost_done() noexcept {}
    /// The end of loop_closing(): drop what else the transport holds.
    virtual void loop_closed() noexcept {}

    EventLoop* loop_;
    Backend* backend_;
    Socket sock_;
    std::shared_ptr<FdTransport> self_;  // the loop's reference while open
    std::shared_ptr<BaseProtocol> protocol_;
    std::optional<SockAddr> sockname_;  // cached at creation: still readable after close,
    std::optional<SockAddr> peername_;  // as Python's extra dict
    IoOperation read_op_;
    IoOperation write_op_;
    int conn_lost_ = 0;
    bool closing_ = false;
    bool paused_ = false;    // pause_reading() (stream transports)
    bool started_ = false;   // connection_made ran
    bool released_ = false;  // release_fd() or loop_closing() ran: the socket is closed

private:
    /// The loop closes (and unlinked us already): the fd is released without callbacks.
    void loop_closing() noexcept final;

    HandleState* lost_callback_ = nullptr;  // prepare_connection_lost(), until queued
    std::exception_ptr lost_exc_;           // what the prepared callback passes on
};

/// Starts `transport` (its start(on_made)) and waits until connection_made has run, as
/// Python's waiter future; a wait that ends otherwise (cancellation) closes the transport and
/// rethrows. Returns {transport, protocol}: the factory's protocol, whatever the transport
/// did with it meanwhile.
template <class Made, class T>
Coro<Made> start_and_wait(EventLoop& loop, std::shared_ptr<T> transport, std::shared_ptr<BaseProtocol> protocol) {
    Future<void> waiter(loop);
    transport->start([waiter]() mutable {
        if (!waiter.done()) waiter.set_result();
    });
    try {
        co_await waiter;
    } catch (...) {
        transport->close();
        throw;
    }
    co_return Made(std::move(transport), std::move(protocol));
}

}  // namespace asyncio::detail
