// src/tls/ssl.cpp - asyncio::ssl: Context (Python's SSLContext), the SSLError family and the
// certificate/cipher accessors, on OpenSSL 3 (Python's Modules/_ssl.c, the parts asyncio uses).
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/ssl.hpp>

#include "net/tls_seam.hpp"
#include "openssl_handles.hpp"
#include "ssl_internal.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

namespace asyncio::ssl {

// ---- errors ----------------------------------------------------------------------------------
namespace {
class SSLErrorCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "ssl"; }
    std::string message(int code) const override {
        switch (code) {
            case SSL_ERROR_NONE:
                return "no error";
            case SSL_ERROR_SSL:
                return "SSL error";
            case SSL_ERROR_WANT_READ:
                return "The operation did not complete (read)";
            case SSL_ERROR_WANT_WRITE:
                return "The operation did not complete (write)";
            case SSL_ERROR_WANT_X509_LOOKUP:
                return "The operation did not complete (X509 lookup)";
            case SSL_ERROR_SYSCALL:
                return "Some I/O error occurred";
            case SSL_ERROR_ZERO_RETURN:
                return "TLS/SSL connection has been closed (EOF)";
            case SSL_ERROR_WANT_CONNECT:
                return "The operation did not complete (connect)";
            case 8:
                return "EOF occurred in violation of protocol";  // Python's SSL_ERROR_EOF
            default:
                return "SSL error " + std::to_string(code);
        }
    }
};

std::string library_name(unsigned long e) {
    switch (ERR_GET_LIB(e)) {
        case ERR_LIB_SSL:
            return "SSL";
        case ERR_LIB_X509:
            return "X509";
        case ERR_LIB_X509V3:
            return "X509V3";
        case ERR_LIB_PEM:
            return "PEM";
        case ERR_LIB_EVP:
            return "EVP";
        case ERR_LIB_ASN1:
            return "ASN1";
        case ERR_LIB_BIO:
            return "BIO";
        case ERR_LIB_SYS:
            return "SYS";
        case ERR_LIB_PKCS12:
            return "PKCS12";
        case ERR_LIB_CRYPTO:
            return "CRYPTO";
        case ERR_LIB_OSSL_DECODER:
            return "DECODER";
        case ERR_LIB_PROV:
            return "PROV";
        default: {
            const char* s = ERR_lib_error_string(e);
            return s ? s : "";
        }
    }
}

/// OpenSSL 3 has no table of reason mnemonics; Python's ("WRONG_VERSION_NUMBER") are the
/// reason texts upper-cased with underscores, which is what we rebuild.
std::string reason_mnemonic(const std::string& text) {
    std::string r;
    for (char c : text) r += c == ' ' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return r;
}

std::string reason_text(unsigned long e) {
    if (ERR_SYSTEM_ERROR(e)) return std::strerror(static_cast<int>(ERR_GET_REASON(e)));
    const char* s = ERR_reason_error_string(e);
    return s ? s : "unknown error (" + std::to_string(ERR_GET_REASON(e)) + ")";
}
}  // namespace

const std::error_category& error_category() noexcept {
    static const SSLErrorCategory category;
    return category;
}

SSLError::SSLError(int ssl_error, std::string message, std::string library, std::string reason)
    : std::system_error(ssl_error, error_category(), message),
      message_(std::move(message)),
      library_(std::move(library)),
      reason_(std::move(reason)) {}

SSLCertVerificationError::SSLCertVerificationError(long verify_code, std::string verify_message, std::string message)
    : SSLError(SSL_ERROR_SSL, std::move(message), "SSL", "CERTIFICATE_VERIFY_FAILED"),
      verify_code_(verify_code),
      verify_message_(std::move(verify_message)) {}

