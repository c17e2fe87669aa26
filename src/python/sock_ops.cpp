// src/python/sock_ops.cpp - loop.sock_recv / sock_recv_into / sock_sendall natively, and the
// readiness wait the other sock_* methods are written on.
//
// As Python's selector loop: the system call is tried first; when it would block, a
// SockWait (a Python object: the future's done callback too) starts a poll operation on the
// backend, and each time the socket is ready tries again. The data is read only when the
// future is still pending - a readiness report, unlike a completed receive, can be dropped -
// so cancelling (wait_for's timeout...) never loses bytes.
#include "python/sock_ops.hpp"

#include "python/future_bridge.hpp"
#include "python/loop_object.hpp"

#include "backend/backend.hpp"
#include "backend/faults.hpp"
#include "loop/loop_impl.hpp"

#include <cerrno>
#include <new>

namespace asyncio::python {

namespace {

PyTypeObject* SockWaitType = nullptr;

struct SockWait {
    PyObject ob_base;  // PyObject_HEAD
    detail::IoOperation op;
    LoopObject* loop;  // strong
    PyObject* future;  // strong
    PyObject* sock;    // strong: the socket stays open while we wait on its fd
    PyObject* data;    // recv: the bytes object being filled (strong)
    Py_buffer view;    // recv_into / sendall: the caller's buffer
    bool has_view;
    bool armed;  // the poll operation is in flight (and holds a reference to this object)
    enum class Kind : unsigned char { recv, recv_into, sendall, wait } kind;
    Py_ssize_t length;  // recv: n; recv_into: nbytes; sendall: total
    Py_ssize_t offset;  // sendall: sent so far
    SockWait* prev;     // the loop's list of armed waits
    SockWait* next;
};

void link(SockWait* w) noexcept {
    auto*& head = reinterpret_cast<SockWait*&>(w->loop->sock_waits);
    w->prev = nullptr;
    w->next = head;
    if (head) head->prev = w;
    head = w;
}

void unlink(SockWait* w) noexcept {
    auto*& head = reinterpret_cast<SockWait*&>(w->loop->sock_waits);
    if (w->prev)
        w->prev->next = w->next;
    else if (head == w)
        head = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = nullptr;
}

detail::Backend& backend_of(SockWait* w) { return detail::IoAccess::backend(*w->loop->core); }

bool would_block(int e) noexcept { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

PyObject* os_error(int e) {
    errno = e;
    return PyErr_SetFromErrno(PyExc_OSError);  // OSError picks the subclass (ConnectionResetError...)
}

int socket_fd(PyObject* sock) {
    int fd = PyObject_AsFileDescriptor(sock);
    return fd;
}

// ---- the object --------------------------------------------------------------------------------

int sockwait_traverse(PyObject* o, visitproc visit, void* arg) {
    auto* w = reinterpret_cast<SockWait*>(o);
    Py_VISIT(Py_TYPE(o));
    Py_VISIT(reinterpret_cast<PyObject*>(w->loop));
    Py_VISIT(w->future);
    Py_VISIT(w->sock);
    Py_VISIT(w->data);
    return 0;
}

int sockwait_clear(PyObject* o) {
    auto* w = reinterpret_cast<SockWait*>(o);
    Py_CLEAR(w->future);
    Py_CLEAR(w->sock);
    Py_CLEAR(w->data);
    return 0;
}

void sockwait_dealloc(PyObject* o) {
    auto* w = reinterpret_cast<SockWait*>(o);
    PyTypeObject* type = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    // Never armed here: an armed wait is held by the backend.
    if (w->has_view) PyBuffer_Release(&w->view);
    sockwait_clear(o);
    Py_CLEAR(w->loop);
    w->op.~IoOperation();
    type->tp_free(o);
    Py_DECREF(type);
}

SockWait* new_wait(LoopObject* loop, PyObject* sock, SockWait::Kind kind) {
    SockWait* w = PyObject_GC_New(SockWait, SockWaitType);
    if (!w) return nullptr;
    new (&w->op) detail::IoOperation();
    w->loop = reinterpret_cast<LoopObject*>(Py_NewRef(reinterpret_cast<PyObject*>(loop)));
    w->future = nullptr;
    w->sock = Py_NewRef(sock);
    w->data = nullptr;
    w->has_view = false;
    w->armed = false;
    w->kind = kind;
    w->length = 0;
    w->offset = 0;
    w->prev = w->next = nullptr;
    PyObject_GC_Track(w);
    return w;
}

void on_ready(detail::IoOperation* op);

/// Starts (again) the poll operation; the backend's reference is taken here.
void arm(SockWait* w, int fd) {
    detail::Backend& backend = backend_of(w);
    const bool writable = w->kind == SockWait::Kind::sendall || (w->kind == SockWait::Kind::wait && w->length);
    w->op.kind = writable ? detail::IoOperation::Kind::poll_writable : detail::IoOperation::Kind::poll_readable;
    w->op.reg = backend.registration(fd);
    w->op.user = w;
    w->op.complete = on_ready;
    backend.start(&w->op);
    Py_INCREF(reinterpret_cast<PyObject*>(w));
    w->armed = true;
    link(w);
}

/// One attempt of the wait's system call. Returns the result (a new reference) when done,
/// nullptr with an exception set on error, or nullptr without one when it would block.
PyObject* attempt(SockWait* w, int fd) {
    switch (w->kind) {
        case SockWait::Kind::recv: {
            ssize_t r = detail::sys::recv(fd, PyBytes_AS_STRING(w->data), static_cast<std::size_t>(w->length), 0);
            if (r < 0) return would_block(errno) ? nullptr : os_error(errno);
            if (r != w->length && _PyBytes_Resize(&w->data, r) < 0) return nullptr;
            return Py_NewRef(w->data);
        }
        case SockWait::Kind::recv_into: {
            ssize_t r = detail::sys::recv(fd, w->view.buf, static_cast<std::size_t>(w->length), 0);
            if (r < 0) return would_block(errno) ? nullptr : os_error(errno);
            return PyLong_FromSsize_t(r);
        }
        case SockWait::Kind::sendall: {
            while (w->offset < w->length) {
                ssize_t r = detail::sys::send(fd, static_cast<char*>(w->view.buf) + w->offset,
                                              static_cast<std::size_t>(w->length - w->offset), MSG_NOSIGNAL);
                if (r < 0) return would_block(errno) ? nullptr : os_error(errno);
                w->offset += r;
            }
            Py_RETURN_NONE;
        }
        case SockWait::Kind::wait:
            Py_RETURN_NONE;
    }
    Py_RETURN_NONE;
}

void on_ready(detail::IoOperation* op) {
    auto* w = static_cast<SockWait*>(op->user);
    Ref held = Ref::steal(reinterpret_cast<PyObject*>(w));  // the backend's reference
    w->armed = false;
    unlink(w);
    const int fd = op->reg->fd;
    backend_of(w).release_interest(op->reg);  // the socket may be closed before the next call
    if (bridge::is_done(w->future)) return;   // cancelled: nothing was read
    if (op->result < 0) {
        errno = static_cast<int>(-op->result);
        PyErr_SetFromErrno(PyExc_OSError);
        bridge::settle(w->future, nullptr);
        return;
    }
    PyObject* result = attempt(w, fd);
    if (result || PyErr_Occurred()) {
        bridge::settle(w->future, result);  // the result, or the error
        return;
    }
    try {
        arm(w, fd);
    } catch (...) {
        set_python_error();
        bridge::settle(w->future, nullptr);
    }
}

/// The future's done callback: a cancelled wait stops polling.
PyObject* sockwait_call(PyObject* o, PyObject*, PyObject*) {
    auto* w = reinterpret_cast<SockWait*>(o);
    if (w->armed && !w->loop->core->is_closed() && backend_of(w).cancel(&w->op)) {
        backend_of(w).release_interest(w->op.reg);
        w->armed = false;
        unlink(w);
        Py_DECREF(o);  // the backend's reference
    }
    Py_RETURN_NONE;
}

PyType_Slot sockwait_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(sockwait_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(sockwait_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(sockwait_clear)},
    {Py_tp_call, reinterpret_cast<void*>(sockwait_call)},
    {0, nullptr},
};

PyType_Spec sockwait_spec = {
    "asyncio_cpp._core.SockWait",
    sizeof(SockWait),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    sockwait_slots,
};

/// Makes the future, arms the wait and hooks the cancellation; returns the future.
PyObject* wait_for_ready(SockWait* w, int fd) {
    w->future = bridge::new_future(w->loop);
    if (!w->future || bridge::add_done_callback(w->future, reinterpret_cast<PyObject*>(w)) < 0) return nullptr;
    try {
        arm(w, fd);
    } catch (...) {
        return set_python_error();
    }
    return Py_NewRef(w->future);
}

LoopObject* checked_loop(PyObject* o) {
    LoopObject* loop = reinterpret_cast<LoopObject*>(o);
    return check_closed(loop) < 0 ? nullptr : loop;
}

bool holds_input(LoopObject* loop, int fd) {
    // io_uring may hold bytes received for a cancelled operation: they come first.
    return detail::IoAccess::backend(*loop->core).registration(fd)->holds_input;
}

}  // namespace

void drop_sock_waits(LoopObject* loop) noexcept {
    while (auto* w = static_cast<SockWait*>(loop->sock_waits)) {
        detail::IoAccess::backend(*loop->core).cancel(&w->op);
        w->armed = false;
        unlink(w);
        Py_DECREF(reinterpret_cast<PyObject*>(w));  // the backend's reference
    }
}

int visit_sock_waits(LoopObject* loop, visitproc visit, void* arg) {
    for (auto* w = static_cast<SockWait*>(loop->sock_waits); w; w = w->next) Py_VISIT(reinterpret_cast<PyObject*>(w));
    return 0;
}

int init_sock_types(PyObject*) noexcept {
    SockWaitType = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&sockwait_spec));
    return SockWaitType ? 0 : -1;
}

