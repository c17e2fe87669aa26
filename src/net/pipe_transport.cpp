// src/net/pipe_transport.cpp - ReadPipeTransport and WritePipeTransport: Python's
// _UnixReadPipeTransport and _UnixWritePipeTransport, method by method (see
// pipe_transport.hpp), and the loop's connect_read_pipe / connect_write_pipe.
#include "pipe_transport.hpp"
#include "backend/faults.hpp"

#include <asyncio/exceptions.hpp>
#include <asyncio/futures.hpp>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace asyncio::detail {

namespace {
/// Python's _UnixReadPipeTransport.max_size: the most one read(2) takes.
constexpr std::size_t max_read_size = 256 * 1024;
/// Python's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int log_threshold_for_connlost_writes = 5;

char* scratch_buffer() {
    thread_local std::unique_ptr<char[]> scratch(new char[max_read_size]);
    return scratch.get();
}

std::exception_ptr errno_error(int err, const char* what) {
    return std::make_exception_ptr(std::system_error(err, std::generic_category(), what));
}
}  // namespace

mode_t check_pipe_fd(int fd, const char* refusal) {
    struct stat st {};
    if (::fstat(fd, &st) < 0) throw std::system_error(errno, std::generic_category(), "fstat");
    if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !S_ISCHR(st.st_mode)) throw std::invalid_argument(refusal);
    return st.st_mode;
}

void check_pipe_protocol(const BaseProtocol* protocol) {
    if (!protocol) throw std::invalid_argument("a transport needs a protocol");
    if (!dynamic_cast<const Protocol*>(protocol) && !dynamic_cast<const BufferedProtocol*>(protocol))
        throw std::invalid_argument("a pipe transport needs a Protocol or a BufferedProtocol");
}

ssize_t write_without_sigpipe(int fd, const void* data, std::size_t size) {
    sigset_t sigpipe, old_mask;
    ::sigemptyset(&sigpipe);
    ::sigaddset(&sigpipe, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &sigpipe, &old_mask);
    // Checked once blocked: a SIGPIPE pending now was pending before, so it is not ours to
    // consume. Only possible when this thread already blocked it: an unblocked one would have
    // been delivered - so the usual case (not blocked) saves the sigpending call.
    bool was_pending = false;
    if (::sigismember(&old_mask, SIGPIPE) == 1) {
        sigset_t pending;
        ::sigpending(&pending);
        was_pending = ::sigismember(&pending, SIGPIPE) == 1;
    }
    ssize_t n;
    do {
        n = detail::sys::write(fd, data, size);
    } while (n < 0 && errno == EINTR);
    const int err = errno;
    if (n < 0 && err == EPIPE && !was_pending) {
        // The kernel sent this thread SIGPIPE along with EPIPE: take it before unblocking.
        const timespec zero{};
        while (::sigtimedwait(&sigpipe, nullptr, &zero) < 0 && errno == EINTR) {
        }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    errno = err;
    return n;
}

// ---- PipeTransport ---------------------------------------------------------------------------
PipeTransport::PipeTransport(EventLoop& loop, Socket fd, std::shared_ptr<BaseProtocol> protocol)
    : FdTransport(loop, std::move(fd)) {
    set_protocol(std::move(protocol));
    read_op_.user = this;
    write_op_.user = this;
}

PipeTransport::~PipeTransport() { release_fd(); }

void PipeTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
    check_pipe_protocol(protocol.get());
    protocol_ = std::move(protocol);
    plain_ = dynamic_cast<Protocol*>(protocol_.get());
    buffered_ = plain_ ? nullptr : dynamic_cast<BufferedProtocol*>(protocol_.get());
}

void PipeTransport::forget_protocol() noexcept {
    plain_ = nullptr;
    buffered_ = nullptr;
}

std::any PipeTransport::get_extra_info(std::string_view name) const {
    if (name == "pipe" && !released_) return sock_.fileno();
    return {};
}