namespace detail {
std::exception_ptr make_error(int ssl_error, SSL* ssl, std::string_view hostname) {
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    if (e == 0) {
        // No queued error: Python's messages for the bare SSL_ERROR_* codes.
        if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_SSL)
            return std::make_exception_ptr(SSLError(8, "EOF occurred in violation of protocol"));
        return std::make_exception_ptr(SSLError(ssl_error, error_category().message(ssl_error)));
    }
    std::string lib = library_name(e);
    std::string text = reason_text(e);
    std::string reason = reason_mnemonic(text);
    if (ssl && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long code = SSL_get_verify_result(ssl);
        std::string verify;
        if (code == X509_V_ERR_HOSTNAME_MISMATCH)
            verify = "Hostname mismatch, certificate is not valid for '" + std::string(hostname) + "'.";
        else if (code == X509_V_ERR_IP_ADDRESS_MISMATCH)
            verify = "IP address mismatch, certificate is not valid for '" + std::string(hostname) + "'.";
        else
            verify = X509_verify_cert_error_string(code);
        return std::make_exception_ptr(SSLCertVerificationError(
            code, verify, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: " + verify));
    }
    std::string message = reason.empty() ? "[" + lib + "] " + text : "[" + lib + ": " + reason + "] " + text;
    return std::make_exception_ptr(SSLError(ssl_error, std::move(message), std::move(lib), std::move(reason)));
}

void throw_last_error(const char* fallback) {
    if (ERR_peek_last_error() == 0) throw SSLError(SSL_ERROR_SSL, fallback);
    std::rethrow_exception(make_error(SSL_ERROR_SSL));
}
}  // namespace detail

// ---- Context ---------------------------------------------------------------------------------
struct Context::Impl : std::enable_shared_from_this<Context::Impl> {
    SSLMethod protocol = PROTOCOL_TLS_CLIENT;
    bool check_hostname = false;
    std::vector<unsigned char> alpn;  // wire format: length-prefixed names
    SNICallback sni;
    // Last, so that it is freed first, before the members its callbacks read.
    detail::SslCtxPtr ctx;

    Impl() = default;
    // Not copyable nor movable: the callbacks hold its address.
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    static int on_servername(SSL* s, int* alert, void* arg) {
        auto* impl = static_cast<Impl*>(arg);
        SNICallback cb = impl->sni;  // a copy: the callback may replace itself
        if (!cb) return SSL_TLSEXT_ERR_OK;
        const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
        try {
            Context context(impl->shared_from_this());
            int r = cb(s, name ? std::string_view(name) : std::string_view(), context);
            if (r == 0) return SSL_TLSEXT_ERR_OK;
            *alert = r;
        } catch (...) {
            // Python reports it as unraisable and fails the handshake.
            log_message("Exception ignored in sni_callback: " + describe_exception(std::current_exception()),
                        LogLevel::error);
            *alert = SSL_AD_HANDSHAKE_FAILURE;
        }
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }

