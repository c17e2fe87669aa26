// src/python/handles.cpp - Handle and TimerHandle (Python's asyncio.events.Handle/TimerHandle).
#include "python/handles.hpp"

#include "python/loop_object.hpp"

#include <structmember.h>

#include <new>
#include <string>

namespace asyncio::python {

PyTypeObject* HandleType = nullptr;
PyTypeObject* TimerHandleType = nullptr;

namespace {

HandleObject* owner(detail::ReadyItem* item) noexcept { return static_cast<HandleNode*>(item)->owner; }

PyObject* handle_repr(PyObject* self);

// What the C++ loop does with a handle it queued. Every reference the ready queue or the
// timer heap holds is a Python reference to the handle.
const detail::ReadyItemOps handle_ops = {
    /*run=*/
    [](detail::ReadyItem* item) {
        HandleObject* h = owner(item);
        Ref queued = Ref::steal(reinterpret_cast<PyObject*>(h));  // the queue's reference
        if (!h->cancelled) run_handle(h);
    },
    /*discard=*/[](detail::ReadyItem* item) noexcept { Py_DECREF(reinterpret_cast<PyObject*>(owner(item))); },
    /*drop=*/[](detail::ReadyItem*) noexcept {},
    /*describe=*/
    [](const detail::ReadyItem* item) -> std::string {
        Ref r = Ref::steal(handle_repr(reinterpret_cast<PyObject*>(static_cast<const HandleNode*>(item)->owner)));
        const char* s = r ? PyUnicode_AsUTF8(r.get()) : nullptr;
        if (!s) {
            PyErr_Clear();
            return "<Handle>";
        }
        return s;
    },
    /*timer_fire=*/
    [](detail::ReadyItem* item) {
        HandleObject* h = owner(item);
        h->scheduled = false;
        Py_INCREF(reinterpret_cast<PyObject*>(h));  // the ready queue's reference
        detail::LoopAccess::schedule(*h->loop->core, item);
    },
    /*add_ref=*/[](detail::ReadyItem* item) noexcept { Py_INCREF(reinterpret_cast<PyObject*>(owner(item))); },
    /*release=*/[](detail::ReadyItem* item) noexcept { Py_DECREF(reinterpret_cast<PyObject*>(owner(item))); },
};

/// format_helpers._format_callback_source(callback, args[, debug=loop.get_debug()]): 3.13
/// shows the arguments only in debug mode, and takes the flag.
PyObject* format_callback(LoopObject* loop, PyObject* callback, PyObject* args) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject* call[4] = {nullptr, callback, args, loop->core->get_debug() ? Py_True : Py_False};
    Ref kw = Ref::steal(Py_BuildValue("(s)", "debug"));
    if (!kw) return nullptr;
    return PyObject_Vectorcall(refs.format_callback_source, call + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, kw.get());
#else
    (void)loop;
    return PyObject_CallFunctionObjArgs(refs.format_callback_source, callback, args, nullptr);
#endif
}

bool is_base_exit() noexcept {
    return PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

// ---- the type's slots ------------------------------------------------------------------------

int handle_traverse(PyObject* self, visitproc visit, void* arg) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(reinterpret_cast<PyObject*>(h->loop));
    Py_VISIT(h->callback);
    Py_VISIT(h->args);
    Py_VISIT(h->context);
    Py_VISIT(h->source_traceback);
    Py_VISIT(h->repr);
    return 0;
}

int handle_clear(PyObject* self) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
    Py_CLEAR(h->context);
    Py_CLEAR(h->source_traceback);
    Py_CLEAR(h->repr);
    // The loop stays: a handle still queued must reach it (it is queued only while the loop
    // holds it, so no cycle through the loop is left for the collector to break here).
    return 0;
}

void handle_dealloc(PyObject* self) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    PyTypeObject* type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (h->weakreflist) PyObject_ClearWeakRefs(self);
    handle_clear(self);
    Py_CLEAR(h->loop);
    h->node().~HandleNode();
    type->tp_free(self);
    Py_DECREF(type);
}

