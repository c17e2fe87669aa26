// src/python/future_bridge.cpp - settling CPython futures from C++ tasks.
#include "python/future_bridge.hpp"

#include <new>

namespace asyncio::python::bridge {

namespace {

PyObject* str_done = nullptr;
PyObject* str_cancelled = nullptr;
PyObject* str_cancel = nullptr;
PyObject* str_set_result = nullptr;
PyObject* str_set_exception = nullptr;
PyObject* str_add_done_callback = nullptr;
PyTypeObject* CancelTaskType = nullptr;

/// A done callback holding a C++ task: cancels it when the future was cancelled.
struct CancelTask {
    PyObject ob_base;  // PyObject_HEAD
    AnyTask* task;
};

void cancel_task_dealloc(PyObject* o) {
    auto* self = reinterpret_cast<CancelTask*>(o);
    PyTypeObject* type = Py_TYPE(o);
    delete self->task;
    type->tp_free(o);
    Py_DECREF(type);
}

PyObject* cancel_task_call(PyObject* o, PyObject* args, PyObject*) {
    auto* self = reinterpret_cast<CancelTask*>(o);
    PyObject* future = PyTuple_GET_SIZE(args) ? PyTuple_GET_ITEM(args, 0) : nullptr;
    if (!future) Py_RETURN_NONE;
    Ref cancelled = Ref::steal(PyObject_CallMethodNoArgs(future, str_cancelled));
    if (!cancelled) return nullptr;
    if (PyObject_IsTrue(cancelled.get()) > 0 && self->task) {
        try {
            if (!self->task->done()) self->task->cancel();
        } catch (...) {
            return set_python_error();
        }
    }
    Py_RETURN_NONE;
}

PyType_Slot cancel_task_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(cancel_task_dealloc)},
    {Py_tp_call, reinterpret_cast<void*>(cancel_task_call)},
    {0, nullptr},
};

PyType_Spec cancel_task_spec = {
    "asyncio_cpp._core.CancelTask",
    sizeof(CancelTask),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    cancel_task_slots,
};

}  // namespace

bool is_done(PyObject* future) noexcept {
    Ref done = Ref::steal(PyObject_CallMethodNoArgs(future, str_done));
    if (!done) {
        PyErr_WriteUnraisable(future);
        return true;
    }
    return PyObject_IsTrue(done.get()) > 0;
}

int add_done_callback(PyObject* future, PyObject* callback) noexcept {
    Ref r = Ref::steal(PyObject_CallMethodOneArg(future, str_add_done_callback, callback));
    return r ? 0 : -1;
}

int init_types() noexcept {
    str_done = PyUnicode_InternFromString("done");
    str_cancelled = PyUnicode_InternFromString("cancelled");
    str_cancel = PyUnicode_InternFromString("cancel");
    str_set_result = PyUnicode_InternFromString("set_result");
    str_set_exception = PyUnicode_InternFromString("set_exception");
    str_add_done_callback = PyUnicode_InternFromString("add_done_callback");
    CancelTaskType = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&cancel_task_spec));
    return CancelTaskType ? 0 : -1;
}

PyObject* new_future(LoopObject* loop) noexcept {
    PyObject* args[2] = {nullptr, reinterpret_cast<PyObject*>(loop)};
    return PyObject_Vectorcall(refs.future_type, args + 1, PY_VECTORCALL_ARGUMENTS_OFFSET, refs.kw_loop);
}

void settle(PyObject* future, PyObject* result) noexcept {
    Ref value = Ref::steal(result);
    Ref exc;
    if (!value) exc = Ref::steal(fetch_exception());
    if (is_done(future)) return;  // cancelled meanwhile: the outcome is dropped, as Python's
    Ref r = value ? Ref::steal(PyObject_CallMethodOneArg(future, str_set_result, value.get()))
                  : Ref::steal(PyObject_CallMethodOneArg(future, str_set_exception, exc.get()));
    if (!r) PyErr_WriteUnraisable(future);
}

void settle_error(PyObject* future, const std::exception_ptr& error) noexcept {
    try {
        std::rethrow_exception(error);
    } catch (...) {
        set_python_error();
    }
    settle(future, nullptr);
}

void settle_cancelled(PyObject* future) noexcept {
    if (is_done(future)) return;
    Ref r = Ref::steal(PyObject_CallMethodNoArgs(future, str_cancel));
    if (!r) PyErr_WriteUnraisable(future);
}

int cancel_task_with(PyObject* future, AnyTask task) noexcept {
    CancelTask* cb = PyObject_New(CancelTask, CancelTaskType);
    if (!cb) return -1;
    cb->task = new (std::nothrow) AnyTask(std::move(task));
    Ref hold = Ref::steal(reinterpret_cast<PyObject*>(cb));
    if (!cb->task) {
        PyErr_NoMemory();
        return -1;
    }
    return add_done_callback(future, hold.get());
}

}  // namespace asyncio::python::bridge
