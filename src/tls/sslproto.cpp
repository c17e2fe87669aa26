// src/tls/sslproto.cpp - SSLProtocol and its app transport (Python's asyncio/sslproto.py), and
// EventLoop::start_tls (Python's BaseEventLoop.start_tls). See sslproto.hpp.
#include "sslproto.hpp"
#include "net/flow_control.hpp"

#include <asyncio/coroutines.hpp>
#include <asyncio/exceptions.hpp>

#include "net/socket_transport.hpp"
#include "ssl_internal.hpp"

#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace asyncio::detail {

namespace {
/// Python's SSLProtocol.max_size: the most read from OpenSSL in one go.
constexpr std::size_t max_size = 256 * 1024;
/// Python's constants.FLOW_CONTROL_HIGH_WATER_SSL_READ / _WRITE (KiB).
constexpr std::size_t flow_control_high_water_ssl_read = 256;
constexpr std::size_t flow_control_high_water_ssl_write = 512;
/// Python's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int log_threshold_for_connlost_writes = 5;

/// Python's add_flowcontrol_defaults (limits in KiB).
std::pair<std::size_t, std::size_t> add_flowcontrol_defaults(std::optional<std::size_t> high,
                                                             std::optional<std::size_t> low, std::size_t kb) {
    return flow_control_limits(high, low, kb * 1024);
}

/// Python's SSLAgainErrors: SSLWantReadError and SSLSyscallError (plus WANT_WRITE, which a
/// memory BIO never causes).
bool is_again(int err) noexcept {
    return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_SYSCALL;
}

/// Python formats floats with repr: 60.0, 0.25.
std::string seconds_text(double s) {
    char buf[64];
    if (s == static_cast<double>(static_cast<long long>(s)))
        std::snprintf(buf, sizeof buf, "%.1f", s);
    else
        std::snprintf(buf, sizeof buf, "%g", s);
    return buf;
}

const char* state_name(SSLProtocol::State s) {
    switch (s) {
        case SSLProtocol::State::UNWRAPPED:
            return "UNWRAPPED";
        case SSLProtocol::State::DO_HANDSHAKE:
            return "DO_HANDSHAKE";
        case SSLProtocol::State::WRAPPED:
            return "WRAPPED";
        case SSLProtocol::State::FLUSHING:
            return "FLUSHING";
        case SSLProtocol::State::SHUTDOWN:
            return "SHUTDOWN";
    }
    return "?";
}

template <class E>
bool holds(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const E&) {
        return true;
    } catch (...) {
        return false;
    }
}

/// A 256 KiB buffer to decrypt into, from a small per-thread pool: the data is handed to
/// data_received() as a view valid during the call only, so connections need not keep a
/// read buffer of their own (a nested TLS layer takes a second buffer from the pool).
class ScratchBuffer {
public:
    ScratchBuffer() {
        auto& p = pool();
        if (p.empty()) {
            buf_.reset(new char[max_size]);
        } else {
            buf_ = std::move(p.back());
            p.pop_back();
        }
    }
    ~ScratchBuffer() {
        auto& p = pool();
        if (p.size() < 4) p.push_back(std::move(buf_));
    }
    ScratchBuffer(const ScratchBuffer&) = delete;
    ScratchBuffer& operator=(const ScratchBuffer&) = delete;
    char* data() noexcept { return buf_.get(); }

private:
    static std::vector<std::unique_ptr<char[]>>& pool() {
        thread_local std::vector<std::unique_ptr<char[]>> p;
        return p;
    }
    std::unique_ptr<char[]> buf_;
};
}  // namespace