    static int on_alpn_select(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                              unsigned int inlen, void* arg) {
        auto* impl = static_cast<Impl*>(arg);
        unsigned char* selected = nullptr;
        int r = SSL_select_next_proto(&selected, outlen, impl->alpn.data(),
                                      static_cast<unsigned int>(impl->alpn.size()), in, inlen);
        if (r != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_NOACK;
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
    }
};

namespace {
/// Python's PY_SSL_DEFAULT_CIPHER_STRING (3.10+).
constexpr const char* default_ciphers =
    "@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM";

Context::Impl& impl_of(const std::shared_ptr<Context::Impl>& p) { return *p; }

void check_readable(const std::string& path) {
    if (::access(path.c_str(), R_OK) != 0) throw std::system_error(errno, std::generic_category(), path);
}

int version_to_openssl(TLSVersion v) {
    switch (v) {
        case TLSVersion::SSLv3:
            return SSL3_VERSION;
        case TLSVersion::TLSv1:
            return TLS1_VERSION;
        case TLSVersion::TLSv1_1:
            return TLS1_1_VERSION;
        case TLSVersion::TLSv1_2:
            return TLS1_2_VERSION;
        case TLSVersion::TLSv1_3:
            return TLS1_3_VERSION;
        default:
            return 0;
    }
}

TLSVersion version_from_openssl(long v, TLSVersion none) {
    switch (v) {
        case SSL3_VERSION:
            return TLSVersion::SSLv3;
        case TLS1_VERSION:
            return TLSVersion::TLSv1;
        case TLS1_1_VERSION:
            return TLSVersion::TLSv1_1;
        case TLS1_2_VERSION:
            return TLSVersion::TLSv1_2;
        case TLS1_3_VERSION:
            return TLSVersion::TLSv1_3;
        default:
            return none;
    }
}

struct PasswordData {
    const std::optional<std::string>* password;
};

int password_callback(char* buf, int size, int, void* userdata) {
    auto* data = static_cast<PasswordData*>(userdata);
    if (!data || !data->password || !*data->password) return -1;  // never prompt
    const std::string& pw = **data->password;
    if (pw.size() > static_cast<std::size_t>(size)) return -1;
    std::memcpy(buf, pw.data(), pw.size());
    return static_cast<int>(pw.size());
}
}  // namespace

Context::Context(SSLMethod protocol) {
    if (protocol != PROTOCOL_TLS_CLIENT && protocol != PROTOCOL_TLS_SERVER)
        throw std::invalid_argument("invalid or unsupported protocol version " + std::to_string(protocol));
    auto impl = std::make_shared<Impl>();
    impl->protocol = protocol;
    ERR_clear_error();
    impl->ctx.reset(SSL_CTX_new(protocol == PROTOCOL_TLS_SERVER ? TLS_server_method() : TLS_client_method()));
    if (!impl->ctx) detail::throw_last_error("failed to allocate SSL context");
    SSL_CTX* ctx = impl->ctx.get();
    // Python's SSLContext defaults.
    SSL_CTX_set_options(ctx, (SSL_OP_ALL & ~SSL_OP_DONT_INSERT_EMPTY_FRAGMENTS) | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_SINGLE_DH_USE | SSL_OP_SINGLE_ECDH_USE);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_set_cipher_list(ctx, default_ciphers) != 1) detail::throw_last_error("No cipher can be selected.");
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char sid_ctx[] = "asyncio-cpp";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_TRUSTED_FIRST);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (protocol == PROTOCOL_TLS_CLIENT) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        impl->check_hostname = true;
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    impl_ = std::move(impl);
}

Context Context::client() { return create_default_context(Purpose::SERVER_AUTH); }
Context Context::server() { return create_default_context(Purpose::CLIENT_AUTH); }

Context create_default_context(Purpose purpose, const std::string& cafile, const std::string& capath,
                               const std::string& cadata) {
    Context ctx(purpose == Purpose::SERVER_AUTH ? PROTOCOL_TLS_CLIENT : PROTOCOL_TLS_SERVER);
    if (!cafile.empty() || !capath.empty() || !cadata.empty())
        ctx.load_verify_locations(cafile, capath, cadata);
    else if (ctx.verify_mode() != CERT_NONE)
        ctx.load_default_certs(purpose);
    return ctx;
}

SSLMethod Context::protocol() const noexcept { return impl_->protocol; }
SSL_CTX* Context::native_handle() const noexcept { return impl_->ctx.get(); }

void Context::load_cert_chain(const std::string& certfile, const std::string& keyfile,
                              const std::optional<std::string>& password) {
    if (certfile.empty()) throw std::invalid_argument("certfile should be a valid filesystem path");
    check_readable(certfile);
    if (!keyfile.empty()) check_readable(keyfile);
    SSL_CTX* ctx = impl_->ctx.get();
    PasswordData data{&password};
    SSL_CTX_set_default_passwd_cb(ctx, password_callback);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, &data);
    struct Restore {
        SSL_CTX* ctx;
        ~Restore() {
            SSL_CTX_set_default_passwd_cb(ctx, password_callback);
            SSL_CTX_set_default_passwd_cb_userdata(ctx, nullptr);
        }
    } restore{ctx};
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, certfile.c_str()) != 1) detail::throw_last_error("[SSL] PEM lib");
    const std::string& kf = keyfile.empty() ? certfile : keyfile;
    if (SSL_CTX_use_PrivateKey_file(ctx, kf.c_str(), SSL_FILETYPE_PEM) != 1) detail::throw_last_error("[SSL] PEM lib");
    if (SSL_CTX_check_private_key(ctx) != 1) detail::throw_last_error("[SSL] key values mismatch");
}

