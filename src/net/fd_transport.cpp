// src/net/fd_transport.cpp - FdTransport: the part of Python's _SelectorTransport that the
// stream and datagram transports share (see fd_transport.hpp).
#include "fd_transport.hpp"

#include <algorithm>
#include <system_error>
#include <utility>

namespace asyncio::detail {

FdTransport::FdTransport(EventLoop& loop, Socket sock)
    : loop_(&loop), backend_(&IoAccess::backend(loop)), sock_(std::move(sock)) {
    IoRegistration* reg = backend_->registration(sock_.fileno());
    read_op_.reg = reg;
    write_op_.reg = reg;
    try {
        sockname_ = sock_.getsockname();
    } catch (const std::system_error&) {
    }
}

FdTransport::~FdTransport() {
    if (lost_callback_) lost_callback_->release();
}

void FdTransport::prepare_connection_lost() {
    if (lost_callback_) return;
    // A raw pointer: the queued callback runs while self_ still holds the transport (only
    // call_connection_lost() and the loop's close drop it; the close drops queued callbacks
    // unrun first).
    lost_callback_ = make_handle_state(LoopAccess::anchor(*loop_), false, [this] {
        std::exception_ptr exc = std::move(lost_exc_);
        call_connection_lost(std::move(exc));
    });
}

void FdTransport::link() noexcept { IoAccess::impl(*loop_).link(this); }

std::any FdTransport::extra_info(std::string_view name) const {
    if (name == "peername") return peername_ ? std::any(*peername_) : std::any();
    if (name == "sockname") return sockname_ ? std::any(*sockname_) : std::any();
    if (name == "socket" && !released_) return TransportSocket(sock_.fileno());
    return {};
}

void FdTransport::stop_reading() noexcept {
    if (read_op_.in_flight) backend_->cancel(&read_op_);
}

void FdTransport::force_close(std::exception_ptr exc) {
    if (conn_lost_) return;
    drop_unsent();
    if (write_op_.in_flight) backend_->cancel(&write_op_);
    if (!closing_) {
        closing_ = true;
        stop_reading();
    }
    ++conn_lost_;
    schedule_connection_lost(std::move(exc));
}

void FdTransport::schedule_connection_lost(std::exception_ptr exc) {
    if (released_ || loop_->is_closed()) return;
    if (HandleState* prepared = std::exchange(lost_callback_, nullptr)) {
        lost_exc_ = std::move(exc);
        (void)LoopAccess::call_soon_prepared(*loop_, prepared);
        return;
    }
    loop_->call_soon([self = self_, exc = std::move(exc)] { self->call_connection_lost(exc); });
}

void FdTransport::call_connection_lost(std::exception_ptr exc) noexcept {
    if (released_) return;
    std::shared_ptr<FdTransport> keep = std::move(self_);  // released when this returns
    std::shared_ptr<BaseProtocol> protocol = std::move(protocol_);
    forget_protocol();
    if (started_ && protocol) {
        try {
            protocol->connection_lost(exc);
        } catch (...) {
            loop_->call_exception_handler({"Exception in callback connection_lost", std::current_exception(), {}, {}});
        }
    }
    release_fd();
    connection_lost_done();
}

void FdTransport::release_fd() noexcept {
    if (released_) return;
    released_ = true;
    closing_ = true;
    stop_reading();
    if (write_op_.in_flight) backend_->cancel(&write_op_);
    backend_->forget(sock_.fileno());
    IoAccess::impl(*loop_).unlink(this);  // nothing to do when the closing loop unlinked us
    sock_.close();
}

void FdTransport::loop_closing() noexcept {
    std::shared_ptr<FdTransport> keep = std::move(self_);
    conn_lost_ = std::max(conn_lost_, 1);  // later writes are dropped, as on a lost connection
    release_fd();
    protocol_.reset();
    forget_protocol();
    loop_closed();
}

}  // namespace asyncio::detail
