// tests/tls/test_ssl.cpp - TLS: asyncio::ssl::Context (Python's SSLContext subset) and the TLS
// transport (Python's asyncio/sslproto.py), on loopback with the real clock. The scenarios are
// those of CPython's test_asyncio/test_sslproto.py and test_ssl.py: round trips with streams
// and protocols, verification failures, SNI, ALPN, handshake and shutdown timeouts, large
// transfers, flow control, close/abort, start_tls on both sides, unclean EOF, corrupted
// records, extra info. Every wait is bounded by wait_for(..., 10 s): a bug fails, never hangs.
#include <gtest/gtest.h>

#include "recording_protocol.hpp"
#include "support.hpp"

#include "backend/faults.hpp"

#include "backend/faults.hpp"
#include "tls_certs.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <openssl/ssl.h>
#include <sys/socket.h>

using namespace asyncio;
using asyncio_test::echo_until_eof;
using asyncio_test::holds;
using asyncio_test::message_of;
using asyncio_test::test_certs;

namespace {

constexpr double kWait = 10.0;  // the bound of every wait

// ---- contexts --------------------------------------------------------------------------------
ssl::Context server_context(const std::string& cert, const std::string& key) {
    ssl::Context ctx = ssl::Context::server();
    ctx.load_cert_chain(cert, key);
    return ctx;
}
ssl::Context server_context() { return server_context(test_certs().localhost_cert, test_certs().localhost_key); }

/// A client context that trusts the test CA (and nothing else).
ssl::Context client_context() { return ssl::create_default_context(ssl::Purpose::SERVER_AUTH, test_certs().ca_cert); }

/// A client context that verifies nothing (CERT_NONE, no host name check).
ssl::Context insecure_client_context() {
    ssl::Context ctx(ssl::PROTOCOL_TLS_CLIENT);
    ctx.set_check_hostname(false);
    ctx.set_verify_mode(ssl::CERT_NONE);
    return ctx;
}

int port_of(const Server& s) { return s.sockets().at(0).getsockname().port(); }

/// ConnectionOptions with TLS. (Not `{.ssl = &ctx}`: GCC 12's -Wmissing-field-initializers
/// flags the string_view members without default initializers.)
ConnectionOptions tls(ssl::Context& ctx) {
    ConnectionOptions o;
    o.ssl = &ctx;
    return o;
}

// ---- protocols -------------------------------------------------------------------------------
using Recorder = asyncio_test::RecordingProtocol;

/// A factory that keeps every protocol it makes.
struct RecorderFactory {
    std::vector<std::shared_ptr<Recorder>>* made;
    bool echo = false;
    bool pause_on_made = false;
    std::shared_ptr<Recorder> operator()() const {
        auto p = std::make_shared<Recorder>();
        p->echo = echo;
        p->pause_on_made = pause_on_made;
        made->push_back(p);
        return p;
    }
};

/// A pattern that is easy to check at any offset.
std::string pattern(std::size_t n, std::size_t seed = 0) {
    return asyncio_test::pattern(n, {.drift = 0, .seed = seed});
}

}  // namespace

// ============================================================================================
// ssl::Context
// ============================================================================================

TEST(SslContext, DefaultsMirrorPython) {
    ssl::Context c = ssl::Context::client();
    EXPECT_EQ(c.protocol(), ssl::PROTOCOL_TLS_CLIENT);
    EXPECT_EQ(c.verify_mode(), ssl::CERT_REQUIRED);
    EXPECT_TRUE(c.check_hostname());
    EXPECT_EQ(c.minimum_version(), ssl::TLSVersion::TLSv1_2);
    EXPECT_EQ(c.maximum_version(), ssl::TLSVersion::MAXIMUM_SUPPORTED);
    EXPECT_TRUE(c.options() & SSL_OP_NO_COMPRESSION);

    ssl::Context s = ssl::Context::server();
    EXPECT_EQ(s.protocol(), ssl::PROTOCOL_TLS_SERVER);
    EXPECT_EQ(s.verify_mode(), ssl::CERT_NONE);
    EXPECT_FALSE(s.check_hostname());

    // Python's rules between check_hostname and verify_mode.
    EXPECT_THROW(c.set_verify_mode(ssl::CERT_NONE), std::invalid_argument);
    c.set_check_hostname(false);
    c.set_verify_mode(ssl::CERT_NONE);
    EXPECT_EQ(c.verify_mode(), ssl::CERT_NONE);
    c.set_check_hostname(true);
    EXPECT_EQ(c.verify_mode(), ssl::CERT_REQUIRED);
    s.set_verify_mode(ssl::CERT_OPTIONAL);
    EXPECT_EQ(s.verify_mode(), ssl::CERT_OPTIONAL);

    s.set_minimum_version(ssl::TLSVersion::TLSv1_3);
    s.set_maximum_version(ssl::TLSVersion::TLSv1_3);
    EXPECT_EQ(s.minimum_version(), ssl::TLSVersion::TLSv1_3);
    EXPECT_EQ(s.maximum_version(), ssl::TLSVersion::TLSv1_3);

    // A copy is the same context (one SSL_CTX), like a second reference in Python.
    ssl::Context copy = c;
    EXPECT_TRUE(copy == c);
    EXPECT_EQ(copy.native_handle(), c.native_handle());
    EXPECT_FALSE(copy == s);

    std::uint64_t o = c.options();
    c.set_options(o | SSL_OP_NO_TICKET);
    EXPECT_TRUE(copy.options() & SSL_OP_NO_TICKET);
    c.set_options(o);
    EXPECT_FALSE(c.options() & SSL_OP_NO_TICKET);

    try {
        c.set_ciphers("NO-SUCH-CIPHER");
        ADD_FAILURE() << "set_ciphers accepted nonsense";
    } catch (const ssl::SSLError& e) {
        EXPECT_STREQ(e.what(), "No cipher can be selected.");
    }
    c.set_ciphers("ECDHE+AESGCM");
    EXPECT_THROW(c.set_alpn_protocols({"h2", ""}), std::invalid_argument);
    EXPECT_THROW(ssl::Context(static_cast<ssl::SSLMethod>(2)), std::invalid_argument);
}

TEST(SslContext, LoadingErrors) {
    const auto& certs = test_certs();
    ssl::Context s = ssl::Context::server();
    // A missing file is an OSError (FileNotFoundError), not an SSLError.
    try {
        s.load_cert_chain(certs.dir + "/missing.pem");
        ADD_FAILURE() << "no error for a missing file";
    } catch (const ssl::SSLError&) {
        ADD_FAILURE() << "SSLError for a missing file";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    }
    // A key that does not match the certificate.
    try {
        s.load_cert_chain(certs.localhost_cert, certs.wrong_key);
        ADD_FAILURE() << "mismatched key accepted";
    } catch (const ssl::SSLError& e) {
        EXPECT_NE(std::string(e.what()).find("mismatch"), std::string::npos) << e.what();
        EXPECT_EQ(e.code().category(), ssl::error_category());
    }
    // An encrypted key: no password or a wrong one fail (nothing is prompted), the right one works.
    EXPECT_THROW(s.load_cert_chain(certs.localhost_cert, certs.localhost_key_encrypted), ssl::SSLError);
    EXPECT_THROW(s.load_cert_chain(certs.localhost_cert, certs.localhost_key_encrypted, "wrong"), ssl::SSLError);
    EXPECT_NO_THROW(s.load_cert_chain(certs.localhost_cert, certs.localhost_key_encrypted, "secret"));
    // A PEM with certificate and key together.
    {
        std::string both = certs.dir + "/both.pem";
        std::FILE* f = std::fopen(both.c_str(), "w");
        ASSERT_NE(f, nullptr);
        for (const std::string& part : {certs.localhost_cert, certs.localhost_key}) {
            std::FILE* in = std::fopen(part.c_str(), "r");
            ASSERT_NE(in, nullptr);
            char buf[4096];
            std::size_t n;
            while ((n = std::fread(buf, 1, sizeof buf, in)) > 0) std::fwrite(buf, 1, n, f);
            std::fclose(in);
        }
        std::fclose(f);
        EXPECT_NO_THROW(ssl::Context::server().load_cert_chain(both));
    }

    ssl::Context c = ssl::Context::client();
    EXPECT_THROW(c.load_verify_locations(), std::invalid_argument);
    EXPECT_THROW(c.load_verify_locations(certs.dir + "/missing.pem"), std::system_error);
    try {
        c.load_verify_locations({}, {}, "not a certificate");
        ADD_FAILURE() << "garbage cadata accepted";
    } catch (const ssl::SSLError& e) {
        EXPECT_NE(std::string(e.what()).find("no start line"), std::string::npos) << e.what();
    }
    EXPECT_NO_THROW(c.load_verify_locations({}, {}, certs.ca_pem));
    EXPECT_NO_THROW(c.load_verify_locations({}, {}, certs.ca_pem));  // already there: fine
    EXPECT_NO_THROW(c.load_verify_locations(certs.ca_cert));
    EXPECT_NO_THROW(c.load_default_certs());
}