void Context::load_verify_locations(const std::string& cafile, const std::string& capath, const std::string& cadata) {
    if (cafile.empty() && capath.empty() && cadata.empty())
        throw std::invalid_argument("cafile, capath and cadata cannot be all omitted");
    SSL_CTX* ctx = impl_->ctx.get();
    ERR_clear_error();
    if (!cadata.empty()) {
        int loaded = 0;
        {
            detail::BioPtr bio(BIO_new_mem_buf(cadata.data(), static_cast<int>(cadata.size())));
            if (!bio) detail::throw_last_error("failed to allocate a BIO");
            X509_STORE* store = SSL_CTX_get_cert_store(ctx);
            for (;;) {
                detail::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
                if (!cert) break;
                // The store takes a reference of its own.
                if (X509_STORE_add_cert(store, cert.get()) != 1) {
                    unsigned long e = ERR_peek_last_error();
                    if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_CERT_ALREADY_IN_HASH_TABLE)
                        ERR_clear_error();
                    else
                        detail::throw_last_error("cadata: cannot add the certificate");
                }
                ++loaded;
            }
        }
        unsigned long e = ERR_peek_last_error();
        if (loaded == 0) {
            ERR_clear_error();
            throw SSLError(SSL_ERROR_SSL, "[PEM: NO_START_LINE] no start line: cadata does not contain a certificate",
                           "PEM", "NO_START_LINE");
        }
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
            ERR_clear_error();  // the end of the data
        else if (e != 0)
            detail::throw_last_error("cadata: invalid certificate data");
    }
    if (!cafile.empty()) {
        check_readable(cafile);
        if (SSL_CTX_load_verify_file(ctx, cafile.c_str()) != 1)
            detail::throw_last_error("[X509] cafile: no certificate or crl found");
    }
    if (!capath.empty()) {
        check_readable(capath);
        if (SSL_CTX_load_verify_dir(ctx, capath.c_str()) != 1) detail::throw_last_error("[X509] capath: cannot load");
    }
}

void Context::load_default_certs(Purpose) { set_default_verify_paths(); }

void Context::set_default_verify_paths() {
    ERR_clear_error();
    if (SSL_CTX_set_default_verify_paths(impl_->ctx.get()) != 1)
        detail::throw_last_error("cannot set the default verify paths");
}

void Context::set_alpn_protocols(const std::vector<std::string>& protocols) {
    std::vector<unsigned char> wire;
    for (const std::string& p : protocols) {
        if (p.empty() || p.size() > 255)
            throw std::invalid_argument("ALPN protocol name too long or empty: '" + p + "'");
        wire.push_back(static_cast<unsigned char>(p.size()));
        wire.insert(wire.end(), p.begin(), p.end());
    }
    Impl& impl = impl_of(impl_);
    impl.alpn = std::move(wire);
    // Both roles, as Python: the list a client offers, and a server's selection callback.
    if (SSL_CTX_set_alpn_protos(impl.ctx.get(), impl.alpn.data(), static_cast<unsigned int>(impl.alpn.size())) != 0)
        detail::throw_last_error("cannot set the ALPN protocols");
    SSL_CTX_set_alpn_select_cb(impl.ctx.get(), &Impl::on_alpn_select, &impl);
}

void Context::set_ciphers(const std::string& ciphers) {
    ERR_clear_error();
    if (SSL_CTX_set_cipher_list(impl_->ctx.get(), ciphers.c_str()) != 1) {
        ERR_clear_error();
        throw SSLError(SSL_ERROR_SSL, "No cipher can be selected.");
    }
}

bool Context::check_hostname() const noexcept { return impl_->check_hostname; }

void Context::set_check_hostname(bool value) {
    if (value && verify_mode() == CERT_NONE) set_verify_mode(CERT_REQUIRED);
    impl_->check_hostname = value;
}

VerifyMode Context::verify_mode() const noexcept {
    int m = SSL_CTX_get_verify_mode(impl_->ctx.get());
    if (!(m & SSL_VERIFY_PEER)) return CERT_NONE;
    return (m & SSL_VERIFY_FAIL_IF_NO_PEER_CERT) ? CERT_REQUIRED : CERT_OPTIONAL;
}

void Context::set_verify_mode(VerifyMode mode) {
    int flags;
    switch (mode) {
        case CERT_NONE:
            flags = SSL_VERIFY_NONE;
            break;
        case CERT_OPTIONAL:
            flags = SSL_VERIFY_PEER;
            break;
        case CERT_REQUIRED:
            flags = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            break;
        default:
            throw std::invalid_argument("invalid value for verify_mode");
    }
    if (mode == CERT_NONE && impl_->check_hostname)
        throw std::invalid_argument("Cannot set verify_mode to CERT_NONE when check_hostname is enabled.");
    SSL_CTX_set_verify(impl_->ctx.get(), flags, nullptr);
}

