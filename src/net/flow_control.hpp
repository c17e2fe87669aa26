// src/net/flow_control.hpp - the write side of Python's transports._FlowControlMixin, for any
// transport that buffers what the kernel would not take: the high/low water marks, and
// protocol.pause_writing()/resume_writing() around them.
//
// The transport owns one WriteFlowControl, calls maybe_pause() after queueing and
// maybe_resume() after draining, with its current buffer size (what get_write_buffer_size()
// says); the helper remembers whether the protocol is paused, so each call is delivered once.
#pragma once

#include <asyncio/detail/event_loop.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/protocols.hpp>

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

namespace asyncio::detail {

/// Python's add_flowcontrol_defaults / _FlowControlMixin._set_write_buffer_limits: a missing
/// high is 4 * low (or `default_high` when both are missing), a missing low is high / 4.
/// Returns (high, low); std::invalid_argument (Python's ValueError) unless high >= low.
inline std::pair<std::size_t, std::size_t> flow_control_limits(std::optional<std::size_t> high,
                                                               std::optional<std::size_t> low,
                                                               std::size_t default_high) {
    const std::size_t hi = high ? *high : (low ? 4 * *low : default_high);
    const std::size_t lo = low ? *low : hi / 4;
    if (hi < lo)
        throw std::invalid_argument("high (" + std::to_string(hi) + ") must be >= low (" + std::to_string(lo) +
                                    ") must be >= 0");
    return {hi, lo};
}

class WriteFlowControl {
public:
    /// Python's defaults: 64 KiB, low a quarter of it.
    static constexpr std::size_t default_high_water = 64 * 1024;

    /// New limits (see flow_control_limits). Python's set_write_buffer_limits then calls
    /// _maybe_pause_protocol - and only that: raising the limits does not resume a paused
    /// protocol before the buffer drains.
    void set_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) {
        std::tie(high_, low_) = flow_control_limits(high, low, default_high_water);
    }
    /// (low, high), as Python's get_write_buffer_limits.
    std::pair<std::size_t, std::size_t> limits() const noexcept { return {low_, high_}; }
    bool paused() const noexcept { return paused_; }

    /// pause_writing() once the buffer is strictly above the high-water mark.
    void maybe_pause(EventLoop& loop, BaseProtocol* protocol, std::size_t buffered) {
        if (buffered <= high_ || paused_ || !protocol) return;
        paused_ = true;
        notify(loop, protocol, &BaseProtocol::pause_writing, "protocol.pause_writing() failed");
    }
    /// resume_writing() once the buffer drained to the low-water mark (or below).
    void maybe_resume(EventLoop& loop, BaseProtocol* protocol, std::size_t buffered) {
        if (!paused_ || buffered > low_ || !protocol) return;
        paused_ = false;
        notify(loop, protocol, &BaseProtocol::resume_writing, "protocol.resume_writing() failed");
    }

private:
    /// The protocol's exception goes to the loop's exception handler; the transport goes on
    /// (Python re-raises only SystemExit and KeyboardInterrupt).
    static void notify(EventLoop& loop, BaseProtocol* protocol, void (BaseProtocol::*callback)(), const char* failure) {
        try {
            (protocol->*callback)();
        } catch (const KeyboardInterrupt&) {
            throw;
        } catch (...) {
            loop.call_exception_handler({failure, std::current_exception(), {}, {}});
        }
    }

    std::size_t high_ = default_high_water;
    std::size_t low_ = default_high_water / 4;
    bool paused_ = false;
};

}  // namespace asyncio::detail
