// src/net/sendfile.cpp - loop.sock_sendfile and loop.sendfile (Python's
// BaseEventLoop.sock_sendfile/sendfile, unix_events._sock_sendfile_native and the fallbacks).
#include <asyncio/base_events.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/tasks.hpp>

#include "io_awaiter.hpp"
#include "backend/faults.hpp"
#include "socket_transport.hpp"

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <system_error>

#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

namespace asyncio {

namespace {
constexpr std::size_t fallback_chunk = 256 * 1024;  // Python: min(count, 256 KiB) blocks

void check_sendfile_params(int sock_type, int fd, std::optional<std::size_t> count) {
    if (sock_type != SOCK_STREAM) throw std::invalid_argument("only SOCK_STREAM type sockets are supported");
    if (fd < 0) throw std::invalid_argument("sendfile: invalid file descriptor");
    if (count && *count == 0) throw std::invalid_argument("count must be a positive integer (got 0)");
}

/// sendfile(2) until done; SendfileNotAvailableError when the kernel cannot do it for this
/// file (nothing sent yet), so the caller may fall back.
Coro<std::size_t> sendfile_native(EventLoop& loop, int sock_fd, int fd, std::size_t offset,
                                  std::optional<std::size_t> count) {
    struct stat st {};
    if (::fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) throw SendfileNotAvailableError("not a regular file");
    const auto fsize = static_cast<std::size_t>(st.st_size);
    const std::size_t end = count ? offset + *count : fsize;
    std::size_t total = 0;
    off_t off = static_cast<off_t>(offset);
    for (;;) {
        const std::size_t pos = offset + total;
        if (pos >= end || (!count && pos >= fsize)) break;
        ssize_t r = detail::sys::sendfile(sock_fd, fd, &off, std::min<std::size_t>(end - pos, 0x7ffff000));
        if (r > 0) {
            total += static_cast<std::size_t>(r);
            continue;
        }
        if (r == 0) break;  // EOF: the file is shorter than asked
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            detail::IoAwaiter aw(loop, sock_fd, detail::IoOperation::Kind::poll_writable);
            co_await aw;
            continue;
        }
        const int err = errno;
        if ((err == EINVAL || err == ENOSYS || err == ENOTSOCK || err == EOPNOTSUPP) && total == 0)
            throw SendfileNotAvailableError("os.sendfile() is not available for this file/socket");
        ::lseek(fd, static_cast<off_t>(offset + total), SEEK_SET);
        detail::throw_errno(err, "sendfile");
    }
    ::lseek(fd, static_cast<off_t>(offset + total), SEEK_SET);  // Python seeks past what was sent
    co_return total;
}

/// Reads a chunk at `pos` (pread: the file position is set at the end, as Python's).
std::size_t read_chunk(int fd, std::string& buf, std::size_t pos, std::size_t want) {
    buf.resize(want);
    for (;;) {
        ssize_t r = ::pread(fd, buf.data(), want, static_cast<off_t>(pos));
        if (r >= 0) {
            buf.resize(static_cast<std::size_t>(r));
            return static_cast<std::size_t>(r);
        }
        if (errno != EINTR) detail::throw_errno(errno, "read");
    }
}

/// The next fallback chunk: reads into `buf` what follows `offset + total` (bounded by
/// `count`); false when there is nothing more to send.
bool next_chunk(int fd, std::string& buf, std::size_t offset, std::size_t total, std::optional<std::size_t> count) {
    std::size_t want = fallback_chunk;
    if (count) want = std::min(want, *count - total);
    return want != 0 && read_chunk(fd, buf, offset + total, want) != 0;
}

/// The fallback protocol of loop.sendfile (Python's _SendfileFallbackProtocol): stands in
/// for the user's protocol while the file is written, tracking flow control.
class SendfileFallbackProtocol final : public Protocol {
public:
    explicit SendfileFallbackProtocol(std::shared_ptr<BaseProtocol> original) : original_(std::move(original)) {}
    void pause_writing() override {
        paused_ = true;
        original_->pause_writing();
    }
    void resume_writing() override {
        paused_ = false;
        if (waiter_ && !waiter_->done()) waiter_->set_result();
        original_->resume_writing();
    }
    void connection_lost(std::exception_ptr exc) override {
        lost_ = true;
        lost_error_ = exc;
        if (waiter_ && !waiter_->done()) {
            if (exc)
                waiter_->set_exception(exc);
            else
                waiter_->set_exception(std::make_exception_ptr(
                    std::system_error(ECONNRESET, std::generic_category(), "Connection closed by peer")));
        }
        original_->connection_lost(exc);
    }
    void data_received(std::string_view) override { throw RuntimeError("Invalid state: reading should be paused"); }
    bool eof_received() override { throw RuntimeError("Invalid state: reading should be paused"); }

