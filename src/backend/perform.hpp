// src/backend/perform.hpp - performs one operation's syscall now, without waiting: the part of
// "completion-style" that a readiness-based backend (epoll, or io_uring's poll for the
// operations it has no native opcode for) does once the fd is ready.
#pragma once

#include "backend.hpp"

namespace asyncio::detail {

enum class Outcome : std::uint8_t {
    done,         ///< op->result is set: report it
    would_block,  ///< EAGAIN (or a connect still in progress): wait for readiness again
    drained,      ///< done, and a short stream read says the socket has nothing more for now
};

/// Performs `op` on `op->reg->fd` once (retrying EINTR). `provided` is the backend's buffer
/// of `provided_size` bytes for recv_provided and for recvfrom without a buffer.
Outcome perform(IoOperation* op, char* provided, std::size_t provided_size) noexcept;

}  // namespace asyncio::detail
