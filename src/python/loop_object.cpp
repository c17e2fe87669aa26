// src/python/loop_object.cpp - asyncio_cpp._core.Loop: call_soon & co, time, the run loop,
// futures and tasks, fd watching, natively on the C++ EventLoop.
//
// Methods take METH_FASTCALL arguments and parse them by hand: call_soon() is called once
// per task step and per future callback, so its cost is the loop's cost.
#include "python/loop_object.hpp"

#include "python/connections.hpp"
#include "python/datagram.hpp"
#include "python/future_bridge.hpp"
#include "python/handles.hpp"
#include "python/sock_ops.hpp"

#include "loop/loop_impl.hpp"

#include <structmember.h>

#include <new>
#include <string>

namespace asyncio::python {

PyTypeObject* LoopType = nullptr;

namespace {

LoopObject* as_loop(PyObject* o) noexcept { return reinterpret_cast<LoopObject*>(o); }

// ---- argument checks (Python's messages) ----------------------------------------------------

/// Picks `context=` out of the keyword arguments; the only keyword these methods take.
int parse_context(const char* method, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, PyObject** context) {
    *context = nullptr;
    if (!kwnames) return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
        PyObject* name = PyTuple_GET_ITEM(kwnames, i);
        if (name == refs.str_context || PyUnicode_CompareWithASCIIString(name, "context") == 0) {
            *context = args[nargs + i];
        } else {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", method, name);
            return -1;
        }
    }
    return 0;
}

bool is_coroutine_function(PyObject* callback) {
    PyObject* f = callback;
    if (PyMethod_Check(f)) f = PyMethod_GET_FUNCTION(f);
    if (!PyFunction_Check(f)) return false;  // builtins, bound C methods: never coroutine functions
    auto* code = reinterpret_cast<PyCodeObject*>(PyFunction_GET_CODE(f));
    return (code->co_flags & CO_COROUTINE) != 0;
}

/// Python's BaseEventLoop._check_callback.
int check_callback(PyObject* callback, const char* method) {
    if (PyCoro_CheckExact(callback) || is_coroutine_function(callback)) {
        PyErr_Format(PyExc_TypeError, "coroutines cannot be used with %s()", method);
        return -1;
    }
    if (!PyCallable_Check(callback)) {
        PyErr_Format(PyExc_TypeError, "a callable object was expected by %s(), got %R", method, callback);
        return -1;
    }
    return 0;
}

/// Python's BaseEventLoop._check_thread (debug mode only, as there).
int check_thread(LoopObject* self) {
    if (!self->core->get_debug() || !self->core->is_running()) return 0;
    if (detail::LoopAccess::on_loop_thread(*self->core)) return 0;
    PyErr_SetString(PyExc_RuntimeError,
                    "Non-thread-safe operation invoked on an event loop other than the current one");
    return -1;
}

/// The callback's positional arguments as a tuple.
PyObject* args_tuple(PyObject* const* args, Py_ssize_t n) {
    PyObject* t = PyTuple_New(n);
    if (!t) return nullptr;
    for (Py_ssize_t i = 0; i < n; ++i) PyTuple_SET_ITEM(t, i, Py_NewRef(args[i]));
    return t;
}

int to_fd(PyObject* fileobj) {
    // selectors._fileobj_to_fd: an int, or an object with fileno().
    long fd;
    if (PyLong_Check(fileobj)) {
        fd = PyLong_AsLong(fileobj);
    } else {
        Ref r = Ref::steal(PyObject_CallMethod(fileobj, "fileno", nullptr));
        if (!r) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError) || PyErr_ExceptionMatches(PyExc_TypeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "Invalid file object: %R", fileobj);
            }
            return -1;
        }
        fd = PyLong_AsLong(r.get());
    }
    if (fd == -1 && PyErr_Occurred()) return -1;
    if (fd < 0 || fd > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
        return -1;
    }
    return static_cast<int>(fd);
}

// ---- what the C++ loop calls back into Python for ---------------------------------------------

void release_gil(void* arg) noexcept { as_loop(static_cast<PyObject*>(arg))->saved_thread = PyEval_SaveThread(); }
void acquire_gil(void* arg) noexcept {
    LoopObject* self = as_loop(static_cast<PyObject*>(arg));
    PyEval_RestoreThread(self->saved_thread);
    self->saved_thread = nullptr;
}
/// After each poll: Python's signal handlers run here, so Ctrl-C interrupts a sleeping loop.
void check_signals(void* arg) {
    if (PyErr_CheckSignals() < 0) leave_loop(as_loop(static_cast<PyObject*>(arg)));
}