    Coro<void> drain(Transport& t) {
        if (lost_) throw std::system_error(ECONNRESET, std::generic_category(), "Connection closed by peer");
        if (!paused_ && !t.is_closing()) co_return;
        waiter_.emplace();
        Future<void> w = *waiter_;
        co_await w;
        waiter_.reset();
    }
    const std::shared_ptr<BaseProtocol>& original() const noexcept { return original_; }

private:
    std::shared_ptr<BaseProtocol> original_;
    std::optional<Future<void>> waiter_;
    std::exception_ptr lost_error_;
    bool paused_ = false;
    bool lost_ = false;
};
}  // namespace

Coro<std::size_t> EventLoop::sock_sendfile(Socket& sock, int fd, std::size_t offset, std::optional<std::size_t> count,
                                           bool fallback) {
    if (!sock.is_open()) throw std::system_error(EBADF, std::generic_category(), "sock_sendfile: the socket is closed");
    check_sendfile_params(sock.type(), fd, count);
    try {
        co_return co_await sendfile_native(*this, sock.fileno(), fd, offset, count);
    } catch (const SendfileNotAvailableError&) {
        if (!fallback) throw;
    }
    // Fallback: read and send by chunks.
    std::size_t total = 0;
    std::string buf;
    while (next_chunk(fd, buf, offset, total, count)) {
        co_await sock_sendall(sock, buf);
        total += buf.size();
    }
    ::lseek(fd, static_cast<off_t>(offset + total), SEEK_SET);
    co_return total;
}

Coro<std::size_t> EventLoop::sendfile(std::shared_ptr<Transport> transport, int fd, std::size_t offset,
                                      std::optional<std::size_t> count, bool fallback) {
    if (!transport) throw std::invalid_argument("sendfile: no transport");
    if (transport->is_closing()) throw RuntimeError("Transport is closing");
    if (fd < 0) throw std::invalid_argument("sendfile: invalid file descriptor");
    if (count && *count == 0) throw std::invalid_argument("count must be a positive integer (got 0)");
    if (auto* plain = dynamic_cast<detail::SocketTransport*>(transport.get())) {
        // Native: flush what is buffered, stop reading, sendfile(2) on the socket itself.
        co_await plain->begin_sendfile();
        const bool was_reading = plain->is_reading();
        if (was_reading) plain->pause_reading();
        std::exception_ptr error;
        std::size_t sent = 0;
        bool unavailable = false;
        try {
            sent = co_await sendfile_native(*this, plain->fileno(), fd, offset, count);
        } catch (const SendfileNotAvailableError&) {
            unavailable = true;
            if (!fallback) error = std::current_exception();
        } catch (...) {
            error = std::current_exception();
        }
        plain->end_sendfile();
        if (was_reading) plain->resume_reading();
        if (error) std::rethrow_exception(error);
        if (!unavailable) co_return sent;
    } else if (!fallback) {
        throw RuntimeError("fallback is disabled and native sendfile is not supported for this transport");
    }
    // Fallback: write chunks through the transport, with its flow control.
    auto proto = std::make_shared<SendfileFallbackProtocol>(transport->get_protocol());
    const bool was_reading = transport->is_reading();
    if (was_reading) transport->pause_reading();
    transport->set_protocol(proto);
    std::size_t total = 0;
    std::exception_ptr error;
    try {
        std::string buf;
        while (next_chunk(fd, buf, offset, total, count)) {
            co_await proto->drain(*transport);
            transport->write(buf);
            total += buf.size();
        }
        co_await proto->drain(*transport);
    } catch (...) {
        error = std::current_exception();
    }
    ::lseek(fd, static_cast<off_t>(offset + total), SEEK_SET);
    if (!transport->is_closing() || transport->get_protocol() == proto) transport->set_protocol(proto->original());
    if (was_reading && !transport->is_closing()) transport->resume_reading();
    if (error) std::rethrow_exception(error);
    co_return total;
}

}  // namespace asyncio
