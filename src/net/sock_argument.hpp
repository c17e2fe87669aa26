// src/net/sock_argument.hpp - Python's checks of a caller's socket: the sock= argument of
// create_connection, create_server, create_datagram_endpoint and the Unix forms, and
// connect_accepted_socket's socket (defined in src/net/base_events.cpp).
#pragma once

#include <asyncio/sockets.hpp>

namespace asyncio::detail {

/// What a call needs of the socket it is given.
enum class SockKind {
    stream,       ///< SOCK_STREAM
    unix_stream,  ///< AF_UNIX and SOCK_STREAM
    datagram,     ///< anything but SOCK_STREAM (Python refuses only that)
};

/// std::invalid_argument (Python's ValueError) unless `sock` is open and of that kind:
/// "<what>: the socket is closed", or Python's "A Stream Socket was expected, got <socket ...>"
/// ("A UNIX Domain Stream Socket", "A datagram socket").
void check_sock_argument(const Socket& sock, SockKind kind, const char* what);

}  // namespace asyncio::detail