// Python's Handle._repr_info() joined as in __repr__: "<Handle cancelled cb(args) created at f:1>".
PyObject* handle_repr(PyObject* self) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    if (h->repr) return Py_NewRef(h->repr);
    Ref parts = Ref::steal(PyList_New(0));
    if (!parts) return nullptr;
    Ref name = Ref::steal(PyUnicode_FromString(h->is_timer ? "TimerHandle" : "Handle"));
    if (!name || PyList_Append(parts.get(), name.get()) < 0) return nullptr;
    if (h->cancelled) {
        Ref c = Ref::steal(PyUnicode_FromString("cancelled"));
        if (!c || PyList_Append(parts.get(), c.get()) < 0) return nullptr;
    }
    if (h->is_timer) {
        Ref w = Ref::steal(PyUnicode_FromFormat("when=%R", Ref::steal(PyFloat_FromDouble(h->when)).get()));
        if (!w || PyList_Append(parts.get(), w.get()) < 0) return nullptr;
    }
    if (h->callback) {
        Ref src = Ref::steal(format_callback(h->loop, h->callback, h->args));
        if (!src || PyList_Append(parts.get(), src.get()) < 0) return nullptr;
    }
    if (h->source_traceback && PyList_Check(h->source_traceback) && PyList_GET_SIZE(h->source_traceback) > 0) {
        // The last frame summary: "created at filename:lineno".
        PyObject* frame = PyList_GET_ITEM(h->source_traceback, PyList_GET_SIZE(h->source_traceback) - 1);
        Ref file = Ref::steal(PyObject_GetAttrString(frame, "filename"));
        Ref line = Ref::steal(PyObject_GetAttrString(frame, "lineno"));
        if (!file || !line) return nullptr;
        Ref at = Ref::steal(PyUnicode_FromFormat("created at %S:%S", file.get(), line.get()));
        if (!at || PyList_Append(parts.get(), at.get()) < 0) return nullptr;
    }
    Ref sep = Ref::steal(PyUnicode_FromString(" "));
    if (!sep) return nullptr;
    Ref joined = Ref::steal(PyUnicode_Join(sep.get(), parts.get()));
    if (!joined) return nullptr;
    return PyUnicode_FromFormat("<%U>", joined.get());
}

PyObject* handle_cancel(PyObject* self, PyObject*) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    if (h->cancelled) Py_RETURN_NONE;
    if (h->is_timer && h->scheduled) {
        h->scheduled = false;
        if (!h->loop->core->is_closed()) detail::LoopAccess::cancel_timer(*h->loop->core, &h->node());
    }
    h->cancelled = true;
    if (h->loop->core->get_debug()) {
        // Python keeps the repr of a cancelled handle, callback included (debug mode).
        PyObject* r = handle_repr(self);
        if (!r) return nullptr;
        Py_XSETREF(h->repr, r);
    }
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
    Py_RETURN_NONE;
}

PyObject* handle_cancelled(PyObject* self, PyObject*) {
    return PyBool_FromLong(reinterpret_cast<HandleObject*>(self)->cancelled);
}

PyObject* handle_get_context(PyObject* self, PyObject*) {
    return Py_NewRef(reinterpret_cast<HandleObject*>(self)->context);
}

PyObject* handle_run_method(PyObject* self, PyObject*) {
    try {
        run_handle(reinterpret_cast<HandleObject*>(self));
    } catch (const LeaveLoop&) {
        auto* h = reinterpret_cast<HandleObject*>(self);
        restore_exception(h->loop->exit_exception);
        h->loop->exit_exception = nullptr;
        return nullptr;
    }
    Py_RETURN_NONE;
}

PyObject* timer_when(PyObject* self, PyObject*) {
    return PyFloat_FromDouble(reinterpret_cast<HandleObject*>(self)->when);
}

PyObject* get_or_none(PyObject* o) { return Py_NewRef(o ? o : Py_None); }
PyObject* get_callback(PyObject* self, void*) { return get_or_none(reinterpret_cast<HandleObject*>(self)->callback); }
PyObject* get_args(PyObject* self, void*) { return get_or_none(reinterpret_cast<HandleObject*>(self)->args); }
PyObject* get_loop(PyObject* self, void*) {
    return get_or_none(reinterpret_cast<PyObject*>(reinterpret_cast<HandleObject*>(self)->loop));
}
PyObject* get_context(PyObject* self, void*) { return get_or_none(reinterpret_cast<HandleObject*>(self)->context); }
PyObject* get_cancelled(PyObject* self, void*) {
    return PyBool_FromLong(reinterpret_cast<HandleObject*>(self)->cancelled);
}
PyObject* get_source_traceback(PyObject* self, void*) {
    return get_or_none(reinterpret_cast<HandleObject*>(self)->source_traceback);
}
PyObject* get_when(PyObject* self, void*) { return PyFloat_FromDouble(reinterpret_cast<HandleObject*>(self)->when); }
PyObject* get_scheduled(PyObject* self, void*) {
    return PyBool_FromLong(reinterpret_cast<HandleObject*>(self)->scheduled);
}