TLSVersion Context::minimum_version() const noexcept {
    return version_from_openssl(SSL_CTX_get_min_proto_version(impl_->ctx.get()), TLSVersion::MINIMUM_SUPPORTED);
}

TLSVersion Context::maximum_version() const noexcept {
    return version_from_openssl(SSL_CTX_get_max_proto_version(impl_->ctx.get()), TLSVersion::MAXIMUM_SUPPORTED);
}

void Context::set_minimum_version(TLSVersion version) {
    int v = version == TLSVersion::MAXIMUM_SUPPORTED ? TLS1_3_VERSION : version_to_openssl(version);
    if (SSL_CTX_set_min_proto_version(impl_->ctx.get(), v) != 1) {
        ERR_clear_error();
        throw std::invalid_argument("Unsupported TLS/SSL version");
    }
}

void Context::set_maximum_version(TLSVersion version) {
    int v = version == TLSVersion::MINIMUM_SUPPORTED ? TLS1_VERSION : version_to_openssl(version);
    if (SSL_CTX_set_max_proto_version(impl_->ctx.get(), v) != 1) {
        ERR_clear_error();
        throw std::invalid_argument("Unsupported TLS/SSL version");
    }
}

std::uint64_t Context::options() const noexcept { return SSL_CTX_get_options(impl_->ctx.get()); }

void Context::set_options(std::uint64_t options) {
    std::uint64_t current = SSL_CTX_get_options(impl_->ctx.get());
    SSL_CTX_clear_options(impl_->ctx.get(), current & ~options);
    SSL_CTX_set_options(impl_->ctx.get(), options & ~current);
}

void Context::set_sni_callback(SNICallback callback) {
    Impl& impl = impl_of(impl_);
    impl.sni = std::move(callback);
    if (impl.sni) {
        SSL_CTX_set_tlsext_servername_callback(impl.ctx.get(), &Impl::on_servername);
        SSL_CTX_set_tlsext_servername_arg(impl.ctx.get(), &impl);
    } else {
        SSL_CTX_set_tlsext_servername_callback(impl.ctx.get(), nullptr);
    }
}

// ---- certificates and session information ----------------------------------------------------
namespace {
std::string bio_text(BIO* bio) {
    char* p = nullptr;
    long n = BIO_get_mem_data(bio, &p);
    return n > 0 ? std::string(p, static_cast<std::size_t>(n)) : std::string();
}

std::vector<std::pair<std::string, std::string>> name_entries(const X509_NAME* name) {
    std::vector<std::pair<std::string, std::string>> out;
    if (!name) return out;
    int n = X509_NAME_entry_count(name);
    for (int i = 0; i < n; ++i) {
        const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
        char key[128];
        int klen = OBJ_obj2txt(key, sizeof key, X509_NAME_ENTRY_get_object(entry), 0);
        unsigned char* raw = nullptr;
        int vlen = ASN1_STRING_to_UTF8(&raw, X509_NAME_ENTRY_get_data(entry));
        detail::OpensslBytes utf8(raw);
        std::string value =
            vlen > 0 ? std::string(reinterpret_cast<char*>(utf8.get()), static_cast<std::size_t>(vlen)) : std::string();
        out.emplace_back(
            klen > 0 ? std::string(key, static_cast<std::size_t>(std::min<int>(klen, sizeof key - 1))) : "",
            std::move(value));
    }
    ERR_clear_error();
    return out;
}

std::string asn1_time(const ASN1_TIME* t) {
    detail::BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio) return {};
    ASN1_TIME_print(bio.get(), t);
    return bio_text(bio.get());
}

std::string ip_text(const ASN1_OCTET_STRING* ip) {
    const unsigned char* p = ASN1_STRING_get0_data(ip);
    int len = ASN1_STRING_length(ip);
    char buf[INET6_ADDRSTRLEN] = {};
    if (len == 4)
        ::inet_ntop(AF_INET, p, buf, sizeof buf);
    else if (len == 16)
        ::inet_ntop(AF_INET6, p, buf, sizeof buf);
    else
        return "<invalid>";
    return buf;
}