// ============================================================================================
// Round trips
// ============================================================================================

TEST(Ssl, StreamsRoundTrip) {
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    auto main = [&]() -> Coro<std::string> {
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, {.ssl = &sctx});
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), co), kWait);
        writer.write("hello\nworld\n");
        co_await wait_for(writer.drain(), kWait);
        std::string a = co_await wait_for(reader.readline(), kWait);
        std::string b = co_await wait_for(reader.readexactly(6), kWait);
        EXPECT_FALSE(writer.can_write_eof());
        EXPECT_THROW(writer.write_eof(), std::logic_error);
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return a + b;
    };
    EXPECT_EQ(run(main()), "hello\nworld\n");
}

TEST(Ssl, SockArgumentsDoTheHandshakeOverTheGivenSockets) {
    // Python's start_server(sock=...) / open_connection(sock=..., server_hostname=...): the
    // server side of TLS on the bound socket, the client side on the connected one.
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    auto main = [&]() -> Coro<std::string> {
        Socket listening(AF_INET, SOCK_STREAM);
        listening.bind(SockAddr("127.0.0.1", 0));
        const int port = listening.getsockname().port();
        Server server = co_await start_server(echo_until_eof, std::move(listening), {.ssl = &sctx});
        Socket sock(AF_INET, SOCK_STREAM);
        sock.setblocking(false);
        co_await wait_for(get_running_loop().sock_connect(sock, SockAddr("127.0.0.1", port)), kWait);
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        auto [reader, writer] = co_await wait_for(open_connection(std::move(sock), co), kWait);
        EXPECT_TRUE(writer.get_extra_info("ssl_object").has_value());
        writer.write("over given sockets\n");
        std::string line = co_await wait_for(reader.readline(), kWait);
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return line;
    };
    EXPECT_EQ(run(main()), "over given sockets\n");
}

TEST(Ssl, VerifiesTheIpAddressByDefault) {
    // create_connection's host is the default server_hostname: an IP address is checked
    // against the certificate's IP SANs (and sent as no SNI). In debug mode.
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    auto main = [&]() -> Coro<std::string> {
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, {.ssl = &sctx});
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
        writer.write("ip\n");
        std::string line = co_await wait_for(reader.readline(), kWait);
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return line;
    };
    asyncio_test::LogCapture log;  // debug mode: sslproto's debug log lines
    EXPECT_EQ(run(main(), RunOptions{.debug = true}), "ip\n");
    EXPECT_TRUE(log.contains("starts SSL handshake")) << log.joined();
    EXPECT_TRUE(log.contains("SSL handshake took")) << log.joined();
}

TEST(Ssl, ProtocolCallbacksInPythonOrder) {
    // test_sslproto: connection_made once, after the handshake; a close() by one side gives
    // both sides eof_received() (close_notify) then connection_lost(None).
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    std::vector<std::shared_ptr<Recorder>> servers;
    std::vector<std::shared_ptr<Recorder>> clients;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        RecorderFactory sf{&servers, /*echo=*/true};
        Server server = co_await loop.create_server(sf, "127.0.0.1", 0, {.ssl = &sctx});
        RecorderFactory cf{&clients};
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        auto [t, p] = co_await wait_for(loop.create_connection(cf, "127.0.0.1", port_of(server), co), kWait);
        EXPECT_EQ(p->made_calls, 1);  // connection_made ran before create_connection returned
        EXPECT_EQ(t, p->transport);
        EXPECT_EQ(t->get_protocol(), p);
        p->want = 5;
        t->write("ping!");
        co_await wait_for(p->data_ev.wait(), kWait);
        EXPECT_EQ(p->data, "ping!");
        EXPECT_FALSE(t->is_closing());
        t->close();
        EXPECT_TRUE(t->is_closing());
        co_await wait_for(p->lost_ev.wait(), kWait);
        co_await wait_for(servers.at(0)->lost_ev.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    ASSERT_EQ(clients.size(), 1u);
    ASSERT_EQ(servers.size(), 1u);
    EXPECT_EQ(clients[0]->lifecycle(), (std::vector<std::string>{"made", "data", "eof", "lost"}));
    EXPECT_EQ(servers[0]->lifecycle(), (std::vector<std::string>{"made", "data", "eof", "lost"}));
    EXPECT_FALSE(clients[0]->lost_exc);
    EXPECT_FALSE(servers[0]->lost_exc);
    EXPECT_EQ(servers[0]->data, "ping!");
}

TEST(Ssl, BufferedProtocolWithATinyBuffer) {
    // test_start_tls_client_buf_proto_1 / test_buf_feed_data: a BufferedProtocol over TLS gets
    // its bytes through get_buffer/buffer_updated, whatever its buffer size.
    struct Buffered : BufferedProtocol {
        char buf[3];
        std::string data;
        std::size_t want = 0;
        Event done, lost;
        std::shared_ptr<Transport> t;
        void connection_made(std::shared_ptr<Transport> tr) override { t = tr; }
        std::span<char> get_buffer(std::size_t) override { return std::span<char>(buf, sizeof buf); }
        void buffer_updated(std::size_t n) override {
            data.append(buf, n);
            if (data.size() >= want) done.set();
        }
        void connection_lost(std::exception_ptr) override {
            t.reset();
            lost.set();
        }
    };
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    const std::string payload = pattern(100 * 1024);
    auto main = [&]() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, {.ssl = &sctx});
        auto proto = std::make_shared<Buffered>();
        proto->want = payload.size();
        auto factory = [proto] { return proto; };
        auto [t, p] =
            co_await wait_for(loop.create_connection(factory, "127.0.0.1", port_of(server), tls(cctx)), kWait);
        t->write(payload);
        co_await wait_for(proto->done.wait(), kWait);
        t->close();
        co_await wait_for(proto->lost.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return proto->data;
    };
    EXPECT_EQ(run(main()), payload);
}

TEST(Ssl, UnixSocketsAndConnectAcceptedSocket) {
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    std::string path = test_certs().dir + "/tls.sock";
    auto main = [&]() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        Server server = co_await start_unix_server(echo_until_eof, path, {.ssl = &sctx});
        // Python: a unix connection with ssl needs server_hostname.
        auto missing = co_await asyncio_test::error_of(open_unix_connection(path, tls(cctx)));
        EXPECT_TRUE(holds<std::invalid_argument>(missing));
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        auto [reader, writer] = co_await wait_for(open_unix_connection(path, co), kWait);
        writer.write("unix\n");
        std::string a = co_await wait_for(reader.readline(), kWait);
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);

        // connect_accepted_socket: the accepted end is the TLS server.
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(SockAddr("127.0.0.1", 0));
        listener.listen();
        int port = listener.getsockname().port();
        ConnectionOptions co2;
        co2.ssl = &cctx;
        co2.server_hostname = "localhost";
        Task<std::pair<StreamReader, StreamWriter>> client = create_task(open_connection("127.0.0.1", port, co2));
        auto [conn, peer] = co_await wait_for(loop.sock_accept(listener), kWait);
        std::vector<std::shared_ptr<Recorder>> made;
        RecorderFactory f{&made, /*echo=*/true};
        auto [st, sp] = co_await wait_for(loop.connect_accepted_socket(f, std::move(conn), tls(sctx)), kWait);
        auto [r2, w2] = co_await wait_for(client, kWait);
        w2.write("accepted\n");
        std::string b = co_await wait_for(r2.readline(), kWait);
        w2.close();
        co_await wait_for(w2.wait_closed(), kWait);
        co_await wait_for(sp->lost_ev.wait(), kWait);
        co_return a + b;
    };
    EXPECT_EQ(run(main()), "unix\naccepted\n");
}

// ============================================================================================
// Verification
// ============================================================================================

