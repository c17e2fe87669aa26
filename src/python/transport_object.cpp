// src/python/transport_object.cpp - asyncio_cpp.Transport (see transport_object.hpp).
#include "python/transport_object.hpp"

#include "python/loop_object.hpp"
#include "python/protocol_bridge.hpp"

#include <structmember.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>
#include <optional>
#include <string>

namespace asyncio::python {

PyTypeObject* TransportType = nullptr;

namespace {

TransportObject* as_transport(PyObject* o) noexcept { return reinterpret_cast<TransportObject*>(o); }
Transport& core(PyObject* o) noexcept { return **as_transport(o)->transport; }

int transport_traverse(PyObject* o, visitproc visit, void* arg) {
    TransportObject* self = as_transport(o);
    Py_VISIT(Py_TYPE(o));
    Py_VISIT(reinterpret_cast<PyObject*>(self->loop));
    Py_VISIT(self->protocol);
    Py_VISIT(self->socket);
    Py_VISIT(self->base_extra);
    return 0;
}

int transport_clear(PyObject* o) {
    TransportObject* self = as_transport(o);
    Py_CLEAR(self->base_extra);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->socket);
    return 0;
}

void transport_dealloc(PyObject* o) {
    TransportObject* self = as_transport(o);
    PyTypeObject* type = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    if (self->weakreflist) PyObject_ClearWeakRefs(o);
    transport_clear(o);
    delete self->transport;
    Py_CLEAR(self->loop);
    type->tp_free(o);
    Py_DECREF(type);
}

/// Runs `f` on the C++ transport, turning a C++ exception into the Python one.
template <class F>
PyObject* call(F&& f) {
    try {
        return f();
    } catch (...) {
        return set_python_error();
    }
}

PyObject* transport_write(PyObject* o, PyObject* data) {
    if (PyBytes_CheckExact(data)) [[likely]]
        return call([&] {
            core(o).write(std::string_view(PyBytes_AS_STRING(data), static_cast<std::size_t>(PyBytes_GET_SIZE(data))));
            Py_RETURN_NONE;
        });
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%s'", Py_TYPE(data)->tp_name);
        return nullptr;
    }
    PyObject* r = call([&] {
        core(o).write(std::string_view(static_cast<const char*>(view.buf), static_cast<std::size_t>(view.len)));
        Py_RETURN_NONE;
    });
    PyBuffer_Release(&view);
    return r;
}

PyObject* transport_writelines(PyObject* o, PyObject* list) {
    Ref it = Ref::steal(PyObject_GetIter(list));
    if (!it) return nullptr;
    while (Ref item = Ref::steal(PyIter_Next(it.get()))) {
        Ref r = Ref::steal(transport_write(o, item.get()));
        if (!r) return nullptr;
    }
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_NONE;
}

PyObject* transport_write_eof(PyObject* o, PyObject*) {
    return call([&] {
        core(o).write_eof();
        Py_RETURN_NONE;
    });
}
PyObject* transport_can_write_eof(PyObject* o, PyObject*) { return PyBool_FromLong(core(o).can_write_eof()); }
PyObject* transport_close(PyObject* o, PyObject*) {
    return call([&] {
        core(o).close();
        Py_RETURN_NONE;
    });
}
PyObject* transport_abort(PyObject* o, PyObject*) {
    return call([&] {
        core(o).abort();
        Py_RETURN_NONE;
    });
}
PyObject* transport_is_closing(PyObject* o, PyObject*) { return PyBool_FromLong(core(o).is_closing()); }
PyObject* transport_pause_reading(PyObject* o, PyObject*) {
    return call([&] {
        core(o).pause_reading();
        Py_RETURN_NONE;
    });
}
PyObject* transport_resume_reading(PyObject* o, PyObject*) {
    return call([&] {
        core(o).resume_reading();
        Py_RETURN_NONE;
    });
}
PyObject* transport_is_reading(PyObject* o, PyObject*) { return PyBool_FromLong(core(o).is_reading()); }

PyObject* transport_set_write_buffer_limits(PyObject* o, PyObject* args, PyObject* kwargs) {
    std::optional<std::size_t> h, l;
    if (parse_write_buffer_limits(args, kwargs, h, l) < 0) return nullptr;
    return call([&] {
        core(o).set_write_buffer_limits(h, l);
        Py_RETURN_NONE;
    });
}

PyObject* transport_get_write_buffer_limits(PyObject* o, PyObject*) {
    auto [low, high] = core(o).get_write_buffer_limits();
    return Py_BuildValue("(nn)", static_cast<Py_ssize_t>(low), static_cast<Py_ssize_t>(high));
}