void PipeTransport::start(std::function<void()> on_made) {
    std::shared_ptr<PipeTransport> self = shared_from_this();
    self_ = self;
    loop_->call_soon([self] {
        if (!self->protocol_) return;  // closed with the loop meanwhile
        self->started_ = true;
        if (self->plain_)
            self->plain_->connection_made(self);
        else
            self->buffered_->connection_made(self);
    });
    loop_->call_soon([self] {
        if (!self->released_) self->start_io();
    });
    if (on_made) loop_->call_soon(std::move(on_made));
}

void PipeTransport::fatal_error(std::exception_ptr exc, const char* message, bool quiet) {
    if (!quiet) {
        loop_->call_exception_handler({message, exc, {}, "<PipeTransport fd=" + std::to_string(sock_.fileno()) + ">"});
    } else if (loop_->get_debug()) {
        log_message(std::string(message), LogLevel::debug);
    }
    stop_reading();  // force_close() skips it when already closing (write_eof with a buffer)
    force_close(std::move(exc));
}

void PipeTransport::no_such_direction(const char* method, const char* fix) {
    throw RuntimeError(std::string(method) + " is not available on this pipe transport: " + fix);
}

// ---- ReadPipeTransport -----------------------------------------------------------------------
ReadPipeTransport::ReadPipeTransport(EventLoop& loop, Socket fd, std::shared_ptr<BaseProtocol> protocol)
    : PipeTransport(loop, std::move(fd), std::move(protocol)) {
    read_op_.kind = IoOperation::Kind::poll_readable;
    read_op_.complete = on_read;
    link();
}

void ReadPipeTransport::start_io() {
    if (is_reading()) arm_reading();
}

void ReadPipeTransport::on_read(IoOperation* op) {
    auto* self = static_cast<ReadPipeTransport*>(op->user);
    std::shared_ptr<FdTransport> keep = self->self_;  // the callbacks may drop every other
    self->read_ready(op);
}

void ReadPipeTransport::read_ready(IoOperation* op) {
    if (conn_lost_) return;
    if (op->result < 0) {  // the backend could not watch the fd
        const int err = static_cast<int>(-op->result);
        fatal_error(errno_error(err, "read"), "Fatal read error on pipe transport", err == EIO);
        return;
    }
    read_once();
}

void ReadPipeTransport::read_once() {
    char* buf = scratch_buffer();
    std::size_t size = max_read_size;
    if (buffered_) {
        std::span<char> span;
        try {
            span = buffered_->get_buffer(max_read_size);
            if (span.empty()) throw RuntimeError("get_buffer() returned an empty buffer");
        } catch (const KeyboardInterrupt&) {
            if (is_reading()) arm_reading();
            throw;
        } catch (...) {
            report_callback_error("get_buffer");
            if (is_reading()) arm_reading();
            return;
        }
        buf = span.data();
        size = span.size();
    }
    ssize_t n;
    do {
        n = detail::sys::read(sock_.fileno(), buf, size);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            arm_reading();
            return;
        }
        // EIO: the other side of a pty is closed, the usual end of a terminal's output.
        fatal_error(errno_error(errno, "read"), "Fatal read error on pipe transport", errno == EIO);
        return;
    }
    if (n == 0) {
        eof_reached();
        return;
    }
    deliver(buf, static_cast<std::size_t>(n));
}

void ReadPipeTransport::deliver(const char* data, std::size_t n) {
    try {
        if (plain_)
            plain_->data_received(std::string_view(data, n));
        else if (buffered_)
            buffered_->buffer_updated(n);
    } catch (const KeyboardInterrupt&) {
        if (is_reading()) arm_reading();
        throw;
    } catch (...) {
        report_callback_error(plain_ ? "data_received" : "buffer_updated");
    }
    if (is_reading()) arm_reading();
}

void ReadPipeTransport::report_callback_error(const char* callback) {
    loop_->call_exception_handler(
        {std::string("Exception in callback protocol.") + callback + "()", std::current_exception(), {}, {}});
}

