// src/net/pipe_transport.hpp - the transports over one end of a pipe (Python's
// _UnixReadPipeTransport and _UnixWritePipeTransport, unix_events.py), for pipes, FIFOs,
// character devices (a pty) and stream sockets:
//  * the read side waits with a `poll_readable` operation and then read(2)s itself, so a
//    BufferedProtocol receives straight into its buffer and the backend keeps nothing;
//  * the write side writes at once when nothing is queued, buffers the rest and waits with a
//    `poll_writable` operation; on a pipe or a socket it also waits for the write end to turn
//    readable, which is how the kernel says the reader is gone (EPOLLERR on a pipe's write
//    end), so an idle transport notices it too;
//  * every write(2) is done by the transport, never by the backend (io_uring included), with
//    SIGPIPE blocked around it (write_without_sigpipe): a vanished reader is EPIPE, never the
//    signal's default action.
// Python's pipe transports have one direction each; the other direction's methods of
// asyncio::Transport throw RuntimeError saying which loop call makes the other end.
#pragma once

#include <asyncio/protocols.hpp>
#include <asyncio/transports.hpp>

#include "fd_transport.hpp"
#include "flow_control.hpp"

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <sys/types.h>

namespace asyncio::detail {

/// What fstat says `fd` is, when a pipe transport may take it (FIFO, socket, character
/// device); std::invalid_argument(`refusal`) otherwise, std::system_error when fstat fails.
/// Nothing is done to the fd.
mode_t check_pipe_fd(int fd, const char* refusal);

/// write(2) that cannot raise SIGPIPE: the signal is blocked in this thread around the call,
/// and the SIGPIPE an EPIPE failure leaves pending is consumed before the mask is restored -
/// unless one was pending already, which belongs to someone else. The disposition is never
/// touched. Returns what write(2) returns, errno set on failure (EINTR retried).
ssize_t write_without_sigpipe(int fd, const void* data, std::size_t size);

/// std::invalid_argument unless `protocol` is a Protocol or a BufferedProtocol.
void check_pipe_protocol(const BaseProtocol* protocol);

/// What both directions share: the protocol (a Protocol or a BufferedProtocol), the
/// connection_made chain, "pipe" extra info, and errors for the direction a transport lacks.
class PipeTransport : public Transport, public FdTransport, public std::enable_shared_from_this<PipeTransport> {
public:
    /// Takes the (already checked) fd, made non-blocking by Socket::adopt.
    PipeTransport(EventLoop& loop, Socket fd, std::shared_ptr<BaseProtocol> protocol);
    ~PipeTransport() override;

    /// Schedules connection_made, then start_io(), then `on_made` (Python's __init__ chain).
    void start(std::function<void()> on_made);

    bool is_closing() const noexcept override { return closing_; }
    /// "pipe": the fd (int) while the transport holds it open, as Python's extra 'pipe'.
    std::any get_extra_info(std::string_view name) const override;
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
    std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

protected:
    /// The second call_soon of the chain: start waiting on the fd.
    virtual void start_io() = 0;
    /// Python's _fatal_error: reported to the exception handler unless `quiet`, then closed
    /// at once with connection_lost(exc).
    void fatal_error(std::exception_ptr exc, const char* message, bool quiet);
    /// RuntimeError: `method` does not exist on this direction (`fix` says what to use).
    [[noreturn]] static void no_such_direction(const char* method, const char* fix);
    void forget_protocol() noexcept override;

    Protocol* plain_ = nullptr;  // protocol_ as a Protocol (null for a BufferedProtocol)
    BufferedProtocol* buffered_ = nullptr;
};

/// Python's _UnixReadPipeTransport.
class ReadPipeTransport final : public PipeTransport {
public:
    ReadPipeTransport(EventLoop& loop, Socket fd, std::shared_ptr<BaseProtocol> protocol);

    void close() override;
    bool is_reading() const noexcept override { return reading_active(); }
    void pause_reading() override { pause_fd_reading(); }
    void resume_reading() override { resume_fd_reading(); }
    /// Closes at once, as close() does (nothing is ever buffered on this side).
    void abort() override { close(); }
    // The missing writing side: the commands throw RuntimeError, the queries say "nothing".
    void write(std::string_view data) override;
    void write_eof() override;
    bool can_write_eof() const noexcept override { return false; }
    void set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) override;
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept override { return {0, 0}; }
    std::size_t get_write_buffer_size() const noexcept override { return 0; }

private:
    void start_io() override;
    static void on_read(IoOperation* op);
    void read_ready(IoOperation* op);
    /// One read(2) into the protocol's buffer (or the scratch buffer for data_received).
    void read_once();
    void deliver(const char* data, std::size_t n);
    void eof_reached();
    /// A protocol callback's exception: Python lets it propagate to the loop's handler
    /// ("Exception in callback") and the transport goes on.
    void report_callback_error(const char* callback);
    void drop_unsent() override {}
};

/// Python's _UnixWritePipeTransport (with _FlowControlMixin).
class WritePipeTransport final : public PipeTransport {
public:
    /// `mode` is check_pipe_fd()'s: sockets write with MSG_NOSIGNAL, pipes and sockets are
    /// watched for their reader leaving (Python does not watch a character device).
    WritePipeTransport(EventLoop& loop, Socket fd, std::shared_ptr<BaseProtocol> protocol, mode_t mode);

    /// write_eof(): the fd is closed once the buffer drained.
    void close() override;
    void write(std::string_view data) override;
    void write_eof() override;
    bool can_write_eof() const noexcept override { return true; }
    /// Drops the buffer and closes at once: connection_lost(nullptr).
    void abort() override { force_close(nullptr); }
    void set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) override;
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept override { return flow_.limits(); }
    std::size_t get_write_buffer_size() const noexcept override { return wbuf_.size() - woff_; }
    // The missing reading side.
    bool is_reading() const noexcept override { return false; }
    void pause_reading() override;
    void resume_reading() override;

private:
    void start_io() override;
    static void on_writable(IoOperation* op);
    static void on_reader_gone(IoOperation* op);
    void write_ready(IoOperation* op);
    void reader_gone(IoOperation* op);
    /// write(2) of what it can; the count (0 when it would block), or -errno.
    ssize_t write_some(const char* data, std::size_t size) noexcept;
    void write_failed(int err);
    void clear_buffer() noexcept;
    void drop_unsent() override { clear_buffer(); }

    bool is_socket_;     // send(MSG_NOSIGNAL) is enough; no signal mask dance
    bool watch_reader_;  // pipe or socket: readability of the write end means the reader left
    std::string wbuf_;   // bytes the kernel has not taken yet, from woff_
    std::size_t woff_ = 0;
    WriteFlowControl flow_;
    int dropped_writes_ = 0;  // write() after the close or the loss, for Python's warning
};

}  // namespace asyncio::detail
