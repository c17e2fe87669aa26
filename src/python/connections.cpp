// src/python/connections.cpp - create_connection, create_unix_connection,
// connect_accepted_socket and create_server/create_unix_server on the C++ loop: the Python
// half (python/asyncio_cpp/_loop.py) checks the arguments with Python's messages and calls
// these with plain values; they return futures of (transport, protocol) or of a ServerHandle
// (the native side of asyncio_cpp.Server).
#include "python/connections.hpp"

#include "python/future_bridge.hpp"
#include "python/loop_object.hpp"
#include "python/protocol_bridge.hpp"
#include "python/transport_object.hpp"

#include <asyncio/base_events.hpp>

#include <memory>
#include <string>
#include <vector>

namespace asyncio::python {

namespace {

PyTypeObject* ServerHandleType = nullptr;

struct ServerHandle {
    PyObject ob_base;  // PyObject_HEAD
    Server* server;    // owned
    LoopObject* loop;  // strong
};

ServerHandle* as_server(PyObject* o) noexcept { return reinterpret_cast<ServerHandle*>(o); }

void server_dealloc(PyObject* o) {
    ServerHandle* self = as_server(o);
    PyTypeObject* type = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    delete self->server;
    Py_CLEAR(self->loop);
    type->tp_free(o);
    Py_DECREF(type);
}

int server_traverse(PyObject* o, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(o));
    Py_VISIT(reinterpret_cast<PyObject*>(as_server(o)->loop));
    return 0;
}

PyObject* new_server_handle(LoopObject* loop, Server server) {
    ServerHandle* self = PyObject_GC_New(ServerHandle, ServerHandleType);
    if (!self) return nullptr;
    self->server = nullptr;
    self->loop = reinterpret_cast<LoopObject*>(Py_NewRef(reinterpret_cast<PyObject*>(loop)));
    PyObject_GC_Track(self);
    try {
        self->server = new Server(std::move(server));
    } catch (...) {
        Py_DECREF(self);
        return set_python_error();
    }
    return reinterpret_cast<PyObject*>(self);
}

template <class F>
PyObject* guarded(F&& f) {
    try {
        return f();
    } catch (...) {
        return set_python_error();
    }
}

PyObject* server_close(PyObject* o, PyObject*) {
    return guarded([&] {
        as_server(o)->server->close();
        Py_RETURN_NONE;
    });
}
PyObject* server_close_clients(PyObject* o, PyObject*) {
    return guarded([&] {
        as_server(o)->server->close_clients();
        Py_RETURN_NONE;
    });
}
PyObject* server_abort_clients(PyObject* o, PyObject*) {
    return guarded([&] {
        as_server(o)->server->abort_clients();
        Py_RETURN_NONE;
    });
}
PyObject* server_is_serving(PyObject* o, PyObject*) { return PyBool_FromLong(as_server(o)->server->is_serving()); }
PyObject* server_fds(PyObject* o, PyObject*) {
    return guarded([&]() -> PyObject* {
        std::vector<TransportSocket> socks = as_server(o)->server->sockets();
        Ref list = Ref::steal(PyList_New(static_cast<Py_ssize_t>(socks.size())));
        if (!list) return nullptr;
        for (std::size_t i = 0; i < socks.size(); ++i) {
            PyObject* fd = PyLong_FromLong(socks[i].fileno());
            if (!fd) return nullptr;
            PyList_SET_ITEM(list.get(), static_cast<Py_ssize_t>(i), fd);
        }
        return list.release();
    });
}
PyObject* server_start_serving(PyObject* o, PyObject*) {
    ServerHandle* self = as_server(o);
    return guarded(
        [&] { return run_as_future(self->loop, self->server->start_serving(), [](const auto&) { Py_RETURN_NONE; }); });
}
PyObject* server_serve_forever(PyObject* o, PyObject*) {
    ServerHandle* self = as_server(o);
    return guarded(
        [&] { return run_as_future(self->loop, self->server->serve_forever(), [](const auto&) { Py_RETURN_NONE; }); });
}
PyObject* server_wait_closed(PyObject* o, PyObject*) {
    // Python's Server.wait_closed(): a waiter future woken at the moment the server is closed
    // and drained (the same iteration as the stock loop's, with no C++ task in between).
    ServerHandle* self = as_server(o);
    Ref future = Ref::steal(bridge::new_future(self->loop));
    if (!future) return nullptr;
    return guarded([&] {
        self->server->call_when_closed([f = future] { bridge::settle(f.get(), Py_NewRef(Py_None)); });
        return future.release();
    });
}

PyMethodDef server_methods[] = {
    {"close", server_close, METH_NOARGS, nullptr},
    {"close_clients", server_close_clients, METH_NOARGS, nullptr},
    {"abort_clients", server_abort_clients, METH_NOARGS, nullptr},
    {"is_serving", server_is_serving, METH_NOARGS, nullptr},
    {"fds", server_fds, METH_NOARGS, "The listening sockets' fds."},
    {"start_serving", server_start_serving, METH_NOARGS, "A future, done once serving."},
    {"serve_forever", server_serve_forever, METH_NOARGS, "A future: cancel it to close the server."},
    {"wait_closed", server_wait_closed, METH_NOARGS, "A future, done once closed with no connection left."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot server_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(server_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(server_traverse)},
    {Py_tp_methods, server_methods},
    {0, nullptr},
};

PyType_Spec server_spec = {
    "asyncio_cpp._core.ServerHandle",
    sizeof(ServerHandle),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    server_slots,
};

LoopObject* open_loop(PyObject* o) {
    auto* loop = reinterpret_cast<LoopObject*>(o);
    return check_closed(loop) < 0 ? nullptr : loop;
}

/// What keeps a call's strings alive until its coroutine has copied them.
struct Strings {
    std::string host, local_host, path;
    std::vector<std::string> hosts;
};

auto connection_result(LoopObject* loop, std::shared_ptr<Strings> keep) {
    return [loop, keep = std::move(keep)](const detail::MadeConnection& made) { return connection_tuple(loop, made); };
}

int as_string(PyObject* o, std::string& out) {
    if (o == Py_None) return 0;
    Py_ssize_t n;
    const char* s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) return -1;
    out.assign(s, static_cast<std::size_t>(n));
    return 0;
}

}  // namespace