PyObject* transport_get_write_buffer_size(PyObject* o, PyObject*) {
    return PyLong_FromSize_t(core(o).get_write_buffer_size());
}

PyObject* transport_get_extra_info(PyObject* o, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject* dflt = Py_None;
    if (kwnames) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
            if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), "default") != 0) {
                PyErr_Format(PyExc_TypeError, "get_extra_info() got an unexpected keyword argument '%U'",
                             PyTuple_GET_ITEM(kwnames, i));
                return nullptr;
            }
            dflt = args[nargs + i];
        }
    }
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info(name, default=None)");
        return nullptr;
    }
    if (nargs == 2) dflt = args[1];
    const char* name = PyUnicode_AsUTF8(args[0]);
    if (!name) return nullptr;
    try {
        std::any v = core(o).get_extra_info(name);
        if (const SockAddr* a = std::any_cast<SockAddr>(&v)) return address_to_python(*a);
        if (const TransportSocket* s = std::any_cast<TransportSocket>(&v))
            return cached_extra_socket(&as_transport(o)->socket, s->fileno());
    } catch (...) {
        return set_python_error();
    }
    return Py_NewRef(dflt);
}

PyObject* transport_get_protocol(PyObject* o, PyObject*) {
    TransportObject* self = as_transport(o);
    return Py_NewRef(self->protocol ? self->protocol : Py_None);
}

PyObject* transport_set_protocol(PyObject* o, PyObject* protocol) {
    TransportObject* self = as_transport(o);
    try {
        core(o).set_protocol(make_protocol_bridge(self->loop, protocol, self));
    } catch (...) {
        return set_python_error();
    }
    Py_XSETREF(self->protocol, Py_NewRef(protocol));
    Py_RETURN_NONE;
}

PyObject* transport_repr(PyObject* o) {
    TransportObject* self = as_transport(o);
    const char* state = core(o).is_closing() ? "closing" : "open";
    return PyUnicode_FromFormat("<asyncio_cpp.Transport %s protocol=%R>", state,
                                self->protocol ? self->protocol : Py_None);
}

PyMethodDef transport_methods[] = {
    {"write", transport_write, METH_O, "Write bytes (buffered when the socket does not take them all)."},
    {"writelines", transport_writelines, METH_O, "Write each item of an iterable of bytes."},
    {"write_eof", transport_write_eof, METH_NOARGS, "Close the write end once the buffer is sent."},
    {"can_write_eof", transport_can_write_eof, METH_NOARGS, "True: sockets can half-close."},
    {"close", transport_close, METH_NOARGS, "Close once the buffer is sent; connection_lost(None) follows."},
    {"abort", transport_abort, METH_NOARGS, "Close now, dropping what is buffered."},
    {"is_closing", transport_is_closing, METH_NOARGS,
     "Whether close() or abort() was called (or the connection lost)."},
    {"pause_reading", transport_pause_reading, METH_NOARGS, "Stop calling data_received until resume_reading()."},
    {"resume_reading", transport_resume_reading, METH_NOARGS, "Start calling data_received again."},
    {"is_reading", transport_is_reading, METH_NOARGS, "Whether the transport is receiving."},
    {"set_write_buffer_limits", method(transport_set_write_buffer_limits), METH_VARARGS | METH_KEYWORDS,
     "set_write_buffer_limits(high=None, low=None): flow control's water marks."},
    {"get_write_buffer_limits", transport_get_write_buffer_limits, METH_NOARGS, "(low, high)"},
    {"get_write_buffer_size", transport_get_write_buffer_size, METH_NOARGS, "Bytes buffered, not yet sent."},
    {"get_extra_info", method(transport_get_extra_info), METH_FASTCALL | METH_KEYWORDS,
     "get_extra_info(name, default=None): 'peername', 'sockname', 'socket'."},
    {"get_protocol", transport_get_protocol, METH_NOARGS, "The protocol."},
    {"set_protocol", transport_set_protocol, METH_O, "Switch to another protocol."},
    {nullptr, nullptr, 0, nullptr},
};

