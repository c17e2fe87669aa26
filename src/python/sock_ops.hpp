// src/python/sock_ops.hpp - the native part of loop.sock_*: Python's selector-loop algorithm
// (try the system call; when it would block, wait for readiness on the backend and try again)
// with the waiting done by a poll operation of our backend and a CPython future.
#pragma once

#include "python/py.hpp"

namespace asyncio::python {

/// Creates the waiter type; -1 on failure.
int init_sock_types(PyObject* module) noexcept;

/// Loop methods (METH_FASTCALL); each returns the result when the call completed at once, or
/// an asyncio.Future that will hold it (the Python half awaits it in the public coroutine).
PyObject* loop_sock_recv(PyObject* loop, PyObject* const* args, Py_ssize_t nargs);       // (sock, n)
PyObject* loop_sock_recv_into(PyObject* loop, PyObject* const* args, Py_ssize_t nargs);  // (sock, buf)
PyObject* loop_sock_sendall(PyObject* loop, PyObject* const* args, Py_ssize_t nargs);    // (sock, data)
/// (sock, writable): always an asyncio.Future, done (None) once the socket is readable or
/// writable; cancelling it stops the wait.
PyObject* loop_sock_wait(PyObject* loop, PyObject* const* args, Py_ssize_t nargs);

struct LoopObject;
/// The loop is closing: every wait still in flight stops (its future stays pending, as with
/// the stock loop, whose selector closes) and lets go of its objects.
void drop_sock_waits(LoopObject* loop) noexcept;
/// Visits the armed waits (each holds a reference to itself while the backend has it): the
/// loop's tp_traverse.
int visit_sock_waits(LoopObject* loop, visitproc visit, void* arg);

}  // namespace asyncio::python
