// src/net/no_tls.cpp - the TLS seam (tls_seam.hpp) in a build without TLS
// (ASYNCIO_WITH_TLS=OFF): every use of ssl= or start_tls fails with a message that says why.
// Built only then; otherwise src/tls/ defines these.
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/ssl.hpp>

#include "tls_seam.hpp"

#include <stdexcept>

namespace asyncio {
namespace detail {
namespace {
[[noreturn]] void refuse() {
    throw std::invalid_argument(
        "TLS is not available: asyncio-cpp was built with ASYNCIO_WITH_TLS=OFF (rebuild with OpenSSL and "
        "-DASYNCIO_WITH_TLS=ON)");
}
}  // namespace

HeldContext hold_context(ssl::ContextRef& ref) {
    if (ref) refuse();
    return nullptr;
}

bool is_server_context(const ssl::Context&) { refuse(); }

SSLTransports make_ssl_transport(EventLoop&, Socket&, std::shared_ptr<BaseProtocol>, const ssl::Context&,
                                 std::optional<Future<void>>, bool, std::string_view, double, double) {
    refuse();
}
}  // namespace detail

Coro<std::shared_ptr<Transport>> EventLoop::start_tls(std::shared_ptr<Transport>, std::shared_ptr<BaseProtocol>,
                                                      ssl::Context, StartTlsOptions) {
    detail::refuse();
    co_return nullptr;
}

}  // namespace asyncio
