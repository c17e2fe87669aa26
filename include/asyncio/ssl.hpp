// asyncio/ssl.hpp - TLS with OpenSSL: the subset of Python's `ssl` module that asyncio code
// uses (SSLContext, the SSLError family, the certificate and cipher information), for
//   loop.create_connection(..., {.ssl = ctx}) / loop.create_server(..., {.ssl = ctx})
//   asyncio::open_connection(..., {.ssl = ctx}) / asyncio::start_server(..., {.ssl = ctx})
//   loop.start_tls(transport, protocol, ctx) / writer.start_tls(ctx)
//
//   // client: verification on, host name checked (Python's ssl.create_default_context())
//   asyncio::ssl::Context ctx = asyncio::ssl::Context::client();
//   ctx.load_verify_locations("ca.pem");               // or rely on the system's CAs
//   auto [reader, writer] = co_await asyncio::open_connection("example.com", 443, {.ssl = ctx});
//
//   // server (Python's create_default_context(Purpose.CLIENT_AUTH))
//   asyncio::ssl::Context sctx = asyncio::ssl::Context::server();
//   sctx.load_cert_chain("cert.pem", "key.pem");
//   auto server = co_await asyncio::start_server(cb, "0.0.0.0", 8443, {.ssl = sctx});
//
// A Context is a cheap, copyable handle: copies share one OpenSSL SSL_CTX (reference counted),
// as several Python objects may refer to one SSLContext. Configure it before use; changing it
// later affects only connections created afterwards, as in Python.
//
// Errors, as in Python: ssl::SSLError (an OSError: derived from std::system_error, its code()
// is the SSL_ERROR_* value in ssl::error_category(), what() is Python's
// "[SSL: REASON] reason text"), and ssl::SSLCertVerificationError (derived from SSLError) when
// the peer's certificate is rejected. Missing files are std::system_error(ENOENT...), bad
// arguments std::invalid_argument (Python's ValueError/TypeError).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