void ReadPipeTransport::eof_reached() {
    // Python: eof_received() and connection_lost(None) come in two later callbacks, and what
    // eof_received() returns does not matter - a pipe has no other direction to keep open.
    if (loop_->get_debug())
        log_message("pipe fd=" + std::to_string(sock_.fileno()) + " was closed by peer", LogLevel::info);
    closing_ = true;
    ++conn_lost_;
    stop_reading();
    loop_->call_soon([self = self_] {
        auto* me = static_cast<ReadPipeTransport*>(self.get());
        if (me->released_) return;
        try {
            if (me->plain_)
                me->plain_->eof_received();
            else if (me->buffered_)
                me->buffered_->eof_received();
        } catch (const KeyboardInterrupt&) {
            throw;
        } catch (...) {
            me->report_callback_error("eof_received");
        }
    });
    schedule_connection_lost(nullptr);
}

void ReadPipeTransport::close() {
    if (!closing_) force_close(nullptr);
}

void ReadPipeTransport::write(std::string_view) {
    no_such_direction("write()", "it reads a pipe; write with a transport from loop.connect_write_pipe()");
}

void ReadPipeTransport::write_eof() {
    no_such_direction("write_eof()", "it reads a pipe; close() it, or use loop.connect_write_pipe() to write");
}

void ReadPipeTransport::set_write_buffer_limits(std::optional<std::size_t>, std::optional<std::size_t>) {
    no_such_direction("set_write_buffer_limits()", "it reads a pipe and has no write buffer");
}

// ---- WritePipeTransport ----------------------------------------------------------------------
WritePipeTransport::WritePipeTransport(EventLoop& loop, Socket fd, std::shared_ptr<BaseProtocol> protocol, mode_t mode)
    : PipeTransport(loop, std::move(fd), std::move(protocol)),
      is_socket_(S_ISSOCK(mode)),
      watch_reader_(S_ISSOCK(mode) || S_ISFIFO(mode)) {
    write_op_.kind = IoOperation::Kind::poll_writable;
    write_op_.complete = on_writable;
    read_op_.kind = IoOperation::Kind::poll_readable;
    read_op_.complete = on_reader_gone;
    link();
}

void WritePipeTransport::start_io() {
    // Not after write_eof() on an empty buffer: connection_lost is on its way.
    if (watch_reader_ && !conn_lost_ && !read_op_.in_flight) backend_->start(&read_op_);
}