namespace {
/// Connects to a TLS server using `server` (certificate, key) with `client`; returns the error.
std::exception_ptr connect_error(const ssl::Context& server_ctx, ssl::Context client_ctx,
                                 std::string_view server_hostname, int* server_made = nullptr, bool debug = false,
                                 asyncio_test::HandlerCapture* handler = nullptr) {
    ssl::Context sctx = server_ctx;
    std::vector<std::shared_ptr<Recorder>> servers;
    std::exception_ptr result;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        if (handler) handler->install(loop);
        RecorderFactory sf{&servers};
        Server server = co_await loop.create_server(sf, "127.0.0.1", 0, {.ssl = &sctx});
        ConnectionOptions co;
        co.ssl = &client_ctx;
        co.server_hostname = server_hostname;
        std::vector<std::shared_ptr<Recorder>> clients;
        RecorderFactory cf{&clients};
        std::exception_ptr e = co_await asyncio_test::error_of(
            wait_for(loop.create_connection(cf, "127.0.0.1", port_of(server), co), kWait));
        CO_ASSERT(clients.size() == 1);
        if (e) {
            EXPECT_EQ(clients[0]->made_calls, 0);  // a failed handshake: never connection_made
        } else {
            clients[0]->transport->close();
            co_await wait_for(clients[0]->lost_ev.wait(), kWait);
        }
        // The server stays usable, and drops the failed connection.
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        result = e;
    };
    run(main(), RunOptions{.debug = debug});
    std::exception_ptr e = result;
    if (server_made) {
        *server_made = 0;
        for (auto& s : servers) *server_made += s->made_calls;
    }
    return e;
}

long verify_code_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const ssl::SSLCertVerificationError& v) {
        return v.verify_code();
    } catch (...) {
        return -1;
    }
}
}  // namespace

TEST(SslVerification, UnknownCaFails) {
    // A client context with verification on but without the test CA.
    int server_made = -1;
    std::exception_ptr e =
        connect_error(server_context(), ssl::Context(ssl::PROTOCOL_TLS_CLIENT), "localhost", &server_made);
    ASSERT_TRUE(holds<ssl::SSLCertVerificationError>(e)) << message_of(e);
    EXPECT_TRUE(holds<ssl::SSLError>(e));
    EXPECT_TRUE(holds<std::system_error>(e));  // an OSError, as in Python
    EXPECT_EQ(verify_code_of(e), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    EXPECT_EQ(message_of(e),
              "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate");
    EXPECT_EQ(server_made, 0);
}

TEST(SslVerification, WrongHostnameFails) {
    std::exception_ptr e = connect_error(server_context(), client_context(), "wrong.example");
    ASSERT_TRUE(holds<ssl::SSLCertVerificationError>(e)) << message_of(e);
    EXPECT_EQ(verify_code_of(e), X509_V_ERR_HOSTNAME_MISMATCH);
    try {
        std::rethrow_exception(e);
    } catch (const ssl::SSLCertVerificationError& v) {
        EXPECT_EQ(v.verify_message(), "Hostname mismatch, certificate is not valid for 'wrong.example'.");
        EXPECT_EQ(v.reason(), "CERTIFICATE_VERIFY_FAILED");
        EXPECT_EQ(v.library(), "SSL");
    }
}

TEST(SslVerification, WrongIpAddressFails) {
    // The wrong.example certificate has no IP SAN; the default server_hostname is the IP.
    std::exception_ptr e =
        connect_error(server_context(test_certs().wrong_cert, test_certs().wrong_key), client_context(), "");
    ASSERT_TRUE(holds<ssl::SSLCertVerificationError>(e)) << message_of(e);
    EXPECT_EQ(verify_code_of(e), X509_V_ERR_IP_ADDRESS_MISMATCH);
    EXPECT_NE(message_of(e).find("IP address mismatch, certificate is not valid for '127.0.0.1'."), std::string::npos);
}

TEST(SslVerification, ExpiredCertificateFails) {
    std::exception_ptr e = connect_error(server_context(test_certs().expired_cert, test_certs().expired_key),
                                         client_context(), "localhost");
    ASSERT_TRUE(holds<ssl::SSLCertVerificationError>(e)) << message_of(e);
    EXPECT_EQ(verify_code_of(e), X509_V_ERR_CERT_HAS_EXPIRED);
    EXPECT_NE(message_of(e).find("certificate has expired"), std::string::npos);
}

TEST(SslVerification, ServerSideFailureIsReportedOnlyInDebugMode) {
    // Python's _accept_connection2: a failed handshake on the server is logged in debug mode
    // only (and SSLProtocol._fatal_error never logs an OSError such as SSLError).
    for (bool debug : {false, true}) {
        asyncio_test::HandlerCapture handler;
        std::exception_ptr e = connect_error(server_context(), ssl::Context(ssl::PROTOCOL_TLS_CLIENT), "localhost",
                                             nullptr, debug, &handler);
        ASSERT_TRUE(holds<ssl::SSLCertVerificationError>(e));
        if (debug) {
            EXPECT_TRUE(handler.contains("Error on transport creation for incoming connection"));
        } else {
            EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.at(0).message;
        }
    }
}

TEST(SslVerification, CertNoneClientAcceptsAnything) {
    // Python's CERT_NONE: an untrusted, even expired, certificate is accepted; getpeercert()
    // is then unverified (Python returns {}; here `verified` is false).
    ssl::Context sctx = server_context(test_certs().expired_cert, test_certs().expired_key);
    ssl::Context cctx = insecure_client_context();
    auto main = [&]() -> Coro<std::optional<ssl::Certificate>> {
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, {.ssl = &sctx});
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
        writer.write("x\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), kWait), "x\n");
        auto cert = writer.get_extra_info<ssl::Certificate>("peercert", {});
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return cert;
    };
    auto cert = run(main());
    ASSERT_TRUE(cert);
    EXPECT_FALSE(cert->verified);
    EXPECT_EQ(cert->subject_value("commonName"), "localhost");
}

TEST(SslVerification, MutualTls) {
    // A server that requires a client certificate sees it as its peercert.
    ssl::Context sctx = server_context();
    sctx.set_verify_mode(ssl::CERT_REQUIRED);
    sctx.load_verify_locations(test_certs().ca_cert);
    ssl::Context cctx = client_context();
    cctx.load_cert_chain(test_certs().client_cert, test_certs().client_key);
    std::vector<std::shared_ptr<Recorder>> servers;
    auto main = [&]() -> Coro<ssl::Certificate> {
        EventLoop& loop = get_running_loop();
        RecorderFactory sf{&servers, /*echo=*/true};
        Server server = co_await loop.create_server(sf, "127.0.0.1", 0, {.ssl = &sctx});
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), co), kWait);
        writer.write("m\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), kWait), "m\n");
        ssl::Certificate seen = servers.at(0)->transport->get_extra_info<ssl::Certificate>("peercert", {});
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return seen;
    };
    ssl::Certificate c = run(main());
    EXPECT_TRUE(c.verified);
    EXPECT_EQ(c.subject_value("commonName"), "client");
    EXPECT_EQ(c.subject_value("organizationName"), "asyncio-cpp tests");
}

// ============================================================================================
// SNI, ALPN, extra info
// ============================================================================================

TEST(Ssl, SniIsSeenByTheServer) {
    ssl::Context sctx = server_context();
    std::vector<std::string> names;
    sctx.set_sni_callback([&](SSL* ssl_object, std::string_view name, ssl::Context& ctx) {
        EXPECT_NE(ssl_object, nullptr);
        EXPECT_TRUE(ctx == sctx);
        names.emplace_back(name);
        return 0;
    });
    ssl::Context cctx = client_context();
    auto main = [&]() -> Coro<void> {
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, {.ssl = &sctx});
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        {
            auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), co), kWait);
            SSL* obj = writer.get_extra_info<SSL*>("ssl_object", nullptr);
            EXPECT_EQ(ssl::server_name(obj), "localhost");
            writer.close();
            co_await wait_for(writer.wait_closed(), kWait);
        }
        {
            // An IP address as the host: no SNI at all (Python sends none for addresses).
            auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
            writer.close();
            co_await wait_for(writer.wait_closed(), kWait);
        }
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    EXPECT_EQ(names, (std::vector<std::string>{"localhost", ""}));
}

TEST(Ssl, SniCallbackCanRefuseTheHandshake) {
    ssl::Context sctx = server_context();
    sctx.set_sni_callback([](SSL*, std::string_view name, ssl::Context&) {
        return name == "localhost" ? 0 : ssl::ALERT_DESCRIPTION_UNRECOGNIZED_NAME;
    });
    ssl::Context cctx = insecure_client_context();
    std::exception_ptr e = connect_error(sctx, cctx, "other.example");
    // The server fails the handshake and drops the connection (like Python's sslproto, it does
    // not flush the alert first): the client sees the connection reset.
    ASSERT_TRUE(e);
    EXPECT_TRUE(holds<std::system_error>(e)) << message_of(e);
    EXPECT_FALSE(connect_error(sctx, cctx, "localhost"));
}

