// asyncio/protocols.hpp - protocol interfaces (Python's asyncio.protocols).
//
// A protocol is the callback half of a connection: the transport calls it when the
// connection is made, when data arrives, at EOF and when the connection is lost. Subclass the
// one you need and override what you use:
//
//   struct Echo : asyncio::Protocol {
//       std::shared_ptr<asyncio::Transport> transport;
//       void connection_made(std::shared_ptr<asyncio::Transport> t) override { transport = t; }
//       void data_received(std::string_view data) override { transport->write(data); }
//       void connection_lost(std::exception_ptr) override { transport.reset(); }
//   };
//   auto server = co_await loop.create_server([] { return std::make_shared<Echo>(); }, "127.0.0.1", 8888);
//
// Callbacks run on the loop's thread. As in Python, an exception thrown from a stream
// protocol's callback is a fatal error for the connection (reported to the loop's exception
// handler, then the transport is closed); one thrown from datagram_received/error_received is
// only reported, and the endpoint keeps going. Keeping the transport in the protocol is the
// usual pattern: drop it in connection_lost, which is always the last call.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <span>
#include <string_view>

namespace asyncio {

class Transport;
class DatagramTransport;
class SubprocessTransport;
class SockAddr;

/// What every protocol has (Python's BaseProtocol).
class BaseProtocol {
public:
    virtual ~BaseProtocol() = default;
    /// The connection is gone: `exc` is null for a regular close or EOF, else the error.
    /// Always the last call on the protocol.
    virtual void connection_lost(std::exception_ptr exc) { (void)exc; }
    /// The transport's write buffer went over its high-water mark: stop writing.
    virtual void pause_writing() {}
    /// The write buffer drained to the low-water mark: writing may resume.
    virtual void resume_writing() {}
};

/// A stream protocol (Python's Protocol): data arrives as it is received.
class Protocol : public BaseProtocol {
public:
    virtual void connection_made(std::shared_ptr<Transport> transport) { (void)transport; }
    /// Received bytes. The view is valid during the call only (copy what you keep): the
    /// transport receives into a buffer shared by the loop, so an idle connection costs no
    /// read buffer.
    virtual void data_received(std::string_view data) { (void)data; }
    /// The peer closed its writing side. Return true to keep the connection half-open (you
    /// may still write, then close); false closes the transport.
    virtual bool eof_received() { return false; }
};

/// A stream protocol that supplies the buffer to receive into (Python's BufferedProtocol):
/// no copy between the socket and your buffer.
class BufferedProtocol : public BaseProtocol {
public:
    virtual void connection_made(std::shared_ptr<Transport> transport) { (void)transport; }
    /// A buffer to receive into (non-empty). `sizehint` is a suggestion (0: any size).
    virtual std::span<char> get_buffer(std::size_t sizehint) = 0;
    /// `nbytes` were written at the start of the last buffer returned by get_buffer().
    virtual void buffer_updated(std::size_t nbytes) = 0;
    virtual bool eof_received() { return false; }
};

/// A datagram protocol (Python's DatagramProtocol), for create_datagram_endpoint.
class DatagramProtocol : public BaseProtocol {
public:
    virtual void connection_made(std::shared_ptr<DatagramTransport> transport) { (void)transport; }
    /// One datagram and its sender. The view is valid during the call only.
    virtual void datagram_received(std::string_view data, const SockAddr& addr) {
        (void)data;
        (void)addr;
    }
    /// A send or receive failed (e.g. ICMP port unreachable: ECONNREFUSED). The endpoint stays
    /// open.
    virtual void error_received(std::exception_ptr exc) { (void)exc; }
};

/// A child process's protocol (Python's SubprocessProtocol), for loop.subprocess_exec /
/// subprocess_shell. connection_lost() (from BaseProtocol) comes last, once the process has
/// exited and every pipe is closed.
class SubprocessProtocol : public BaseProtocol {
public:
    virtual void connection_made(std::shared_ptr<SubprocessTransport> transport) { (void)transport; }
    /// Bytes the child wrote to its stdout (fd 1) or stderr (fd 2). Valid during the call only.
    virtual void pipe_data_received(int fd, std::string_view data) {
        (void)fd;
        (void)data;
    }
    /// One of the child's pipes (0, 1 or 2) was closed; `exc` is null for a regular close.
    virtual void pipe_connection_lost(int fd, std::exception_ptr exc) {
        (void)fd;
        (void)exc;
    }
    /// The child exited (its return code is the transport's get_returncode()).
    virtual void process_exited() {}
};

}  // namespace asyncio
