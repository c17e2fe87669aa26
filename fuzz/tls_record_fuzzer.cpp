// fuzz/tls_record_fuzzer.cpp - the TLS transport (server side) fed by a peer that sends the
// fuzzer's bytes.
//
// Our side is a TLS server: loop.connect_accepted_socket() with ssl options on one end of a
// socketpair, with a recording protocol. The far end is a raw socket driven by the harness, in
// one of two modes (chosen by the first byte):
//   * raw: the rest of the input is written to the raw end as it is, in chunks of a size the
//     second byte gives (0: all at once), with loop iterations in between; then the raw end is
//     closed. The bytes cannot complete a handshake (that needs the server's ephemeral key), so
//     the handshake must fail: the protocol never sees connection_made.
//   * client: the harness is a real TLS client (OpenSSL with memory BIOs, TLS 1.3 or 1.2 only)
//     that completes the handshake through the raw end, then runs the rest of the input as
//     operations: send application data (encrypted), inject raw bytes into the stream, send a
//     record with one byte flipped, send a truncated record, close_notify, KeyUpdate (1.3),
//     renegotiation (1.2), read what the server sent, let the loop run. Then the raw end is
//     closed.
// Invariants, each an abort naming it (libFuzzer reports a crash):
//   * connection_made at most once; connection_lost exactly once if connection_made ran,
//     never otherwise; no data_received/eof_received outside connection_made..connection_lost;
//   * raw mode: connection_made never runs (the handshake cannot complete);
//   * client mode: what data_received got is a prefix of the plaintext the client sent (an
//     injected or corrupted record never reaches the protocol as data; nothing is lost,
//     duplicated or reordered before the first bad record);
//   * connect_accepted_socket ends (returns or raises a std::exception) and the transport reaches
//     connection_lost within 5 s of the raw end's close (handshake and shutdown timeouts: 2 s);
//   * no fd is left open once it is over (the count of /proc/self/fd before and after);
//   * ASan/UBSan (the fuzz preset) see no memory error.
//
// Input format (fuzz/make_tls_record_corpus.py writes the seeds in fuzz/corpus/tls_record/):
//   byte 0: bit 0: client mode; bit 1: the server protocol echoes what it gets; bit 2 (client
//           mode): the client offers TLS 1.2 only; bit 3: the server pauses reading in
//           connection_made and resumes it after the next operation
//   raw mode: byte 1 = chunk size (0: one write), then the bytes to send
//   client mode: operations, each an opcode byte (b % 9) and its operands:
//     0 DATA n bytes   application data (n = next byte)
//     1 RAW n bytes    these bytes, unencrypted, into the stream
//     2 FLIP n bytes k a DATA record with byte k % size flipped (xor 0x01)
//     3 TRUNC n bytes k a DATA record cut to k % size bytes
//     4 CLOSE          close_notify (SSL_shutdown)
//     5 KEYUPDATE      TLS 1.3 KeyUpdate (update_requested); 1.2: nothing
//     6 RENEG          TLS 1.2 renegotiation request; 1.3: nothing
//     7 READ           read and decrypt what the server sent so far
//     8 SPIN           a few loop iterations
#include <asyncio.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace asyncio;

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "tls_record_fuzzer: INVARIANT BROKEN: %s\n", what);
    std::abort();
}

int open_fds() {
    int n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

// ---- contexts, made once -------------------------------------------------------------------
/// A server context with a self-signed P-256 certificate for "localhost", made in memory.
ssl::Context& server_context() {
    static ssl::Context ctx = [] {
        ssl::Context c = ssl::Context::server();
        EVP_PKEY* key = EVP_EC_gen("P-256");
        X509* cert = X509_new();
        X509_set_version(cert, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), -86400);
        X509_gmtime_adj(X509_getm_notAfter(cert), 3650L * 86400);
        X509_set_pubkey(cert, key);
        X509_NAME* name = X509_get_subject_name(cert);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1,
                                   -1, 0);
        X509_set_issuer_name(cert, name);
        X509_sign(cert, key, EVP_sha256());
        if (SSL_CTX_use_certificate(c.native_handle(), cert) != 1 ||
            SSL_CTX_use_PrivateKey(c.native_handle(), key) != 1)
            fail("cannot install the test certificate");
        X509_free(cert);
        EVP_PKEY_free(key);
        return c;
    }();
    return ctx;
}