/// The C++ layers' errors (an fd that cannot be polled...) go to the Python loop's
/// call_exception_handler(), as Python's own machinery reports them.
void forward_exception(LoopObject* self, const ExceptionContext& c) {
    Ref message =
        Ref::steal(PyUnicode_DecodeUTF8(c.message.data(), static_cast<Py_ssize_t>(c.message.size()), "replace"));
    if (!message) {
        PyErr_WriteUnraisable(reinterpret_cast<PyObject*>(self));
        return;
    }
    if (c.exception) {
        try {
            std::rethrow_exception(c.exception);
        } catch (...) {
            set_python_error();
        }
    } else {
        PyErr_SetString(PyExc_RuntimeError, c.message.c_str());
    }
    try {
        report_error(self, message.get(), nullptr);
    } catch (const LeaveLoop&) {
        // The handler raised SystemExit/KeyboardInterrupt: _run() raises it once the loop
        // stops (the C++ loop's handler may not throw).
        self->core->stop();
    }
}

// ---- the type ---------------------------------------------------------------------------------

PyObject* loop_new(PyTypeObject* type, PyObject*, PyObject*) {
    Ref obj = Ref::steal(type->tp_alloc(type, 0));
    if (!obj) return nullptr;
    LoopObject* self = as_loop(obj.get());
    try {
        self->core = new EventLoop();
    } catch (...) {
        return set_python_error();
    }
    self->hooks = {release_gil, acquire_gil, self};
    auto& impl = detail::IoAccess::impl(*self->core);
    impl.backend->set_blocking_hooks(&self->hooks);
    impl.after_poll = check_signals;
    impl.after_poll_arg = self;
    self->core->set_exception_handler([self](EventLoop&, const ExceptionContext& c) { forward_exception(self, c); });
    return obj.release();
}

struct VisitArgs {
    visitproc visit;
    void* arg;
};

/// The handles queued in the C++ loop's ready queue and timer heap: each entry is one
/// reference to its handle (handles.cpp).
int visit_queued_handle(detail::ReadyItem* item, void* p) {
    PyObject* handle = queued_handle(item);
    if (!handle) return 0;  // not a Python handle (the loop's own items)
    auto* va = static_cast<VisitArgs*>(p);
    return va->visit(handle, va->arg);
}

// What the loop holds that may refer back to it - queued handles, watches, posted callbacks,
// armed sock_* waits - is shown to the garbage collector, so a loop the program dropped
// without closing it is collected, as the stock loop (whose queues are Python objects) is.
// Transports and servers are not: a C++ transport is shared with its Python object, so the
// loop does not own its references alone (close them, as asyncio asks anyway).
int loop_traverse(PyObject* o, visitproc visit, void* arg) {
    LoopObject* self = as_loop(o);
    Py_VISIT(Py_TYPE(o));
    Py_VISIT(self->task_factory);
    Py_VISIT(self->exit_exception);
    if (!self->core || self->core->is_closed()) return 0;
    VisitArgs va{visit, arg};
    if (int r = detail::LoopAccess::visit_queued(*self->core, visit_queued_handle, &va)) return r;
    if (int r = HeldRef::traverse(self, visit, arg)) return r;
    return visit_sock_waits(self, visit, arg);
}

// Breaks a cycle through the loop's queues: an unreachable loop cannot be running, and its
// __del__ (the Python class's) has closed it already unless it was only a _core.Loop.
int loop_clear(PyObject* o) {
    LoopObject* self = as_loop(o);
    if (self->core && !self->core->is_closed() && !self->core->is_running()) {
        drop_sock_waits(self);
        self->core->close();
    }
    Py_CLEAR(self->task_factory);
    Py_CLEAR(self->exit_exception);
    return 0;
}

void loop_dealloc(PyObject* o) {
    LoopObject* self = as_loop(o);
    PyTypeObject* type = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    if (self->weakreflist) PyObject_ClearWeakRefs(o);
    if (self->core) {
        if (!self->core->is_closed()) drop_sock_waits(self);
        // Closes it if the program did not (dropping its queued callbacks, timers, fds).
        delete self->core;
        self->core = nullptr;
    }
    HeldRef::detach_all(self);
    loop_clear(o);
    type->tp_free(o);
    Py_DECREF(type);
}

// ---- scheduling callbacks ---------------------------------------------------------------------

