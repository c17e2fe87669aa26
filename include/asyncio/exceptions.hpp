// asyncio/exceptions.hpp - the exception hierarchy, mirroring Python's asyncio.exceptions.
//
// Python's CancelledError derives from BaseException so that `except Exception` does not
// swallow cancellation. The C++ equivalent: CancelledError is *not* derived from
// std::exception, so `catch (const std::exception&)` lets it through. Everything else derives
// from std::exception. Python's ValueError maps to std::invalid_argument and OSError to
// std::system_error.
#pragma once

#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace asyncio {

/// The operation was cancelled. Deliberately not a std::exception (see file comment).
/// Carries the message given to `cancel(msg)`, as Python's CancelledError(msg) does.
class CancelledError {
public:
    CancelledError() = default;
    explicit CancelledError(std::string msg) : msg_(std::move(msg)) {}
    /// The cancel message ("" when none was given).
    const std::string& message() const noexcept { return msg_; }
    const char* what() const noexcept { return msg_.c_str(); }

private:
    std::string msg_;
};

/// Python's KeyboardInterrupt: raised by asyncio::run/Runner::run after Ctrl-C cancelled the
/// main task. Like Python's (a BaseException), not a std::exception.
class KeyboardInterrupt {
public:
    const char* what() const noexcept { return "KeyboardInterrupt"; }
};

/// Misuse of the runtime: closed loop, loop already running, no running loop, ...
class RuntimeError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// sendfile cannot be done natively (not a regular file, or the transport/socket cannot):
/// Python's asyncio.SendfileNotAvailableError, a RuntimeError.
class SendfileNotAvailableError : public RuntimeError {
public:
    using RuntimeError::RuntimeError;
};

/// The operation exceeded the given deadline (asyncio.TimeoutError is TimeoutError in 3.11+).
class TimeoutError : public std::runtime_error {
public:
    TimeoutError() : std::runtime_error("TimeoutError") {}
    explicit TimeoutError(const std::string& msg) : std::runtime_error(msg) {}
};

/// Invalid internal state of a Task or Future (result before done, set_result twice, ...).
class InvalidStateError : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

/// Raised by StreamReader::readexactly/readuntil when EOF comes first.
class IncompleteReadError : public std::runtime_error {
public:
    IncompleteReadError(std::string partial, std::ptrdiff_t expected);
    std::string partial;      ///< the bytes read before EOF
    std::ptrdiff_t expected;  ///< total bytes expected, -1 when unknown
};

/// Reached the buffer limit while looking for a separator.
class LimitOverrunError : public std::runtime_error {
public:
    LimitOverrunError(const std::string& msg, std::size_t consumed) : std::runtime_error(msg), consumed(consumed) {}
    std::size_t consumed;  ///< bytes to be consumed
};

class QueueEmpty : public std::runtime_error {
public:
    QueueEmpty() : std::runtime_error("QueueEmpty") {}
};
class QueueFull : public std::runtime_error {
public:
    QueueFull() : std::runtime_error("QueueFull") {}
};
class QueueShutDown : public std::runtime_error {
public:
    QueueShutDown() : std::runtime_error("QueueShutDown") {}
};
class BrokenBarrierError : public std::runtime_error {
public:
    BrokenBarrierError() : std::runtime_error("BrokenBarrierError") {}
};

/// A group of exceptions raised together (TaskGroup). Mirrors Python's ExceptionGroup.
class ExceptionGroup : public std::runtime_error {
public:
    ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions);
    const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }
    const std::string& message() const noexcept { return message_; }

private:
    std::string message_;
    std::vector<std::exception_ptr> exceptions_;
};

/// A readable one-line description of any exception_ptr (type and message), for logs.
std::string describe_exception(const std::exception_ptr& e);

/// True when `e` holds an asyncio::CancelledError.
bool is_cancelled_error(const std::exception_ptr& e) noexcept;
/// True when `e` holds an asyncio::KeyboardInterrupt.
bool is_keyboard_interrupt(const std::exception_ptr& e) noexcept;

}  // namespace asyncio