int init_connection_types(PyObject*) noexcept {
    ServerHandleType = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&server_spec));
    return ServerHandleType ? bridge::init_types() : -1;
}

PyObject* loop_create_connection(PyObject* o, PyObject* args) {
    // (factory, host, port, family, proto, flags, local_host, local_port,
    //  happy_eyeballs_delay, interleave, all_errors)
    PyObject *factory, *host, *local_host;
    int port, family, proto, flags, local_port, interleave, all_errors;
    double delay;
    if (!PyArg_ParseTuple(args, "OOiiiiOidip:_create_connection", &factory, &host, &port, &family, &proto, &flags,
                          &local_host, &local_port, &delay, &interleave, &all_errors))
        return nullptr;
    LoopObject* loop = open_loop(o);
    if (!loop) return nullptr;
    auto keep = std::make_shared<Strings>();
    if (as_string(host, keep->host) < 0 || as_string(local_host, keep->local_host) < 0) return nullptr;
    ConnectionOptions opts;
    opts.family = family;
    opts.proto = proto;
    opts.flags = flags;
    opts.local_host = keep->local_host;
    opts.local_port = local_port;
    opts.happy_eyeballs_delay = delay;
    opts.interleave = interleave;
    opts.all_errors = all_errors != 0;
    return guarded([&] {
        return run_as_future(loop,
                             detail::ConnectionAccess::create_connection(
                                 *loop->core, python_protocol_factory(loop, factory), keep->host, port, opts),
                             connection_result(loop, keep));
    });
}

PyObject* loop_create_unix_connection(PyObject* o, PyObject* args) {
    PyObject *factory, *path;
    if (!PyArg_ParseTuple(args, "OO:_create_unix_connection", &factory, &path)) return nullptr;
    LoopObject* loop = open_loop(o);
    if (!loop) return nullptr;
    auto keep = std::make_shared<Strings>();
    if (as_string(path, keep->path) < 0) return nullptr;
    return guarded([&] {
        return run_as_future(loop,
                             detail::ConnectionAccess::create_unix_connection(
                                 *loop->core, python_protocol_factory(loop, factory), keep->path, ConnectionOptions{}),
                             connection_result(loop, keep));
    });
}

PyObject* loop_connect_fd(PyObject* o, PyObject* args) {
    // (factory, fd, kind, sock): kind 0 create_connection(sock=), 1 create_unix_connection(sock=),
    // 2 connect_accepted_socket. The fd (a duplicate of sock's) is the transport's from now on
    // (closed on failure); `sock` becomes the 'socket' extra, closed with the connection.
    PyObject *factory, *sock;
    int fd, kind;
    if (!PyArg_ParseTuple(args, "OiiO:_connect_fd", &factory, &fd, &kind, &sock)) return nullptr;
    LoopObject* loop = open_loop(o);
    if (!loop) return nullptr;
    return guarded([&] {
        Socket owned = Socket::adopt(fd);
        detail::ProtocolFactory f = python_protocol_factory(loop, factory, sock);
        Coro<detail::MadeConnection> made =
            kind == 0 ? detail::ConnectionAccess::connect_socket(*loop->core, std::move(f), std::move(owned), {})
            : kind == 1
                ? detail::ConnectionAccess::connect_unix_socket(*loop->core, std::move(f), std::move(owned), {})
                : detail::ConnectionAccess::connect_accepted_socket(*loop->core, std::move(f), std::move(owned), {});
        return run_as_future(loop, std::move(made), connection_result(loop, nullptr));
    });
}