PyObject* call_soon_common(LoopObject* self, const char* method, PyObject* const* args, Py_ssize_t nargs,
                           PyObject* kwnames) {
    PyObject* context;
    if (parse_context(method, args, nargs, kwnames, &context) < 0) return nullptr;
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: 'callback'", method);
        return nullptr;
    }
    if (check_closed(self) < 0 || check_thread(self) < 0 || check_callback(args[0], method) < 0) return nullptr;
    Ref tuple = Ref::steal(args_tuple(args + 1, nargs - 1));
    if (!tuple) return nullptr;
    HandleObject* h = new_handle(self, args[0], tuple.get(), context, false, 0);
    if (!h) return nullptr;
    schedule(self, h);
    return reinterpret_cast<PyObject*>(h);
}

PyObject* loop_call_soon(PyObject* o, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return call_soon_common(as_loop(o), "call_soon", args, PyVectorcall_NARGS(nargs), kwnames);
}

PyObject* call_at_common(LoopObject* self, const char* method, double when, PyObject* const* args, Py_ssize_t nargs,
                         PyObject* context) {
    if (check_closed(self) < 0 || check_thread(self) < 0 || check_callback(args[0], method) < 0) return nullptr;
    Ref tuple = Ref::steal(args_tuple(args + 1, nargs - 1));
    if (!tuple) return nullptr;
    Ref h = Ref::steal(reinterpret_cast<PyObject*>(new_handle(self, args[0], tuple.get(), context, true, when)));
    if (!h) return nullptr;
    try {
        schedule_timer(self, reinterpret_cast<HandleObject*>(h.get()));
    } catch (...) {
        return set_python_error();
    }
    return h.release();
}

PyObject* loop_call_later(PyObject* o, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    LoopObject* self = as_loop(o);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject* context;
    if (parse_context("call_later", args, nargs, kwnames, &context) < 0) return nullptr;
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError,
                        nargs == 0 ? "call_later() missing 2 required positional arguments: 'delay' and 'callback'"
                                   : "call_later() missing 1 required positional argument: 'callback'");
        return nullptr;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "delay must not be None");
        return nullptr;
    }
    double delay = PyFloat_AsDouble(args[0]);
    if (delay == -1.0 && PyErr_Occurred()) return nullptr;
    return call_at_common(self, "call_later", self->core->time() + delay, args + 1, nargs - 1, context);
}

PyObject* loop_call_at(PyObject* o, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    LoopObject* self = as_loop(o);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject* context;
    if (parse_context("call_at", args, nargs, kwnames, &context) < 0) return nullptr;
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError,
                        nargs == 0 ? "call_at() missing 2 required positional arguments: 'when' and 'callback'"
                                   : "call_at() missing 1 required positional argument: 'callback'");
        return nullptr;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "when cannot be None");
        return nullptr;
    }
    double when = PyFloat_AsDouble(args[0]);
    if (when == -1.0 && PyErr_Occurred()) return nullptr;
    return call_at_common(self, "call_at", when, args + 1, nargs - 1, context);
}

/// What call_soon_threadsafe() posts to the C++ loop: runs the Python handle there.
struct RunPostedHandle {
    HeldRef handle;
    void operator()() {
        auto* h = reinterpret_cast<HandleObject*>(handle.get());
        if (!h->cancelled) run_handle(h);
    }
};

PyObject* loop_call_soon_threadsafe(PyObject* o, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    LoopObject* self = as_loop(o);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject* context;
    if (parse_context("call_soon_threadsafe", args, nargs, kwnames, &context) < 0) return nullptr;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call_soon_threadsafe() missing 1 required positional argument: 'callback'");
        return nullptr;
    }
    if (check_closed(self) < 0 || check_callback(args[0], "call_soon_threadsafe") < 0) return nullptr;
    Ref tuple = Ref::steal(args_tuple(args + 1, nargs - 1));
    if (!tuple) return nullptr;
    Ref h = Ref::steal(reinterpret_cast<PyObject*>(new_handle(self, args[0], tuple.get(), context, false, 0)));
    if (!h) return nullptr;
    try {
        self->core->call_soon_threadsafe(RunPostedHandle{HeldRef(self, h.get())});
    } catch (...) {
        return set_python_error();
    }
    return h.release();
}

// ---- time, running, closing ---------------------------------------------------------------------

PyObject* loop_time(PyObject* o, PyObject*) { return PyFloat_FromDouble(as_loop(o)->core->time()); }

PyObject* loop_stop(PyObject* o, PyObject*) {
    as_loop(o)->core->stop();
    Py_RETURN_NONE;
}

