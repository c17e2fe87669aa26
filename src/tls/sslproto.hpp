// src/tls/sslproto.hpp - TLS over a stream transport: Python's asyncio/sslproto.py (3.11+, the
// uvloop-derived state machine), method by method.
//
//  * SSLProtocol is the protocol of the raw transport (a SocketTransport, or another TLS
//    transport for TLS in TLS). It keeps OpenSSL's SSL object on two memory BIOs: what the
//    socket receives goes into `incoming_`, what OpenSSL produces is taken from `outgoing_` and
//    written to the raw transport.
//  * SSLAppTransport is the transport the application protocol sees (Python's
//    _SSLProtocolTransport): writes are encrypted, close() runs the TLS shutdown.
//  * States: UNWRAPPED -> DO_HANDSHAKE -> WRAPPED -> FLUSHING -> SHUTDOWN (-> UNWRAPPED), with
//    the handshake and shutdown timeouts, and flow control both ways (app writes vs the
//    outgoing BIO, the incoming BIO vs the raw transport's reading).
//
// Ownership: the raw transport owns the SSLProtocol while the connection is open (the loop owns
// the raw transport); the SSLProtocol owns the app transport and the app protocol until
// connection_lost; the app transport owns the SSLProtocol (so its extra info outlives the
// connection, as in Python). The SSLProtocol <-> app transport cycle is broken in
// connection_lost, or when the loop closes with the connection still open.
#pragma once

#include <asyncio/detail/event_loop.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/protocols.hpp>
#include <asyncio/ssl.hpp>
#include <asyncio/transports.hpp>

#include "loop/loop_impl.hpp"
#include "net/tls_seam.hpp"
#include "openssl_handles.hpp"

#include <deque>
#include <memory>
#include <optional>
#include <string>

namespace asyncio::detail {

class SocketTransport;
class SSLAppTransport;

/// Python's SSLProtocol arguments after (loop, app_protocol, sslcontext), named as there.
struct SSLProtocolOptions {
    /// Completed when the handshake is done (with its error, or the connection's if it is
    /// lost first); none when nobody waits.
    std::optional<Future<void>> waiter;
    bool server_side = false;
    /// Client side: the SNI name and the name (or address) the certificate is checked
    /// against; empty for none (Python's None). Ignored on the server side.
    std::string server_hostname;
    /// Whether the app protocol's connection_made is called after the handshake (false for
    /// start_tls, whose protocol already has its connection).
    bool call_connection_made = true;
    double ssl_handshake_timeout = 60.0;
    double ssl_shutdown_timeout = 30.0;
};

class SSLProtocol final : public Protocol, public LoopResource, public std::enable_shared_from_this<SSLProtocol> {
public:
    enum class State { UNWRAPPED, DO_HANDSHAKE, WRAPPED, FLUSHING, SHUTDOWN };
    enum class AppState { INIT, CON_MADE, EOF_, CON_LOST };

    /// Python's SSLProtocol(loop, app_protocol, sslcontext, waiter, server_side,
    /// server_hostname, call_connection_made, ssl_handshake_timeout, ssl_shutdown_timeout),
    /// the arguments after sslcontext in `options`.
    /// Creates the SSL object (SSLError for a context of the other side,
    /// std::invalid_argument for non-positive timeouts or check_hostname without a name).
    SSLProtocol(EventLoop& loop, std::shared_ptr<BaseProtocol> app_protocol, const ssl::Context& context,
                SSLProtocolOptions options);
    ~SSLProtocol() override;
    SSLProtocol(const SSLProtocol&) = delete;
    SSLProtocol& operator=(const SSLProtocol&) = delete;

    /// The transport to hand to the application (Python's _get_app_transport(): created on
    /// first use); null after connection_lost.
    std::shared_ptr<Transport> app_transport();

    // Protocol (called by the raw transport)
    void connection_made(std::shared_ptr<Transport> transport) override;
    void connection_lost(std::exception_ptr exc) override;
    void data_received(std::string_view data) override;
    bool eof_received() override;
    void pause_writing() override;
    void resume_writing() override;

private:
    friend class SSLAppTransport;

    void loop_closing() noexcept override;
    void unlink_from_loop() noexcept;
    void set_app_protocol(std::shared_ptr<BaseProtocol> protocol);
    void wakeup_waiter(std::exception_ptr exc = nullptr);
    std::any get_extra_info(std::string_view name) const;
    void set_state(State new_state);