// OpenSSL's own typedefs (<openssl/types.h>), repeated so that this header does not need the
// OpenSSL headers. Include <openssl/ssl.h> to call OpenSSL on native_handle()/"ssl_object".
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace asyncio::ssl {

/// Python's ssl.CERT_NONE / CERT_OPTIONAL / CERT_REQUIRED.
enum VerifyMode : int { CERT_NONE = 0, CERT_OPTIONAL = 1, CERT_REQUIRED = 2 };

/// Python's ssl.PROTOCOL_TLS_CLIENT / PROTOCOL_TLS_SERVER (the only two that are not
/// deprecated). A context is for one side only.
enum SSLMethod : int { PROTOCOL_TLS_CLIENT = 16, PROTOCOL_TLS_SERVER = 17 };

/// Python's ssl.Purpose: what the certificates loaded by load_default_certs() are for.
enum class Purpose { SERVER_AUTH, CLIENT_AUTH };

/// Python's ssl.TLSVersion (the values are the protocol numbers, as in Python).
enum class TLSVersion : int {
    MINIMUM_SUPPORTED = -2,
    MAXIMUM_SUPPORTED = -1,
    SSLv3 = 0x0300,
    TLSv1 = 0x0301,
    TLSv1_1 = 0x0302,
    TLSv1_2 = 0x0303,
    TLSv1_3 = 0x0304,
};

/// Python's ssl.ALERT_DESCRIPTION_* values an SNI callback may return.
inline constexpr int ALERT_DESCRIPTION_HANDSHAKE_FAILURE = 40;
inline constexpr int ALERT_DESCRIPTION_ACCESS_DENIED = 49;
inline constexpr int ALERT_DESCRIPTION_INTERNAL_ERROR = 80;
inline constexpr int ALERT_DESCRIPTION_UNRECOGNIZED_NAME = 112;

/// The category of SSLError codes: the SSL_ERROR_* values (Python's SSLError.errno).
const std::error_category& error_category() noexcept;

/// Python's ssl.SSLError (an OSError). code(): SSL_ERROR_SSL, SSL_ERROR_SYSCALL... in
/// error_category(). what(): "[SSL: WRONG_VERSION_NUMBER] wrong version number".
class SSLError : public std::system_error {
public:
    SSLError(int ssl_error, std::string message, std::string library = {}, std::string reason = {});
    const char* what() const noexcept override { return message_.c_str(); }
    /// Python's SSLError.library: "SSL", "X509", "PEM"... ("" when unknown).
    const std::string& library() const noexcept { return library_; }
    /// Python's SSLError.reason: "WRONG_VERSION_NUMBER", "CERTIFICATE_VERIFY_FAILED"...
    const std::string& reason() const noexcept { return reason_; }

private:
    std::string message_;
    std::string library_;
    std::string reason_;
};

/// Python's ssl.SSLCertVerificationError (alias ssl.CertificateError): the peer's certificate
/// failed verification (unknown CA, expired, host name mismatch...).
class SSLCertVerificationError : public SSLError {
public:
    SSLCertVerificationError(long verify_code, std::string verify_message, std::string message);
    /// OpenSSL's X509_V_ERR_* code (Python's verify_code), e.g. 20 for an unknown issuer.
    long verify_code() const noexcept { return verify_code_; }
    /// e.g. "unable to get local issuer certificate", "Hostname mismatch, certificate is not
    /// valid for 'example.com'." (Python's verify_message).
    const std::string& verify_message() const noexcept { return verify_message_; }

private:
    long verify_code_;
    std::string verify_message_;
};
using CertificateError = SSLCertVerificationError;

/// A peer certificate: Python's SSLObject.getpeercert() as a struct (get_extra_info("peercert")).
/// Python returns an empty dict for a certificate that was not verified (CERT_NONE); here the
/// fields are always filled and `verified` tells whether the chain was checked and accepted.
struct Certificate {
    /// Relative distinguished names as (long name, value): {{"commonName", "localhost"}, ...}.
    std::vector<std::pair<std::string, std::string>> subject;
    std::vector<std::pair<std::string, std::string>> issuer;
    int version = 0;            ///< 3 for X.509 v3, as Python's 'version'
    std::string serial_number;  ///< upper-case hex, Python's 'serialNumber'
    std::string not_before;     ///< "Jan  5 09:34:43 2025 GMT", Python's 'notBefore'
    std::string not_after;      ///< Python's 'notAfter'
    /// ("DNS", "localhost"), ("IP Address", "127.0.0.1"), ("email", ...), ("URI", ...).
    std::vector<std::pair<std::string, std::string>> subject_alt_name;
    std::string der;        ///< the certificate itself: getpeercert(binary_form=True)
    bool verified = false;  ///< verification was on and succeeded

    /// The first value of `key` in the subject ("commonName" ...), "" when absent.
    std::string subject_value(std::string_view key) const;
    /// The certificate as PEM text (Python's ssl.DER_cert_to_PEM_cert(der)).
    std::string pem() const;
};

/// get_extra_info("cipher"): Python's SSLObject.cipher() triple.
struct CipherInfo {
    std::string name;      ///< "TLS_AES_256_GCM_SHA384"
    std::string protocol;  ///< "TLSv1.3"
    int secret_bits = 0;
};

/// Python's SSLObject.getpeercert() on an ssl_object (nullopt: the peer sent none).
std::optional<Certificate> getpeercert(SSL* ssl_object);
/// Python's SSLObject.cipher() (nullopt before the handshake).
std::optional<CipherInfo> cipher(SSL* ssl_object);
/// Python's SSLObject.version(): "TLSv1.3" ("" before the handshake).
std::string version(SSL* ssl_object);
/// Python's SSLObject.selected_alpn_protocol() ("" when none was agreed).
std::string selected_alpn_protocol(SSL* ssl_object);
/// The SNI name the client sent (server side) or will send (client side); "" when none.
std::string server_name(SSL* ssl_object);

/// Python's ssl.SSLContext: configuration shared by connections; a copyable handle.
class Context {
public:
    /// Python's SSLContext(protocol): PROTOCOL_TLS_CLIENT verifies the server (CERT_REQUIRED,
    /// check_hostname on) but loads no CA; PROTOCOL_TLS_SERVER verifies nothing (CERT_NONE).
    /// Both: TLS 1.2 minimum, Python's default cipher list, no compression.
    explicit Context(SSLMethod protocol);
    /// Python's ssl.create_default_context() (Purpose.SERVER_AUTH): a client context with
    /// verification and host name checking on and the system's CAs loaded.
    static Context client();
    /// Python's ssl.create_default_context(Purpose.CLIENT_AUTH): a server context (CERT_NONE,
    /// so no CA is loaded). Add its certificate with load_cert_chain(); to ask clients for
    /// theirs, set_verify_mode(CERT_REQUIRED) and load_verify_locations().
    static Context server();

    SSLMethod protocol() const noexcept;
    /// Loads the certificate (chain, PEM; leaf first) and its private key (from `certfile`
    /// when `keyfile` is empty). `password` decrypts an encrypted key; without it such a key
    /// fails with SSLError (nothing is ever prompted on a terminal).
    void load_cert_chain(const std::string& certfile, const std::string& keyfile = {},
                         const std::optional<std::string>& password = std::nullopt);
    /// Trusted CAs: a PEM file, a hashed directory (c_rehash) and/or PEM text (`cadata`).
    /// std::invalid_argument when all three are empty (Python's TypeError).
    void load_verify_locations(const std::string& cafile = {}, const std::string& capath = {},
                               const std::string& cadata = {});
    /// Python's load_default_certs(purpose): the system's CAs (set_default_verify_paths()).
    void load_default_certs(Purpose purpose = Purpose::SERVER_AUTH);
    void set_default_verify_paths();
    /// ALPN protocols, in preference order ("h2", "http/1.1"). A server picks the first of
    /// its own list that the client offers; no overlap means no ALPN (as Python).
    void set_alpn_protocols(const std::vector<std::string>& protocols);
    /// OpenSSL cipher list (TLS 1.2 and below); SSLError("No cipher can be selected.") when
    /// nothing matches.
    void set_ciphers(const std::string& ciphers);

    bool check_hostname() const noexcept;
    /// Turning it on also switches CERT_NONE to CERT_REQUIRED, as in Python.
    void set_check_hostname(bool value);
    VerifyMode verify_mode() const noexcept;
    /// std::invalid_argument for CERT_NONE while check_hostname is on (Python's ValueError).
    void set_verify_mode(VerifyMode mode);
    TLSVersion minimum_version() const noexcept;
    void set_minimum_version(TLSVersion version);
    TLSVersion maximum_version() const noexcept;
    void set_maximum_version(TLSVersion version);
    /// Python's SSLContext.options: OpenSSL's SSL_OP_* bits.
    std::uint64_t options() const noexcept;
    void set_options(std::uint64_t options);

    /// Python's sni_callback(ssl_object, server_name, context), called on the server during
    /// the handshake with the name the client asked for ("" when it sent none). Return 0 to
    /// go on, or an ALERT_DESCRIPTION_* code to fail the handshake with that alert. An
    /// exception fails it with ALERT_DESCRIPTION_HANDSHAKE_FAILURE. An empty function removes
    /// the callback.
    using SNICallback = std::function<int(SSL* ssl_object, std::string_view server_name, Context& context)>;
    void set_sni_callback(SNICallback callback);

    /// The OpenSSL context, for anything this class does not cover. Owned by the handle.
    SSL_CTX* native_handle() const noexcept;

    /// Same underlying context.
    friend bool operator==(const Context& a, const Context& b) noexcept { return a.impl_ == b.impl_; }

    struct Impl;

private:
    explicit Context(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
    std::shared_ptr<Impl> impl_;
};

/// Python's ssl.create_default_context(purpose, cafile=, capath=, cadata=): Context::client()
/// for SERVER_AUTH, Context::server() for CLIENT_AUTH; the given CAs are loaded instead of
/// the system's.
Context create_default_context(Purpose purpose = Purpose::SERVER_AUTH, const std::string& cafile = {},
                               const std::string& capath = {}, const std::string& cadata = {});

}  // namespace asyncio::ssl