namespace {

/// The common shape of the sock_* entry points: check the call (two arguments, an open loop,
/// a socket with an fd), make the wait of `kind`, let `prepare` fill in its buffer, then try
/// the call at once (receives only when the backend holds no earlier input) and, when it
/// would block, wait for readiness. `prepare` returns false with a Python error set.
template <class Prepare>
PyObject* sock_call(PyObject* o, PyObject* const* args, Py_ssize_t nargsf, const char* usage, SockWait::Kind kind,
                    Prepare prepare) {
    if (PyVectorcall_NARGS(nargsf) != 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return nullptr;
    }
    LoopObject* loop = checked_loop(o);
    if (!loop) return nullptr;
    int fd = socket_fd(args[0]);
    if (fd < 0) return nullptr;
    Ref w = Ref::steal(reinterpret_cast<PyObject*>(new_wait(loop, args[0], kind)));
    if (!w) return nullptr;
    SockWait* sw = reinterpret_cast<SockWait*>(w.get());
    if (!prepare(sw, args[1])) return nullptr;
    try {
        const bool receive = kind == SockWait::Kind::recv || kind == SockWait::Kind::recv_into;
        if (kind != SockWait::Kind::wait && !(receive && holds_input(loop, fd))) {
            if (PyObject* r = attempt(sw, fd)) return r;
            if (PyErr_Occurred()) return nullptr;
        }
        return wait_for_ready(sw, fd);
    } catch (...) {
        return set_python_error();
    }
}

}  // namespace

