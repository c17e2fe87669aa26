// src/python/protocol_bridge.cpp - C++ protocols that forward to Python ones.
#include "python/protocol_bridge.hpp"

#include "python/loop_object.hpp"
#include "python/transport_object.hpp"

#include "net/socket_transport.hpp"

#include <any>
#include <span>

namespace asyncio::python {

namespace {

PyObject* str_connection_made = nullptr;
PyObject* str_data_received = nullptr;
PyObject* str_eof_received = nullptr;
PyObject* str_connection_lost = nullptr;
PyObject* str_pause_writing = nullptr;
PyObject* str_resume_writing = nullptr;
PyObject* str_get_buffer = nullptr;
PyObject* str_buffer_updated = nullptr;
PyObject* buffered_protocol_type = nullptr;

bool init_names() {
    if (str_connection_made) return true;
    str_connection_made = PyUnicode_InternFromString("connection_made");
    str_data_received = PyUnicode_InternFromString("data_received");
    str_eof_received = PyUnicode_InternFromString("eof_received");
    str_connection_lost = PyUnicode_InternFromString("connection_lost");
    str_pause_writing = PyUnicode_InternFromString("pause_writing");
    str_resume_writing = PyUnicode_InternFromString("resume_writing");
    str_get_buffer = PyUnicode_InternFromString("get_buffer");
    str_buffer_updated = PyUnicode_InternFromString("buffer_updated");
    Ref asyncio = Ref::steal(PyImport_ImportModule("asyncio"));
    if (asyncio) buffered_protocol_type = PyObject_GetAttrString(asyncio.get(), "BufferedProtocol");
    return buffered_protocol_type != nullptr;
}

/// What both bridges hold: the loop, the Python protocol and its Python transport.
class Bridge {
public:
    Bridge(LoopObject* loop, PyObject* protocol, TransportObject* transport)
        : loop_(loop),
          loop_ref_(Ref::borrow(reinterpret_cast<PyObject*>(loop))),
          protocol_(Ref::borrow(protocol)),
          transport_(Ref::borrow(reinterpret_cast<PyObject*>(transport))) {}
    virtual ~Bridge() = default;
    PyObject* python_protocol() const noexcept { return protocol_.get(); }
    PyObject* python_transport() const noexcept { return transport_.get(); }
    /// The caller's socket object (sock=): the transport's 'socket' extra.
    void set_socket(PyObject* sock) { sock_ = Ref::borrow(sock); }

protected:
    /// protocol.<name>(*args); the result (new reference), or throws the Python error.
    Ref call(PyObject* name, PyObject* arg = nullptr) {
        PyObject* args[3] = {nullptr, protocol_.get(), arg};
        const size_t n = (arg ? 2 : 1) | PY_VECTORCALL_ARGUMENTS_OFFSET;
        Ref r = Ref::steal(PyObject_VectorcallMethod(name, args + 1, n, nullptr));
        if (!r) throw_python_error(loop_);
        return r;
    }
    void made(const std::shared_ptr<Transport>& transport) {
        // uvloop's write coalescing: one send per connection and loop iteration.
        if (auto* socket = dynamic_cast<detail::SocketTransport*>(transport.get())) socket->coalesce_writes(true);
        if (!transport_) {
            transport_ = Ref::steal(reinterpret_cast<PyObject*>(new_transport(loop_, transport, protocol_.get())));
            if (!transport_) throw_python_error(loop_);
            Ref fd;
            if (sock_) {
                Ref module = Ref::steal(PyImport_ImportModule("asyncio_cpp._loop"));
                Ref wrapped =
                    module ? Ref::steal(PyObject_CallMethod(module.get(), "_wrap_socket", "O", sock_.get())) : Ref();
                if (!wrapped) throw_python_error(loop_);
                reinterpret_cast<TransportObject*>(transport_.get())->socket = wrapped.release();
                fd = Ref::steal(PyObject_CallMethod(sock_.get(), "fileno", nullptr));
            } else {
                std::any s = transport->get_extra_info("socket");
                const TransportSocket* ts = std::any_cast<TransportSocket>(&s);
                fd = Ref::steal(PyLong_FromLong(ts ? ts->fileno() : -1));
            }
            // The loop's fd -> transport map: add_reader() & co refuse a transport's fd.
            Ref r = fd ? Ref::steal(PyObject_CallMethod(reinterpret_cast<PyObject*>(loop_), "_register_transport", "OO",
                                                        fd.get(), transport_.get()))
                       : Ref();
            if (!r) throw_python_error(loop_);
        }
        call(str_connection_made, transport_.get());
    }
    void lost(std::exception_ptr exc) {
        Ref error;
        if (exc) {
            try {
                std::rethrow_exception(exc);
            } catch (...) {
                set_python_error();
            }
            error = Ref::steal(fetch_exception());
        }
        // As Python's transports: the socket is closed after connection_lost() returns.
        try {
            call(str_connection_lost, error ? error.get() : Py_None);
        } catch (...) {
            if (transport_) release_extra_socket(transport_.get());
            throw;
        }
        if (transport_) release_extra_socket(transport_.get());
    }
    bool eof() { return PyObject_IsTrue(call(str_eof_received).get()) > 0; }

