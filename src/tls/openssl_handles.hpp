// src/tls/openssl_handles.hpp - owning handles for the OpenSSL objects src/tls/ allocates:
// std::unique_ptr with the matching OpenSSL free function, so that every return and every
// exception frees them. Not installed.
//
// Ownership rules the callers rely on (OpenSSL 3):
//  * SSL_set_bio(ssl, rbio, wbio) takes over both BIOs (two distinct ones: one reference
//    each); release() the handles after the call, SSL_free frees them with BIO_free_all.
//  * "get0" functions (SSL_get0_peer_certificate, SSL_CTX_get0_param...) return borrowed
//    pointers: never wrap those. "get1"/"new"/d2i-style results are owned: wrap them.
//  * X509_STORE_add_cert takes a reference of its own; the caller's X509 handle still frees
//    the caller's.
//  * X509_get_ext_d2i returns a freshly decoded, owned structure: for NID_subject_alt_name a
//    GENERAL_NAMES, whose GENERAL_NAMES_free frees the stack and every GENERAL_NAME in it
//    (what sk_GENERAL_NAME_pop_free(names, GENERAL_NAME_free) does).
//  * Strings that OpenSSL allocates for the caller (BN_bn2hex, ASN1_STRING_to_UTF8) are
//    freed with OPENSSL_free, a macro, hence a deleter class rather than a function pointer.
#pragma once

#include <memory>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace asyncio::ssl::detail {

/// Calls `Free` on a non-null pointer (std::unique_ptr never calls its deleter with null).
template <auto Free>
struct Deleter {
    template <class T>
    void operator()(T* p) const noexcept {
        (void)Free(p);
    }
};

/// For memory OpenSSL allocated with OPENSSL_malloc.
struct OpensslFree {
    void operator()(void* p) const noexcept { OPENSSL_free(p); }
};

using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<&SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<&SSL_free>>;
/// A single BIO (memory BIOs, never chained here).
using BioPtr = std::unique_ptr<BIO, Deleter<&BIO_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<&X509_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, Deleter<&BN_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<&GENERAL_NAMES_free>>;
using Asn1OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, Deleter<&ASN1_OCTET_STRING_free>>;
/// A NUL-terminated string OpenSSL allocated (BN_bn2hex).
using OpensslString = std::unique_ptr<char, OpensslFree>;
/// Bytes OpenSSL allocated (ASN1_STRING_to_UTF8's output).
using OpensslBytes = std::unique_ptr<unsigned char, OpensslFree>;

}  // namespace asyncio::ssl::detail
