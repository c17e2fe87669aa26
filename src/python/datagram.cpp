// src/python/datagram.cpp - loop.create_datagram_endpoint on the C++ loop:
// asyncio_cpp.DatagramTransport (asyncio.DatagramTransport's interface) over the C++ datagram
// transport, and a C++ DatagramProtocol forwarding to the Python protocol
// (datagram_received(data, addr), error_received(exc), connection_made/lost, flow control).
#include "python/datagram.hpp"

#include "python/future_bridge.hpp"
#include "python/loop_object.hpp"
#include "python/transport_object.hpp"

#include <asyncio/base_events.hpp>

#include <structmember.h>

#include <memory>
#include <optional>
#include <string>

namespace asyncio::python {

namespace {

PyTypeObject* DatagramTransportType = nullptr;

struct DatagramTransportObject {
    PyObject ob_base;      // PyObject_HEAD
    PyObject* base_extra;  // asyncio.BaseTransport's `_extra` slot (derives from asyncio.DatagramTransport)
    std::shared_ptr<DatagramTransport>* transport;  // owned
    LoopObject* loop;                               // strong
    PyObject* protocol;                             // strong
    PyObject* socket;                               // get_extra_info('socket'), made on first use
    PyObject* weakreflist;
};

DatagramTransportObject* as_dt(PyObject* o) noexcept { return reinterpret_cast<DatagramTransportObject*>(o); }
DatagramTransport& core(PyObject* o) noexcept { return **as_dt(o)->transport; }

template <class F>
PyObject* guarded(F&& f) {
    try {
        return f();
    } catch (...) {
        return set_python_error();
    }
}

/// A Python address for sendto(): (host, port[, flowinfo, scope_id]) with a numeric host,
/// or a Unix path (str or bytes).
int python_to_address(PyObject* addr, SockAddr& out) {
    try {
        if (PyUnicode_Check(addr) || PyBytes_Check(addr)) {
            Ref bytes;
            if (PyUnicode_Check(addr)) {
                bytes = Ref::steal(PyUnicode_EncodeFSDefault(addr));
                if (!bytes) return -1;
            } else {
                bytes = Ref::borrow(addr);
            }
            out = SockAddr::unix_path(std::string_view(PyBytes_AS_STRING(bytes.get()),
                                                       static_cast<std::size_t>(PyBytes_GET_SIZE(bytes.get()))));
            return 0;
        }
        PyObject* host;
        int port;
        if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2) {
            PyErr_Format(PyExc_TypeError, "an address tuple (host, port) was expected, got %R", addr);
            return -1;
        }
        if (!PyArg_ParseTuple(Ref::steal(PyTuple_GetSlice(addr, 0, 2)).get(), "Oi", &host, &port)) return -1;
        const char* h = PyUnicode_AsUTF8(host);
        if (!h) return -1;
        out = SockAddr(h, port);
        return 0;
    } catch (...) {
        set_python_error();
        return -1;
    }
}

int dt_traverse(PyObject* o, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(o));
    Py_VISIT(reinterpret_cast<PyObject*>(as_dt(o)->loop));
    Py_VISIT(as_dt(o)->protocol);
    Py_VISIT(as_dt(o)->socket);
    Py_VISIT(as_dt(o)->base_extra);
    return 0;
}

int dt_clear(PyObject* o) {
    Py_CLEAR(as_dt(o)->base_extra);
    Py_CLEAR(as_dt(o)->protocol);
    Py_CLEAR(as_dt(o)->socket);
    return 0;
}

void dt_dealloc(PyObject* o) {
    DatagramTransportObject* self = as_dt(o);
    PyTypeObject* type = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    if (self->weakreflist) PyObject_ClearWeakRefs(o);
    dt_clear(o);
    delete self->transport;
    Py_CLEAR(self->loop);
    type->tp_free(o);
    Py_DECREF(type);
}

PyObject* dt_sendto(PyObject* o, PyObject* const* args, Py_ssize_t nargsf) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "sendto(data, addr=None)");
        return nullptr;
    }
    std::optional<SockAddr> addr;
    if (nargs == 2 && args[1] != Py_None) {
        SockAddr a;
        if (python_to_address(args[1], a) < 0) return nullptr;
        addr = a;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%s'", Py_TYPE(args[0])->tp_name);
        return nullptr;
    }
    PyObject* r = guarded([&] {
        core(o).sendto(std::string_view(static_cast<const char*>(view.buf), static_cast<std::size_t>(view.len)), addr);
        Py_RETURN_NONE;
    });
    PyBuffer_Release(&view);
    return r;
}