    LoopObject* loop_;

private:
    Ref loop_ref_;
    Ref protocol_;
    Ref transport_;
    Ref sock_;
};

class StreamBridge final : public Protocol, public Bridge {
public:
    using Bridge::Bridge;
    void connection_made(std::shared_ptr<Transport> transport) override { made(transport); }
    void data_received(std::string_view data) override {
        Ref bytes = Ref::steal(PyBytes_FromStringAndSize(data.data(), static_cast<Py_ssize_t>(data.size())));
        if (!bytes) throw_python_error(loop_);
        call(str_data_received, bytes.get());
    }
    bool eof_received() override { return eof(); }
    void connection_lost(std::exception_ptr exc) override { lost(std::move(exc)); }
    void pause_writing() override { call(str_pause_writing); }
    void resume_writing() override { call(str_resume_writing); }
};

class BufferedBridge final : public BufferedProtocol, public Bridge {
public:
    using Bridge::Bridge;
    ~BufferedBridge() override { release(); }
    void connection_made(std::shared_ptr<Transport> transport) override { made(transport); }
    std::span<char> get_buffer(std::size_t sizehint) override {
        release();
        Ref hint = Ref::steal(sizehint ? PyLong_FromSize_t(sizehint) : PyLong_FromLong(-1));
        if (!hint) throw_python_error(loop_);
        Ref buffer = call(str_get_buffer, hint.get());
        if (PyObject_GetBuffer(buffer.get(), &view_, PyBUF_WRITABLE) < 0) throw_python_error(loop_);
        has_view_ = true;
        return {static_cast<char*>(view_.buf), static_cast<std::size_t>(view_.len)};
    }
    void buffer_updated(std::size_t nbytes) override {
        release();  // the protocol may resize its buffer now
        Ref n = Ref::steal(PyLong_FromSize_t(nbytes));
        if (!n) throw_python_error(loop_);
        call(str_buffer_updated, n.get());
    }
    bool eof_received() override { return eof(); }
    void connection_lost(std::exception_ptr exc) override {
        release();
        lost(std::move(exc));
    }
    void pause_writing() override { call(str_pause_writing); }
    void resume_writing() override { call(str_resume_writing); }

private:
    void release() noexcept {
        if (has_view_) PyBuffer_Release(&view_);
        has_view_ = false;
    }
    Py_buffer view_{};
    bool has_view_ = false;
};

}  // namespace

std::shared_ptr<BaseProtocol> make_protocol_bridge(LoopObject* loop, PyObject* protocol, TransportObject* transport) {
    if (!init_names()) throw_python_error(loop);
    int buffered = PyObject_IsInstance(protocol, buffered_protocol_type);
    if (buffered < 0) throw_python_error(loop);
    if (buffered) return std::make_shared<BufferedBridge>(loop, protocol, transport);
    return std::make_shared<StreamBridge>(loop, protocol, transport);
}

detail::ProtocolFactory python_protocol_factory(LoopObject* loop, PyObject* factory, PyObject* sock) {
    return [loop, f = Ref::borrow(factory), keep = Ref::borrow(reinterpret_cast<PyObject*>(loop)),
            s = Ref::borrow(sock)]() {
        Ref protocol = Ref::steal(PyObject_CallNoArgs(f.get()));
        if (!protocol) throw_python_error(loop);
        std::shared_ptr<BaseProtocol> bridge = make_protocol_bridge(loop, protocol.get(), nullptr);
        if (s) dynamic_cast<Bridge*>(bridge.get())->set_socket(s.get());
        return bridge;
    };
}

PyObject* connection_tuple(LoopObject* loop, const detail::MadeConnection& made) {
    auto* bridge = dynamic_cast<Bridge*>(made.second.get());
    if (!bridge) {
        PyErr_SetString(PyExc_SystemError, "asyncio_cpp: a connection without a Python protocol");
        return nullptr;
    }
    Ref transport = Ref::borrow(bridge->python_transport());
    if (!transport) {
        // The connection closed before connection_made: a transport all the same, as Python.
        transport = Ref::steal(reinterpret_cast<PyObject*>(new_transport(loop, made.first, bridge->python_protocol())));
        if (!transport) return nullptr;
    }
    return PyTuple_Pack(2, transport.get(), bridge->python_protocol());
}

}  // namespace asyncio::python
