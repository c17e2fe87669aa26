// asyncio/streams.hpp - high-level streams (Python's asyncio.streams).
//
//   auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", 8888);
//   writer.write("hello\n");
//   co_await writer.drain();
//   std::string line = co_await reader.readline();
//   writer.close();
//   co_await writer.wait_closed();
//
//   auto server = co_await asyncio::start_server(
//       [](asyncio::StreamReader r, asyncio::StreamWriter w) -> asyncio::Coro<> {
//           while (true) {
//               std::string data = co_await r.read(65536);
//               if (data.empty()) break;     // EOF
//               w.write(data);
//               co_await w.drain();
//           }
//           w.close();
//       }, "127.0.0.1", 8888);
//   co_await server.serve_forever();
//
// StreamReader and StreamWriter are cheap shared handles (copy them freely on the loop's
// thread). Bytes are std::string / std::string_view.
#pragma once

#include <asyncio/base_events.hpp>
#include <asyncio/coroutines.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/protocols.hpp>
#include <asyncio/transports.hpp>

#include <any>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asyncio {

/// Python's streams._DEFAULT_LIMIT: 64 KiB.
inline constexpr std::size_t default_stream_limit = 64 * 1024;

namespace detail {
struct StreamReaderState;
class StreamReaderProtocol;
struct StreamWriterState;
struct StreamConnectionGuard;
struct StreamAccess;
}  // namespace detail

/// Python's StreamReader: a buffer fed by the connection, read with coroutines.
/// Only one coroutine may wait on a reader at a time (RuntimeError otherwise, as in Python).
class StreamReader {
public:
    /// A reader not attached to any connection (feed it with feed_data/feed_eof), with the
    /// buffer limit used by readline/readuntil (and for flow control).
    explicit StreamReader(std::size_t limit = default_stream_limit);

    /// Up to `n` bytes (n < 0: everything until EOF). "" at EOF. Waits only when the buffer
    /// is empty.
    Coro<std::string> read(std::ptrdiff_t n = -1);
    /// One line, including "\n"; at EOF the last partial line (or ""). A line longer than the
    /// limit: std::invalid_argument (Python's ValueError), and the line is dropped.
    Coro<std::string> readline();
    /// Exactly `n` bytes; IncompleteReadError (with .partial) when EOF comes first.
    Coro<std::string> readexactly(std::size_t n);
    /// Data up to and including `separator`. IncompleteReadError at EOF without it (the
    /// buffer is then consumed); LimitOverrunError when the limit is reached first (the data
    /// stays in the buffer).
    Coro<std::string> readuntil(std::string separator = "\n");
    /// Python 3.13: the first of several separators to match (the shortest match wins).
    Coro<std::string> readuntil(std::vector<std::string> separators);
    /// True when EOF was fed and the buffer is empty.
    bool at_eof() const noexcept;

    // ---- the feeding side (used by the protocol; public as in Python) -------------------
    void feed_data(std::string_view data);
    void feed_eof();
    void set_exception(std::exception_ptr exc);
    std::exception_ptr exception() const noexcept;
    void set_transport(std::shared_ptr<Transport> transport);
    std::size_t limit() const noexcept;
    /// Bytes buffered and not yet read.
    std::size_t buffered() const noexcept;

    explicit StreamReader(std::shared_ptr<detail::StreamReaderState> s) : state_(std::move(s)) {}

private:
    friend class detail::StreamReaderProtocol;
    friend struct detail::StreamAccess;
    std::shared_ptr<detail::StreamReaderState> state_;
    // Set on the handles a connection gives out (not on the protocol's own reference): the
    // connection is closed when the last such reader or writer handle is gone.
    std::shared_ptr<detail::StreamConnectionGuard> guard_;
};

/// Python's StreamWriter: writes go to the transport; drain() applies back-pressure.
///
/// Close the writer when you are done with a connection. If every StreamReader and
/// StreamWriter handle of an open connection is dropped (a start_server handler that returns
/// without writer.close(), say), nothing can use the connection any more: it is closed then,
/// as Python 3.13 closes it when the writer is collected, and debug mode reports it.
class StreamWriter {
public:
    StreamWriter() = default;
    StreamWriter(std::shared_ptr<Transport> transport, std::shared_ptr<detail::StreamReaderProtocol> protocol,
                 std::optional<StreamReader> reader);

