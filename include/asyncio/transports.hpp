// asyncio/transports.hpp - transport interfaces (Python's asyncio.transports).
//
// A transport is the I/O half of a connection: you write to it, it calls its protocol. The
// loop creates them (create_connection, create_server, create_datagram_endpoint...); you get
// a std::shared_ptr. An open transport is kept alive by its loop until connection_lost has
// been delivered, so dropping every handle never cuts a connection short.
#pragma once

#include <asyncio/sockets.hpp>

#include <any>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asyncio {

class BaseProtocol;

/// Python's BaseTransport.
class BaseTransport {
public:
    virtual ~BaseTransport() = default;
    /// Closes the transport: buffered data is still sent, then the protocol's
    /// connection_lost(nullptr) is called (soon, never from inside close()). Idempotent.
    virtual void close() = 0;
    /// True once close() or abort() was called (or the connection failed).
    virtual bool is_closing() const noexcept = 0;
    /// Python's get_extra_info(name): "peername", "sockname" (SockAddr), "socket"
    /// (TransportSocket), and for TLS "sslcontext", "ssl_object", "peercert", "cipher",
    /// "compression", "alpn_protocol" (see ssl.hpp). An empty std::any when unknown.
    virtual std::any get_extra_info(std::string_view name) const = 0;
    /// get_extra_info with a default and a type: get_extra_info<SockAddr>("peername", {}).
    template <class T>
    T get_extra_info(std::string_view name, T default_value) const {
        std::any v = get_extra_info(name);
        if (const T* p = std::any_cast<T>(&v)) return *p;
        return default_value;
    }
    virtual void set_protocol(std::shared_ptr<BaseProtocol> protocol) = 0;
    virtual std::shared_ptr<BaseProtocol> get_protocol() const = 0;
};

/// A bidirectional stream transport (Python's Transport = ReadTransport + WriteTransport).
class Transport : public BaseTransport {
public:
    // ---- reading --------------------------------------------------------------------
    virtual bool is_reading() const noexcept = 0;
    /// Stops calling data_received until resume_reading(). No-op when closing or paused.
    virtual void pause_reading() = 0;
    virtual void resume_reading() = 0;

    // ---- writing --------------------------------------------------------------------
    /// Queues `data` for sending; never blocks. The bytes are copied if they cannot be sent
    /// at once. RuntimeError after write_eof().
    virtual void write(std::string_view data) = 0;
    /// write() of each piece, in order.
    void writelines(std::span<const std::string_view> pieces) {
        for (std::string_view p : pieces) write(p);
    }
    void writelines(std::initializer_list<std::string_view> pieces) {
        for (std::string_view p : pieces) write(p);
    }
    void writelines(const std::vector<std::string>& pieces) {
        for (const std::string& p : pieces) write(p);
    }
    /// Closes the writing side after the buffered data is sent (shutdown(SHUT_WR)).
    virtual void write_eof() = 0;
    virtual bool can_write_eof() const noexcept = 0;
    /// Closes at once: buffered data is dropped; connection_lost(nullptr) follows.
    virtual void abort() = 0;
    /// Flow control: pause_writing() is called when the buffer goes above `high`,
    /// resume_writing() when it drains to `low`. Defaults: high 64 KiB, low high/4 (Python's
    /// rules when one is omitted); std::invalid_argument unless high >= low >= 0.
    virtual void set_write_buffer_limits(std::optional<std::size_t> high = std::nullopt,
                                         std::optional<std::size_t> low = std::nullopt) = 0;
    /// (low, high).
    virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept = 0;
    virtual std::size_t get_write_buffer_size() const noexcept = 0;
};

/// A datagram transport (Python's DatagramTransport).
class DatagramTransport : public BaseTransport {
public:
    /// Sends one datagram to `addr` (or to the connected peer when omitted).
    virtual void sendto(std::string_view data, const std::optional<SockAddr>& addr = std::nullopt) = 0;
    virtual void abort() = 0;
    /// Flow control over the datagrams queued while the socket would block, with
    /// Transport's rules (Python's _SelectorDatagramTransport has _FlowControlMixin's).
    virtual void set_write_buffer_limits(std::optional<std::size_t> high = std::nullopt,
                                         std::optional<std::size_t> low = std::nullopt) = 0;
    /// (low, high).
    virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept = 0;
    virtual std::size_t get_write_buffer_size() const noexcept = 0;
};

/// A child process and its pipes (Python's SubprocessTransport), from loop.subprocess_exec /
/// subprocess_shell. close() closes the pipes and kills the child if it still runs (as Python's
/// does); signalling a child whose transport has finished throws std::system_error ESRCH
/// (Python's ProcessLookupError).
class SubprocessTransport : public BaseTransport {
public:
    virtual int get_pid() const = 0;
    /// nullopt while the child runs; its exit status, or -N when signal N killed it.
    virtual std::optional<int> get_returncode() const = 0;
    /// The transport of the child's stdin (0), stdout (1) or stderr (2); null when that
    /// stream is not a pipe.
    virtual std::shared_ptr<Transport> get_pipe_transport(int fd) const = 0;
    virtual void send_signal(int sig) = 0;
    /// SIGTERM.
    virtual void terminate() = 0;
    /// SIGKILL.
    virtual void kill() = 0;
};

}  // namespace asyncio