TEST(Ssl, AlpnNegotiation) {
    ssl::Context sctx = server_context();
    sctx.set_alpn_protocols({"h2", "http/1.1"});
    auto negotiate = [&](std::vector<std::string> offered) {
        ssl::Context cctx = client_context();
        cctx.set_alpn_protocols(offered);
        std::vector<std::shared_ptr<Recorder>> servers;
        auto main = [&]() -> Coro<std::pair<std::string, std::string>> {
            EventLoop& loop = get_running_loop();
            RecorderFactory sf{&servers, /*echo=*/true};
            Server server = co_await loop.create_server(sf, "127.0.0.1", 0, {.ssl = &sctx});
            auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
            writer.write("a\n");
            co_await wait_for(reader.readline(), kWait);
            std::string client_side = writer.get_extra_info<std::string>("alpn_protocol", "<none>");
            std::string server_side = servers.at(0)->transport->get_extra_info<std::string>("alpn_protocol", "<none>");
            EXPECT_EQ(ssl::selected_alpn_protocol(writer.get_extra_info<SSL*>("ssl_object", nullptr)),
                      client_side == "<none>" ? "" : client_side);
            writer.close();
            co_await wait_for(writer.wait_closed(), kWait);
            server.close();
            co_await wait_for(server.wait_closed(), kWait);
            co_return std::pair<std::string, std::string>(client_side, server_side);
        };
        return run(main());
    };
    // The server's preference wins.
    EXPECT_EQ(negotiate({"http/1.1", "h2"}), (std::pair<std::string, std::string>("h2", "h2")));
    EXPECT_EQ(negotiate({"http/1.1"}), (std::pair<std::string, std::string>("http/1.1", "http/1.1")));
    // No overlap: no ALPN (Python's None), the connection still works.
    EXPECT_EQ(negotiate({"spdy/1"}), (std::pair<std::string, std::string>("<none>", "<none>")));
}

TEST(Ssl, ExtraInfo) {
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    auto main = [&]() -> Coro<void> {
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, {.ssl = &sctx});
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), co), kWait);
        Transport& t = writer.transport();

        std::any ctx = t.get_extra_info("sslcontext");
        CO_ASSERT(std::any_cast<ssl::Context>(&ctx));
        EXPECT_TRUE(std::any_cast<ssl::Context>(ctx) == cctx);

        SSL* obj = t.get_extra_info<SSL*>("ssl_object", nullptr);
        CO_ASSERT(obj != nullptr);
        EXPECT_EQ(ssl::version(obj), "TLSv1.3");
        EXPECT_EQ(SSL_is_server(obj), 0);

        auto cert = t.get_extra_info<ssl::Certificate>("peercert", {});
        EXPECT_TRUE(cert.verified);
        EXPECT_EQ(cert.version, 3);
        EXPECT_EQ(cert.subject_value("commonName"), "localhost");
        EXPECT_EQ(cert.issuer.back(), (std::pair<std::string, std::string>("commonName", "asyncio-cpp Test CA")));
        EXPECT_EQ(cert.serial_number, "02");
        EXPECT_NE(cert.not_after.find("GMT"), std::string::npos);
        std::vector<std::pair<std::string, std::string>> san{
            {"DNS", "localhost"}, {"IP Address", "127.0.0.1"}, {"IP Address", "::1"}};
        EXPECT_EQ(cert.subject_alt_name, san);
        EXPECT_FALSE(cert.der.empty());
        EXPECT_EQ(cert.pem().rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u);
        EXPECT_EQ(ssl::getpeercert(obj)->der, cert.der);

        auto cipher = t.get_extra_info<ssl::CipherInfo>("cipher", {});
        EXPECT_FALSE(cipher.name.empty());
        EXPECT_EQ(cipher.protocol, "TLSv1.3");
        EXPECT_GE(cipher.secret_bits, 128);

        EXPECT_FALSE(t.get_extra_info("compression").has_value());  // Python: None
        EXPECT_FALSE(t.get_extra_info("alpn_protocol").has_value());
        EXPECT_FALSE(t.get_extra_info("no such key").has_value());
        // The raw transport's keys pass through.
        EXPECT_EQ(t.get_extra_info<SockAddr>("peername", {}).port(), port_of(server));
        EXPECT_EQ(t.get_extra_info<SockAddr>("sockname", {}).host(), "127.0.0.1");
        EXPECT_GE(t.get_extra_info<TransportSocket>("socket", {}).fileno(), 0);

        EXPECT_FALSE(t.can_write_eof());
        EXPECT_THROW(t.write_eof(), std::logic_error);
        EXPECT_TRUE(t.is_reading());
        auto [low, high] = t.get_write_buffer_limits();
        EXPECT_EQ(high, 512u * 1024);  // Python's FLOW_CONTROL_HIGH_WATER_SSL_WRITE
        EXPECT_EQ(low, 128u * 1024);
        t.set_write_buffer_limits(1000);
        EXPECT_EQ(t.get_write_buffer_limits(), (std::pair<std::size_t, std::size_t>(250, 1000)));
        EXPECT_THROW(t.set_write_buffer_limits(10, 20), std::invalid_argument);
        EXPECT_EQ(t.get_write_buffer_size(), 0u);

        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        // After the connection is gone, the TLS keys are still there (Python keeps _extra);
        // the socket's are not.
        EXPECT_TRUE(t.get_extra_info("sslcontext").has_value());
        EXPECT_TRUE(t.get_extra_info("peercert").has_value());
        EXPECT_FALSE(t.get_extra_info("peername").has_value());
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
}

// ============================================================================================
// Timeouts
// ============================================================================================

namespace {
/// A TCP server that accepts and never says anything (a peer that does not speak TLS).
struct Silent : Protocol {
    std::shared_ptr<Transport> t;
    Event lost;
    std::string data;
    void connection_made(std::shared_ptr<Transport> tr) override { t = tr; }
    void data_received(std::string_view d) override { data += d; }
    void connection_lost(std::exception_ptr) override {
        t.reset();
        lost.set();
    }
};
}  // namespace