// ---- SSLProtocol: construction -------------------------------------------------------------
SSLProtocol::SSLProtocol(EventLoop& loop, std::shared_ptr<BaseProtocol> app_protocol, const ssl::Context& context,
                         SSLProtocolOptions options)
    : loop_(&loop),
      context_(context),
      server_side_(options.server_side),
      waiter_(std::move(options.waiter)),
      handshake_timeout_(options.ssl_handshake_timeout),
      shutdown_timeout_(options.ssl_shutdown_timeout),
      app_state_(options.call_connection_made ? AppState::INIT : AppState::CON_MADE) {
    if (!(options.ssl_handshake_timeout > 0))
        throw std::invalid_argument("ssl_handshake_timeout should be a positive number, got " +
                                    seconds_text(options.ssl_handshake_timeout));
    if (!(options.ssl_shutdown_timeout > 0))
        throw std::invalid_argument("ssl_shutdown_timeout should be a positive number, got " +
                                    seconds_text(options.ssl_shutdown_timeout));
    if (!server_side_) server_hostname_ = std::move(options.server_hostname);
    set_app_protocol(std::move(app_protocol));

    // Python's SSLContext.wrap_bio(incoming, outgoing, server_side, server_hostname).
    if (server_side_ && context.protocol() == ssl::PROTOCOL_TLS_CLIENT)
        throw ssl::SSLError(SSL_ERROR_SSL, "Cannot create a server socket with a PROTOCOL_TLS_CLIENT context");
    if (!server_side_ && context.protocol() == ssl::PROTOCOL_TLS_SERVER)
        throw ssl::SSLError(SSL_ERROR_SSL, "Cannot create a client socket with a PROTOCOL_TLS_SERVER context");
    if (!server_side_ && context.check_hostname() && server_hostname_.empty())
        throw std::invalid_argument("check_hostname requires server_hostname");
    if (!server_hostname_.empty() && server_hostname_[0] == '.')
        throw std::invalid_argument("server_hostname cannot start with a dot");
    ERR_clear_error();
    // From here on a throw frees the SSL object (and the BIOs it owns) with the member.
    ssl_.reset(SSL_new(context.native_handle()));
    if (!ssl_) ssl::detail::throw_last_error("cannot create an SSL object");
    ssl::detail::BioPtr in(BIO_new(BIO_s_mem()));
    ssl::detail::BioPtr out(in ? BIO_new(BIO_s_mem()) : nullptr);
    if (!out) ssl::detail::throw_last_error("cannot create a memory BIO");
    // An empty BIO means "try again later", not EOF (Python's MemoryBIO).
    BIO_set_mem_eof_return(in.get(), -1);
    BIO_set_mem_eof_return(out.get(), -1);
    SSL_set_bio(ssl_.get(), in.get(), out.get());  // takes over both
    incoming_ = in.release();
    outgoing_ = out.release();
    SSL_set_mode(ssl_.get(), SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_AUTO_RETRY);
    if (server_side_)
        SSL_set_accept_state(ssl_.get());
    else
        SSL_set_connect_state(ssl_.get());
    if (!server_hostname_.empty()) {
        // Python's _ssl_configure_hostname: SNI only for names, never for IP addresses;
        // the certificate is checked against the name or the address.
        ssl::detail::Asn1OctetStringPtr ip(a2i_IPADDRESS(server_hostname_.c_str()));
        ERR_clear_error();
        if (!ip && SSL_set_tlsext_host_name(ssl_.get(), server_hostname_.c_str()) != 1)
            ssl::detail::throw_last_error("cannot set the server name");
        if (context.check_hostname()) {
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
            int ok = ip ? X509_VERIFY_PARAM_set1_ip(param, ASN1_STRING_get0_data(ip.get()),
                                                    static_cast<std::size_t>(ASN1_STRING_length(ip.get())))
                        : X509_VERIFY_PARAM_set1_host(param, server_hostname_.c_str(), server_hostname_.size());
            if (ok != 1) ssl::detail::throw_last_error("cannot set the host name to check");
        }
    }
    std::tie(incoming_high_water_, incoming_low_water_) =
        add_flowcontrol_defaults(std::nullopt, std::nullopt, flow_control_high_water_ssl_read);
    std::tie(outgoing_high_water_, outgoing_low_water_) =
        add_flowcontrol_defaults(std::nullopt, std::nullopt, flow_control_high_water_ssl_write);
    IoAccess::impl(loop).link(this);
    linked_ = true;
}

SSLProtocol::~SSLProtocol() { unlink_from_loop(); }  // ssl_ then frees the SSL object and its BIOs

void SSLProtocol::unlink_from_loop() noexcept {
    if (!linked_) return;
    linked_ = false;
    IoAccess::impl(*loop_).unlink(this);
}