std::string asn1_string(const ASN1_STRING* s) {
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<std::size_t>(ASN1_STRING_length(s)));
}
}  // namespace

std::string Certificate::subject_value(std::string_view key) const {
    for (const auto& [k, v] : subject)
        if (k == key) return v;
    return {};
}

std::string Certificate::pem() const {
    std::string b64(4 * ((der.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                            reinterpret_cast<const unsigned char*>(der.data()), static_cast<int>(der.size()));
    b64.resize(static_cast<std::size_t>(std::max(n, 0)));
    std::string out = "-----BEGIN CERTIFICATE-----\n";
    for (std::size_t i = 0; i < b64.size(); i += 64) out += b64.substr(i, 64) + "\n";
    out += "-----END CERTIFICATE-----\n";
    return out;
}

std::optional<Certificate> getpeercert(SSL* s) {
    if (!s) return std::nullopt;
    X509* x = SSL_get0_peer_certificate(s);  // borrowed
    if (!x) return std::nullopt;
    Certificate c;
    c.subject = name_entries(X509_get_subject_name(x));
    c.issuer = name_entries(X509_get_issuer_name(x));
    c.version = static_cast<int>(X509_get_version(x)) + 1;
    if (detail::BignumPtr bn{ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr)}) {
        if (detail::OpensslString hex{BN_bn2hex(bn.get())}) c.serial_number = hex.get();
    }
    c.not_before = asn1_time(X509_get0_notBefore(x));
    c.not_after = asn1_time(X509_get0_notAfter(x));
    if (detail::GeneralNamesPtr names{
            static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr))}) {
        for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
            const GENERAL_NAME* g = sk_GENERAL_NAME_value(names.get(), i);
            switch (g->type) {
                case GEN_DNS:
                    c.subject_alt_name.emplace_back("DNS", asn1_string(g->d.dNSName));
                    break;
                case GEN_IPADD:
                    c.subject_alt_name.emplace_back("IP Address", ip_text(g->d.iPAddress));
                    break;
                case GEN_EMAIL:
                    c.subject_alt_name.emplace_back("email", asn1_string(g->d.rfc822Name));
                    break;
                case GEN_URI:
                    c.subject_alt_name.emplace_back("URI", asn1_string(g->d.uniformResourceIdentifier));
                    break;
                default:
                    break;
            }
        }
    }
    int len = i2d_X509(x, nullptr);
    if (len > 0) {
        c.der.resize(static_cast<std::size_t>(len));
        auto* p = reinterpret_cast<unsigned char*>(c.der.data());
        i2d_X509(x, &p);
    }
    c.verified = (SSL_get_verify_mode(s) & SSL_VERIFY_PEER) && SSL_get_verify_result(s) == X509_V_OK;
    ERR_clear_error();
    return c;
}

std::optional<CipherInfo> cipher(SSL* s) {
    if (!s) return std::nullopt;
    const SSL_CIPHER* c = SSL_get_current_cipher(s);
    if (!c) return std::nullopt;
    CipherInfo info;
    info.name = SSL_CIPHER_get_name(c);
    info.protocol = SSL_CIPHER_get_version(c);
    info.secret_bits = SSL_CIPHER_get_bits(c, nullptr);
    return info;
}

std::string version(SSL* s) {
    if (!s || !SSL_is_init_finished(s)) return {};
    return SSL_get_version(s);
}

std::string selected_alpn_protocol(SSL* s) {
    if (!s) return {};
    const unsigned char* p = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(s, &p, &len);
    return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

std::string server_name(SSL* s) {
    if (!s) return {};
    const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    return name ? name : "";
}

}  // namespace asyncio::ssl

namespace asyncio::detail {
HeldContext hold_context(ssl::ContextRef& ref) {
    if (!ref) return nullptr;
    auto held = std::make_shared<ssl::Context>(*ref);
    ref = held.get();
    return held;
}

bool is_server_context(const ssl::Context& context) { return context.protocol() == ssl::PROTOCOL_TLS_SERVER; }
}  // namespace asyncio::detail
