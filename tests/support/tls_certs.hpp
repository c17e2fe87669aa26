// tests/support/tls_certs.hpp - throwaway certificates for the TLS tests, made with OpenSSL's API at
// test time (no files in the tree, nothing to expire): a CA, certificates it signs for
// "localhost"/127.0.0.1/::1, for a wrong name, an expired one, a client certificate, and an
// encrypted copy of a key. P-256 keys, SHA-256 signatures, proper X.509 v3 extensions.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace asyncio_test {

struct TestCerts {
    std::string dir;
    std::string ca_cert;         // the test CA (trust this)
    std::string localhost_cert;  // CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
    std::string localhost_key;
    std::string localhost_key_encrypted;  // the same key, AES-256 with password "secret"
    std::string wrong_cert;               // CN=wrong.example, SAN DNS:wrong.example (no IP)
    std::string wrong_key;
    std::string expired_cert;  // localhost names, expired yesterday
    std::string expired_key;
    std::string client_cert;  // CN=client (clientAuth)
    std::string client_key;
    std::string ca_pem;  // the CA certificate's PEM text (for cadata)

    ~TestCerts() {
        std::error_code ec;
        if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    }
};

namespace tls_detail {
struct KeyFree {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
    void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

inline void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("test certificate generation failed: ") + what);
}

inline Key make_key() {
    Key k(EVP_EC_gen("P-256"));
    check(bool(k), "EVP_EC_gen");
    return k;
}

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    check(ext != nullptr, value);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

/// A certificate for `key` named `cn`, signed by (issuer, issuer_key) or self-signed.
inline Cert make_cert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, bool ca, const char* san,
                      long from_days, long to_days, long serial) {
    Cert c(X509_new());
    check(bool(c), "X509_new");
    X509_set_version(c.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c.get()), serial);
    X509_gmtime_adj(X509_getm_notBefore(c.get()), from_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(c.get()), to_days * 86400);
    X509_set_pubkey(c.get(), key);
    X509_NAME* name = X509_get_subject_name(c.get());
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("asyncio-cpp tests"), -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509* iss = issuer ? issuer : c.get();
    X509_set_issuer_name(c.get(), X509_get_subject_name(iss));
    add_ext(c.get(), iss, NID_subject_key_identifier, "hash");
    add_ext(c.get(), iss, NID_authority_key_identifier, "keyid:always");
    if (ca) {
        add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(c.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(c.get(), iss, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        add_ext(c.get(), iss, NID_ext_key_usage, "serverAuth,clientAuth");
        if (san) add_ext(c.get(), iss, NID_subject_alt_name, san);
    }
    check(X509_sign(c.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0, "X509_sign");
    return c;
}

inline void write_cert(const std::string& path, X509* c) {
    BIO* bio = BIO_new_file(path.c_str(), "w");
    check(bio != nullptr, path.c_str());
    check(PEM_write_bio_X509(bio, c) == 1, "PEM_write_bio_X509");
    BIO_free(bio);
}

inline void write_key(const std::string& path, EVP_PKEY* k, const char* password = nullptr) {
    BIO* bio = BIO_new_file(path.c_str(), "w");
    check(bio != nullptr, path.c_str());
    int ok = password ? PEM_write_bio_PrivateKey(
                            bio, k, EVP_aes_256_cbc(), reinterpret_cast<const unsigned char*>(password),
                            static_cast<int>(std::char_traits<char>::length(password)), nullptr, nullptr)
                      : PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr);
    check(ok == 1, "PEM_write_bio_PrivateKey");
    BIO_free(bio);
}

inline std::string cert_pem(X509* c) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, c);
    char* p = nullptr;
    long n = BIO_get_mem_data(bio, &p);
    std::string s(p, static_cast<std::size_t>(n));
    BIO_free(bio);
    return s;
}
}  // namespace tls_detail

/// The certificates, generated once per process into a temporary directory (removed at exit).
inline const TestCerts& test_certs() {
    static const std::unique_ptr<TestCerts> certs = [] {
        using namespace tls_detail;
        auto holder = std::make_unique<TestCerts>();
        TestCerts& t = *holder;
        char tmpl[] = "/tmp/asyncio-tls-XXXXXX";
        check(::mkdtemp(tmpl) != nullptr, "mkdtemp");
        t.dir = tmpl;
        auto path = [&](const char* name) { return t.dir + "/" + name; };

        Key ca_key = make_key();
        Cert ca = make_cert(ca_key.get(), "asyncio-cpp Test CA", nullptr, nullptr, true, nullptr, -1, 3650, 1);
        t.ca_cert = path("ca.pem");
        write_cert(t.ca_cert, ca.get());
        t.ca_pem = cert_pem(ca.get());

        Key lk = make_key();
        Cert lc = make_cert(lk.get(), "localhost", ca.get(), ca_key.get(), false, "DNS:localhost,IP:127.0.0.1,IP:::1",
                            -1, 3650, 2);
        t.localhost_cert = path("localhost.pem");
        t.localhost_key = path("localhost.key");
        t.localhost_key_encrypted = path("localhost-encrypted.key");
        write_cert(t.localhost_cert, lc.get());
        write_key(t.localhost_key, lk.get());
        write_key(t.localhost_key_encrypted, lk.get(), "secret");

        Key wk = make_key();
        Cert wc = make_cert(wk.get(), "wrong.example", ca.get(), ca_key.get(), false, "DNS:wrong.example", -1, 3650, 3);
        t.wrong_cert = path("wrong.pem");
        t.wrong_key = path("wrong.key");
        write_cert(t.wrong_cert, wc.get());
        write_key(t.wrong_key, wk.get());

        Key ek = make_key();
        Cert ec =
            make_cert(ek.get(), "localhost", ca.get(), ca_key.get(), false, "DNS:localhost,IP:127.0.0.1", -10, -1, 4);
        t.expired_cert = path("expired.pem");
        t.expired_key = path("expired.key");
        write_cert(t.expired_cert, ec.get());
        write_key(t.expired_key, ek.get());

        Key ck = make_key();
        Cert cc = make_cert(ck.get(), "client", ca.get(), ca_key.get(), false, "DNS:client.example", -1, 3650, 5);
        t.client_cert = path("client.pem");
        t.client_key = path("client.key");
        write_cert(t.client_cert, cc.get());
        write_key(t.client_key, ck.get());
        return holder;
    }();
    return *certs;
}

}  // namespace asyncio_test
