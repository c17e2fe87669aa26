// src/net/socket_transport.cpp - SocketTransport: Python's _SelectorSocketTransport, method by
// method, on completion-style operations (see socket_transport.hpp).
#include "socket_transport.hpp"
#include "backend/faults.hpp"

#include <asyncio/exceptions.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace asyncio::detail {

namespace {
/// Python's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int log_threshold_for_connlost_writes = 5;
}  // namespace

bool is_connection_error(std::exception_ptr exc) noexcept {
    try {
        std::rethrow_exception(exc);
    } catch (const std::system_error&) {
        return true;  // Python's _fatal_error logs OSError only in debug mode
    } catch (...) {
        return false;
    }
}

SocketTransport::SocketTransport(EventLoop& loop, Socket sock, std::shared_ptr<BaseProtocol> protocol)
    : FdTransport(loop, std::move(sock)), queued_io_(backend_->prefers_queued_io()) {
    set_protocol(std::move(protocol));
    read_op_.user = this;
    read_op_.complete = on_read;
    write_op_.user = this;
    write_op_.kind = IoOperation::Kind::send;
    write_op_.complete = on_write;
    // Python's _set_nodelay: small writes must not wait for delayed ACKs.
    int family = 0;
    socklen_t len = sizeof family;
    if (::getsockopt(sock_.fileno(), SOL_SOCKET, SO_DOMAIN, &family, &len) == 0 &&
        (family == AF_INET || family == AF_INET6)) {
        int one = 1;
        ::setsockopt(sock_.fileno(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    try {
        peername_ = sock_.getpeername();
    } catch (const std::system_error&) {
    }
    link();
}

SocketTransport::~SocketTransport() { release_fd(); }

void SocketTransport::set_protocol_kind() {
    plain_ = dynamic_cast<Protocol*>(protocol_.get());
    buffered_ = plain_ ? nullptr : dynamic_cast<BufferedProtocol*>(protocol_.get());
    // A BufferedProtocol receives straight into its buffer after a readiness report, unless
    // the backend prefers queued receives (io_uring): then it gets a copy from the backend's
    // buffer, since a buffer from get_buffer() may move before the kernel fills it.
    read_op_.kind = buffered_ && !queued_io_ ? IoOperation::Kind::poll_readable : IoOperation::Kind::recv_provided;
}

void SocketTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
    if (!protocol) throw std::invalid_argument("a transport needs a protocol");
    if (!dynamic_cast<Protocol*>(protocol.get()) && !dynamic_cast<BufferedProtocol*>(protocol.get()))
        throw std::invalid_argument("a stream transport needs a Protocol or a BufferedProtocol");
    const bool rearm = read_op_.in_flight;
    if (rearm) backend_->cancel(&read_op_);
    protocol_ = std::move(protocol);
    set_protocol_kind();
    if (rearm) backend_->start(&read_op_);
}

void SocketTransport::start(std::function<void()> on_made) {
    std::shared_ptr<SocketTransport> self = shared_from_this();
    prepare_connection_lost();
    // Python's three call_soon()s: connection_made, start reading, then wake the creator. All
    // or nothing: when one cannot be allocated (std::bad_alloc), those queued are cancelled
    // and the transport does not hold itself, so the caller's failure path frees it.
    Handle made = loop_->call_soon([self] {
        if (!self->protocol_) return;  // closed with the loop meanwhile
        self->started_ = true;
        if (self->plain_)
            self->plain_->connection_made(self);
        else
            self->buffered_->connection_made(self);
    });
    Handle reading;
    try {
        reading = loop_->call_soon([self] {
            if (self->is_reading() && !self->released_) self->arm_reading();
        });
        if (on_made) loop_->call_soon(std::move(on_made));
    } catch (...) {
        made.cancel();
        reading.cancel();
        throw;
    }
    self_ = std::move(self);
}

// ---- reading -------------------------------------------------------------------------------
void SocketTransport::on_read(IoOperation* op) {
    auto* self = static_cast<SocketTransport*>(op->user);
    // The callback may close the transport and drop every other reference.
    std::shared_ptr<FdTransport> keep = self->self_;
    if (op->kind == IoOperation::Kind::poll_readable)
        self->buffered_read_ready();
    else
        self->read_ready(op);
}

void SocketTransport::read_ready(IoOperation* op) {
    if (conn_lost_) return;
    if (op->result < 0) {
        fatal_error(
            std::make_exception_ptr(std::system_error(static_cast<int>(-op->result), std::generic_category(), "recv")),
            "Fatal read error on socket transport");
        return;
    }
    if (op->result == 0) {
        eof_received();
        return;
    }
    deliver(std::string_view(op->data, static_cast<std::size_t>(op->result)));
}

template <class F>
bool SocketTransport::call_protocol(F&& callback, const char* failure) {
    try {
        callback();
        return true;
    } catch (const KeyboardInterrupt&) {
        if (is_reading()) arm_reading();
        throw;
    } catch (...) {
        fatal_error(std::current_exception(), failure);
        return false;
    }
}

void SocketTransport::deliver(std::string_view data) {
    // A BufferedProtocol takes the bytes in as many get_buffer()/buffer_updated() rounds as
    // its buffers need; if it switches protocols meanwhile, the new one gets the rest. (A
    // KeyboardInterrupt from the protocol drops what it has not taken yet.)
    while (!data.empty()) {
        if (plain_) {
            if (!call_protocol([&] { plain_->data_received(data); },
                               "Fatal error: protocol.data_received() call failed."))
                return;
            break;  // data_received takes it all
        }
        std::span<char> buf;
        if (!call_protocol([&] { buf = get_protocol_buffer(data.size()); },
                           "Fatal error: protocol.get_buffer() call failed."))
            return;
        const std::size_t n = std::min(buf.size(), data.size());
        std::memcpy(buf.data(), data.data(), n);
        data.remove_prefix(n);
        if (!call_protocol([&] { buffered_->buffer_updated(n); },
                           "Fatal error: protocol.buffer_updated() call failed."))
            return;
        if (conn_lost_ || (!plain_ && !buffered_)) return;
    }
    if (is_reading()) arm_reading();
}

std::span<char> SocketTransport::get_protocol_buffer(std::size_t sizehint) {
    std::span<char> buf = buffered_->get_buffer(sizehint);
    if (buf.empty()) throw RuntimeError("get_buffer() returned an empty buffer");
    return buf;
}

void SocketTransport::buffered_read_ready() {
    if (conn_lost_) return;
    std::span<char> buf;
    if (!call_protocol([&] { buf = get_protocol_buffer(0); }, "Fatal error: protocol.get_buffer() call failed."))
        return;
    ssize_t n;
    do {
        n = detail::sys::recv(sock_.fileno(), buf.data(), buf.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (is_reading()) arm_reading();
            return;
        }
        fatal_error(std::make_exception_ptr(std::system_error(errno, std::generic_category(), "recv")),
                    "Fatal read error on socket transport");
        return;
    }
    if (n == 0) {
        eof_received();
        return;
    }
    if (!call_protocol([&] { buffered_->buffer_updated(static_cast<std::size_t>(n)); },
                       "Fatal error: protocol.buffer_updated() call failed."))
        return;
    if (is_reading()) arm_reading();
}

void SocketTransport::eof_received() {
    if (loop_->get_debug())
        log_message("transport fd=" + std::to_string(sock_.fileno()) + " received EOF", LogLevel::debug);
    bool keep_open;
    try {
        keep_open = plain_ ? plain_->eof_received() : buffered_->eof_received();
    } catch (const KeyboardInterrupt&) {
        throw;
    } catch (...) {
        fatal_error(std::current_exception(), "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    if (keep_open)
        stop_reading();  // half-open: the peer sends nothing more
    else
        close();
}

// ---- writing -------------------------------------------------------------------------------
void SocketTransport::write(std::string_view data) {
    if (eof_) throw RuntimeError("Cannot call write() after write_eof()");
    if (sendfile_in_progress_) throw RuntimeError("unable to write; sendfile is in progress");
    if (data.empty()) return;
    if (conn_lost_) {
        if (conn_lost_ >= log_threshold_for_connlost_writes) log_message("socket.send() raised exception.");
        ++conn_lost_;
        return;
    }
    // Coalescing buffers small writes only: a large one goes out at once from the caller's
    // buffer (after what this iteration buffered), as uvloop's does - copying it into the
    // buffer first would cost more than the system call it saves.
    constexpr std::size_t coalesce_max = 16 * 1024;
    if (coalesce_ && data.size() >= coalesce_max && flush_hold_) flush_coalesced();
    if (coalesce_ && data.size() < coalesce_max &&
        (flush_hold_ || (get_write_buffer_size() == 0 && !write_op_.in_flight))) {
        if (!flush_hold_) {
            if (get_write_buffer_size() == 0) {
                wbuf_.clear();
                woff_ = 0;
            }
            flush_hold_ = shared_from_this();
            flush_item_.owner = this;
            flush_item_.ops = &flush_ops;
            LoopAccess::schedule_after_batch(*loop_, &flush_item_);
        }
        wbuf_.append(data);
        maybe_pause_protocol();
        return;
    }
    if (get_write_buffer_size() == 0) {
        ssize_t n;
        do {
            n = detail::sys::send(sock_.fileno(), data.data(), data.size(), MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                fatal_error(std::make_exception_ptr(std::system_error(errno, std::generic_category(), "send")),
                            "Fatal write error on socket transport");
                return;
            }
        } else {
            data.remove_prefix(static_cast<std::size_t>(n));
            if (data.empty()) return;
        }
        wbuf_.clear();
        woff_ = 0;
    }
    wbuf_.append(data);
    sync_write_op();
    maybe_pause_protocol();
}

/// Points the queued send at the unsent bytes (the buffer may have moved) and queues it.
/// With queued I/O the kernel reads the bytes after start(), so the send covers `sending_`,
/// which nothing changes while it is in flight; write() appends to `wbuf_`, and the two swap
/// (keeping both capacities) when the send is done.
void SocketTransport::sync_write_op() noexcept {
    if (queued_io_) {
        if (write_op_.in_flight || released_) return;
        if (soff_ == sending_.size()) {
            sending_.clear();
            soff_ = 0;
            if (woff_ == wbuf_.size()) return;
            sending_.swap(wbuf_);
            soff_ = woff_;
            wbuf_.clear();
            woff_ = 0;
        }
        write_op_.buffer = sending_.data() + soff_;
        write_op_.length = sending_.size() - soff_;
        backend_->start(&write_op_);
        return;
    }
    write_op_.buffer = wbuf_.data() + woff_;
    write_op_.length = wbuf_.size() - woff_;
    if (!write_op_.in_flight && write_op_.length > 0 && !released_) backend_->start(&write_op_);
}

void SocketTransport::on_write(IoOperation* op) {
    auto* self = static_cast<SocketTransport*>(op->user);
    std::shared_ptr<FdTransport> keep = self->self_;
    self->write_ready(op);
}

void SocketTransport::write_ready(IoOperation* op) {
    if (conn_lost_) return;
    if (op->result < 0) {
        clear_write_buffer();
        fatal_error(
            std::make_exception_ptr(std::system_error(static_cast<int>(-op->result), std::generic_category(), "send")),
            "Fatal write error on socket transport");
        return;
    }
    if (queued_io_) {
        soff_ += static_cast<std::size_t>(op->result);  // sync_write_op() swaps in wbuf_ when done
    } else {
        woff_ += static_cast<std::size_t>(op->result);
        if (woff_ == wbuf_.size()) {
            wbuf_.clear();
            woff_ = 0;
        } else if (woff_ > 64 * 1024 && woff_ * 2 > wbuf_.size()) {
            wbuf_.erase(0, woff_);  // keep the buffer from growing without bound
            woff_ = 0;
        }
    }
    maybe_resume_protocol();  // may write more
    if (get_write_buffer_size() == 0) {
        write_buffer_drained();
        return;
    }
    sync_write_op();
}

void SocketTransport::write_buffer_drained() {
    if (empty_waiter_) {
        if (!empty_waiter_->done()) empty_waiter_->set_result();
        empty_waiter_.reset();
    }
    if (closing_) {
        call_connection_lost(nullptr);
    } else if (eof_) {
        ::shutdown(sock_.fileno(), SHUT_WR);
    }
}

const ReadyItemOps SocketTransport::flush_ops = {
    /*run=*/
    [](ReadyItem* item) {
        SocketTransport* self = static_cast<FlushItem*>(item)->owner;
        std::shared_ptr<SocketTransport> hold = std::move(self->flush_hold_);
        self->flush_coalesced();
    },
    /*discard=*/[](ReadyItem* item) noexcept { static_cast<FlushItem*>(item)->owner->flush_hold_.reset(); },
    /*drop=*/[](ReadyItem*) noexcept {},
    /*describe=*/[](const ReadyItem*) -> std::string { return "<SocketTransport write flush>"; },
};

void SocketTransport::flush_coalesced() {
    if (conn_lost_ || write_op_.in_flight || released_ || get_write_buffer_size() == 0) return;
    if (!queued_io_ || sending_.size() == soff_) {
        ssize_t n;
        do {
            n = detail::sys::send(sock_.fileno(), wbuf_.data() + woff_, wbuf_.size() - woff_, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                clear_write_buffer();
                fatal_error(std::make_exception_ptr(std::system_error(errno, std::generic_category(), "send")),
                            "Fatal write error on socket transport");
                return;
            }
        } else {
            woff_ += static_cast<std::size_t>(n);
            if (woff_ == wbuf_.size()) {
                wbuf_.clear();
                woff_ = 0;
            }
        }
        maybe_resume_protocol();  // may write more (buffered: the flush is queued again)
        if (get_write_buffer_size() == 0) {
            write_buffer_drained();
            return;
        }
        if (flush_hold_) return;  // the protocol wrote again: that flush sends it all
    }
    sync_write_op();
}

void SocketTransport::write_eof() {
    if (closing_ || eof_) return;
    eof_ = true;
    if (flush_hold_ && get_write_buffer_size() != 0) {
        flush_coalesced();  // shuts the write side down once it is all sent
        return;
    }
    if (get_write_buffer_size() == 0) ::shutdown(sock_.fileno(), SHUT_WR);
}

void SocketTransport::set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) {
    flow_.set_limits(high, low);
    maybe_pause_protocol();
}

void SocketTransport::maybe_pause_protocol() { flow_.maybe_pause(*loop_, protocol_.get(), get_write_buffer_size()); }

void SocketTransport::maybe_resume_protocol() { flow_.maybe_resume(*loop_, protocol_.get(), get_write_buffer_size()); }

Coro<void> SocketTransport::begin_sendfile() {
    if (sendfile_in_progress_) throw RuntimeError("sendfile is already in progress");
    auto keep = shared_from_this();
    sendfile_in_progress_ = true;
    if (flush_hold_) flush_coalesced();
    if (get_write_buffer_size() != 0) {
        empty_waiter_.emplace(*loop_);
        Future<void> w = *empty_waiter_;
        try {
            co_await w;
        } catch (...) {
            sendfile_in_progress_ = false;
            throw;
        }
    }
    if (conn_lost_) {
        sendfile_in_progress_ = false;
        throw std::system_error(ECONNRESET, std::generic_category(), "Connection lost");
    }
}

void SocketTransport::end_sendfile() noexcept { sendfile_in_progress_ = false; }

// ---- closing -------------------------------------------------------------------------------
void SocketTransport::close() {
    if (closing_) return;
    closing_ = true;
    stop_reading();
    if (flush_hold_ && get_write_buffer_size() != 0) {
        flush_coalesced();  // connection_lost once it is all sent
        return;
    }
    if (get_write_buffer_size() == 0) {
        ++conn_lost_;
        if (write_op_.in_flight) backend_->cancel(&write_op_);
        schedule_connection_lost(nullptr);
    }
}

void SocketTransport::abort() { force_close(nullptr); }

void SocketTransport::fatal_error(std::exception_ptr exc, const char* message) {
    if (!is_connection_error(exc)) {
        loop_->call_exception_handler(
            {message, exc, {}, "<SocketTransport fd=" + std::to_string(sock_.fileno()) + ">"});
    } else if (loop_->get_debug()) {
        log_message(std::string(message), LogLevel::debug);
    }
    force_close(exc);
}

void SocketTransport::clear_write_buffer() noexcept {
    if (write_op_.in_flight) backend_->cancel(&write_op_);  // first: the kernel may be reading it
    wbuf_.clear();
    woff_ = 0;
    sending_.clear();
    soff_ = 0;
}

// ---- FdTransport's hooks ---------------------------------------------------------------------
void SocketTransport::drop_unsent() {
    clear_write_buffer();
    if (empty_waiter_) {
        if (!empty_waiter_->done())
            empty_waiter_->set_exception(
                std::make_exception_ptr(std::system_error(ECONNRESET, std::generic_category(), "Connection lost")));
        empty_waiter_.reset();
    }
}

void SocketTransport::forget_protocol() noexcept {
    plain_ = nullptr;
    buffered_ = nullptr;
}

void SocketTransport::connection_lost_done() noexcept {
    if (server_) {
        std::shared_ptr<ServerState> server = std::move(server_);
        server_detach(*server, this);
    }
}

void SocketTransport::loop_closed() noexcept {
    server_.reset();
    empty_waiter_.reset();
}

}  // namespace asyncio::detail
