// src/python/transport_object.hpp - asyncio_cpp.Transport: a C++ stream transport (TCP or
// Unix socket) behind Python's asyncio.Transport interface (write/writelines/write_eof, flow
// control, pause_reading/resume_reading, close/abort, get_extra_info with Python's keys).
#pragma once

#include "python/py.hpp"

#include <asyncio/sockets.hpp>
#include <asyncio/transports.hpp>

#include <cstddef>
#include <memory>
#include <optional>

namespace asyncio::python {

struct LoopObject;

struct TransportObject {
    PyObject ob_base;  // PyObject_HEAD
    // asyncio.BaseTransport's one slot (`_extra`): the type derives from asyncio.Transport, so
    // isinstance(transport, asyncio.Transport) holds, and its layout begins with the base's.
    PyObject* base_extra;
    std::shared_ptr<Transport>* transport;  // owned (a pointer keeps this struct standard-layout)
    LoopObject* loop;                       // strong
    PyObject* protocol;                     // strong: the Python protocol (get_protocol())
    PyObject* socket;                       // get_extra_info('socket'), made on first use
    PyObject* weakreflist;
};

extern PyTypeObject* TransportType;
int init_transport_type(PyObject* module) noexcept;

/// The base the transport types derive from when its layout is the one expected (a single
/// pointer-sized slot after the object header), else object; `name` is "Transport" or
/// "DatagramTransport". A new reference, or null with an exception set.
PyObject* asyncio_transport_base(const char* name, Py_ssize_t expected_basicsize);

/// A new Python transport for `transport`, whose Python protocol is `protocol` (borrowed).
TransportObject* new_transport(LoopObject* loop, std::shared_ptr<Transport> transport, PyObject* protocol);

/// The connection is gone: closes the duplicate fd behind get_extra_info('socket') (while it
/// is open, the peer would not see the connection close).
void release_extra_socket(PyObject* transport) noexcept;

/// set_write_buffer_limits(high=None, low=None)'s arguments, checked (>= 0); 0, or -1 with a
/// Python error set. Shared by the stream and datagram transports.
int parse_write_buffer_limits(PyObject* args, PyObject* kwargs, std::optional<std::size_t>& high,
                              std::optional<std::size_t>& low);
/// get_extra_info('socket'): the transport's cached `*slot`, or a new
/// asyncio.trsock.TransportSocket over a duplicate of `fd` (options set through it apply to
/// the same socket; the transport keeps its own fd), cached there. A new reference.
PyObject* cached_extra_socket(PyObject** slot, int fd);

/// A socket address as Python gives it: (host, port) for IPv4, (host, port, flowinfo,
/// scope_id) for IPv6, the path (str, or bytes for an abstract name) for Unix sockets.
PyObject* address_to_python(const SockAddr& address);

}  // namespace asyncio::python