void SSLProtocol::loop_closing() noexcept {
    // The loop unlinked us and closes without callbacks: drop what keeps the app transport
    // and us alive in a cycle.
    linked_ = false;
    std::shared_ptr<SSLProtocol> keep = weak_from_this().lock();
    if (app_transport_) app_transport_->closed_ = true;
    state_ = State::UNWRAPPED;
    waiter_.reset();
    handshake_timeout_handle_ = TimerHandle();
    shutdown_timeout_handle_ = TimerHandle();
    std::shared_ptr<SSLAppTransport> app = std::move(app_transport_);
    std::shared_ptr<BaseProtocol> protocol = std::move(app_protocol_);
    std::shared_ptr<Transport> raw = std::move(transport_);
    app_plain_ = nullptr;
    app_buffered_ = nullptr;
}

void SSLProtocol::set_app_protocol(std::shared_ptr<BaseProtocol> protocol) {
    if (!protocol) throw std::invalid_argument("set_protocol: the protocol is null");
    auto* plain = dynamic_cast<Protocol*>(protocol.get());
    auto* buffered = plain ? nullptr : dynamic_cast<BufferedProtocol*>(protocol.get());
    if (!plain && !buffered) throw std::invalid_argument("an SSL transport needs a Protocol or a BufferedProtocol");
    app_protocol_ = std::move(protocol);
    app_plain_ = plain;
    app_buffered_ = buffered;
}

std::shared_ptr<Transport> SSLProtocol::app_transport() {
    if (!app_transport_ && !app_transport_created_) {
        app_transport_ = std::make_shared<SSLAppTransport>(shared_from_this());
        app_transport_created_ = true;
    }
    return app_transport_;
}

void SSLProtocol::wakeup_waiter(std::exception_ptr exc) {
    if (!waiter_) return;
    Future<void> w = std::move(*waiter_);
    waiter_.reset();
    if (w.done()) return;  // cancelled
    if (exc)
        w.set_exception(exc);
    else
        w.set_result();
}

std::any SSLProtocol::get_extra_info(std::string_view name) const {
    if (name == "sslcontext") return context_;
    if (handshake_info_) {
        if (name == "peercert") return peercert_ ? std::any(*peercert_) : std::any();
        if (name == "cipher") return cipher_ ? std::any(*cipher_) : std::any();
        if (name == "compression") return {};  // Python: None (OpenSSL 3 has no compression)
        if (name == "ssl_object") return ssl_.get();
        if (name == "alpn_protocol") return alpn_protocol_.empty() ? std::any() : std::any(alpn_protocol_);
    }
    if (transport_) return transport_->get_extra_info(name);
    return {};
}

void SSLProtocol::set_state(State new_state) {
    bool allowed = new_state == State::UNWRAPPED || (state_ == State::UNWRAPPED && new_state == State::DO_HANDSHAKE) ||
                   (state_ == State::DO_HANDSHAKE && new_state == State::WRAPPED) ||
                   (state_ == State::WRAPPED && new_state == State::FLUSHING) ||
                   (state_ == State::FLUSHING && new_state == State::SHUTDOWN);
    if (!allowed)
        throw RuntimeError(std::string("cannot switch state from ") + state_name(state_) + " to " +
                           state_name(new_state));
    state_ = new_state;
}

std::exception_ptr SSLProtocol::ssl_error(int err) const {
    return ssl::detail::make_error(err, ssl_.get(), server_hostname_);
}

// ---- the raw transport's protocol ----------------------------------------------------------
void SSLProtocol::connection_made(std::shared_ptr<Transport> transport) {
    transport_ = std::move(transport);
    start_handshake();
}

void SSLProtocol::connection_lost(std::exception_ptr exc) {
    std::shared_ptr<SSLProtocol> keep = shared_from_this();
    if (!exc && force_close_exc_) exc = force_close_exc_;
    write_backlog_.clear();
    write_backlog_offset_ = 0;
    write_buffer_size_ = 0;
    (void)BIO_reset(outgoing_);
    ++conn_lost_;
    if (app_transport_) app_transport_->closed_ = true;
    if (state_ != State::DO_HANDSHAKE && (app_state_ == AppState::CON_MADE || app_state_ == AppState::EOF_)) {
        app_state_ = AppState::CON_LOST;
        if (app_protocol_) loop_->call_soon([app = app_protocol_, exc] { app->connection_lost(exc); });
    }
    state_ = State::UNWRAPPED;
    transport_.reset();
    std::shared_ptr<SSLAppTransport> app = std::move(app_transport_);
    app_protocol_.reset();
    app_plain_ = nullptr;
    app_buffered_ = nullptr;
    wakeup_waiter(exc);
    shutdown_timeout_handle_.cancel();
    handshake_timeout_handle_.cancel();
    unlink_from_loop();
}

