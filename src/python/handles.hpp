// src/python/handles.hpp - asyncio_cpp's Handle and TimerHandle: Python's asyncio.Handle and
// asyncio.TimerHandle (same methods and attributes), each one Python object that the C++
// loop queues directly - the ready-queue and timer-heap link is embedded in it, so
// call_soon() allocates nothing but the handle itself, as CPython's loop does.
#pragma once

#include "python/py.hpp"

#include <asyncio/detail/event_loop.hpp>

#include <new>

namespace asyncio::python {

struct LoopObject;
struct HandleObject;

/// The link the loop queues: a timer node (a ready item too) that knows its handle.
struct HandleNode : detail::TimerNode {
    HandleObject* owner = nullptr;
};

struct HandleObject {
    PyObject ob_base;  // PyObject_HEAD
                       // The link, constructed in place by new_handle(). Raw storage keeps this struct
    // standard-layout, so CPython's member tables may use offsetof() on it.
    alignas(HandleNode) unsigned char node_storage[sizeof(HandleNode)];
    LoopObject* loop;            // strong
    PyObject* callback;          // strong; null once cancelled
    PyObject* args;              // a tuple (strong); null once cancelled
    PyObject* context;           // strong (a contextvars.Context)
    PyObject* source_traceback;  // debug mode: where the handle was made; else null
    PyObject* repr;              // debug mode: the repr saved when cancelled
    PyObject* weakreflist;
    double when;  // TimerHandle: the loop time it is due at
    bool cancelled;
    bool is_timer;
    bool scheduled;  // TimerHandle: in the loop's timer heap (Python's _scheduled)

    HandleNode& node() noexcept { return *std::launder(reinterpret_cast<HandleNode*>(node_storage)); }
};

extern PyTypeObject* HandleType;
extern PyTypeObject* TimerHandleType;
/// Creates the two types and adds them to `module`; -1 on failure.
int init_handle_types(PyObject* module) noexcept;

/// A new handle for callback(*args) in `context` (null: a copy of the current context, as
/// Python's Handle does). `args` is a tuple (borrowed). Null with an exception on failure.
HandleObject* new_handle(LoopObject* loop, PyObject* callback, PyObject* args, PyObject* context, bool timer,
                         double when) noexcept;

/// The handle whose link `item` is, when it is one (the loop also queues items of its own);
/// borrowed, or null.
PyObject* queued_handle(detail::ReadyItem* item) noexcept;
/// Queues `h` on the loop's ready queue (the queue takes a reference).
void schedule(LoopObject* loop, HandleObject* h);
/// Puts a timer handle in the loop's timer heap.
void schedule_timer(LoopObject* loop, HandleObject* h);

/// Python's Handle._run(): calls callback(*args) in the handle's context; an exception goes
/// to the loop's call_exception_handler(), except SystemExit and KeyboardInterrupt, which
/// leave the loop (throws LeaveLoop).
void run_handle(HandleObject* h);

/// Sets the pending SystemExit/KeyboardInterrupt aside in the loop and throws LeaveLoop.
[[noreturn]] void leave_loop(LoopObject* loop);

/// Reports the current Python exception to the loop's call_exception_handler() as Python's
/// context dict {'message': message, 'exception': ..., 'handle': h (when not null)}, or leaves
/// the loop for SystemExit/KeyboardInterrupt.
void report_error(LoopObject* loop, PyObject* message, HandleObject* h);

}  // namespace asyncio::python