ssize_t WritePipeTransport::write_some(const char* data, std::size_t size) noexcept {
    ssize_t n;
    if (is_socket_) {
        do {
            n = detail::sys::send(sock_.fileno(), data, size, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
    } else {
        n = write_without_sigpipe(sock_.fileno(), data, size);
    }
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -errno;
}

void WritePipeTransport::write_failed(int err) {
    // Python's _fatal_error on an OSError: no report (debug log only), connection_lost(exc).
    fatal_error(errno_error(err, "write"), "Fatal write error on pipe transport", /*quiet=*/true);
}

void WritePipeTransport::write(std::string_view data) {
    if (data.empty()) return;
    if (conn_lost_ || closing_) {
        if (dropped_writes_ >= log_threshold_for_connlost_writes)
            log_message("pipe closed by peer or os.write(pipe, data) raised exception.");
        ++dropped_writes_;
        return;
    }
    if (get_write_buffer_size() == 0) {
        const ssize_t n = write_some(data.data(), data.size());  // at once: no copy, no wait
        if (n < 0) {
            write_failed(static_cast<int>(-n));
            return;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
        if (data.empty()) return;
        clear_buffer();
        backend_->start(&write_op_);
    }
    wbuf_.append(data);
    flow_.maybe_pause(*loop_, protocol_.get(), get_write_buffer_size());
}

void WritePipeTransport::on_writable(IoOperation* op) {
    auto* self = static_cast<WritePipeTransport*>(op->user);
    std::shared_ptr<FdTransport> keep = self->self_;
    self->write_ready(op);
}

void WritePipeTransport::write_ready(IoOperation* op) {
    if (conn_lost_) return;
    if (op->result < 0) {  // the backend could not watch the fd
        write_failed(static_cast<int>(-op->result));
        return;
    }
    const ssize_t n = write_some(wbuf_.data() + woff_, wbuf_.size() - woff_);
    if (n < 0) {
        write_failed(static_cast<int>(-n));
        return;
    }
    woff_ += static_cast<std::size_t>(n);
    if (woff_ < wbuf_.size()) {
        if (woff_ > 64 * 1024 && woff_ * 2 > wbuf_.size()) {
            wbuf_.erase(0, woff_);  // keep the buffer from growing without bound
            woff_ = 0;
        }
        backend_->start(&write_op_);
        return;
    }
    clear_buffer();
    flow_.maybe_resume(*loop_, protocol_.get(), 0);  // may write again
    // Unless resume_writing() wrote again, or aborted (connection_lost is on its way then).
    if (get_write_buffer_size() == 0 && closing_ && !conn_lost_ && !released_) {
        stop_reading();
        call_connection_lost(nullptr);
    }
}

void WritePipeTransport::on_reader_gone(IoOperation* op) {
    auto* self = static_cast<WritePipeTransport*>(op->user);
    std::shared_ptr<FdTransport> keep = self->self_;
    self->reader_gone(op);
}

void WritePipeTransport::reader_gone(IoOperation* op) {
    if (conn_lost_) return;
    if (op->result < 0) {
        write_failed(static_cast<int>(-op->result));
        return;
    }
    // Python's _read_ready: the write end turned readable, so the reader left. Data still
    // buffered is lost: BrokenPipeError (EPIPE); otherwise this is a plain end.
    if (loop_->get_debug())
        log_message("pipe fd=" + std::to_string(sock_.fileno()) + " was closed by peer", LogLevel::info);
    force_close(get_write_buffer_size() > 0 ? errno_error(EPIPE, "write") : nullptr);
}

void WritePipeTransport::write_eof() {
    if (closing_) return;
    closing_ = true;
    if (get_write_buffer_size() == 0) {
        stop_reading();
        ++conn_lost_;
        schedule_connection_lost(nullptr);
    }
}

void WritePipeTransport::close() {
    if (!released_ && !closing_) write_eof();
}

void WritePipeTransport::set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) {
    flow_.set_limits(high, low);
    flow_.maybe_pause(*loop_, protocol_.get(), get_write_buffer_size());
}

void WritePipeTransport::clear_buffer() noexcept {
    if (write_op_.in_flight) backend_->cancel(&write_op_);
    wbuf_.clear();
    woff_ = 0;
}

void WritePipeTransport::pause_reading() {
    no_such_direction("pause_reading()", "it writes a pipe; read with a transport from loop.connect_read_pipe()");
}

void WritePipeTransport::resume_reading() {
    no_such_direction("resume_reading()", "it writes a pipe; read with a transport from loop.connect_read_pipe()");
}

// ---- connect_read_pipe / connect_write_pipe --------------------------------------------------

// The checks come before Socket::adopt: when they refuse, the fd is still the caller's (Python
// leaves the pipe object alone too).
Coro<MadeConnection> ConnectionAccess::connect_read_pipe(EventLoop& loop, ProtocolFactory factory, int fd) {
    std::shared_ptr<BaseProtocol> protocol = factory();
    check_pipe_protocol(protocol.get());
    check_pipe_fd(fd, "Pipe transport is for pipes/sockets only.");
    auto transport = std::make_shared<ReadPipeTransport>(loop, Socket::adopt(fd), protocol);
    co_return co_await start_and_wait<MadeConnection>(loop, std::move(transport), std::move(protocol));
}

Coro<MadeConnection> ConnectionAccess::connect_write_pipe(EventLoop& loop, ProtocolFactory factory, int fd) {
    std::shared_ptr<BaseProtocol> protocol = factory();
    check_pipe_protocol(protocol.get());
    const mode_t mode = check_pipe_fd(fd, "Pipe transport is only for pipes, sockets and character devices");
    auto transport = std::make_shared<WritePipeTransport>(loop, Socket::adopt(fd), protocol, mode);
    co_return co_await start_and_wait<MadeConnection>(loop, std::move(transport), std::move(protocol));
}

}  // namespace asyncio::detail