PyObject* dt_close(PyObject* o, PyObject*) {
    return guarded([&] {
        core(o).close();
        Py_RETURN_NONE;
    });
}
PyObject* dt_abort(PyObject* o, PyObject*) {
    return guarded([&] {
        core(o).abort();
        Py_RETURN_NONE;
    });
}
PyObject* dt_is_closing(PyObject* o, PyObject*) { return PyBool_FromLong(core(o).is_closing()); }
PyObject* dt_get_write_buffer_size(PyObject* o, PyObject*) {
    return PyLong_FromSize_t(core(o).get_write_buffer_size());
}
PyObject* dt_get_write_buffer_limits(PyObject* o, PyObject*) {
    auto [low, high] = core(o).get_write_buffer_limits();
    return Py_BuildValue("(nn)", static_cast<Py_ssize_t>(low), static_cast<Py_ssize_t>(high));
}
PyObject* dt_set_write_buffer_limits(PyObject* o, PyObject* args, PyObject* kwargs) {
    std::optional<std::size_t> h, l;
    if (parse_write_buffer_limits(args, kwargs, h, l) < 0) return nullptr;
    return guarded([&] {
        core(o).set_write_buffer_limits(h, l);
        Py_RETURN_NONE;
    });
}

PyObject* dt_get_extra_info(PyObject* o, PyObject* const* args, Py_ssize_t nargsf) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info(name, default=None)");
        return nullptr;
    }
    const char* name = PyUnicode_AsUTF8(args[0]);
    if (!name) return nullptr;
    return guarded([&]() -> PyObject* {
        std::any v = core(o).get_extra_info(name);
        if (const SockAddr* a = std::any_cast<SockAddr>(&v)) return address_to_python(*a);
        if (const TransportSocket* s = std::any_cast<TransportSocket>(&v))
            return cached_extra_socket(&as_dt(o)->socket, s->fileno());
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    });
}

PyObject* dt_get_protocol(PyObject* o, PyObject*) {
    return Py_NewRef(as_dt(o)->protocol ? as_dt(o)->protocol : Py_None);
}