// TimerHandle's ordering and equality (Python's: by `when`; equal handles have the same
// when, callback, args and cancelled state).
PyObject* timer_richcompare(PyObject* a, PyObject* b, int op) {
    if (!PyObject_TypeCheck(b, TimerHandleType)) Py_RETURN_NOTIMPLEMENTED;
    auto* x = reinterpret_cast<HandleObject*>(a);
    auto* y = reinterpret_cast<HandleObject*>(b);
    auto equal = [&]() -> int {
        if (x == y) return 1;
        if (x->when != y->when || x->cancelled != y->cancelled) return 0;
        int r =
            PyObject_RichCompareBool(x->callback ? x->callback : Py_None, y->callback ? y->callback : Py_None, Py_EQ);
        if (r <= 0) return r;
        return PyObject_RichCompareBool(x->args ? x->args : Py_None, y->args ? y->args : Py_None, Py_EQ);
    };
    int r = 0;
    switch (op) {
        case Py_LT:
            return PyBool_FromLong(x->when < y->when);
        case Py_GT:
            return PyBool_FromLong(x->when > y->when);
        case Py_LE:
            if (x->when < y->when) Py_RETURN_TRUE;
            r = equal();
            break;
        case Py_GE:
            if (x->when > y->when) Py_RETURN_TRUE;
            r = equal();
            break;
        case Py_EQ:
            r = equal();
            break;
        case Py_NE:
            r = equal();
            if (r >= 0) r = !r;
            break;
        default:
            Py_RETURN_NOTIMPLEMENTED;
    }
    if (r < 0) return nullptr;
    return PyBool_FromLong(r);
}

Py_hash_t timer_hash(PyObject* self) {
    Ref when = Ref::steal(PyFloat_FromDouble(reinterpret_cast<HandleObject*>(self)->when));
    return when ? PyObject_Hash(when.get()) : -1;
}