PyObject* loop_create_server(PyObject* o, PyObject* args) {
    // (factory, hosts: list of str (empty: every interface), port, family, flags, backlog,
    //  reuse_address, reuse_port, keep_alive, start_serving)
    PyObject *factory, *hosts;
    int port, family, flags, backlog, reuse_address, reuse_port, keep_alive, start_serving;
    if (!PyArg_ParseTuple(args, "OO!iiiipppp:_create_server", &factory, &PyList_Type, &hosts, &port, &family, &flags,
                          &backlog, &reuse_address, &reuse_port, &keep_alive, &start_serving))
        return nullptr;
    LoopObject* loop = open_loop(o);
    if (!loop) return nullptr;
    auto keep = std::make_shared<Strings>();
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(hosts); ++i) {
        std::string h;
        if (as_string(PyList_GET_ITEM(hosts, i), h) < 0) return nullptr;
        keep->hosts.push_back(std::move(h));
    }
    if (keep->hosts.empty()) keep->hosts.emplace_back();
    ServerOptions opts;
    opts.family = family;
    opts.flags = flags;
    opts.backlog = backlog;
    opts.reuse_address = reuse_address != 0;
    opts.reuse_port = reuse_port != 0;
    opts.keep_alive = keep_alive != 0;
    opts.start_serving = start_serving != 0;
    return guarded([&] {
        return run_as_future(loop,
                             detail::ConnectionAccess::create_server(
                                 *loop->core, python_protocol_factory(loop, factory), keep->hosts, port, opts),
                             [loop, keep](Server& server) { return new_server_handle(loop, std::move(server)); });
    });
}

PyObject* loop_serve_fd(PyObject* o, PyObject* args) {
    // (factory, fd, unix, backlog, keep_alive, start_serving, cleanup_socket): create_server(sock=)
    // and create_unix_server(sock=); the server owns the fd from now on.
    PyObject* factory;
    int fd, is_unix, backlog, keep_alive, start_serving, cleanup_socket;
    if (!PyArg_ParseTuple(args, "Oipippp:_serve_fd", &factory, &fd, &is_unix, &backlog, &keep_alive, &start_serving,
                          &cleanup_socket))
        return nullptr;
    LoopObject* loop = open_loop(o);
    if (!loop) return nullptr;
    ServerOptions opts;
    opts.backlog = backlog;
    opts.keep_alive = keep_alive != 0;
    opts.start_serving = start_serving != 0;
    opts.cleanup_socket = cleanup_socket != 0;
    return guarded([&] {
        Socket sock = Socket::adopt(fd);
        detail::ProtocolFactory f = python_protocol_factory(loop, factory);
        Coro<Server> made =
            is_unix ? detail::ConnectionAccess::serve_unix_socket(*loop->core, std::move(f), std::move(sock), opts)
                    : detail::ConnectionAccess::serve_socket(*loop->core, std::move(f), std::move(sock), opts);
        return run_as_future(loop, std::move(made),
                             [loop](Server& server) { return new_server_handle(loop, std::move(server)); });
    });
}

PyObject* loop_create_unix_server(PyObject* o, PyObject* args) {
    PyObject *factory, *path;
    int backlog, start_serving, cleanup_socket;
    if (!PyArg_ParseTuple(args, "OOipp:_create_unix_server", &factory, &path, &backlog, &start_serving,
                          &cleanup_socket))
        return nullptr;
    LoopObject* loop = open_loop(o);
    if (!loop) return nullptr;
    auto keep = std::make_shared<Strings>();
    if (as_string(path, keep->path) < 0) return nullptr;
    ServerOptions opts;
    opts.backlog = backlog;
    opts.start_serving = start_serving != 0;
    opts.cleanup_socket = cleanup_socket != 0;
    return guarded([&] {
        return run_as_future(loop,
                             detail::ConnectionAccess::create_unix_server(
                                 *loop->core, python_protocol_factory(loop, factory), keep->path, opts),
                             [loop, keep](Server& server) { return new_server_handle(loop, std::move(server)); });
    });
}

PyObject* loop_sendfile(PyObject* o, PyObject* args) {
    // (transport, fd, offset, count (0: to the end), fallback): a future of the bytes sent.
    PyObject* transport;
    int fd, fallback;
    Py_ssize_t offset, count;
    if (!PyArg_ParseTuple(args, "Oinnp:_sendfile", &transport, &fd, &offset, &count, &fallback)) return nullptr;
    LoopObject* loop = open_loop(o);
    if (!loop) return nullptr;
    if (!PyObject_TypeCheck(transport, TransportType)) {
        PyErr_Format(PyExc_RuntimeError, "sendfile is not supported for transport %R", transport);
        return nullptr;
    }
    std::shared_ptr<Transport> t = *reinterpret_cast<TransportObject*>(transport)->transport;
    std::optional<std::size_t> n;
    if (count > 0) n = static_cast<std::size_t>(count);
    return guarded([&] {
        return run_as_future(loop,
                             loop->core->sendfile(std::move(t), fd, static_cast<std::size_t>(offset), n, fallback != 0),
                             [](std::size_t sent) { return PyLong_FromSize_t(sent); });
    });
}

}  // namespace asyncio::python
