// examples/tls_echo.cpp - a TLS echo server and a TLS client talking to it, in one program.
//
// The server's certificate is self-signed, made at startup with OpenSSL's API (in real life:
// ctx.load_cert_chain("fullchain.pem", "privkey.pem")). The client trusts exactly that
// certificate and checks that it is valid for "localhost". Python's equivalent:
//
//   server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
//   server_ctx.load_cert_chain(certfile, keyfile)
//   server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
//   client_ctx = ssl.create_default_context(cafile=certfile)
//   reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
//                                                  server_hostname="localhost")
#include <asyncio.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

using namespace asyncio;

namespace {

/// A self-signed certificate for localhost / 127.0.0.1 and its key, in a temporary directory.
struct SelfSigned {
    std::string dir, cert, key;
    SelfSigned() = default;
    SelfSigned(const SelfSigned&) = delete;
    SelfSigned& operator=(const SelfSigned&) = delete;
    ~SelfSigned() {
        std::error_code ec;
        if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    }
};

void make_self_signed(SelfSigned& out) {
    auto fail = [](const char* what) { throw std::runtime_error(std::string("certificate generation: ") + what); };
    char tmpl[] = "/tmp/tls-echo-XXXXXX";
    if (!::mkdtemp(tmpl)) fail("mkdtemp");
    out.dir = tmpl;
    out.cert = out.dir + "/cert.pem";
    out.key = out.dir + "/key.pem";

    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* x = X509_new();
    if (!key || !x) fail("allocation");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 7L * 24 * 3600);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    for (auto [nid, value] : {std::pair<int, const char*>{NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
                              {NID_basic_constraints, "critical,CA:FALSE"},
                              {NID_ext_key_usage, "serverAuth"},
                              {NID_subject_key_identifier, "hash"}}) {
        X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
        if (!ext) fail(value);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    if (X509_sign(x, key, EVP_sha256()) <= 0) fail("X509_sign");

    BIO* b = BIO_new_file(out.cert.c_str(), "w");
    if (!b || PEM_write_bio_X509(b, x) != 1) fail("writing the certificate");
    BIO_free(b);
    b = BIO_new_file(out.key.c_str(), "w");
    if (!b || PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr) != 1) fail("writing the key");
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(key);
}

/// The server side of one connection: echo lines until the client closes.
Coro<void> handle(StreamReader reader, StreamWriter writer) {
    SockAddr peer = writer.get_extra_info<SockAddr>("peername", {});
    ssl::CipherInfo cipher = writer.get_extra_info<ssl::CipherInfo>("cipher", {});
    std::printf("[server] %s connected over %s (%s)\n", peer.to_string().c_str(), cipher.protocol.c_str(),
                cipher.name.c_str());
    for (;;) {
        std::string line = co_await reader.readline();
        if (line.empty()) break;  // EOF: the client closed (TLS close_notify)
        std::printf("[server] echoing %s", line.c_str());
        writer.write(line);
        co_await writer.drain();
    }
    std::printf("[server] %s closed the connection\n", peer.to_string().c_str());
    writer.close();
    co_await writer.wait_closed();
}

Coro<void> amain() {
    SelfSigned certs;
    make_self_signed(certs);

    ssl::Context server_ctx = ssl::Context::server();
    server_ctx.load_cert_chain(certs.cert, certs.key);
    server_ctx.set_alpn_protocols({"echo/1"});
    ServerOptions server_opts;
    server_opts.ssl = server_ctx;
    Server server = co_await start_server(handle, "127.0.0.1", 0, server_opts);
    int port = server.sockets().at(0).getsockname().port();
    std::printf("[server] TLS echo server on 127.0.0.1:%d\n", port);

    // The client trusts that one certificate and checks the name "localhost".
    ssl::Context client_ctx = ssl::create_default_context(ssl::Purpose::SERVER_AUTH, certs.cert);
    client_ctx.set_alpn_protocols({"echo/1"});
    ConnectionOptions opts;
    opts.ssl = client_ctx;
    opts.server_hostname = "localhost";
    auto [reader, writer] = co_await open_connection("127.0.0.1", port, opts);

    SSL* ssl_object = writer.get_extra_info<SSL*>("ssl_object", nullptr);
    ssl::Certificate cert = writer.get_extra_info<ssl::Certificate>("peercert", {});
    std::printf("[client] connected: %s, ALPN %s\n", ssl::version(ssl_object).c_str(),
                writer.get_extra_info<std::string>("alpn_protocol", "(none)").c_str());
    std::printf("[client] server certificate: CN=%s, valid until %s, verified: %s\n",
                cert.subject_value("commonName").c_str(), cert.not_after.c_str(), cert.verified ? "yes" : "no");

    for (const char* message : {"hello\n", "over\n", "TLS\n"}) {
        writer.write(message);
        std::string reply = co_await wait_for(reader.readline(), 5.0);
        std::printf("[client] got back %s", reply.c_str());
    }
    writer.close();
    co_await writer.wait_closed();

    // A client with the system's CAs does not trust a self-signed certificate.
    ssl::Context strict = ssl::Context::client();
    ConnectionOptions strict_opts;
    strict_opts.ssl = strict;
    strict_opts.server_hostname = "localhost";
    try {
        auto conn = co_await open_connection("127.0.0.1", port, strict_opts);
        std::printf("[client] unexpectedly trusted the self-signed certificate\n");
        conn.second.close();
    } catch (const ssl::SSLCertVerificationError& e) {
        std::printf("[client] with the system CAs: %s\n", e.what());
    }

    server.close();
    co_await server.wait_closed();
    std::printf("[server] closed\n");
}

}  // namespace

int main() {
    try {
        asyncio::run(amain());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