PyObject* loop_is_running(PyObject* o, PyObject*) { return PyBool_FromLong(as_loop(o)->core->is_running()); }
PyObject* loop_is_closed(PyObject* o, PyObject*) { return PyBool_FromLong(as_loop(o)->core->is_closed()); }

PyObject* raise_exit_exception(LoopObject* self) {
    PyObject* exc = self->exit_exception;
    self->exit_exception = nullptr;
    restore_exception(exc);
    return nullptr;
}

/// The iterations of run_forever(), until stop(). The Python half does the set-up around it
/// (the running loop, async generator hooks) with Python's checks and messages.
PyObject* loop_run(PyObject* o, PyObject*) {
    LoopObject* self = as_loop(o);
    try {
        self->core->run_forever();
    } catch (const LeaveLoop&) {
        return raise_exit_exception(self);
    } catch (...) {
        return set_python_error();
    }
    if (self->exit_exception) return raise_exit_exception(self);
    Py_RETURN_NONE;
}

PyObject* loop_close_core(PyObject* o, PyObject*) {
    try {
        if (!as_loop(o)->core->is_running()) drop_sock_waits(as_loop(o));
        as_loop(o)->core->close();
    } catch (...) {
        return set_python_error();
    }
    Py_RETURN_NONE;
}

PyObject* loop_get_debug(PyObject* o, PyObject*) { return PyBool_FromLong(as_loop(o)->core->get_debug()); }

PyObject* loop_set_debug_core(PyObject* o, PyObject* enabled) {
    int on = PyObject_IsTrue(enabled);
    if (on < 0) return nullptr;
    as_loop(o)->core->set_debug(on != 0);
    Py_RETURN_NONE;
}

PyObject* get_slow_callback_duration(PyObject* o, void*) {
    return PyFloat_FromDouble(as_loop(o)->core->slow_callback_duration());
}
int set_slow_callback_duration(PyObject* o, PyObject* value, void*) {
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete slow_callback_duration");
        return -1;
    }
    double d = PyFloat_AsDouble(value);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    as_loop(o)->core->set_slow_callback_duration(d);
    return 0;
}

PyObject* loop_io_backend(PyObject* o, PyObject*) {
    std::string_view name = as_loop(o)->core->io_backend();
    return PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size()));
}

// ---- futures and tasks --------------------------------------------------------------------------

PyObject* loop_create_future(PyObject* o, PyObject*) { return bridge::new_future(as_loop(o)); }  // Future(loop=self)

PyObject* loop_create_task(PyObject* o, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    LoopObject* self = as_loop(o);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject* name = Py_None;
    PyObject* context = Py_None;
    if (kwnames) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
            PyObject* key = PyTuple_GET_ITEM(kwnames, i);
            if (PyUnicode_CompareWithASCIIString(key, "name") == 0) {
                name = args[nargs + i];
            } else if (PyUnicode_CompareWithASCIIString(key, "context") == 0) {
                context = args[nargs + i];
            } else {
                PyErr_Format(PyExc_TypeError, "create_task() got an unexpected keyword argument '%U'", key);
                return nullptr;
            }
        }
    }
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "create_task() takes 1 positional argument but %zd were given", nargs);
        return nullptr;
    }
    if (check_closed(self) < 0) return nullptr;
    PyObject* coro = args[0];
    if (!self->task_factory) {
        // asyncio.Task(coro, loop=self, name=name, context=context)
        PyObject* call[5] = {nullptr, coro, o, name, context};
        Ref task = Ref::steal(PyObject_Vectorcall(refs.task_type, call + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                                  refs.kw_loop_name_context));
        if (task && self->core->get_debug()) {
            // As Python: the task's traceback ends where create_task() was called.
            Ref tb = Ref::steal(PyObject_GetAttrString(task.get(), "_source_traceback"));
            if (tb && PyList_Check(tb.get()) && PyList_GET_SIZE(tb.get()) > 0 && PySequence_DelItem(tb.get(), -1) < 0)
                return nullptr;
            PyErr_Clear();
        }
        return task.release();
    }
    Ref task;
    if (context == Py_None) {
        task = Ref::steal(PyObject_CallFunctionObjArgs(self->task_factory, o, coro, nullptr));
    } else {
        PyObject* call[4] = {nullptr, o, coro, context};
        task = Ref::steal(PyObject_Vectorcall(self->task_factory, call + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                              Ref::steal(Py_BuildValue("(s)", "context")).get()));
    }
    if (!task) return nullptr;
    if (name != Py_None) {
        Ref r = Ref::steal(PyObject_CallMethod(task.get(), "set_name", "O", name));
        if (!r) return nullptr;
    }
    return task.release();
}

