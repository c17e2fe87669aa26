// src/tls/ssl_internal.hpp - OpenSSL error translation shared by ssl.cpp and sslproto.cpp (Python's
// _ssl.c PySSL_SetError / fill_and_set_sslerror). Not installed.
#pragma once

#include <asyncio/ssl.hpp>

#include <exception>
#include <string_view>

namespace asyncio::ssl::detail {

/// The error of a failed SSL_* call (`ssl_error` is SSL_get_error's value), built from OpenSSL's
/// error queue, which is then cleared. With `ssl` set, a certificate verification failure
/// becomes an SSLCertVerificationError naming `hostname` on a host name mismatch.
std::exception_ptr make_error(int ssl_error, SSL* ssl = nullptr, std::string_view hostname = {});

/// Throws the SSLError at the top of OpenSSL's error queue, or one with `fallback` as its
/// message when the queue is empty (Python's "[SSL] PEM lib" and friends).
[[noreturn]] void throw_last_error(const char* fallback);

}  // namespace asyncio::ssl::detail
