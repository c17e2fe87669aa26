// src/python/connections.hpp - the native part of the loop's connection and server methods
// (connections.cpp).
#pragma once

#include "python/py.hpp"

namespace asyncio::python {

/// Creates the ServerHandle type (and the future bridge's); -1 on failure.
int init_connection_types(PyObject* module) noexcept;

// Loop methods (METH_VARARGS, positional plain values: the Python half checks the arguments).
PyObject* loop_create_connection(PyObject* loop, PyObject* args);
PyObject* loop_create_unix_connection(PyObject* loop, PyObject* args);
PyObject* loop_connect_fd(PyObject* loop, PyObject* args);
PyObject* loop_create_server(PyObject* loop, PyObject* args);
PyObject* loop_serve_fd(PyObject* loop, PyObject* args);
PyObject* loop_create_unix_server(PyObject* loop, PyObject* args);
PyObject* loop_sendfile(PyObject* loop, PyObject* args);

}  // namespace asyncio::python