TEST(SslTimeouts, ClientHandshakeTimeout) {
    // test_create_connection_ssl_slow_handshake: ConnectionAbortedError, nothing logged.
    ssl::Context cctx = client_context();
    asyncio_test::HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        handler.install(loop);
        auto silent = std::make_shared<Silent>();
        auto factory = [silent] { return silent; };
        Server server = co_await loop.create_server(factory, "127.0.0.1", 0);
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        co.ssl_handshake_timeout = 0.2;
        double t0 = loop.time();
        std::exception_ptr e =
            co_await asyncio_test::error_of(wait_for(open_connection("127.0.0.1", port_of(server), co), kWait));
        double dt = loop.time() - t0;
        EXPECT_GE(dt, 0.19);
        EXPECT_LT(dt, 5.0);
        try {
            std::rethrow_exception(e);
        } catch (const std::system_error& x) {
            EXPECT_EQ(x.code(), std::errc::connection_aborted);
            EXPECT_NE(
                std::string(x.what()).find("SSL handshake is taking longer than 0.2 seconds: aborting the connection"),
                std::string::npos)
                << x.what();
        } catch (...) {
            ADD_FAILURE() << message_of(e);
        }
        EXPECT_FALSE(silent->data.empty());  // it did get a ClientHello
        co_await wait_for(silent->lost.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(SslTimeouts, InvalidTimeoutsAreRejected) {
    ssl::Context cctx = client_context();
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto silent = std::make_shared<Silent>();
        auto factory = [silent] { return silent; };
        Server server = co_await loop.create_server(factory, "127.0.0.1", 0);
        for (double bad : {0.0, -10.0}) {
            ConnectionOptions co;
            co.ssl = &cctx;
            co.ssl_handshake_timeout = bad;
            std::exception_ptr e = co_await asyncio_test::error_of(open_connection("127.0.0.1", port_of(server), co));
            EXPECT_TRUE(holds<std::invalid_argument>(e));
            EXPECT_NE(message_of(e).find("a positive number"), std::string::npos) << message_of(e);
            co.ssl_handshake_timeout = 60;
            co.ssl_shutdown_timeout = bad;
            e = co_await asyncio_test::error_of(open_connection("127.0.0.1", port_of(server), co));
            EXPECT_TRUE(holds<std::invalid_argument>(e));
        }
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
}

TEST(SslTimeouts, ServerHandshakeTimeout) {
    // A plain TCP client that never starts the handshake: the TLS server gives up after
    // ssl_handshake_timeout and closes the connection; its protocol is never made.
    ssl::Context sctx = server_context();
    std::vector<std::shared_ptr<Recorder>> servers;
    auto main = [&]() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        RecorderFactory sf{&servers};
        ServerOptions so;
        so.ssl = &sctx;
        so.ssl_handshake_timeout = 0.2;
        Server server = co_await loop.create_server(sf, "127.0.0.1", 0, so);
        auto [reader, writer] = co_await open_connection("127.0.0.1", port_of(server));
        std::string got = co_await wait_for(reader.read(), kWait);  // EOF when the server gives up
        writer.close();
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return got;
    };
    EXPECT_EQ(run(main()), "");
    ASSERT_EQ(servers.size(), 1u);
    EXPECT_EQ(servers[0]->made_calls, 0);
    EXPECT_TRUE(servers[0]->events.empty());
}

TEST(SslTimeouts, CancelledHandshakeLogsNothing) {
    // test_handshake_timeout (bpo-29970 / issue #23197): wait_for cancels create_connection
    // in the middle of the handshake: TimeoutError, the connection is aborted, nothing logged.
    ssl::Context cctx = client_context();
    asyncio_test::HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        handler.install(loop);
        auto silent = std::make_shared<Silent>();
        auto factory = [silent] { return silent; };
        Server server = co_await loop.create_server(factory, "127.0.0.1", 0);
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        std::exception_ptr e =
            co_await asyncio_test::error_of(wait_for(open_connection("127.0.0.1", port_of(server), co), 0.2));
        EXPECT_TRUE(holds<TimeoutError>(e)) << message_of(e);
        co_await wait_for(silent->lost.wait(), kWait);  // the client aborted
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(SslTimeouts, ShutdownTimeout) {
    // The peer never answers our close_notify (its application stopped reading): after
    // ssl_shutdown_timeout the connection is aborted and connection_lost gets TimeoutError.
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    std::vector<std::shared_ptr<Recorder>> servers;
    std::vector<std::shared_ptr<Recorder>> clients;
    asyncio_test::HandlerCapture handler;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        handler.install(loop);
        RecorderFactory sf{&servers, false, /*pause_on_made=*/true};
        Server server = co_await loop.create_server(sf, "127.0.0.1", 0, {.ssl = &sctx});
        RecorderFactory cf{&clients};
        ConnectionOptions co;
        co.ssl = &cctx;
        co.server_hostname = "localhost";
        co.ssl_shutdown_timeout = 0.2;
        auto [t, p] = co_await wait_for(loop.create_connection(cf, "127.0.0.1", port_of(server), co), kWait);
        co_await wait_for(servers.at(0)->made_ev.wait(), kWait);
        EXPECT_FALSE(servers[0]->transport->is_reading());
        double t0 = loop.time();
        t->close();
        co_await wait_for(p->lost_ev.wait(), kWait);
        EXPECT_GE(loop.time() - t0, 0.19);
        // The server, still paused, keeps the connection half-open (Python's eof_received
        // returns True then); once it reads again, it sees the close_notify and closes.
        servers[0]->transport->resume_reading();
        co_await wait_for(servers[0]->lost_ev.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    ASSERT_EQ(clients.size(), 1u);
    EXPECT_TRUE(holds<TimeoutError>(clients[0]->lost_exc)) << message_of(clients[0]->lost_exc);
    EXPECT_EQ(message_of(clients[0]->lost_exc), "SSL shutdown timed out");
    EXPECT_TRUE(handler.contexts.empty());
}

// ============================================================================================
// Bulk data and flow control
// ============================================================================================

TEST(SslFlow, LargeTransfersBothWays) {
    // 8 MiB client -> server -> client through an echo server, written and read concurrently.
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    const std::string payload = pattern(8 * 1024 * 1024 + 123);
    auto main = [&]() -> Coro<bool> {
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, {.ssl = &sctx});
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
        Task<std::string> rx = create_task(reader.readexactly(payload.size()));
        for (std::size_t off = 0; off < payload.size(); off += 100000) {
            writer.write(std::string_view(payload).substr(off, 100000));
            co_await wait_for(writer.drain(), kWait);
        }
        std::string echoed = co_await wait_for(rx, 30.0);
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return echoed == payload;
    };
    EXPECT_TRUE(run(main()));
}

TEST(SslFlow, LargeSingleWriteFromTheServer) {
    // One 16 MiB write on the server side (one SSL_write), read by the client with the stream
    // flow control pausing and resuming the TLS transport.
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    const std::string payload = pattern(16 * 1024 * 1024, 3);
    auto cb = [&](StreamReader, StreamWriter w) -> Coro<void> {
        w.write(payload);
        co_await w.drain();
        w.close();
        co_await w.wait_closed();
    };
    auto main = [&]() -> Coro<bool> {
        Server server = co_await start_server(cb, "127.0.0.1", 0, {.ssl = &sctx});
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
        std::string got = co_await wait_for(reader.read(), 30.0);  // until EOF (close_notify)
        EXPECT_TRUE(reader.at_eof());
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return got == payload;
    };
    EXPECT_TRUE(run(main()));
}

TEST(SslFlow, PauseWritingWhenThePeerDoesNotRead) {
    // The peer does not read: the kernel buffers fill, the raw transport pauses the SSL
    // protocol, encrypted data piles up in the outgoing BIO, and past the high-water mark the
    // app protocol gets pause_writing(); once the peer reads, resume_writing().
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    std::vector<std::shared_ptr<Recorder>> servers;
    std::vector<std::shared_ptr<Recorder>> clients;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        RecorderFactory sf{&servers, false, /*pause_on_made=*/true};
        Server server = co_await loop.create_server(sf, "127.0.0.1", 0, {.ssl = &sctx});
        RecorderFactory cf{&clients};
        auto [t, p] = co_await wait_for(loop.create_connection(cf, "127.0.0.1", port_of(server), tls(cctx)), kWait);
        co_await wait_for(servers.at(0)->made_ev.wait(), kWait);
        const std::string chunk = pattern(256 * 1024);
        std::size_t written = 0;
        while (!p->writing_paused && written < 256u * 1024 * 1024) {
            t->write(chunk);
            written += chunk.size();
            if (!p->writing_paused) co_await sleep(0);  // let the loop send
        }
        EXPECT_TRUE(p->writing_paused);
        EXPECT_EQ(p->pause_calls, 1);
        EXPECT_GE(t->get_write_buffer_size(), t->get_write_buffer_limits().second);
        auto& srv = servers[0];
        srv->want = written;
        srv->transport->resume_reading();
        co_await wait_for(p->resumed_ev.wait(), kWait);
        EXPECT_EQ(p->resume_calls, 1);
        EXPECT_LE(t->get_write_buffer_size(), t->get_write_buffer_limits().first);
        co_await wait_for(srv->data_ev.wait(), 30.0);
        EXPECT_EQ(srv->data.size(), written);
        EXPECT_EQ(srv->data.substr(0, chunk.size()), chunk);
        t->close();
        co_await wait_for(p->lost_ev.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
}

TEST(SslFlow, PauseReadingHoldsDataBack) {
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    const std::string payload = pattern(1024 * 1024, 5);
    std::vector<std::shared_ptr<Recorder>> clients;
    Event sent;
    auto cb = [&](StreamReader, StreamWriter w) -> Coro<void> {
        w.write(payload);
        sent.set();
        co_await w.drain();
        w.close();
    };
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Server server = co_await start_server(cb, "127.0.0.1", 0, {.ssl = &sctx});
        RecorderFactory cf{&clients, false, /*pause_on_made=*/true};
        auto [t, p] = co_await wait_for(loop.create_connection(cf, "127.0.0.1", port_of(server), tls(cctx)), kWait);
        EXPECT_FALSE(t->is_reading());
        co_await wait_for(sent.wait(), kWait);
        co_await asyncio_test::settle(50);  // loop iterations, not time: the bytes reach us
        EXPECT_TRUE(p->data.empty());
        EXPECT_TRUE(p->lifecycle() == std::vector<std::string>{"made"});
        p->want = payload.size();
        t->resume_reading();
        EXPECT_TRUE(t->is_reading());
        co_await wait_for(p->data_ev.wait(), kWait);
        co_await wait_for(p->lost_ev.wait(), kWait);  // the server closed
        EXPECT_EQ(p->data, payload);
        EXPECT_EQ(p->lifecycle(), (std::vector<std::string>{"made", "data", "eof", "lost"}));
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
}

// ============================================================================================
// Closing
// ============================================================================================

TEST(SslClose, CloseFlushesBufferedDataFirst) {
    // test_flush_before_shutdown: data written right before close() all arrives, then EOF.
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    const std::string payload = pattern(3 * 1024 * 1024, 9);
    std::string received;
    Event got_all;
    auto cb = [&](StreamReader r, StreamWriter w) -> Coro<void> {
        received = co_await r.read();  // until EOF
        got_all.set();
        w.close();
    };
    auto main = [&]() -> Coro<void> {
        Server server = co_await start_server(cb, "127.0.0.1", 0, {.ssl = &sctx});
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
        writer.write(payload);
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        co_await wait_for(got_all.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    EXPECT_TRUE(received == payload) << received.size();
}

TEST(SslClose, AbortMidStream) {
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    std::vector<std::shared_ptr<Recorder>> servers;
    std::vector<std::shared_ptr<Recorder>> clients;
    asyncio_test::LogCapture log;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        RecorderFactory sf{&servers};
        Server server = co_await loop.create_server(sf, "127.0.0.1", 0, {.ssl = &sctx});
        RecorderFactory cf{&clients};
        // The premise: the kernel takes every write at once, so the client's last handshake
        // flight has left when abort() drops what is still buffered. A short send or EAGAIN of
        // ASYNCIO_FAULTS leaves it in the transport: abort() drops it (as Python's does), the
        // server's handshake never completes, and its protocol is never made nor lost.
        auto premise = std::make_unique<asyncio::detail::faults::Suspended>();
        auto [t, p] = co_await wait_for(loop.create_connection(cf, "127.0.0.1", port_of(server), tls(cctx)), kWait);
        t->write(pattern(1024 * 1024));
        t->abort();
        premise.reset();
        EXPECT_TRUE(t->is_closing());
        // Writes after the end are dropped; after a few, Python's warning.
        for (int i = 0; i < 7; ++i) t->write("late");
        co_await wait_for(p->lost_ev.wait(), kWait);
        co_await wait_for(servers.at(0)->lost_ev.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    EXPECT_EQ(clients.at(0)->lifecycle(), (std::vector<std::string>{"made", "lost"}));
    EXPECT_FALSE(clients[0]->lost_exc);
    EXPECT_TRUE(log.contains("SSL connection is closed"));
}

TEST(SslClose, PeerClosingWithoutCloseNotify) {
    // A ragged EOF (the peer's socket closes without a TLS close_notify) is an ordinary EOF
    // over sslproto: eof_received(), then connection_lost(None).
    // The premise: the kernel takes every write at once, so all the server wrote (its
    // handshake's last records, "bye") has left when the test shuts the socket down under the
    // transport (a short send or EAGAIN of ASYNCIO_FAULTS, at any point from the handshake on,
    // leaves some in the transport's buffer, behind which "bye" waits; drain() waits for the
    // TLS layer's buffer only, as in Python).
    asyncio::detail::faults::Suspended premise;
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    std::vector<std::shared_ptr<Recorder>> clients;
    auto cb = [&](StreamReader, StreamWriter w) -> Coro<void> {
        // The premise: the kernel takes the record at once, so it is sent before the FIN below
        // (a short send or EAGAIN of ASYNCIO_FAULTS leaves part of it in the socket transport's
        // buffer, and the shutdown under the transport's feet would cut the record).
        asyncio::detail::faults::Suspended premise;
        w.write("bye");
        co_await w.drain();
        // Cut the TCP connection under TLS: FIN without close_notify.
        int fd = w.get_extra_info<TransportSocket>("socket", {}).fileno();
        ::shutdown(fd, SHUT_WR);
    };
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Server server = co_await start_server(cb, "127.0.0.1", 0, {.ssl = &sctx});
        RecorderFactory cf{&clients};
        auto [t, p] = co_await wait_for(loop.create_connection(cf, "127.0.0.1", port_of(server), tls(cctx)), kWait);
        co_await wait_for(p->lost_ev.wait(), kWait);
        server.close();
        server.close_clients();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    EXPECT_EQ(clients.at(0)->data, "bye");
    EXPECT_EQ(clients[0]->lifecycle(), (std::vector<std::string>{"made", "data", "eof", "lost"}));
    EXPECT_FALSE(clients[0]->lost_exc);
}

TEST(SslClose, CorruptedRecordRaisesSslError) {
    // test_start_tls_client_corrupted_ssl: garbage in the TLS stream is an SSLError for the
    // reader, not logged (it is an OSError).
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    asyncio_test::HandlerCapture handler;
    auto cb = [&](StreamReader r, StreamWriter w) -> Coro<void> {
        w.write("A\n");
        co_await w.drain();
        co_await r.readexactly(1);
        int fd = w.get_extra_info<TransportSocket>("socket", {}).fileno();
        const char garbage[] = "please corrupt the SSL connection";
        EXPECT_GT(::send(fd, garbage, sizeof garbage, MSG_NOSIGNAL), 0);
    };
    auto main = [&]() -> Coro<void> {
        handler.install(get_running_loop());
        Server server = co_await start_server(cb, "127.0.0.1", 0, {.ssl = &sctx});
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
        EXPECT_EQ(co_await wait_for(reader.readline(), kWait), "A\n");
        writer.write("B");
        std::exception_ptr e = co_await asyncio_test::error_of(wait_for(reader.readline(), kWait));
        EXPECT_TRUE(holds<ssl::SSLError>(e)) << message_of(e);
        writer.close();
        server.close();
        server.close_clients();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(SslClose, EofReceivedReturningTrueOnlyWarns) {
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    std::vector<std::shared_ptr<Recorder>> clients;
    asyncio_test::LogCapture log;
    auto cb = [&](StreamReader, StreamWriter w) -> Coro<void> {
        w.close();
        co_return;
    };
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Server server = co_await start_server(cb, "127.0.0.1", 0, {.ssl = &sctx});
        auto proto = std::make_shared<Recorder>();
        proto->keep_open = true;  // "keep me half-open": has no effect over TLS
        clients.push_back(proto);
        auto factory = [proto] { return proto; };
        auto [t, p] =
            co_await wait_for(loop.create_connection(factory, "127.0.0.1", port_of(server), tls(cctx)), kWait);
        co_await wait_for(p->lost_ev.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    EXPECT_EQ(clients.at(0)->lifecycle(), (std::vector<std::string>{"made", "eof", "lost"}));
    EXPECT_TRUE(log.contains("returning true from eof_received() has no effect when using ssl"));
}

TEST(SslClose, ServerCloseClients) {
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    Event connected;
    auto cb = [&](StreamReader r, StreamWriter) -> Coro<void> {
        connected.set();
        co_await r.read();
    };
    auto main = [&]() -> Coro<std::string> {
        Server server = co_await start_server(cb, "127.0.0.1", 0, {.ssl = &sctx});
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
        co_await wait_for(connected.wait(), kWait);
        server.close();
        server.close_clients();
        std::string got = co_await wait_for(reader.read(), kWait);
        co_await wait_for(server.wait_closed(), kWait);
        writer.close();
        co_return got;
    };
    EXPECT_EQ(run(main()), "");
}

// ============================================================================================
// start_tls
// ============================================================================================

TEST(SslStartTls, StreamsUpgradeBothSides) {
    // A STARTTLS-style protocol: plain text first, then both sides upgrade their streams.
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    bool server_saw_tls = false;
    auto cb = [&](StreamReader r, StreamWriter w) -> Coro<void> {
        std::string line = co_await r.readline();
        if (line != "STARTTLS\n") co_return;
        w.write("GO\n");
        co_await w.drain();
        co_await w.start_tls(sctx);
        server_saw_tls = w.get_extra_info("ssl_object").has_value();
        for (;;) {
            std::string l = co_await r.readline();
            if (l.empty()) break;
            w.write("tls:" + l);
        }
        w.close();
    };
    auto main = [&]() -> Coro<std::string> {
        Server server = co_await start_server(cb, "127.0.0.1", 0);
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server)), kWait);
        EXPECT_FALSE(writer.get_extra_info("sslcontext").has_value());
        writer.write("STARTTLS\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), kWait), "GO\n");
        ConnectionOptions co;
        co.server_hostname = "localhost";
        co_await wait_for(writer.start_tls(cctx, co), kWait);
        EXPECT_TRUE(writer.get_extra_info("sslcontext").has_value());
        EXPECT_EQ(ssl::version(writer.get_extra_info<SSL*>("ssl_object", nullptr)), "TLSv1.3");
        writer.write("one\n");
        writer.write("two\n");
        std::string a = co_await wait_for(reader.readline(), kWait);
        std::string b = co_await wait_for(reader.readline(), kWait);
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return a + b;
    };
    EXPECT_EQ(run(main()), "tls:one\ntls:two\n");
    EXPECT_TRUE(server_saw_tls);
}

TEST(SslStartTls, LoopStartTlsWithProtocols) {
    // test_start_tls_client_reg_proto_1 / test_start_tls_server_1 / _buf_proto_1, both ends
    // in this loop: plain hello, upgrade, then data both ways over TLS. connection_made is
    // called once only; set_protocol() switches the app protocol of the TLS transport.
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    const std::string hello = pattern(100 * 1024, 1);
    std::vector<std::shared_ptr<Recorder>> servers;
    std::vector<std::shared_ptr<Recorder>> clients;
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        RecorderFactory sf{&servers};
        Server server = co_await loop.create_server(sf, "127.0.0.1", 0);
        RecorderFactory cf{&clients};
        auto [ct, cp] = co_await wait_for(loop.create_connection(cf, "127.0.0.1", port_of(server)), kWait);
        co_await wait_for(servers.at(0)->made_ev.wait(), kWait);
        auto sp = servers[0];
        sp->want = hello.size();
        ct->write(hello);
        co_await wait_for(sp->data_ev.wait(), kWait);
        EXPECT_EQ(sp->data, hello);

        // Both sides upgrade at once.
        StartTlsOptions server_opts;
        server_opts.server_side = true;
        Task<std::shared_ptr<Transport>> server_tls = create_task(loop.start_tls(sp->transport, sp, sctx, server_opts));
        StartTlsOptions client_opts;
        client_opts.server_hostname = "localhost";
        std::shared_ptr<Transport> ctls = co_await wait_for(loop.start_tls(ct, cp, cctx, client_opts), kWait);
        std::shared_ptr<Transport> stls = co_await wait_for(server_tls, kWait);
        EXPECT_TRUE(ctls->get_extra_info("ssl_object").has_value());
        EXPECT_EQ(ctls->get_protocol(), cp);
        EXPECT_EQ(stls->get_protocol(), sp);

        sp->data.clear();
        sp->data_ev.clear();
        sp->want = 2;
        ctls->write("hi");
        co_await wait_for(sp->data_ev.wait(), kWait);
        EXPECT_EQ(sp->data, "hi");

        // Switch the client's protocol; data now goes to the new one.
        std::vector<std::shared_ptr<Recorder>> seconds;
        auto second = RecorderFactory{&seconds}();
        second->transport = ctls;
        ctls->set_protocol(second);
        EXPECT_EQ(ctls->get_protocol(), second);
        second->want = 3;
        stls->write("yo!");
        co_await wait_for(second->data_ev.wait(), kWait);
        EXPECT_EQ(second->data, "yo!");
        EXPECT_TRUE(cp->data.empty());

        ctls->close();
        co_await wait_for(second->lost_ev.wait(), kWait);
        co_await wait_for(sp->lost_ev.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
    EXPECT_EQ(clients.at(0)->made_calls, 1);
    EXPECT_EQ(servers.at(0)->made_calls, 1);
    EXPECT_EQ(servers[0]->lifecycle(), (std::vector<std::string>{"made", "data", "eof", "lost"}));
}

TEST(SslStartTls, WrongArgumentsAndCancellation) {
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    struct FakeTransport : Transport {
        void close() override {}
        bool is_closing() const noexcept override { return false; }
        std::any get_extra_info(std::string_view) const override { return {}; }
        void set_protocol(std::shared_ptr<BaseProtocol>) override {}
        std::shared_ptr<BaseProtocol> get_protocol() const override { return nullptr; }
        bool is_reading() const noexcept override { return true; }
        void pause_reading() override {}
        void resume_reading() override {}
        void write(std::string_view) override {}
        void write_eof() override {}
        bool can_write_eof() const noexcept override { return true; }
        void abort() override {}
        void set_write_buffer_limits(std::optional<std::size_t>, std::optional<std::size_t>) override {}
        std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept override { return {0, 0}; }
        std::size_t get_write_buffer_size() const noexcept override { return 0; }
    };
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        auto fake = std::make_shared<FakeTransport>();
        auto proto = std::make_shared<Recorder>();
        std::exception_ptr e = co_await asyncio_test::error_of(loop.start_tls(fake, proto, cctx));
        EXPECT_TRUE(holds<std::invalid_argument>(e));
        EXPECT_NE(message_of(e).find("not supported by start_tls()"), std::string::npos);

        // A client upgrade that the peer never answers, cancelled by wait_for
        // (test_start_tls_slow_client_cancel): the transport is closed.
        auto silent = std::make_shared<Silent>();
        auto factory = [silent] { return silent; };
        Server server = co_await loop.create_server(factory, "127.0.0.1", 0);
        std::vector<std::shared_ptr<Recorder>> clients;
        RecorderFactory cf{&clients};
        auto [ct, cp] = co_await wait_for(loop.create_connection(cf, "127.0.0.1", port_of(server)), kWait);
        // check_hostname without a name
        e = co_await asyncio_test::error_of(loop.start_tls(ct, cp, cctx));
        EXPECT_TRUE(holds<std::invalid_argument>(e));
        EXPECT_EQ(message_of(e), "check_hostname requires server_hostname");
        // a server context used for the client side
        e = co_await asyncio_test::error_of(loop.start_tls(ct, cp, sctx));
        EXPECT_TRUE(holds<ssl::SSLError>(e));
        StartTlsOptions o;
        o.server_hostname = "localhost";
        e = co_await asyncio_test::error_of(wait_for(loop.start_tls(ct, cp, cctx, o), 0.2));
        EXPECT_TRUE(holds<TimeoutError>(e)) << message_of(e);
        EXPECT_TRUE(ct->is_closing());
        co_await wait_for(silent->lost.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
}

TEST(SslStartTls, WrongSideContextInCreateConnection) {
    ssl::Context sctx = server_context();
    auto main = [&]() -> Coro<std::exception_ptr> {
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0);
        std::exception_ptr e =
            co_await asyncio_test::error_of(open_connection("127.0.0.1", port_of(server), tls(sctx)));
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return e;
    };
    std::exception_ptr e = run(main());
    EXPECT_TRUE(holds<ssl::SSLError>(e));
    EXPECT_EQ(message_of(e), "Cannot create a client socket with a PROTOCOL_TLS_SERVER context");
}

TEST(SslStartTls, TlsInsideTls) {
    // start_tls over a TLS transport (Python's test_create_server_ssl_over_ssl): two layers.
    ssl::Context outer_server = server_context();
    ssl::Context inner_server = server_context();
    ssl::Context outer_client = client_context();
    ssl::Context inner_client = client_context();
    auto cb = [&](StreamReader r, StreamWriter w) -> Coro<void> {
        if (co_await r.readline() != "UPGRADE\n") co_return;
        w.write("OK\n");
        co_await w.drain();
        co_await w.start_tls(inner_server);
        for (;;) {
            std::string data = co_await r.read(65536);
            if (data.empty()) break;
            w.write(data);
            co_await w.drain();
        }
        w.close();
    };
    const std::string payload = pattern(2 * 1024 * 1024, 11);
    auto main = [&]() -> Coro<bool> {
        Server server = co_await start_server(cb, "127.0.0.1", 0, {.ssl = &outer_server});
        ConnectionOptions co;
        co.ssl = &outer_client;
        co.server_hostname = "localhost";
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), co), kWait);
        SSL* outer = writer.get_extra_info<SSL*>("ssl_object", nullptr);
        writer.write("UPGRADE\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), kWait), "OK\n");
        co_await wait_for(writer.start_tls(inner_client, co), kWait);
        SSL* inner = writer.get_extra_info<SSL*>("ssl_object", nullptr);
        EXPECT_NE(inner, nullptr);
        EXPECT_NE(inner, outer);
        EXPECT_GE(writer.get_extra_info<TransportSocket>("socket", {}).fileno(), 0);  // through both layers
        Task<std::string> rx = create_task(reader.readexactly(payload.size()));
        writer.write(payload);
        co_await wait_for(writer.drain(), kWait);
        std::string echoed = co_await wait_for(rx, 30.0);
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return echoed == payload;
    };
    EXPECT_TRUE(run(main()));
}

TEST(SslLoop, ClosingTheLoopWithOpenTlsConnections) {
    // A loop closed with TLS connections still open releases them (no leak under ASan, no
    // callback), as it does for plain transports; a handle kept past the loop stays usable.
    ssl::Context sctx = server_context();
    ssl::Context cctx = client_context();
    StreamWriter kept;  // (not std::optional: GCC 12 -Wmaybe-uninitialized false positive)
    bool was_kept = false;
    {
        EventLoop loop;
        auto main = [&]() -> Coro<void> {
            Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, {.ssl = &sctx});
            auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), tls(cctx)), kWait);
            writer.write("x\n");
            EXPECT_EQ(co_await wait_for(reader.readline(), kWait), "x\n");
            kept = writer;
            was_kept = true;
        };
        loop.run_until_complete(main());
        loop.close();
    }
    ASSERT_TRUE(was_kept);
    EXPECT_TRUE(kept.get_extra_info("sslcontext").has_value());
    EXPECT_TRUE(kept.is_closing());
    kept.write("dropped");  // the connection is gone: dropped silently
    kept.transport().pause_reading();
    kept.transport().resume_reading();
    kept.close();
    kept = StreamWriter();
}

TEST(SslOptions, TheContextItselfOrAPointerCanBeGiven) {
    // API.md writes `{.ssl = ctx}` (as Python's ssl=ctx); a pointer works too.
    ssl::Context ctx = client_context();
    ConnectionOptions by_ref{.ssl = ctx};
    ConnectionOptions by_ptr{.ssl = &ctx};
    ServerOptions server{.ssl = ctx};
    ConnectionOptions none{};
    EXPECT_EQ(by_ref.ssl.get(), &ctx);
    EXPECT_EQ(by_ptr.ssl.get(), &ctx);
    EXPECT_EQ(server.ssl.get(), &ctx);
    EXPECT_FALSE(none.ssl);
}

// ============================================================================================
// Context lifetime: a server, a connection and start_tls each keep their context alive, so
// no order in which the caller destroys its ssl::Context can crash or break a handshake.
// ============================================================================================

namespace {
/// One TLS round trip to `port`: "ping\n" echoed.
Coro<std::string> tls_ping(int port) {
    ssl::Context cctx = client_context();
    ConnectionOptions co = tls(cctx);
    co.server_hostname = "localhost";
    auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port, co), kWait);
    writer.write("ping\n");
    std::string line = co_await wait_for(reader.readline(), kWait);
    writer.close();
    co_await wait_for(writer.wait_closed(), kWait);
    co_return line;
}
}  // namespace