PyObject* loop_get_task_factory(PyObject* o, PyObject*) {
    LoopObject* self = as_loop(o);
    return Py_NewRef(self->task_factory ? self->task_factory : Py_None);
}

PyObject* loop_set_task_factory(PyObject* o, PyObject* factory) {
    LoopObject* self = as_loop(o);
    if (factory != Py_None && !PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError, "task factory must be a callable or None");
        return nullptr;
    }
    Py_XSETREF(self->task_factory, factory == Py_None ? nullptr : Py_NewRef(factory));
    Py_RETURN_NONE;
}

// ---- watching file descriptors ----------------------------------------------------------------

/// What add_reader()/add_writer() leave with the C++ loop: runs the Python handle each time
/// the fd is ready.
struct RunWatchHandle {
    HeldRef handle;
    void operator()() const {
        auto* h = reinterpret_cast<HandleObject*>(handle.get());
        if (!h->cancelled) run_handle(h);
    }
};

PyObject* add_watch(LoopObject* self, const char* method, bool reader, PyObject* const* args, Py_ssize_t nargsf) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError, "%s() missing required positional arguments: 'fd' and 'callback'", method);
        return nullptr;
    }
    int fd = to_fd(args[0]);
    if (fd < 0) return nullptr;
    if (check_closed(self) < 0) return nullptr;
    Ref tuple = Ref::steal(args_tuple(args + 2, nargs - 2));
    if (!tuple) return nullptr;
    Ref h = Ref::steal(reinterpret_cast<PyObject*>(new_handle(self, args[1], tuple.get(), Py_None, false, 0)));
    if (!h) return nullptr;
    try {
        if (reader)
            self->core->add_reader(fd, RunWatchHandle{HeldRef(self, h.get())});
        else
            self->core->add_writer(fd, RunWatchHandle{HeldRef(self, h.get())});
    } catch (...) {
        return set_python_error();
    }
    Py_RETURN_NONE;
}

PyObject* remove_watch(LoopObject* self, bool reader, PyObject* fileobj) {
    int fd = to_fd(fileobj);
    if (fd < 0) return nullptr;
    if (self->core->is_closed()) Py_RETURN_FALSE;
    try {
        return PyBool_FromLong(reader ? self->core->remove_reader(fd) : self->core->remove_writer(fd));
    } catch (...) {
        return set_python_error();
    }
}

PyObject* loop_add_reader(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
    return add_watch(as_loop(o), "add_reader", true, args, nargs);
}
PyObject* loop_add_writer(PyObject* o, PyObject* const* args, Py_ssize_t nargs) {
    return add_watch(as_loop(o), "add_writer", false, args, nargs);
}
PyObject* loop_remove_reader(PyObject* o, PyObject* fd) { return remove_watch(as_loop(o), true, fd); }
PyObject* loop_remove_writer(PyObject* o, PyObject* fd) { return remove_watch(as_loop(o), false, fd); }

// ---- the table ----------------------------------------------------------------------------------