PyMemberDef transport_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TransportObject, weakreflist), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot transport_slots[] = {
    {Py_tp_doc, const_cast<char*>("A stream transport (asyncio.Transport's interface) on asyncio-cpp's core.")},
    {Py_tp_dealloc, reinterpret_cast<void*>(transport_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(transport_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(transport_clear)},
    {Py_tp_repr, reinterpret_cast<void*>(transport_repr)},
    {Py_tp_methods, transport_methods},
    {Py_tp_members, transport_members},
    {0, nullptr},
};

PyType_Spec transport_spec = {
    "asyncio_cpp.Transport",
    sizeof(TransportObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    transport_slots,
};

}  // namespace

PyObject* asyncio_transport_base(const char* name, Py_ssize_t expected_basicsize) {
    Ref asyncio = Ref::steal(PyImport_ImportModule("asyncio"));
    Ref base = asyncio ? Ref::steal(PyObject_GetAttrString(asyncio.get(), name)) : Ref();
    if (!base) return nullptr;
    if (!PyType_Check(base.get()) || reinterpret_cast<PyTypeObject*>(base.get())->tp_basicsize != expected_basicsize)
        return Py_NewRef(reinterpret_cast<PyObject*>(&PyBaseObject_Type));  // another layout: no base
    return base.release();
}

int init_transport_type(PyObject* module) noexcept {
    Ref base = Ref::steal(asyncio_transport_base("Transport", offsetof(TransportObject, transport)));
    if (!base) return -1;
    TransportType = reinterpret_cast<PyTypeObject*>(PyType_FromSpecWithBases(&transport_spec, base.get()));
    if (!TransportType) return -1;
    return PyModule_AddObjectRef(module, "Transport", reinterpret_cast<PyObject*>(TransportType));
}

TransportObject* new_transport(LoopObject* loop, std::shared_ptr<Transport> transport, PyObject* protocol) {
    TransportObject* self = PyObject_GC_New(TransportObject, TransportType);
    if (!self) return nullptr;
    self->base_extra = nullptr;
    self->transport = nullptr;
    self->loop = reinterpret_cast<LoopObject*>(Py_NewRef(reinterpret_cast<PyObject*>(loop)));
    self->protocol = Py_XNewRef(protocol);
    self->socket = nullptr;
    self->weakreflist = nullptr;
    try {
        self->transport = new std::shared_ptr<Transport>(std::move(transport));
    } catch (...) {
        PyObject_GC_Track(self);
        Py_DECREF(self);
        set_python_error();
        return nullptr;
    }
    PyObject_GC_Track(self);
    return self;
}

int parse_write_buffer_limits(PyObject* args, PyObject* kwargs, std::optional<std::size_t>& high,
                              std::optional<std::size_t>& low) {
    static const char* names[] = {"high", "low", nullptr};
    PyObject* values[2] = {Py_None, Py_None};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO:set_write_buffer_limits", const_cast<char**>(names), &values[0],
                                     &values[1]))
        return -1;
    std::optional<std::size_t>* out[2] = {&high, &low};
    for (int i = 0; i < 2; ++i) {
        if (values[i] == Py_None) continue;
        Py_ssize_t n = PyLong_AsSsize_t(values[i]);
        if (n == -1 && PyErr_Occurred()) return -1;
        if (n < 0) {
            PyErr_Format(PyExc_ValueError, "%s must be >= 0, got %zd", names[i], n);
            return -1;
        }
        *out[i] = static_cast<std::size_t>(n);
    }
    return 0;
}

PyObject* cached_extra_socket(PyObject** slot, int fd) {
    if (*slot) return Py_NewRef(*slot);
    Ref module = Ref::steal(PyImport_ImportModule("asyncio_cpp._loop"));
    if (!module) return nullptr;
    Ref s = Ref::steal(PyObject_CallMethod(module.get(), "_transport_socket", "i", fd));
    if (!s) return nullptr;
    *slot = Py_NewRef(s.get());
    return s.release();
}

void release_extra_socket(PyObject* o) noexcept {
    TransportObject* self = as_transport(o);
    if (!self->socket) return;
    Ref sock = Ref::steal(PyObject_GetAttrString(self->socket, "_sock"));
    Ref r = sock ? Ref::steal(PyObject_CallMethod(sock.get(), "close", nullptr)) : Ref();
    if (!r) PyErr_WriteUnraisable(o);
}

PyObject* address_to_python(const SockAddr& address) {
    switch (address.family()) {
        case AF_INET:
            return Py_BuildValue("(si)", address.host().c_str(), address.port());
        case AF_INET6: {
            auto* in6 = reinterpret_cast<const sockaddr_in6*>(address.data());
            return Py_BuildValue("(siII)", address.host().c_str(), address.port(), ntohl(in6->sin6_flowinfo),
                                 in6->sin6_scope_id);
        }
        case AF_UNIX: {
            std::string path = address.host();
            if (!path.empty() && path[0] == '\0')  // abstract: Python gives bytes
                return PyBytes_FromStringAndSize(path.data(), static_cast<Py_ssize_t>(path.size()));
            return PyUnicode_DecodeFSDefaultAndSize(path.data(), static_cast<Py_ssize_t>(path.size()));
        }
        default:
            Py_RETURN_NONE;
    }
}

}  // namespace asyncio::python