/// The harness's client (no verification: the harness only needs the handshake to complete).
SSL_CTX* client_ctx(bool tls12) {
    static SSL_CTX* ctx13 = nullptr;
    static SSL_CTX* ctx12 = nullptr;
    SSL_CTX*& c = tls12 ? ctx12 : ctx13;
    if (!c) {
        c = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
        SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
        SSL_CTX_set_max_proto_version(c, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    }
    return c;
}

// ---- the server's protocol -----------------------------------------------------------------
struct Recorder : Protocol {
    std::shared_ptr<Transport> transport;
    int made = 0;
    int lost = 0;
    std::string data;
    bool echo = false;
    bool pause_on_made = false;

    void connection_made(std::shared_ptr<Transport> t) override {
        if (made || lost) fail("connection_made twice or after connection_lost");
        ++made;
        transport = std::move(t);
        if (pause_on_made) transport->pause_reading();
    }
    void data_received(std::string_view d) override {
        if (!made || lost) fail("data_received outside connection_made..connection_lost");
        data += d;
        if (echo) transport->write(d);
    }
    bool eof_received() override {
        if (!made || lost) fail("eof_received outside connection_made..connection_lost");
        return false;
    }
    void connection_lost(std::exception_ptr) override {
        if (!made) fail("connection_lost without connection_made");
        if (lost) fail("connection_lost twice");
        ++lost;
        transport.reset();
    }
};

// ---- input ---------------------------------------------------------------------------------
struct Input {
    const std::uint8_t* p;
    std::size_t n;
    std::size_t pos = 0;
    bool done() const { return pos >= n; }
    std::uint8_t byte() { return pos < n ? p[pos++] : 0; }
    std::string bytes(std::size_t k) {
        k = std::min(k, n - std::min(pos, n));
        std::string s(reinterpret_cast<const char*>(p + pos), k);
        pos += k;
        return s;
    }
    std::string rest() { return bytes(n); }
};

// ---- the harness's client ------------------------------------------------------------------
struct Client {
    SSL* ssl = nullptr;
    BIO* in = nullptr;   // what the server sent, for the client to read
    BIO* out = nullptr;  // what the client wrote, for the harness to send
    explicit Client(bool tls12) {
        ssl = SSL_new(client_ctx(tls12));
        in = BIO_new(BIO_s_mem());
        out = BIO_new(BIO_s_mem());
        BIO_set_mem_eof_return(in, -1);
        SSL_set_bio(ssl, in, out);
        SSL_set_connect_state(ssl);
        SSL_set_tlsext_host_name(ssl, "localhost");
    }
    ~Client() { SSL_free(ssl); }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    std::string take_output() {
        std::string s;
        char buf[4096];
        int k;
        while ((k = BIO_read(out, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(k));
        return s;
    }
};

/// Whatever the server sent so far, without waiting (the raw end is non-blocking).
std::string recv_now(Socket& raw) {
    std::string s;
    char buf[16384];
    for (;;) {
        ssize_t k = ::recv(raw.fileno(), buf, sizeof buf, 0);
        if (k <= 0) break;
        s.append(buf, static_cast<std::size_t>(k));
    }
    return s;
}

/// Sends without waiting for long: the socketpair's buffer holds far more than an input.
Coro<void> send(Socket& raw, std::string_view bytes) {
    if (bytes.empty() || !raw.is_open()) co_return;
    try {
        co_await wait_for(get_running_loop().sock_sendall(raw, bytes), 2.0);
    } catch (const std::exception&) {
        // The server closed its end (a failed handshake): the rest goes nowhere, as for a peer.
    }
}

Coro<void> spin(int n) {
    for (int i = 0; i < n; ++i) co_await sleep(0);
}

/// The client's handshake through the raw end (bounded by 2 s); true when it completed.
Coro<bool> handshake(Client& c, Socket& raw) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    for (int idle = 0; std::chrono::steady_clock::now() < deadline;) {
        int r = SSL_do_handshake(c.ssl);
        co_await send(raw, c.take_output());
        if (r == 1) co_return true;
        int err = SSL_get_error(c.ssl, r);
        if (err != SSL_ERROR_WANT_READ) co_return false;
        std::string got = recv_now(raw);
        if (got.empty()) {
            if (++idle < 50)
                co_await sleep(0);
            else
                co_await sleep(0.001);
            continue;
        }
        idle = 0;
        BIO_write(c.in, got.data(), static_cast<int>(got.size()));
    }
    co_return false;
}

/// Reads (and drops) what the server sent: its echo, its KeyUpdate, its alerts.
void client_read(Client& c, Socket& raw) {
    std::string got = recv_now(raw);
    if (!got.empty()) BIO_write(c.in, got.data(), static_cast<int>(got.size()));
    char buf[4096];
    while (SSL_read(c.ssl, buf, sizeof buf) > 0) {
    }
    ERR_clear_error();
}

struct Run {
    bool client_mode = false;
    std::string sent;     // client mode: the plaintext sent as valid records, in order
    bool broken = false;  // client mode: a bad record went out; later data may be lost
};

Coro<void> run_client_ops(Input& in, Client& c, Socket& raw, Run& run, Recorder& proto, bool resume_later) {
    bool resumed = !resume_later;
    while (!in.done() && raw.is_open()) {
        const std::uint8_t op = in.byte() % 9;
        switch (op) {
            case 0: {  // DATA
                std::string d = in.bytes(in.byte());
                if (d.empty()) break;
                if (SSL_write(c.ssl, d.data(), static_cast<int>(d.size())) <= 0) {
                    ERR_clear_error();
                    break;
                }
                if (!run.broken) run.sent += d;
                co_await send(raw, c.take_output());
                break;
            }
            case 1: {  // RAW
                std::string d = in.bytes(in.byte());
                if (!d.empty()) run.broken = true;
                co_await send(raw, d);
                break;
            }
            case 2:    // FLIP
            case 3: {  // TRUNC
                std::string d = in.bytes(in.byte());
                std::uint8_t k = in.byte();
                if (d.empty()) break;
                if (SSL_write(c.ssl, d.data(), static_cast<int>(d.size())) <= 0) {
                    ERR_clear_error();
                    break;
                }
                std::string rec = c.take_output();
                if (rec.empty()) break;
                if (op == 2)
                    rec[k % rec.size()] = static_cast<char>(rec[k % rec.size()] ^ 1);
                else
                    rec.resize(k % rec.size());
                run.broken = true;
                co_await send(raw, rec);
                break;
            }
            case 4:  // CLOSE
                SSL_shutdown(c.ssl);
                ERR_clear_error();
                co_await send(raw, c.take_output());
                break;
            case 5:  // KEYUPDATE
                if (SSL_version(c.ssl) == TLS1_3_VERSION && SSL_key_update(c.ssl, SSL_KEY_UPDATE_REQUESTED) == 1) {
                    SSL_do_handshake(c.ssl);
                    ERR_clear_error();
                    co_await send(raw, c.take_output());
                }
                break;
            case 6:  // RENEG
                if (SSL_version(c.ssl) == TLS1_2_VERSION && SSL_renegotiate(c.ssl) == 1) {
                    SSL_do_handshake(c.ssl);
                    ERR_clear_error();
                    co_await send(raw, c.take_output());
                }
                break;
            case 7:  // READ
                co_await spin(3);
                client_read(c, raw);
                co_await send(raw, c.take_output());  // e.g. a KeyUpdate answer
                break;
            default:  // SPIN
                co_await spin(1 + in.byte() % 8);
                break;
        }
        if (!resumed && proto.transport) {
            resumed = true;
            if (!proto.transport->is_closing()) proto.transport->resume_reading();
        }
    }
    if (!resumed && proto.transport && !proto.transport->is_closing()) proto.transport->resume_reading();
}

Coro<void> one(const std::uint8_t* data, std::size_t size) {
    EventLoop& loop = get_running_loop();
    Input in{data, size};
    const std::uint8_t flags = in.byte();
    Run run;
    run.client_mode = flags & 1;

    auto [ours, raw] = socketpair();
    auto proto = std::make_shared<Recorder>();
    proto->echo = flags & 2;
    proto->pause_on_made = flags & 8;
    ConnectionOptions opts;
    opts.ssl = &server_context();
    opts.ssl_handshake_timeout = 2.0;
    opts.ssl_shutdown_timeout = 2.0;
    auto factory = [proto] { return proto; };
    Task<std::pair<std::shared_ptr<Transport>, std::shared_ptr<Recorder>>> conn =
        create_task(loop.connect_accepted_socket(factory, std::move(ours), opts));

    if (!run.client_mode) {
        std::size_t chunk = in.byte();
        std::string rest = in.rest();
        if (chunk == 0) chunk = rest.size();
        for (std::size_t at = 0; at < rest.size(); at += chunk) {
            co_await send(raw, std::string_view(rest).substr(at, chunk));
            co_await spin(2);
        }
    } else {
        Client c(flags & 4);
        if (co_await handshake(c, raw)) {
            co_await spin(3);  // let connect_accepted_socket return and connection_made run
            co_await run_client_ops(in, c, raw, run, *proto, proto->pause_on_made);
            co_await spin(3);
            client_read(c, raw);
        }
    }
    raw.close();

    // Everything must end within 5 s: connect_accepted_socket, then connection_lost.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    auto wait_until = [&](auto&& cond) -> Coro<bool> {
        for (int idle = 0; !cond(); ++idle) {
            if (std::chrono::steady_clock::now() > deadline) co_return false;
            if (idle < 50)
                co_await sleep(0);
            else
                co_await sleep(0.001);
        }
        co_return true;
    };
    if (!co_await wait_until([&] { return conn.done(); })) fail("connect_accepted_socket hangs");
    std::shared_ptr<Transport> transport;
    try {
        transport = conn.result().first;
    } catch (const std::exception&) {
        // A failed handshake: an SSLError, ConnectionResetError, TimeoutError...
    } catch (...) {
        fail("connect_accepted_socket raised something that is not a std::exception");
    }
    if (!run.client_mode && proto->made) fail("raw mode: connection_made after a handshake that cannot complete");
    if (proto->made && !co_await wait_until([&] { return proto->lost == 1; }))
        fail("connection_lost never came after the peer closed");
    transport.reset();
    if (!proto->made && proto->lost) fail("connection_lost without connection_made");
    static const bool verbose = std::getenv("TLS_RECORD_FUZZER_VERBOSE") != nullptr;
    if (verbose)
        std::fprintf(stderr, "tls_record_fuzzer: mode %s, made %d, lost %d, received %zu of %zu bytes sent%s\n",
                     run.client_mode ? "client" : "raw", proto->made, proto->lost, proto->data.size(), run.sent.size(),
                     run.broken ? " (then a bad record)" : "");
    if (run.client_mode) {
        if (run.sent.compare(0, proto->data.size(), proto->data) != 0 || proto->data.size() > run.sent.size())
            fail("the protocol got data that is not a prefix of what the client sent");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static EventLoop loop;
    [[maybe_unused]] static const bool contexts = [] {
        server_context();
        client_ctx(false);
        client_ctx(true);
        return true;
    }();
    // The loop's own fds (the poller, its wake-up fd) exist once it has run once. The count is
    // taken afresh for each input: libFuzzer's leak check between inputs (LeakSanitizer's
    // StopTheWorld) may hold an fd of its own for a while.
    loop.run_until_complete(spin(1));
    const int before = open_fds();
    loop.run_until_complete(one(data, size));
    for (int i = 0; i < 100 && open_fds() != before; ++i) loop.run_until_complete(spin(1));
    if (open_fds() != before) fail("an fd is left open");
    return 0;
}
