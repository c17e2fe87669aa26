// src/python/loop_object.hpp - asyncio_cpp._core.Loop: the native half of asyncio_cpp.Loop.
//
// It owns one C++ EventLoop and implements on it the methods every asyncio program calls
// often (call_soon & co, time, the run loop, futures and tasks, fd watching). The Python half
// (python/asyncio_cpp/_loop.py) subclasses it together with asyncio.AbstractEventLoop and adds
// what runs once per program (run_until_complete's set-up, executors, the exception-handler
// plumbing, signals).
#pragma once

#include "python/py.hpp"

#include "backend/backend.hpp"

#include <asyncio/detail/event_loop.hpp>

namespace asyncio::python {

struct LoopObject {
    PyObject ob_base;  // PyObject_HEAD
    EventLoop* core;
    PyObject* weakreflist;
    PyObject* task_factory;       // null: asyncio.Task
    PyObject* exit_exception;     // a SystemExit/KeyboardInterrupt on its way out of run_forever
    PyThreadState* saved_thread;  // while the backend blocks, without the GIL
    detail::Backend::BlockingHooks hooks;
    void* sock_waits;  // the sock_* waits in flight (sock_ops.cpp), dropped when the loop closes
};

extern PyTypeObject* LoopType;
/// Creates the type and adds it to `module` as "Loop"; -1 on failure.
int init_loop_type(PyObject* module) noexcept;

/// RuntimeError('Event loop is closed') when closed; returns -1 then.
inline int check_closed(LoopObject* self) noexcept {
    if (self->core->is_closed()) [[unlikely]] {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

}  // namespace asyncio::python