void SSLProtocol::data_received(std::string_view data) {
    if (!data.empty()) BIO_write(incoming_, data.data(), static_cast<int>(data.size()));
    switch (state_) {
        case State::DO_HANDSHAKE:
            do_handshake();
            break;
        case State::WRAPPED:
            do_read();
            break;
        case State::FLUSHING:
            do_flush();
            break;
        case State::SHUTDOWN:
            do_shutdown();
            break;
        case State::UNWRAPPED:
            break;
    }
}

bool SSLProtocol::eof_received() {
    eof_received_ = true;
    try {
        if (loop_->get_debug()) log_message("SSLProtocol received EOF", LogLevel::debug);
        switch (state_) {
            case State::DO_HANDSHAKE:
                on_handshake_complete(std::make_exception_ptr(std::system_error(ECONNRESET, std::generic_category())));
                break;
            case State::WRAPPED:
                set_state(State::FLUSHING);
                if (app_reading_paused_) return true;
                do_flush();
                break;
            case State::FLUSHING:
                do_write();
                set_state(State::SHUTDOWN);
                do_shutdown();
                break;
            case State::SHUTDOWN:
                do_shutdown();
                break;
            case State::UNWRAPPED:
                break;
        }
    } catch (...) {
        if (transport_) transport_->close();
        throw;
    }
    return false;
}

// ---- handshake -----------------------------------------------------------------------------
void SSLProtocol::start_handshake() {
    if (loop_->get_debug()) {
        log_message(std::string("SSLProtocol (") + (server_side_ ? "server" : "client") + ") starts SSL handshake",
                    LogLevel::debug);
        handshake_start_time_ = loop_->time();
    }
    set_state(State::DO_HANDSHAKE);
    std::weak_ptr<SSLProtocol> weak = weak_from_this();
    handshake_timeout_handle_ = loop_->call_later(handshake_timeout_, [weak] {
        if (auto self = weak.lock()) self->check_handshake_timeout();
    });
    do_handshake();
}

void SSLProtocol::check_handshake_timeout() {
    if (state_ != State::DO_HANDSHAKE) return;
    std::string msg =
        "SSL handshake is taking longer than " + seconds_text(handshake_timeout_) + " seconds: aborting the connection";
    fatal_error(std::make_exception_ptr(std::system_error(ECONNABORTED, std::generic_category(), msg)));
}

void SSLProtocol::do_handshake() {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_.get());
    if (r == 1) {
        // Send our last handshake flight (a TLS 1.3 client's Finished) now. Python leaves it to
        // _do_read(), which skips it when the app paused reading in connection_made() - and
        // the peer's handshake would then never complete.
        process_outgoing();
        on_handshake_complete(nullptr);
        return;
    }
    int err = SSL_get_error(ssl_.get(), r);
    if (is_again(err)) {
        ERR_clear_error();
        process_outgoing();
        return;
    }
    on_handshake_complete(ssl_error(err));
}

void SSLProtocol::on_handshake_complete(std::exception_ptr exc) {
    handshake_timeout_handle_.cancel();
    handshake_timeout_handle_ = TimerHandle();
    if (!exc) {
        try {
            set_state(State::WRAPPED);
            peercert_ = ssl::getpeercert(ssl_.get());
        } catch (...) {
            exc = std::current_exception();
        }
    }
    if (exc) {
        state_ = State::UNWRAPPED;
        const char* msg = holds<ssl::SSLCertVerificationError>(exc)
                              ? "SSL handshake failed on verifying the certificate"
                              : "SSL handshake failed";
        fatal_error(exc, msg);
        wakeup_waiter(exc);
        return;
    }
    if (loop_->get_debug()) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "SSLProtocol: SSL handshake took %.1f ms",
                      (loop_->time() - handshake_start_time_) * 1e3);
        log_message(buf, LogLevel::debug);
    }
    // Extra info that becomes available after the handshake.
    cipher_ = ssl::cipher(ssl_.get());
    alpn_protocol_ = ssl::selected_alpn_protocol(ssl_.get());
    handshake_info_ = true;
    if (app_state_ == AppState::INIT) {
        app_state_ = AppState::CON_MADE;
        std::shared_ptr<Transport> t = app_transport();
        if (app_plain_)
            app_plain_->connection_made(t);
        else if (app_buffered_)
            app_buffered_->connection_made(t);
    }
    wakeup_waiter();
    do_read();
}

