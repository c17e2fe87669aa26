// src/python/py.cpp - exception plumbing between C++ and CPython, and the asyncio lookups.
#include "python/py.hpp"

#include "python/handles.hpp"
#include "python/loop_object.hpp"

#include <new>
#include <stdexcept>
#include <system_error>

namespace asyncio::python {

AsyncioRefs refs{};

PyObject* fetch_exception() noexcept {
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type) return nullptr;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

void restore_exception(PyObject* exc) noexcept {
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (!exc) return;
    PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(exc));
    Py_INCREF(type);
    PyErr_Restore(type, exc, PyException_GetTraceback(exc));
#endif
}

PyError::PyError(PyObject* e) noexcept : exception(Ref::steal(e)) {
    try {
        Ref r = Ref::steal(e ? PyObject_Repr(e) : nullptr);
        const char* s = r ? PyUnicode_AsUTF8(r.get()) : nullptr;
        description = s ? s : "Python exception";
    } catch (...) {
    }
    PyErr_Clear();
}

PyObject* set_python_error() noexcept {
    try {
        throw;
    } catch (const PyError& e) {
        restore_exception(Py_NewRef(e.exception.get()));
    } catch (const LeaveLoop&) {
        // The exception is kept by the loop object; this path is not reached for it.
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "asyncio_cpp: lost a SystemExit/KeyboardInterrupt");
    } catch (const asyncio::KeyboardInterrupt&) {
        PyErr_SetNone(PyExc_KeyboardInterrupt);
    } catch (const asyncio::CancelledError& e) {
        if (e.message().empty())
            PyErr_SetNone(refs.cancelled_error);
        else
            PyErr_SetString(refs.cancelled_error, e.message().c_str());
    } catch (const asyncio::RuntimeError& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const asyncio::TimeoutError& e) {
        PyErr_SetString(PyExc_TimeoutError, e.what());
    } catch (const asyncio::InvalidStateError& e) {
        PyErr_SetString(refs.invalid_state_error, e.what());
    } catch (const std::system_error& e) {
        // OSError(errno, strerror) picks the subclass (ConnectionResetError, ...), as Python's.
        // strerror: the C++ message without the system's text std::system_error appends,
        // when it is a sentence (Python's own messages); the system's text alone when the C++
        // message only names the call ("recv", "connect"), as Python's socket errors read.
        const int code = e.code().value();
        const std::string reason = e.code().message();
        std::string what = e.what();
        if (what.size() > reason.size() + 2 &&
            what.compare(what.size() - reason.size() - 2, std::string::npos, ": " + reason) == 0)
            what.resize(what.size() - reason.size() - 2);
        const std::string strerror = what.find(' ') == std::string::npos ? reason : what;
        PyObject* args = Py_BuildValue("(is)", code, strerror.c_str());
        if (args) {
            PyErr_SetObject(PyExc_OSError, args);
            Py_DECREF(args);
        }
    } catch (const std::invalid_argument& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {
        PyErr_SetString(PyExc_SystemError, "asyncio_cpp: unknown C++ exception");
    }
    return nullptr;
}

[[noreturn]] void throw_python_error(LoopObject* loop) {
    if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) leave_loop(loop);
    throw PyError(fetch_exception());
}

namespace {
PyObject* attr(PyObject* module, const char* name) { return module ? PyObject_GetAttrString(module, name) : nullptr; }
}  // namespace

int init_asyncio_refs() noexcept {
    PyObject* asyncio = PyImport_ImportModule("asyncio");
    if (!asyncio) return -1;
    PyObject* helpers = PyImport_ImportModule("asyncio.format_helpers");
    refs.future_type = attr(asyncio, "Future");
    refs.task_type = attr(asyncio, "Task");
    refs.cancelled_error = attr(asyncio, "CancelledError");
    refs.invalid_state_error = attr(asyncio, "InvalidStateError");
    refs.iscoroutinefunction = attr(asyncio, "iscoroutinefunction");
    refs.format_callback_source = attr(helpers, "_format_callback_source");
    refs.extract_stack = attr(helpers, "extract_stack");
    Py_DECREF(asyncio);
    Py_XDECREF(helpers);
    refs.str_loop = PyUnicode_InternFromString("loop");
    refs.str_name = PyUnicode_InternFromString("name");
    refs.str_context = PyUnicode_InternFromString("context");
    refs.str_call_exception_handler = PyUnicode_InternFromString("call_exception_handler");
    refs.str_message = PyUnicode_InternFromString("message");
    refs.str_exception = PyUnicode_InternFromString("exception");
    refs.str_handle = PyUnicode_InternFromString("handle");
    refs.str_source_traceback = PyUnicode_InternFromString("source_traceback");
    refs.kw_loop = Py_BuildValue("(s)", "loop");
    refs.kw_loop_name_context = Py_BuildValue("(sss)", "loop", "name", "context");
    return PyErr_Occurred() ? -1 : 0;
}

}  // namespace asyncio::python
