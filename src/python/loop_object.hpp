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

#include <utility>

namespace asyncio::python {

struct LoopObject {
    PyObject ob_base;  // PyObject_HEAD
    EventLoop* core;
    PyObject* weakreflist;
    PyObject* task_factory;       // null: asyncio.Task
    PyObject* exit_exception;     // a SystemExit/KeyboardInterrupt on its way out of run_forever
    PyThreadState* saved_thread;  // while the backend blocks, without the GIL
    detail::Backend::BlockingHooks hooks;
    void* sock_waits;           // the sock_* waits in flight (sock_ops.cpp), dropped when the loop closes
    struct HeldRef* held_refs;  // the references kept inside the C++ loop's callables (HeldRef)
};

/// A strong reference kept inside a C++ callable the loop core owns (an add_reader() watch,
/// a call_soon_threadsafe() post), linked into its loop's list so that the loop's tp_traverse
/// shows it to the garbage collector: a loop the program dropped without closing it, with a
/// watch or a posted callback that refers back to it, is then collected (and closed by its
/// __del__), as the stock loop is. Copies link themselves too; each counts once. Only touched
/// with the GIL held, as any reference is.
struct HeldRef {
    HeldRef(LoopObject* loop, PyObject* o) noexcept : loop_(loop), o_(Py_NewRef(o)) { link(); }
    HeldRef(const HeldRef& other) noexcept : loop_(other.loop_), o_(Py_XNewRef(other.o_)) { link(); }
    HeldRef(HeldRef&& other) noexcept : loop_(other.loop_), o_(std::exchange(other.o_, nullptr)) { link(); }
    HeldRef& operator=(const HeldRef&) = delete;
    ~HeldRef() {
        unlink();
        Py_XDECREF(o_);
    }
    PyObject* get() const noexcept { return o_; }
    /// Visits every reference held for `loop` (its tp_traverse).
    static int traverse(LoopObject* loop, visitproc visit, void* arg);
    /// The loop object goes away: references still held (none, normally) stop pointing at it.
    static void detach_all(LoopObject* loop) noexcept;

private:
    void link() noexcept;
    void unlink() noexcept;
    LoopObject* loop_;
    PyObject* o_;
    HeldRef* prev_ = nullptr;
    HeldRef* next_ = nullptr;
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
