// src/python/py.hpp - what every file of the Python face shares: the CPython header, an owning
// reference, the exception that carries SystemExit/KeyboardInterrupt out of the loop, C++ to
// Python exception translation, and the asyncio objects the module looks up once.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <asyncio/exceptions.hpp>

#include <exception>
#include <string>
#include <utility>

namespace asyncio::python {

/// An owning reference (a strong one; null allowed).
class Ref {
public:
    Ref() noexcept = default;
    /// Takes over `o` (a new reference, or null).
    static Ref steal(PyObject* o) noexcept { return Ref(o); }
    /// Takes a new reference to `o` (null allowed).
    static Ref borrow(PyObject* o) noexcept {
        Py_XINCREF(o);
        return Ref(o);
    }
    Ref(const Ref& other) noexcept : o_(other.o_) { Py_XINCREF(o_); }
    Ref(Ref&& other) noexcept : o_(std::exchange(other.o_, nullptr)) {}
    Ref& operator=(Ref other) noexcept {
        std::swap(o_, other.o_);
        return *this;
    }
    ~Ref() { Py_XDECREF(o_); }
    PyObject* get() const noexcept { return o_; }
    /// Gives up ownership (the caller now owns the reference).
    PyObject* release() noexcept { return std::exchange(o_, nullptr); }
    explicit operator bool() const noexcept { return o_ != nullptr; }

private:
    explicit Ref(PyObject* o) noexcept : o_(o) {}
    PyObject* o_ = nullptr;
};

/// Thrown through the C++ loop when a Python callback raised SystemExit or KeyboardInterrupt
/// (or a signal handler raised while the loop slept): like Python's, they leave the loop at
/// once, the rest of the iteration's callbacks still queued. The exception itself waits in
/// the loop object (LoopObject::exit_exception) until run_forever() re-raises it. Derived
/// from the C++ runtime's KeyboardInterrupt, which every layer already lets through.
struct LeaveLoop : asyncio::KeyboardInterrupt {};

/// A Python exception on its way through C++ code (a protocol method that raised, inside a
/// transport): the C++ layers handle it as any exception, and set_python_error() turns it
/// back into the Python exception it was.
struct PyError : std::exception {
    explicit PyError(PyObject* exception) noexcept;  // takes over the reference
    Ref exception;
    std::string description;  // repr(exception), for the C++ layers' logs
    const char* what() const noexcept override { return description.c_str(); }
};
/// Throws the current Python exception as a PyError (LeaveLoop for SystemExit and
/// KeyboardInterrupt, which `loop` keeps).
struct LoopObject;
[[noreturn]] void throw_python_error(LoopObject* loop);

/// The current Python exception (normalized), taken out of the error indicator; null if none.
PyObject* fetch_exception() noexcept;
/// Puts `exc` (a new reference, taken over) back as the current Python exception.
void restore_exception(PyObject* exc) noexcept;

/// Sets the Python exception that matches the C++ exception being handled (call from a catch
/// block): RuntimeError, ValueError (std::invalid_argument), OSError with its errno
/// (std::system_error), MemoryError, TimeoutError, asyncio.CancelledError, ... Returns null, so
/// a method can `return set_python_error();`.
PyObject* set_python_error() noexcept;

/// The asyncio objects the module needs, looked up when it is imported.
struct AsyncioRefs {
    PyObject* future_type;             // asyncio.Future
    PyObject* task_type;               // asyncio.Task
    PyObject* cancelled_error;         // asyncio.CancelledError
    PyObject* invalid_state_error;     // asyncio.InvalidStateError
    PyObject* format_callback_source;  // asyncio.format_helpers._format_callback_source
    PyObject* extract_stack;           // asyncio.format_helpers.extract_stack
    PyObject* iscoroutinefunction;     // asyncio.iscoroutinefunction
    PyObject* str_loop;                // "loop"
    PyObject* str_name;                // "name"
    PyObject* str_context;             // "context"
    PyObject* str_call_exception_handler;
    PyObject* str_message;
    PyObject* str_exception;
    PyObject* str_handle;
    PyObject* str_source_traceback;
    PyObject* kw_loop;               // ("loop",)
    PyObject* kw_loop_name_context;  // ("loop", "name", "context")
};
extern AsyncioRefs refs;
/// Fills `refs` (module import time); -1 with an exception set on failure.
int init_asyncio_refs() noexcept;

/// Casts a METH_FASTCALL(|METH_KEYWORDS) function for a PyMethodDef.
template <class F>
PyCFunction method(F f) noexcept {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(f));
}

}  // namespace asyncio::python