// ---- shutdown ------------------------------------------------------------------------------
void SSLProtocol::start_shutdown() {
    if (state_ == State::FLUSHING || state_ == State::SHUTDOWN || state_ == State::UNWRAPPED) return;
    if (app_transport_) app_transport_->closed_ = true;
    if (state_ == State::DO_HANDSHAKE) {
        abort_connection();
    } else {
        set_state(State::FLUSHING);
        std::weak_ptr<SSLProtocol> weak = weak_from_this();
        shutdown_timeout_handle_ = loop_->call_later(shutdown_timeout_, [weak] {
            if (auto self = weak.lock()) self->check_shutdown_timeout();
        });
        do_flush();
    }
}

void SSLProtocol::check_shutdown_timeout() {
    if (state_ == State::FLUSHING || state_ == State::SHUTDOWN)
        force_close(std::make_exception_ptr(TimeoutError("SSL shutdown timed out")));
}

void SSLProtocol::do_flush() {
    do_read();
    if (state_ != State::FLUSHING) return;  // the app aborted while reading
    set_state(State::SHUTDOWN);
    do_shutdown();
}

void SSLProtocol::do_shutdown() {
    if (!eof_received_) {
        // Python's SSLObject.unwrap(): SSL_shutdown() sends close_notify (0), a second call
        // waits for the peer's (WANT_READ until it arrives, then 1).
        ERR_clear_error();
        int r = SSL_shutdown(ssl_.get());
        if (r == 0) r = SSL_shutdown(ssl_.get());
        if (r < 0) {
            int err = SSL_get_error(ssl_.get(), r);
            if (is_again(err)) {
                ERR_clear_error();
                process_outgoing();
                return;
            }
            on_shutdown_complete(ssl_error(err));
            return;
        }
    }
    process_outgoing();
    call_eof_received();
    on_shutdown_complete(nullptr);
}

void SSLProtocol::on_shutdown_complete(std::exception_ptr exc) {
    shutdown_timeout_handle_.cancel();
    shutdown_timeout_handle_ = TimerHandle();
    if (exc)
        fatal_error(exc);
    else if (transport_)
        loop_->call_soon([t = transport_] { t->close(); });
}

void SSLProtocol::abort_connection() {
    state_ = State::UNWRAPPED;
    if (transport_) transport_->abort();
}

// ---- outgoing flow -------------------------------------------------------------------------
void SSLProtocol::write_appdata(std::string_view data) {
    if (state_ == State::FLUSHING || state_ == State::SHUTDOWN || state_ == State::UNWRAPPED) {
        if (conn_lost_ >= log_threshold_for_connlost_writes) log_message("SSL connection is closed");
        ++conn_lost_;
        return;
    }
    try {
        if (state_ == State::WRAPPED && write_backlog_.empty()) {
            // The usual case: encrypt straight from the caller's bytes, no copy.
            std::size_t done = 0;
            while (done < data.size()) {
                ERR_clear_error();
                std::size_t n = 0;
                if (SSL_write_ex(ssl_.get(), data.data() + done, data.size() - done, &n) == 1) {
                    done += n;
                    continue;
                }
                int err = SSL_get_error(ssl_.get(), 0);
                if (!is_again(err)) std::rethrow_exception(ssl_error(err));
                ERR_clear_error();
                break;
            }
            if (done < data.size()) {
                write_backlog_.emplace_back(data.substr(done));
                write_buffer_size_ += data.size() - done;
            }
            process_outgoing();
        } else {
            write_backlog_.emplace_back(data);
            write_buffer_size_ += data.size();
            if (state_ == State::WRAPPED) do_write();
        }
    } catch (const KeyboardInterrupt&) {
        throw;
    } catch (const CancelledError&) {
        throw;
    } catch (...) {
        fatal_error(std::current_exception(), "Fatal error on SSL protocol");
    }
}

void SSLProtocol::do_write() {
    while (!write_backlog_.empty()) {
        const std::string& front = write_backlog_.front();
        const std::size_t len = front.size() - write_backlog_offset_;
        ERR_clear_error();
        std::size_t n = 0;
        if (SSL_write_ex(ssl_.get(), front.data() + write_backlog_offset_, len, &n) != 1) {
            int err = SSL_get_error(ssl_.get(), 0);
            if (!is_again(err)) std::rethrow_exception(ssl_error(err));
            ERR_clear_error();
            break;
        }
        write_buffer_size_ -= n;
        if (n < len) {
            write_backlog_offset_ += n;
        } else {
            write_backlog_.pop_front();
            write_backlog_offset_ = 0;
        }
    }
    process_outgoing();
}