PyMethodDef handle_methods[] = {
    {"cancel", handle_cancel, METH_NOARGS, "Cancel the call; a no-op once it ran or was cancelled."},
    {"cancelled", handle_cancelled, METH_NOARGS, "Whether cancel() was called."},
    {"get_context", handle_get_context, METH_NOARGS, "The contextvars.Context the callback runs in."},
    {"_run", handle_run_method, METH_NOARGS, "Run the callback now, as the loop does."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef handle_getset[] = {
    {"_callback", get_callback, nullptr, nullptr, nullptr},
    {"_args", get_args, nullptr, nullptr, nullptr},
    {"_loop", get_loop, nullptr, nullptr, nullptr},
    {"_context", get_context, nullptr, nullptr, nullptr},
    {"_cancelled", get_cancelled, nullptr, nullptr, nullptr},
    {"_source_traceback", get_source_traceback, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef timer_methods[] = {
    {"when", timer_when, METH_NOARGS, "The absolute loop time (loop.time()) the callback is due at."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef timer_getset[] = {
    {"_when", get_when, nullptr, nullptr, nullptr},
    {"_scheduled", get_scheduled, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef handle_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(HandleObject, weakreflist), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot handle_slots[] = {
    {Py_tp_doc, const_cast<char*>("A callback scheduled by call_soon(): asyncio.Handle's interface.")},
    {Py_tp_dealloc, reinterpret_cast<void*>(handle_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(handle_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(handle_clear)},
    {Py_tp_repr, reinterpret_cast<void*>(handle_repr)},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {Py_tp_members, handle_members},
    {0, nullptr},
};

PyType_Spec handle_spec = {
    "asyncio_cpp.Handle",
    sizeof(HandleObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    handle_slots,
};

PyType_Slot timer_slots[] = {
    {Py_tp_doc, const_cast<char*>("A callback scheduled by call_later()/call_at(): asyncio.TimerHandle's interface.")},
    {Py_tp_dealloc, reinterpret_cast<void*>(handle_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(handle_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(handle_clear)},
    {Py_tp_methods, timer_methods},
    {Py_tp_getset, timer_getset},
    {Py_tp_richcompare, reinterpret_cast<void*>(timer_richcompare)},
    {Py_tp_hash, reinterpret_cast<void*>(timer_hash)},
    {0, nullptr},
};

PyType_Spec timer_spec = {
    "asyncio_cpp.TimerHandle",
    sizeof(HandleObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    timer_slots,
};

}  // namespace

int init_handle_types(PyObject* module) noexcept {
    HandleType = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&handle_spec));
    if (!HandleType) return -1;
    TimerHandleType =
        reinterpret_cast<PyTypeObject*>(PyType_FromSpecWithBases(&timer_spec, reinterpret_cast<PyObject*>(HandleType)));
    if (!TimerHandleType) return -1;
    if (PyModule_AddObjectRef(module, "Handle", reinterpret_cast<PyObject*>(HandleType)) < 0) return -1;
    if (PyModule_AddObjectRef(module, "TimerHandle", reinterpret_cast<PyObject*>(TimerHandleType)) < 0) return -1;
    return 0;
}

HandleObject* new_handle(LoopObject* loop, PyObject* callback, PyObject* args, PyObject* context, bool timer,
                         double when) noexcept {
    PyObject* ctx;
    if (context == nullptr || context == Py_None) {
        ctx = PyContext_CopyCurrent();
        if (!ctx) return nullptr;
    } else {
        ctx = Py_NewRef(context);
    }
    HandleObject* h = PyObject_GC_New(HandleObject, timer ? TimerHandleType : HandleType);
    if (!h) {
        Py_DECREF(ctx);
        return nullptr;
    }
    HandleNode* node = new (h->node_storage) HandleNode();
    node->owner = h;
    node->ops = &handle_ops;
    h->loop = reinterpret_cast<LoopObject*>(Py_NewRef(reinterpret_cast<PyObject*>(loop)));
    h->callback = Py_NewRef(callback);
    h->args = Py_NewRef(args);
    h->context = ctx;
    h->source_traceback = nullptr;
    h->repr = nullptr;
    h->weakreflist = nullptr;
    h->when = when;
    h->cancelled = false;
    h->is_timer = timer;
    h->scheduled = false;
    if (loop->core->get_debug()) {
        // Python's Handle: format_helpers.extract_stack(sys._getframe(1)).
        h->source_traceback = PyObject_CallNoArgs(refs.extract_stack);
        if (!h->source_traceback) {
            PyObject_GC_Track(h);
            Py_DECREF(h);
            return nullptr;
        }
    }
    PyObject_GC_Track(h);
    return h;
}

PyObject* queued_handle(detail::ReadyItem* item) noexcept {
    return item->ops == &handle_ops ? reinterpret_cast<PyObject*>(owner(item)) : nullptr;
}

void schedule(LoopObject* loop, HandleObject* h) {
    Py_INCREF(reinterpret_cast<PyObject*>(h));
    detail::LoopAccess::schedule_soon(*loop->core, &h->node());
}

void schedule_timer(LoopObject* loop, HandleObject* h) {
    h->scheduled = true;
    detail::LoopAccess::add_timer(*loop->core, &h->node(), h->when);
}

[[noreturn]] void leave_loop(LoopObject* loop) {
    Py_XSETREF(loop->exit_exception, fetch_exception());
    throw LeaveLoop{};
}

void report_error(LoopObject* loop, PyObject* message, HandleObject* h) {
    if (is_base_exit()) leave_loop(loop);
    Ref exc = Ref::steal(fetch_exception());
    Ref context = Ref::steal(PyDict_New());
    bool ok = context && PyDict_SetItem(context.get(), refs.str_message, message) == 0 &&
              PyDict_SetItem(context.get(), refs.str_exception, exc ? exc.get() : Py_None) == 0;
    if (ok && h) ok = PyDict_SetItem(context.get(), refs.str_handle, reinterpret_cast<PyObject*>(h)) == 0;
    if (ok && h && h->source_traceback)
        ok = PyDict_SetItem(context.get(), refs.str_source_traceback, h->source_traceback) == 0;
    if (ok) {
        Ref r = Ref::steal(PyObject_CallMethodOneArg(reinterpret_cast<PyObject*>(loop), refs.str_call_exception_handler,
                                                     context.get()));
        if (r) return;
        if (is_base_exit()) leave_loop(loop);
    }
    // The handler itself failed (it logs its own errors, so this is rare: MemoryError...).
    PyErr_WriteUnraisable(reinterpret_cast<PyObject*>(loop));
}

void run_handle(HandleObject* h) {
    // Held for the call: the callback may cancel its own handle, which lets go of them.
    Ref callback = Ref::borrow(h->callback);
    Ref args = Ref::borrow(h->args);
    if (!callback) return;
    PyObject* context = h->context;
    PyObject* result = nullptr;
    if (PyContext_Enter(context) == 0) {
        auto* tuple = reinterpret_cast<PyTupleObject*>(args.get());
        result = PyObject_Vectorcall(callback.get(), tuple->ob_item, static_cast<size_t>(Py_SIZE(tuple)), nullptr);
        if (PyContext_Exit(context) < 0) Py_CLEAR(result);
    }
    if (result) [[likely]] {
        Py_DECREF(result);
        return;
    }
    if (is_base_exit()) leave_loop(h->loop);
    // Python's message: f'Exception in callback {_format_callback_source(callback, args)}'.
    PyObject* raised = fetch_exception();
    Ref source = Ref::steal(format_callback(h->loop, callback.get(), args.get()));
    Ref message = source ? Ref::steal(PyUnicode_FromFormat("Exception in callback %U", source.get())) : Ref();
    if (!message) {
        PyErr_Clear();
        message = Ref::steal(PyUnicode_FromString("Exception in callback"));
    }
    restore_exception(raised);
    report_error(h->loop, message.get(), h);
}

}  // namespace asyncio::python