    void write(std::string_view data);
    void writelines(std::initializer_list<std::string_view> pieces);
    void writelines(const std::vector<std::string>& pieces);
    void write_eof();
    bool can_write_eof() const;
    /// Closes the transport (buffered data is still sent).
    void close();
    bool is_closing() const;
    /// Waits until the connection is closed: re-raises the error it was lost with, if any.
    Coro<void> wait_closed();
    /// Waits until the write buffer is below the transport's low-water mark. Raises the
    /// reader's error, or ConnectionResetError (std::system_error, errc::connection_reset)
    /// once the connection is lost.
    Coro<void> drain();
    std::any get_extra_info(std::string_view name) const;
    template <class T>
    T get_extra_info(std::string_view name, T default_value) const {
        return transport().get_extra_info<T>(name, std::move(default_value));
    }
    Transport& transport() const;
    /// Upgrades the connection to TLS, Python's StreamWriter.start_tls: the side (client or
    /// server) is the context's. Every copy of this writer writes through TLS afterwards.
    Coro<void> start_tls(ssl::Context context, ConnectionOptions opts = {});

private:
    friend struct detail::StreamAccess;
    // Shared by copies, so start_tls() switches the transport for all of them (Python has one
    // writer object).
    std::shared_ptr<detail::StreamWriterState> state_;
};

/// The callback start_server runs for each connection, as a task.
using ClientConnectedCallback = std::function<Coro<void>(StreamReader, StreamWriter)>;

namespace detail {
/// Python's StreamReaderProtocol (with FlowControlMixin): feeds a StreamReader and tracks
/// write flow control for StreamWriter.drain(). A BufferedProtocol: when the reader's buffer
/// has room, the transport receives straight into it (one copy less per byte than
/// data_received); otherwise into a per-thread scratch buffer that is then appended.
class StreamReaderProtocol final : public BufferedProtocol, public std::enable_shared_from_this<StreamReaderProtocol> {
public:
    explicit StreamReaderProtocol(StreamReader reader, ClientConnectedCallback cb = {});
    void connection_made(std::shared_ptr<Transport> transport) override;
    void connection_lost(std::exception_ptr exc) override;
    std::span<char> get_buffer(std::size_t sizehint) override;
    void buffer_updated(std::size_t nbytes) override;
    /// Python's data_received (what the buffered calls amount to).
    void data_received(std::string_view data);
    bool eof_received() override;
    void pause_writing() override;
    void resume_writing() override;

    Coro<void> drain_helper();
    Coro<void> wait_closed();
    /// connection_made(): the client_connected_cb task for a server connection.
    void start_client_connected_cb(const std::shared_ptr<Transport>& transport);
    /// drain_helper() would raise or wait (writing is paused, or the connection is lost).
    bool drain_must_wait() const noexcept { return paused_ || connection_lost_; }
    StreamReader& reader() noexcept { return reader_; }
    bool over_ssl = false;

private:
    StreamReader reader_;
    ClientConnectedCallback cb_;
    std::shared_ptr<Transport> transport_;
    bool paused_ = false;
    bool connection_lost_ = false;
    std::vector<Future<void>> drain_waiters_;
    std::vector<Future<void>> close_waiters_;
    std::exception_ptr closed_error_;
    bool closed_done_ = false;
    bool scratch_ = false;  // the last get_buffer() gave the scratch buffer
};
}  // namespace detail

/// Python's open_connection(host, port, limit=..., **kwds).
Coro<std::pair<StreamReader, StreamWriter>> open_connection(std::string host, int port, ConnectionOptions opts = {},
                                                            std::size_t limit = default_stream_limit);
/// Python's start_server(client_connected_cb, host, port, limit=..., **kwds).
Coro<Server> start_server(ClientConnectedCallback client_connected_cb, std::string host, int port,
                          ServerOptions opts = {}, std::size_t limit = default_stream_limit);
Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(std::string path, ConnectionOptions opts = {},
                                                                 std::size_t limit = default_stream_limit);
Coro<Server> start_unix_server(ClientConnectedCallback client_connected_cb, std::string path, ServerOptions opts = {},
                               std::size_t limit = default_stream_limit);

/// The sock= forms (Python's open_connection(sock=...), start_server(sock=...) and the Unix
/// ones): streams over a socket you made - connected for open_*, bound for start_* (the
/// server calls listen()). The streams (or the server) own the socket from then on; it is
/// closed on failure too. std::invalid_argument for a socket of the wrong kind.
Coro<std::pair<StreamReader, StreamWriter>> open_connection(Socket sock, ConnectionOptions opts = {},
                                                            std::size_t limit = default_stream_limit);
Coro<Server> start_server(ClientConnectedCallback client_connected_cb, Socket sock, ServerOptions opts = {},
                          std::size_t limit = default_stream_limit);
Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(Socket sock, ConnectionOptions opts = {},
                                                                 std::size_t limit = default_stream_limit);
Coro<Server> start_unix_server(ClientConnectedCallback client_connected_cb, Socket sock, ServerOptions opts = {},
                               std::size_t limit = default_stream_limit);

}  // namespace asyncio