void SSLProtocol::process_outgoing() {
    // What OpenSSL produced goes to the raw transport straight from the BIO's memory; the
    // transport copies only what the kernel does not take at once.
    while (!ssl_writing_paused_ && !in_process_outgoing_ && transport_) {
        char* p = nullptr;
        long n = BIO_get_mem_data(outgoing_, &p);
        if (n <= 0) break;
        in_process_outgoing_ = true;
        struct Reset {
            bool& flag;
            ~Reset() { flag = false; }
        } reset{in_process_outgoing_};
        std::shared_ptr<Transport> t = transport_;
        t->write(std::string_view(p, static_cast<std::size_t>(n)));
        // Consume those bytes (more may have been appended meanwhile by a nested layer).
        if (BIO_ctrl_pending(outgoing_) == static_cast<std::size_t>(n)) {
            (void)BIO_reset(outgoing_);
        } else {
            char sink[16384];
            for (long left = n; left > 0;) {
                int r = BIO_read(outgoing_, sink, static_cast<int>(std::min<long>(left, sizeof sink)));
                if (r <= 0) break;
                left -= r;
            }
        }
    }
    control_app_writing();
}

// ---- incoming flow -------------------------------------------------------------------------
void SSLProtocol::do_read() {
    if (state_ != State::WRAPPED && state_ != State::FLUSHING) return;
    try {
        if (!app_reading_paused_) {
            if (app_buffered_)
                do_read_buffered();
            else
                do_read_copied();
        }
        // Python writes the backlog only when the app reads; writing does not depend on
        // reading (app data queued during the handshake, or OpenSSL's own records, would
        // wait for a resume_reading() otherwise).
        if (state_ == State::WRAPPED || state_ == State::FLUSHING) {  // not aborted meanwhile
            if (!write_backlog_.empty())
                do_write();
            else
                process_outgoing();
        }
        control_ssl_reading();
    } catch (const KeyboardInterrupt&) {
        throw;
    } catch (const CancelledError&) {
        throw;
    } catch (...) {
        fatal_error(std::current_exception(), "Fatal error on SSL protocol");
    }
}

/// Decrypts into [buf, buf + size) until OpenSSL has nothing more; when the buffer fills up
/// first, the rest is read in the next iteration (as Python's _do_read does).
SSLProtocol::Decrypted SSLProtocol::decrypt_into(char* buf, std::size_t size) {
    Decrypted d;
    for (;;) {
        if (d.bytes == size) {
            loop_->call_soon([self = shared_from_this()] { self->do_read(); });
            return d;
        }
        ERR_clear_error();
        std::size_t n = 0;
        if (SSL_read_ex(ssl_.get(), buf + d.bytes, size - d.bytes, &n) == 1) {
            d.bytes += n;
            continue;
        }
        int err = SSL_get_error(ssl_.get(), 0);
        if (err == SSL_ERROR_ZERO_RETURN) {  // close_notify
            ERR_clear_error();
            d.eof = true;
            return d;
        }
        if (!is_again(err)) std::rethrow_exception(ssl_error(err));
        ERR_clear_error();
        return d;
    }
}

void SSLProtocol::do_read_buffered() {
    std::span<char> buf = app_buffered_->get_buffer(read_buffer_size());
    if (buf.empty()) throw RuntimeError("get_buffer() returned an empty buffer");
    const Decrypted d = decrypt_into(buf.data(), buf.size());
    if (d.bytes > 0) app_buffered_->buffer_updated(d.bytes);
    if (d.eof) {
        call_eof_received();
        start_shutdown();
    }
}

void SSLProtocol::do_read_copied() {
    ScratchBuffer buf;
    const Decrypted d = decrypt_into(buf.data(), max_size);
    if (d.bytes > 0 && app_plain_) app_plain_->data_received(std::string_view(buf.data(), d.bytes));
    if (d.eof) {
        call_eof_received();
        start_shutdown();
    }
}