PyObject* loop_sock_recv(PyObject* o, PyObject* const* args, Py_ssize_t nargsf) {
    return sock_call(o, args, nargsf, "sock_recv() takes 2 arguments (sock, n)", SockWait::Kind::recv,
                     [](SockWait* w, PyObject* size) {
                         Py_ssize_t n = PyLong_AsSsize_t(size);
                         if (n == -1 && PyErr_Occurred()) return false;
                         if (n < 0) {
                             PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
                             return false;
                         }
                         w->length = n;
                         w->data = PyBytes_FromStringAndSize(nullptr, n);
                         return w->data != nullptr;
                     });
}

PyObject* loop_sock_recv_into(PyObject* o, PyObject* const* args, Py_ssize_t nargsf) {
    return sock_call(o, args, nargsf, "sock_recv_into() takes 2 arguments (sock, buf)", SockWait::Kind::recv_into,
                     [](SockWait* w, PyObject* buffer) {
                         if (PyObject_GetBuffer(buffer, &w->view, PyBUF_WRITABLE) < 0) {
                             // socket.recv_into's own error, which the stock loop raises.
                             PyErr_Format(PyExc_TypeError,
                                          "recv_into() argument 'buffer' must be read-write bytes-like object, not %s",
                                          Py_TYPE(buffer)->tp_name);
                             return false;
                         }
                         w->has_view = true;
                         w->length = w->view.len;
                         return true;
                     });
}

PyObject* loop_sock_sendall(PyObject* o, PyObject* const* args, Py_ssize_t nargsf) {
    return sock_call(o, args, nargsf, "sock_sendall() takes 2 arguments (sock, data)", SockWait::Kind::sendall,
                     [](SockWait* w, PyObject* data) {
                         if (PyObject_GetBuffer(data, &w->view, PyBUF_SIMPLE) < 0) return false;
                         w->has_view = true;
                         w->length = w->view.len;
                         return true;
                     });
}

PyObject* loop_sock_wait(PyObject* o, PyObject* const* args, Py_ssize_t nargsf) {
    return sock_call(o, args, nargsf, "_sock_wait() takes 2 arguments (sock, writable)", SockWait::Kind::wait,
                     [](SockWait* w, PyObject* writable) {
                         int on = PyObject_IsTrue(writable);
                         w->length = on;
                         return on >= 0;
                     });
}

}  // namespace asyncio::python
