// src/python/datagram.hpp - loop.create_datagram_endpoint's native part (datagram.cpp).
#pragma once

#include "python/py.hpp"

namespace asyncio::python {

/// Creates asyncio_cpp.DatagramTransport; -1 on failure.
int init_datagram_types(PyObject* module) noexcept;

/// Loop method (METH_VARARGS): a future of (transport, protocol).
PyObject* loop_create_datagram_endpoint(PyObject* loop, PyObject* args);

}  // namespace asyncio::python