TEST(SslContextLifetime, AServerOutlivesTheContextItWasGiven) {
    auto main = []() -> Coro<void> {
        std::optional<ssl::Context> sctx = server_context();
        ServerOptions so;
        so.ssl = *sctx;
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, so);
        sctx.reset();  // the caller's context is gone; the server's connections still need it
        EXPECT_EQ(co_await tls_ping(port_of(server)), "ping\n");
        EXPECT_EQ(co_await tls_ping(port_of(server)), "ping\n");
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
}

TEST(SslContextLifetime, ACreateServerCallHoldsItsContextUntilItRuns) {
    auto main = []() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        std::optional<ssl::Context> sctx = server_context();
        ServerOptions so;
        so.ssl = *sctx;
        std::vector<std::shared_ptr<Recorder>> made;
        RecorderFactory factory{&made, /*echo=*/true};
        Coro<Server> creating = loop.create_server(factory, "127.0.0.1", 0, so);  // not started yet
        Coro<Server> streams = start_server(echo_until_eof, "127.0.0.1", 0, so);
        sctx.reset();
        Server a = co_await creating;
        Server b = co_await streams;
        EXPECT_EQ(co_await tls_ping(port_of(a)), "ping\n");
        EXPECT_EQ(co_await tls_ping(port_of(b)), "ping\n");
        a.close();
        b.close();
        co_await wait_for(a.wait_closed(), kWait);
        co_await wait_for(b.wait_closed(), kWait);
    };
    run(main());
}

