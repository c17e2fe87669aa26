// src/backend/perform.cpp - see perform.hpp.
#include "perform.hpp"
#include "faults.hpp"

#include <cerrno>

#include <sys/socket.h>
#include <unistd.h>

namespace asyncio::detail {

Outcome perform(IoOperation* op, char* provided, std::size_t provided_size) noexcept {
    const int fd = op->reg->fd;
    ssize_t r;
    for (;;) {
        switch (op->kind) {
            case IoOperation::Kind::read:
                r = sys::read(fd, op->buffer, op->length);
                break;
            case IoOperation::Kind::write:
                r = sys::write(fd, op->buffer, op->length);
                break;
            case IoOperation::Kind::recv:
                r = sys::recv(fd, op->buffer, op->length, op->flags);
                break;
            case IoOperation::Kind::recv_provided:
                r = sys::recv(fd, provided, provided_size, op->flags);
                op->data = provided;
                break;
            case IoOperation::Kind::recvfrom: {
                void* buf = op->buffer ? op->buffer : provided;
                std::size_t len = op->buffer ? op->length : provided_size;
                socklen_t alen = op->addrlen;
                r = sys::recvfrom(fd, buf, len, op->flags, op->addr, op->addr ? &alen : nullptr);
                if (r >= 0) {
                    op->addrlen = alen;
                    op->data = static_cast<const char*>(buf);
                }
                break;
            }
            case IoOperation::Kind::send:
                r = sys::send(fd, op->buffer, op->length, op->flags | MSG_NOSIGNAL);
                break;
            case IoOperation::Kind::sendto:
                r = sys::sendto(fd, op->buffer, op->length, op->flags | MSG_NOSIGNAL, op->addr, op->addrlen);
                break;
            case IoOperation::Kind::accept: {
                socklen_t alen = op->addrlen;
                r = sys::accept4(fd, op->addr, op->addr ? &alen : nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (r >= 0) op->addrlen = alen;
                break;
            }
            case IoOperation::Kind::connect: {
                if (sys::connect_still_pending(fd)) return Outcome::would_block;
                int err = 0;
                socklen_t len = sizeof err;
                if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
                if (err == EINPROGRESS || err == EALREADY) return Outcome::would_block;
                op->result = -err;
                return Outcome::done;
            }
            case IoOperation::Kind::poll_readable:
            case IoOperation::Kind::poll_writable:
                op->result = 0;
                return Outcome::done;
        }
        if (r >= 0) break;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Outcome::would_block;
        op->result = -errno;
        return Outcome::done;
    }
    op->result = r;
    switch (op->kind) {
        case IoOperation::Kind::read:
        case IoOperation::Kind::recv:
            return static_cast<std::size_t>(r) < op->length ? Outcome::drained : Outcome::done;
        case IoOperation::Kind::recv_provided:
            return static_cast<std::size_t>(r) < provided_size ? Outcome::drained : Outcome::done;
        default:
            return Outcome::done;
    }
}

}  // namespace asyncio::detail
