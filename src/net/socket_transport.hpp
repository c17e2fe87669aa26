// src/net/socket_transport.hpp - the stream transport over a connected socket (Python's
// _SelectorSocketTransport), on the completion-style backend:
//  * reading is one standing `recv_provided` operation (the backend's shared buffer, so an
//    idle connection holds no read buffer), re-armed after each delivery; a BufferedProtocol
//    gets a `poll_readable` operation instead and receives into its own buffer (on io_uring,
//    where the kernel would fill a buffer that may move meanwhile, it gets `recv_provided`
//    too and the bytes are copied into get_buffer()'s buffers);
//  * write() sends at once when nothing is queued (the common case: no wait, no copy); what
//    the kernel does not take is buffered and sent by a `send` operation, with the protocol's
//    pause_writing()/resume_writing() flow control around the high/low water marks;
//  * close() lets the buffer drain, then delivers connection_lost through call_soon.
// While open, the transport holds a reference to itself (the loop "owns" it), released after
// connection_lost: users may drop their handles at any time.
#pragma once

#include <asyncio/base_events.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/protocols.hpp>
#include <asyncio/transports.hpp>

#include "fd_transport.hpp"
#include "flow_control.hpp"

#include <functional>
#include <memory>
#include <string>

namespace asyncio::detail {

class SocketTransport final : public Transport,
                              public FdTransport,
                              public std::enable_shared_from_this<SocketTransport> {
public:
    /// Takes the connected, non-blocking socket. Call start() next.
    SocketTransport(EventLoop& loop, Socket sock, std::shared_ptr<BaseProtocol> protocol);
    ~SocketTransport() override;

    /// Schedules connection_made, then starts reading (Python's __init__ call_soon chain).
    /// `on_made` (optional) runs after connection_made, in the same callback order.
    void start(std::function<void()> on_made = {});
    /// Called by the server that accepted this connection: told when the transport is gone.
    void set_server(std::shared_ptr<ServerState> server) { server_ = std::move(server); }

    // BaseTransport
    void close() override;
    bool is_closing() const noexcept override { return closing_; }
    std::any get_extra_info(std::string_view name) const override { return extra_info(name); }
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
    std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }
    // Transport
    bool is_reading() const noexcept override { return reading_active(); }
    void pause_reading() override { pause_fd_reading(); }
    void resume_reading() override { resume_fd_reading(); }
    void write(std::string_view data) override;
    void write_eof() override;
    bool can_write_eof() const noexcept override { return true; }
    void abort() override;
    void set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) override;
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept override { return flow_.limits(); }
    std::size_t get_write_buffer_size() const noexcept override {
        return wbuf_.size() - woff_ + sending_.size() - soff_;
    }

    /// Closes with an error (Python's _fatal_error): reported to the exception handler unless
    /// it is a plain connection error, then connection_lost(exc).
    /// uvloop's write coalescing (the Python face turns it on): a small write() only buffers,
    /// and what one loop iteration wrote is sent once the iteration's callbacks have run, with
    /// one system call - a response written as headers, body and trailer is one send, not
    /// three. A write of 16 KiB or more is sent at once (after what is buffered).
    /// Off by default: C++ users get write()'s send-at-once.
    void coalesce_writes(bool on) noexcept { coalesce_ = on; }

    void fatal_error(std::exception_ptr exc, const char* message);
    int fileno() const noexcept { return sock_.fileno(); }
    /// Native sendfile support (Python's _make_empty_waiter & co): waits until everything
    /// written so far has been handed to the kernel; write() is refused until
    /// end_sendfile().
    Coro<void> begin_sendfile();
    void end_sendfile() noexcept;

private:
    static void on_read(IoOperation* op);
    static void on_write(IoOperation* op);
    void read_ready(IoOperation* op);
    void buffered_read_ready();
    void deliver(std::string_view data);
    /// Runs one protocol callback of the read path. A KeyboardInterrupt leaves the loop, as
    /// in Python, and the transport keeps reading when the loop runs again; any other
    /// exception is fatal_error(`failure`). Returns false when the transport failed.
    template <class F>
    bool call_protocol(F&& callback, const char* failure);
    /// buffered_->get_buffer(sizehint), refusing an empty buffer (RuntimeError).
    std::span<char> get_protocol_buffer(std::size_t sizehint);
    void clear_write_buffer() noexcept;
    void eof_received();
    void write_ready(IoOperation* op);
    /// The buffer is empty: resolve a sendfile waiting for it, finish a close or a write_eof.
    void write_buffer_drained();
    /// Coalescing: sends what this iteration's writes buffered (no-op when a send is in flight
    /// or nothing is buffered); the rest goes through the queued send as usual.
    void flush_coalesced();
    struct FlushItem : ReadyItem {
        SocketTransport* owner = nullptr;
    };
    static const ReadyItemOps flush_ops;
    void sync_write_op() noexcept;
    void maybe_pause_protocol();
    void maybe_resume_protocol();
    void set_protocol_kind();
    // FdTransport
    void drop_unsent() override;
    void forget_protocol() noexcept override;
    void connection_lost_done() noexcept override;
    void loop_closed() noexcept override;

    Protocol* plain_ = nullptr;  // protocol_ as a Protocol (null for BufferedProtocol)
    BufferedProtocol* buffered_ = nullptr;
    std::shared_ptr<ServerState> server_;
    bool queued_io_;  // backend_->prefers_queued_io(): receive by operation, send from sending_
    FlushItem flush_item_;
    std::shared_ptr<SocketTransport> flush_hold_;  // set while flush_item_ is queued (keeps this alive)
    bool coalesce_ = false;
    std::string wbuf_;  // bytes the kernel has not taken yet, from woff_
    std::size_t woff_ = 0;
    std::string sending_;  // queued I/O: the bytes the in-flight send covers, from soff_
    std::size_t soff_ = 0;
    WriteFlowControl flow_;  // high/low water marks, pause_writing()/resume_writing()
    bool eof_ = false;       // write_eof() called
    bool sendfile_in_progress_ = false;
    std::optional<Future<void>> empty_waiter_;
};

/// Server bookkeeping for accepted connections (base_events.cpp).
void server_attach(ServerState& server, SocketTransport* transport);
void server_detach(ServerState& server, SocketTransport* transport);

/// True for the errors Python's _fatal_error does not log (ConnectionError and friends).
bool is_connection_error(std::exception_ptr exc) noexcept;

}  // namespace asyncio::detail