TEST(SslContextLifetime, AConnectionCallHoldsItsContextUntilItRuns) {
    ssl::Context sctx = server_context();
    auto main = [&]() -> Coro<void> {
        EventLoop& loop = get_running_loop();
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0, {.ssl = &sctx});
        std::optional<ssl::Context> cctx = client_context();
        ConnectionOptions co = tls(*cctx);
        co.server_hostname = "localhost";
        Task<std::pair<StreamReader, StreamWriter>> streams =
            create_task(open_connection("127.0.0.1", port_of(server), co));
        std::vector<std::shared_ptr<Recorder>> made;
        RecorderFactory factory{&made};
        auto protocols = loop.create_connection(factory, "127.0.0.1", port_of(server), co);
        cctx.reset();  // before either call ran
        auto [reader, writer] = co_await wait_for(streams, kWait);
        auto [transport, protocol] = co_await wait_for(std::move(protocols), kWait);
        writer.write("one\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), kWait), "one\n");
        protocol->want = 4;
        transport->write("two\n");
        co_await wait_for(protocol->data_ev.wait(), kWait);
        EXPECT_EQ(protocol->data, "two\n");
        writer.close();
        transport->close();
        co_await wait_for(writer.wait_closed(), kWait);
        co_await wait_for(protocol->lost_ev.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
    };
    run(main());
}

TEST(SslContextLifetime, StartTlsHoldsItsContextUntilItRuns) {
    std::optional<ssl::Context> sctx = server_context();
    auto cb = [&sctx](StreamReader r, StreamWriter w) -> Coro<void> {
        co_await r.readline();  // "STARTTLS\n"
        // The client starts its handshake only once told to (as SMTP's "220 Ready"): otherwise
        // its ClientHello may come in the same read as "STARTTLS\n" (when the server reads
        // late: a real or injected EAGAIN), into this reader's buffer, where the TLS layer
        // never sees it - Python's StreamWriter.start_tls does not take over buffered bytes.
        w.write("GO\n");
        co_await w.drain();
        Coro<void> upgrade = w.start_tls(*sctx);
        sctx.reset();
        co_await upgrade;
        for (;;) {
            std::string l = co_await r.readline();
            if (l.empty()) break;
            w.write("tls:" + l);
        }
        w.close();
    };
    auto main = [&]() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        Server server = co_await start_server(cb, "127.0.0.1", 0);
        std::vector<std::shared_ptr<Recorder>> made;
        RecorderFactory factory{&made};
        auto [transport, protocol] =
            co_await wait_for(loop.create_connection(factory, "127.0.0.1", port_of(server)), kWait);
        protocol->want = 3;
        transport->write("STARTTLS\n");
        co_await wait_for(protocol->data_ev.wait(), kWait);  // "GO\n"
        protocol->data_ev.clear();
        std::optional<ssl::Context> cctx = client_context();
        StartTlsOptions o;
        o.server_hostname = "localhost";
        Coro<std::shared_ptr<Transport>> upgrade = loop.start_tls(transport, protocol, *cctx, o);
        cctx.reset();
        std::shared_ptr<Transport> tls_transport = co_await wait_for(std::move(upgrade), kWait);
        protocol->want = 3 + 10;
        tls_transport->write("hello\n");
        co_await wait_for(protocol->data_ev.wait(), kWait);
        tls_transport->close();
        co_await wait_for(protocol->lost_ev.wait(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return protocol->data;
    };
    EXPECT_EQ(run(main()), "GO\ntls:hello\n");
}

TEST(SslStreams, AHandlerThatReturnsWithoutCloseClosesItsTlsConnection) {
    // As with plain TCP (StreamUnclosed.*): the last handle of an open connection going away
    // closes it; over TLS that is a clean close_notify, so the client reads EOF.
    ssl::Context sctx = server_context();
    auto bye = [](StreamReader, StreamWriter w) -> Coro<void> {
        w.write("bye");
        co_return;
    };
    auto main = [&]() -> Coro<std::string> {
        Server server = co_await start_server(bye, "127.0.0.1", 0, {.ssl = &sctx});
        ssl::Context cctx = client_context();
        ConnectionOptions co = tls(cctx);
        co.server_hostname = "localhost";
        auto [reader, writer] = co_await wait_for(open_connection("127.0.0.1", port_of(server), co), kWait);
        std::string got = co_await wait_for(reader.read(), kWait);
        writer.close();
        co_await wait_for(writer.wait_closed(), kWait);
        server.close();
        co_await wait_for(server.wait_closed(), kWait);
        co_return got;
    };
    EXPECT_EQ(run(main()), "bye");
}