    // handshake
    void start_handshake();
    void check_handshake_timeout();
    void do_handshake();
    void on_handshake_complete(std::exception_ptr exc);
    // shutdown
    void start_shutdown();
    void check_shutdown_timeout();
    void do_flush();
    void do_shutdown();
    void on_shutdown_complete(std::exception_ptr exc);
    void abort_connection();
    // outgoing
    void write_appdata(std::string_view data);
    void do_write();
    void process_outgoing();
    // incoming
    void do_read();
    void do_read_buffered();
    void do_read_copied();
    struct Decrypted {
        std::size_t bytes = 0;
        bool eof = false;  // close_notify received
    };
    Decrypted decrypt_into(char* buf, std::size_t size);
    void call_eof_received();
    // flow control
    void control_app_writing();
    std::size_t write_buffer_size() const noexcept;
    void set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low);
    void pause_app_reading() noexcept { app_reading_paused_ = true; }
    void resume_app_reading();
    void control_ssl_reading();
    std::size_t read_buffer_size() const noexcept;
    // errors
    void force_close(std::exception_ptr exc);
    void fatal_error(std::exception_ptr exc, const char* message = "Fatal error on transport");
    std::exception_ptr ssl_error(int ssl_error) const;

    EventLoop* loop_;
    ssl::Context context_;
    ssl::detail::SslPtr ssl_;
    BIO* incoming_ = nullptr;  // owned by ssl_
    BIO* outgoing_ = nullptr;  // owned by ssl_
    bool server_side_;
    std::string server_hostname_;
    std::optional<Future<void>> waiter_;
    std::shared_ptr<BaseProtocol> app_protocol_;
    Protocol* app_plain_ = nullptr;
    BufferedProtocol* app_buffered_ = nullptr;
    std::shared_ptr<SSLAppTransport> app_transport_;
    bool app_transport_created_ = false;
    std::shared_ptr<Transport> transport_;  // the raw transport
    double handshake_timeout_;
    double shutdown_timeout_;
    double handshake_start_time_ = 0;
    TimerHandle handshake_timeout_handle_;
    TimerHandle shutdown_timeout_handle_;
    State state_ = State::UNWRAPPED;
    AppState app_state_;
    int conn_lost_ = 0;
    std::exception_ptr force_close_exc_;  // the error connection_lost reports after force_close
    bool linked_ = false;                 // in the loop's list of I/O objects
    bool in_process_outgoing_ = false;

    // app data written before the handshake finished or not taken by OpenSSL yet
    std::deque<std::string> write_backlog_;
    std::size_t write_backlog_offset_ = 0;  // of the first item
    std::size_t write_buffer_size_ = 0;

    // flow control
    bool ssl_writing_paused_ = false;
    bool app_reading_paused_ = false;
    bool ssl_reading_paused_ = false;
    bool eof_received_ = false;
    bool app_writing_paused_ = false;
    std::size_t incoming_high_water_ = 0;
    std::size_t incoming_low_water_ = 0;
    std::size_t outgoing_high_water_ = 0;
    std::size_t outgoing_low_water_ = 0;

    // extra info available after the handshake
    bool handshake_info_ = false;
    std::optional<ssl::Certificate> peercert_;
    std::optional<ssl::CipherInfo> cipher_;
    std::string alpn_protocol_;
};

/// Python's _SSLProtocolTransport: what the application protocol writes to.
class SSLAppTransport final : public Transport, public std::enable_shared_from_this<SSLAppTransport> {
public:
    explicit SSLAppTransport(std::shared_ptr<SSLProtocol> protocol) : proto_(std::move(protocol)) {}

    void close() override;
    bool is_closing() const noexcept override { return closed_; }
    std::any get_extra_info(std::string_view name) const override;
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
    std::shared_ptr<BaseProtocol> get_protocol() const override;
    bool is_reading() const noexcept override;
    void pause_reading() override;
    void resume_reading() override;
    void write(std::string_view data) override;
    /// Not supported over TLS: std::logic_error (Python's NotImplementedError).
    void write_eof() override;
    bool can_write_eof() const noexcept override { return false; }
    void abort() override;
    void set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) override;
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept override;
    std::size_t get_write_buffer_size() const noexcept override;

private:
    friend class SSLProtocol;
    std::shared_ptr<SSLProtocol> proto_;
    bool closed_ = false;
};

}  // namespace asyncio::detail