PyMethodDef loop_methods[] = {
    {"call_soon", method(loop_call_soon), METH_FASTCALL | METH_KEYWORDS,
     "call_soon(callback, *args, context=None) -> Handle: run callback(*args) soon, in FIFO order."},
    {"call_later", method(loop_call_later), METH_FASTCALL | METH_KEYWORDS,
     "call_later(delay, callback, *args, context=None) -> TimerHandle."},
    {"call_at", method(loop_call_at), METH_FASTCALL | METH_KEYWORDS,
     "call_at(when, callback, *args, context=None) -> TimerHandle (when: loop.time())."},
    {"call_soon_threadsafe", method(loop_call_soon_threadsafe), METH_FASTCALL | METH_KEYWORDS,
     "call_soon_threadsafe(callback, *args, context=None) -> Handle: call_soon() from any thread."},
    {"time", loop_time, METH_NOARGS, "The loop's clock: time.monotonic()."},
    {"stop", loop_stop, METH_NOARGS, "Stop running after the current iteration."},
    {"is_running", loop_is_running, METH_NOARGS, "Whether the loop is running."},
    {"is_closed", loop_is_closed, METH_NOARGS, "Whether the loop was closed."},
    {"_run", loop_run, METH_NOARGS, "run_forever()'s iterations (the Python half sets up around it)."},
    {"_close", loop_close_core, METH_NOARGS, "Close the C++ loop: drop callbacks, timers, fds."},
    {"get_debug", loop_get_debug, METH_NOARGS, "Whether debug mode is on."},
    {"_set_debug", loop_set_debug_core, METH_O, "Turn the C++ loop's debug mode on or off."},
    {"_io_backend", loop_io_backend, METH_NOARGS, "'epoll' or 'io_uring'."},
    {"create_future", loop_create_future, METH_NOARGS, "An asyncio.Future attached to this loop."},
    {"create_task", method(loop_create_task), METH_FASTCALL | METH_KEYWORDS,
     "create_task(coro, *, name=None, context=None) -> asyncio.Task (or the task factory's)."},
    {"get_task_factory", loop_get_task_factory, METH_NOARGS, "The task factory, or None."},
    {"set_task_factory", loop_set_task_factory, METH_O, "Set the task factory (a callable or None)."},
    {"add_reader", method(loop_add_reader), METH_FASTCALL, "add_reader(fd, callback, *args)"},
    {"add_writer", method(loop_add_writer), METH_FASTCALL, "add_writer(fd, callback, *args)"},
    {"remove_reader", loop_remove_reader, METH_O, "remove_reader(fd) -> bool"},
    {"remove_writer", loop_remove_writer, METH_O, "remove_writer(fd) -> bool"},
    {"_sock_recv", method(loop_sock_recv), METH_FASTCALL, "sock_recv's native part: bytes, or a future."},
    {"_sock_recv_into", method(loop_sock_recv_into), METH_FASTCALL, "sock_recv_into's native part: int, or a future."},
    {"_sock_sendall", method(loop_sock_sendall), METH_FASTCALL, "sock_sendall's native part: None, or a future."},
    {"_sock_wait", method(loop_sock_wait), METH_FASTCALL,
     "_sock_wait(sock, writable) -> a future done when the socket is ready."},
    {"_create_connection", loop_create_connection, METH_VARARGS, nullptr},
    {"_create_unix_connection", loop_create_unix_connection, METH_VARARGS, nullptr},
    {"_connect_fd", loop_connect_fd, METH_VARARGS, nullptr},
    {"_create_server", loop_create_server, METH_VARARGS, nullptr},
    {"_serve_fd", loop_serve_fd, METH_VARARGS, nullptr},
    {"_create_unix_server", loop_create_unix_server, METH_VARARGS, nullptr},
    {"_create_datagram_endpoint", loop_create_datagram_endpoint, METH_VARARGS, nullptr},
    {"_sendfile", loop_sendfile, METH_VARARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef loop_getset[] = {
    {"slow_callback_duration", get_slow_callback_duration, set_slow_callback_duration,
     "Debug mode: callbacks that take longer (seconds) are logged.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef loop_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(LoopObject, weakreflist), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot loop_slots[] = {
    {Py_tp_doc, const_cast<char*>("The native half of asyncio_cpp.Loop.")},
    {Py_tp_new, reinterpret_cast<void*>(loop_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(loop_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(loop_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(loop_clear)},
    {Py_tp_methods, loop_methods},
    {Py_tp_getset, loop_getset},
    {Py_tp_members, loop_members},
    {0, nullptr},
};

PyType_Spec loop_spec = {
    "asyncio_cpp._core.Loop",
    sizeof(LoopObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    loop_slots,
};

}  // namespace

void HeldRef::link() noexcept {
    if (!loop_) return;
    next_ = loop_->held_refs;
    if (next_) next_->prev_ = this;
    loop_->held_refs = this;
}

void HeldRef::unlink() noexcept {
    if (!loop_) return;
    if (prev_)
        prev_->next_ = next_;
    else if (loop_->held_refs == this)
        loop_->held_refs = next_;
    if (next_) next_->prev_ = prev_;
    prev_ = next_ = nullptr;
}

int HeldRef::traverse(LoopObject* loop, visitproc visit, void* arg) {
    for (HeldRef* r = loop->held_refs; r; r = r->next_) Py_VISIT(r->o_);
    return 0;
}

void HeldRef::detach_all(LoopObject* loop) noexcept {
    while (HeldRef* r = loop->held_refs) {
        r->unlink();
        r->loop_ = nullptr;
    }
}

int init_loop_type(PyObject* module) noexcept {
    LoopType = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&loop_spec));
    if (!LoopType) return -1;
    return PyModule_AddObjectRef(module, "Loop", reinterpret_cast<PyObject*>(LoopType));
}

}  // namespace asyncio::python