void SSLProtocol::call_eof_received() {
    try {
        if (app_state_ == AppState::CON_MADE) {
            app_state_ = AppState::EOF_;
            bool keep_open = app_plain_ ? app_plain_->eof_received() : (app_buffered_ && app_buffered_->eof_received());
            if (keep_open) log_message("returning true from eof_received() has no effect when using ssl");
        }
    } catch (const KeyboardInterrupt&) {
        throw;
    } catch (...) {
        fatal_error(std::current_exception(), "Error calling eof_received()");
    }
}

// ---- flow control --------------------------------------------------------------------------
void SSLProtocol::control_app_writing() {
    const std::size_t size = write_buffer_size();
    if (size >= outgoing_high_water_ && !app_writing_paused_) {
        app_writing_paused_ = true;
        if (!app_protocol_) return;
        try {
            app_protocol_->pause_writing();
        } catch (const KeyboardInterrupt&) {
            throw;
        } catch (...) {
            loop_->call_exception_handler({"protocol.pause_writing() failed", std::current_exception(), {}, {}});
        }
    } else if (size <= outgoing_low_water_ && app_writing_paused_) {
        app_writing_paused_ = false;
        if (!app_protocol_) return;
        try {
            app_protocol_->resume_writing();
        } catch (const KeyboardInterrupt&) {
            throw;
        } catch (...) {
            loop_->call_exception_handler({"protocol.resume_writing() failed", std::current_exception(), {}, {}});
        }
    }
}

std::size_t SSLProtocol::write_buffer_size() const noexcept { return BIO_ctrl_pending(outgoing_) + write_buffer_size_; }

void SSLProtocol::set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) {
    std::tie(outgoing_high_water_, outgoing_low_water_) =
        add_flowcontrol_defaults(high, low, flow_control_high_water_ssl_write);
}

void SSLProtocol::resume_app_reading() {
    if (!app_reading_paused_) return;
    app_reading_paused_ = false;
    if (state_ == State::UNWRAPPED) return;  // nothing to resume (and the loop may be gone)
    loop_->call_soon([self = shared_from_this()] {
        switch (self->state_) {
            case State::WRAPPED:
                self->do_read();
                break;
            case State::FLUSHING:
                self->do_flush();
                break;
            case State::SHUTDOWN:
                self->do_shutdown();
                break;
            default:
                break;
        }
    });
}

void SSLProtocol::control_ssl_reading() {
    const std::size_t size = read_buffer_size();
    if (size >= incoming_high_water_ && !ssl_reading_paused_) {
        ssl_reading_paused_ = true;
        if (transport_) transport_->pause_reading();
    } else if (size <= incoming_low_water_ && ssl_reading_paused_) {
        ssl_reading_paused_ = false;
        if (transport_) transport_->resume_reading();
    }
}

std::size_t SSLProtocol::read_buffer_size() const noexcept { return BIO_ctrl_pending(incoming_); }

void SSLProtocol::pause_writing() { ssl_writing_paused_ = true; }

void SSLProtocol::resume_writing() {
    ssl_writing_paused_ = false;
    process_outgoing();
}

// ---- errors --------------------------------------------------------------------------------
void SSLProtocol::force_close(std::exception_ptr exc) {
    // Python's transport._force_close(exc): abort, and report `exc` to connection_lost - unless
    // the transport is already past the point where aborting changes anything.
    if (!transport_) return;
    if (!force_close_exc_ && (!transport_->is_closing() || transport_->get_write_buffer_size() > 0))
        force_close_exc_ = exc;
    transport_->abort();
}

void SSLProtocol::fatal_error(std::exception_ptr exc, const char* message) {
    force_close(exc);
    if (is_connection_error(exc)) {  // OSError (SSLError is one): logged in debug mode only
        if (loop_->get_debug()) log_message(std::string(message) + ": " + describe_exception(exc), LogLevel::debug);
    } else if (!holds<CancelledError>(exc)) {
        loop_->call_exception_handler({message, exc, {}, "<SSLProtocol>"});
    }
}

// ---- the app transport ---------------------------------------------------------------------
void SSLAppTransport::close() {
    if (closed_) return;
    closed_ = true;
    proto_->start_shutdown();
}

void SSLAppTransport::abort() {
    closed_ = true;
    proto_->abort_connection();
}

std::any SSLAppTransport::get_extra_info(std::string_view name) const { return proto_->get_extra_info(name); }

void SSLAppTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
    proto_->set_app_protocol(std::move(protocol));
}

std::shared_ptr<BaseProtocol> SSLAppTransport::get_protocol() const { return proto_->app_protocol_; }