PyMethodDef dt_methods[] = {
    {"sendto", method(dt_sendto), METH_FASTCALL, "sendto(data, addr=None): send one datagram."},
    {"close", dt_close, METH_NOARGS, nullptr},
    {"abort", dt_abort, METH_NOARGS, nullptr},
    {"is_closing", dt_is_closing, METH_NOARGS, nullptr},
    {"get_write_buffer_size", dt_get_write_buffer_size, METH_NOARGS, nullptr},
    {"get_write_buffer_limits", dt_get_write_buffer_limits, METH_NOARGS, nullptr},
    {"set_write_buffer_limits", method(dt_set_write_buffer_limits), METH_VARARGS | METH_KEYWORDS, nullptr},
    {"get_extra_info", method(dt_get_extra_info), METH_FASTCALL, nullptr},
    {"get_protocol", dt_get_protocol, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyMemberDef dt_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(DatagramTransportObject, weakreflist), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot dt_slots[] = {
    {Py_tp_doc, const_cast<char*>("A datagram transport (asyncio.DatagramTransport's interface).")},
    {Py_tp_dealloc, reinterpret_cast<void*>(dt_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(dt_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(dt_clear)},
    {Py_tp_methods, dt_methods},
    {Py_tp_members, dt_members},
    {0, nullptr},
};

PyType_Spec dt_spec = {
    "asyncio_cpp.DatagramTransport",
    sizeof(DatagramTransportObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    dt_slots,
};

PyObject* new_datagram_transport(LoopObject* loop, std::shared_ptr<DatagramTransport> t, PyObject* protocol) {
    DatagramTransportObject* self = PyObject_GC_New(DatagramTransportObject, DatagramTransportType);
    if (!self) return nullptr;
    self->base_extra = nullptr;
    self->loop = reinterpret_cast<LoopObject*>(Py_NewRef(reinterpret_cast<PyObject*>(loop)));
    self->protocol = Py_XNewRef(protocol);
    self->socket = nullptr;
    self->weakreflist = nullptr;
    self->transport = new (std::nothrow) std::shared_ptr<DatagramTransport>(std::move(t));
    PyObject_GC_Track(self);
    if (!self->transport) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return reinterpret_cast<PyObject*>(self);
}

PyObject* str_datagram_received = nullptr;
PyObject* str_error_received = nullptr;

/// The C++ datagram protocol forwarding to a Python one.
class DatagramBridge final : public DatagramProtocol {
public:
    /// `sock`: the caller's socket object (sock=), or null: it becomes the 'socket' extra and
    /// is closed with the endpoint, as the stock loop's (the C++ transport runs on a duplicate).
    DatagramBridge(LoopObject* loop, PyObject* protocol, PyObject* sock)
        : loop_(loop),
          loop_ref_(Ref::borrow(reinterpret_cast<PyObject*>(loop))),
          protocol_(Ref::borrow(protocol)),
          sock_(Ref::borrow(sock)) {}
    PyObject* python_protocol() const noexcept { return protocol_.get(); }
    PyObject* python_transport() const noexcept { return transport_.get(); }

    void connection_made(std::shared_ptr<DatagramTransport> transport) override {
        transport_ = Ref::steal(new_datagram_transport(loop_, std::move(transport), protocol_.get()));
        if (!transport_) throw_python_error(loop_);
        if (sock_) {
            Ref module = Ref::steal(PyImport_ImportModule("asyncio_cpp._loop"));
            Ref wrapped =
                module ? Ref::steal(PyObject_CallMethod(module.get(), "_wrap_socket", "O", sock_.get())) : Ref();
            if (!wrapped) throw_python_error(loop_);
            reinterpret_cast<DatagramTransportObject*>(transport_.get())->socket = wrapped.release();
        }
        call("connection_made", transport_.get());
    }
    void datagram_received(std::string_view data, const SockAddr& addr) override {
        Ref bytes = Ref::steal(PyBytes_FromStringAndSize(data.data(), static_cast<Py_ssize_t>(data.size())));
        Ref address = Ref::steal(address_to_python(addr));
        if (!bytes || !address) throw_python_error(loop_);
        PyObject* args[4] = {nullptr, protocol_.get(), bytes.get(), address.get()};
        Ref r = Ref::steal(
            PyObject_VectorcallMethod(str_datagram_received, args + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
        if (!r) throw_python_error(loop_);
    }
    void error_received(std::exception_ptr exc) override { call("error_received", python_exception(exc).get()); }
    void connection_lost(std::exception_ptr exc) override {
        Ref e = exc ? python_exception(exc) : Ref::borrow(Py_None);
        try {
            call("connection_lost", e.get());
        } catch (...) {
            close_socket();
            throw;
        }
        close_socket();
    }
    void pause_writing() override { call("pause_writing", nullptr); }
    void resume_writing() override { call("resume_writing", nullptr); }

private:
    void close_socket() noexcept {
        if (!sock_) return;
        Ref r = Ref::steal(PyObject_CallMethod(sock_.get(), "close", nullptr));
        if (!r) PyErr_WriteUnraisable(sock_.get());
    }
    static Ref python_exception(const std::exception_ptr& exc) {
        try {
            std::rethrow_exception(exc);
        } catch (...) {
            set_python_error();
        }
        return Ref::steal(fetch_exception());
    }
    void call(const char* name, PyObject* arg) {
        Ref r = Ref::steal(arg ? PyObject_CallMethod(protocol_.get(), name, "O", arg)
                               : PyObject_CallMethod(protocol_.get(), name, nullptr));
        if (!r) throw_python_error(loop_);
    }
    LoopObject* loop_;
    Ref loop_ref_;
    Ref protocol_;
    Ref transport_;
    Ref sock_;
};

}  // namespace

int init_datagram_types(PyObject* module) noexcept {
    str_datagram_received = PyUnicode_InternFromString("datagram_received");
    str_error_received = PyUnicode_InternFromString("error_received");
    // As the stock loop's datagram transport, both an asyncio.Transport and an
    // asyncio.DatagramTransport (when their layout is the expected one).
    Ref transport = Ref::steal(asyncio_transport_base("Transport", offsetof(DatagramTransportObject, transport)));
    Ref datagram =
        Ref::steal(asyncio_transport_base("DatagramTransport", offsetof(DatagramTransportObject, transport)));
    if (!transport || !datagram) return -1;
    Ref bases = transport.get() == reinterpret_cast<PyObject*>(&PyBaseObject_Type) ||
                        datagram.get() == reinterpret_cast<PyObject*>(&PyBaseObject_Type)
                    ? Ref::steal(PyTuple_Pack(1, &PyBaseObject_Type))
                    : Ref::steal(PyTuple_Pack(2, transport.get(), datagram.get()));
    if (!bases) return -1;
    DatagramTransportType = reinterpret_cast<PyTypeObject*>(PyType_FromSpecWithBases(&dt_spec, bases.get()));
    if (!DatagramTransportType) return -1;
    return PyModule_AddObjectRef(module, "DatagramTransport", reinterpret_cast<PyObject*>(DatagramTransportType));
}

PyObject* loop_create_datagram_endpoint(PyObject* o, PyObject* args) {
    // (factory, fd or -1, local_host, local_port, remote_host, remote_port, family, proto, flags,
    //  reuse_port, allow_broadcast): with fd >= 0, the endpoint takes over that socket.
    PyObject *factory, *local_host, *remote_host, *sock = Py_None;
    int fd, local_port, remote_port, family, proto, flags, reuse_port, allow_broadcast;
    if (!PyArg_ParseTuple(args, "OiOiOiiiipp|O:_create_datagram_endpoint", &factory, &fd, &local_host, &local_port,
                          &remote_host, &remote_port, &family, &proto, &flags, &reuse_port, &allow_broadcast, &sock))
        return nullptr;
    auto* loop = reinterpret_cast<LoopObject*>(o);
    if (check_closed(loop) < 0) return nullptr;
    auto keep = std::make_shared<std::pair<std::string, std::string>>();
    for (auto [obj, out] : {std::pair{local_host, &keep->first}, std::pair{remote_host, &keep->second}}) {
        if (obj == Py_None) continue;
        Ref b = Ref::steal(PyUnicode_Check(obj) ? PyUnicode_EncodeFSDefault(obj) : Py_NewRef(obj));
        if (!b || !PyBytes_Check(b.get())) {
            if (b) PyErr_SetString(PyExc_TypeError, "an address host must be str or bytes");
            return nullptr;
        }
        out->assign(PyBytes_AS_STRING(b.get()), static_cast<std::size_t>(PyBytes_GET_SIZE(b.get())));
    }
    DatagramOptions opts;
    opts.local_host = keep->first;
    opts.local_port = local_port;
    opts.remote_host = keep->second;
    opts.remote_port = remote_port;
    opts.family = family;
    opts.proto = proto;
    opts.flags = flags;
    opts.reuse_port = reuse_port != 0;
    opts.allow_broadcast = allow_broadcast != 0;
    auto factory_ref = Ref::borrow(factory);
    detail::ProtocolFactory f = [loop, factory_ref, keep_loop = Ref::borrow(o),
                                 s = Ref::borrow(sock == Py_None ? nullptr : sock)]() -> std::shared_ptr<BaseProtocol> {
        Ref protocol = Ref::steal(PyObject_CallNoArgs(factory_ref.get()));
        if (!protocol) throw_python_error(loop);
        return std::make_shared<DatagramBridge>(loop, protocol.get(), s.get());
    };
    auto convert = [loop, keep](const detail::MadeEndpoint& made) -> PyObject* {
        auto* bridge = dynamic_cast<DatagramBridge*>(made.second.get());
        if (!bridge) {
            PyErr_SetString(PyExc_SystemError, "asyncio_cpp: an endpoint without a Python protocol");
            return nullptr;
        }
        Ref transport = Ref::borrow(bridge->python_transport());
        if (!transport) transport = Ref::steal(new_datagram_transport(loop, made.first, bridge->python_protocol()));
        if (!transport) return nullptr;
        return PyTuple_Pack(2, transport.get(), bridge->python_protocol());
    };
    return guarded([&] {
        Coro<detail::MadeEndpoint> made =
            fd >= 0 ? detail::ConnectionAccess::datagram_socket(*loop->core, std::move(f), Socket::adopt(fd), {})
                    : detail::ConnectionAccess::create_datagram_endpoint(*loop->core, std::move(f), opts);
        return run_as_future(loop, std::move(made), convert);
    });
}

}  // namespace asyncio::python