bool SSLAppTransport::is_reading() const noexcept { return !proto_->app_reading_paused_; }

void SSLAppTransport::pause_reading() { proto_->pause_app_reading(); }

void SSLAppTransport::resume_reading() { proto_->resume_app_reading(); }

void SSLAppTransport::write(std::string_view data) {
    if (data.empty()) return;
    proto_->write_appdata(data);
}

void SSLAppTransport::write_eof() {
    throw std::logic_error("write_eof() is not supported by SSL transports (NotImplementedError)");
}

void SSLAppTransport::set_write_buffer_limits(std::optional<std::size_t> high, std::optional<std::size_t> low) {
    proto_->set_write_buffer_limits(high, low);
    proto_->control_app_writing();
}

std::pair<std::size_t, std::size_t> SSLAppTransport::get_write_buffer_limits() const noexcept {
    return {proto_->outgoing_low_water_, proto_->outgoing_high_water_};
}

std::size_t SSLAppTransport::get_write_buffer_size() const noexcept { return proto_->write_buffer_size(); }

// ---- wiring ----------------------------------------------------------------------------------
SSLTransports make_ssl_transport(EventLoop& loop, Socket& sock, std::shared_ptr<BaseProtocol> app_protocol,
                                 const ssl::Context& context, std::optional<Future<void>> waiter, bool server_side,
                                 std::string_view server_hostname, double ssl_handshake_timeout,
                                 double ssl_shutdown_timeout) {
    SSLProtocolOptions options{.waiter = std::move(waiter),
                               .server_side = server_side,
                               .server_hostname = std::string(server_hostname),
                               .call_connection_made = true,
                               .ssl_handshake_timeout = ssl_handshake_timeout,
                               .ssl_shutdown_timeout = ssl_shutdown_timeout};
    std::shared_ptr<SSLProtocol> protocol;
    try {
        protocol = std::make_shared<SSLProtocol>(loop, std::move(app_protocol), context, std::move(options));
    } catch (...) {
        // The caller closes the socket: drop its backend registration first (it may still be
        // in epoll from the connect, and the fd number will be reused).
        IoAccess::backend(loop).forget(sock.fileno());
        throw;
    }
    auto raw = std::make_shared<SocketTransport>(loop, std::move(sock), protocol);
    std::shared_ptr<Transport> app = protocol->app_transport();
    return {std::move(raw), std::move(app)};
}

}  // namespace asyncio::detail

namespace asyncio {

Coro<std::shared_ptr<Transport>> EventLoop::start_tls(std::shared_ptr<Transport> transport,
                                                      std::shared_ptr<BaseProtocol> protocol, ssl::Context context,
                                                      StartTlsOptions opts) {
    if (!transport || !(dynamic_cast<detail::SocketTransport*>(transport.get()) ||
                        dynamic_cast<detail::SSLAppTransport*>(transport.get())))
        throw std::invalid_argument("start_tls: the transport is not supported by start_tls()");
    if (!protocol) throw std::invalid_argument("start_tls: the protocol is null");
    Future<void> waiter(*this);
    // Named, not a temporary in the call: GCC 12 and aggregates in coroutines (docs/compilers.md).
    detail::SSLProtocolOptions ssl_options{.waiter = waiter,
                                           .server_side = opts.server_side,
                                           .server_hostname = std::string(opts.server_hostname),
                                           .call_connection_made = false,
                                           .ssl_handshake_timeout = opts.ssl_handshake_timeout,
                                           .ssl_shutdown_timeout = opts.ssl_shutdown_timeout};
    auto ssl_protocol = std::make_shared<detail::SSLProtocol>(*this, protocol, context, std::move(ssl_options));
    // Pause first, so that the SSL protocol sees no data before its connection_made.
    transport->pause_reading();
    transport->set_protocol(ssl_protocol);
    Handle conmade = call_soon([ssl_protocol, transport] { ssl_protocol->connection_made(transport); });
    Handle resume = call_soon([transport] { transport->resume_reading(); });
    std::exception_ptr failed;
    try {
        co_await waiter;
    } catch (...) {
        failed = std::current_exception();
    }
    if (failed) {
        transport->close();
        conmade.cancel();
        resume.cancel();
        std::rethrow_exception(failed);
    }
    co_return ssl_protocol->app_transport();
}

}  // namespace asyncio
