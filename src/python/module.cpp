// src/python/module.cpp - the extension module asyncio_cpp._core: the loop's native half and
// its handles (the package python/asyncio_cpp builds the public Loop on them).
#include "python/connections.hpp"
#include "python/datagram.hpp"
#include "python/handles.hpp"
#include "python/loop_object.hpp"
#include "python/py.hpp"
#include "python/sock_ops.hpp"
#include "python/transport_object.hpp"

#include <asyncio/detail/event_loop.hpp>

#include <cstdio>
#include <string_view>

namespace {

PyObject* asyncio_logger = nullptr;  // logging.getLogger("asyncio")

bool finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/// The C++ layers' log messages go to Python's "asyncio" logger, at Python's levels.
void log_to_python(asyncio::LogLevel level, std::string_view message) {
    if (!Py_IsInitialized() || finalizing() || !asyncio_logger) {
        std::fprintf(stderr, "asyncio: %.*s\n", static_cast<int>(message.size()), message.data());
        return;
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject* saved = asyncio::python::fetch_exception();  // a log line must not eat an error
    const int levelno = level == asyncio::LogLevel::debug     ? 10
                        : level == asyncio::LogLevel::info    ? 20
                        : level == asyncio::LogLevel::warning ? 30
                                                              : 40;
    PyObject* r = PyObject_CallMethod(asyncio_logger, "log", "is#", levelno, message.data(),
                                      static_cast<Py_ssize_t>(message.size()));
    if (r)
        Py_DECREF(r);
    else
        PyErr_WriteUnraisable(asyncio_logger);
    asyncio::python::restore_exception(saved);
    PyGILState_Release(gil);
}

PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    "asyncio_cpp._core",
    "asyncio-cpp's event loop core, for asyncio_cpp.Loop.",
    -1,  // one instance per process: the types are process-wide
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit__core() {
    using namespace asyncio::python;
    Ref module = Ref::steal(PyModule_Create(&core_module));
    if (!module) return nullptr;
    Ref logging = Ref::steal(PyImport_ImportModule("logging"));
    if (!logging) return nullptr;
    asyncio_logger = PyObject_CallMethod(logging.get(), "getLogger", "s", "asyncio");
    if (!asyncio_logger) return nullptr;
    asyncio::set_log_sink(log_to_python);
    if (init_asyncio_refs() < 0 || init_handle_types(module.get()) < 0 || init_loop_type(module.get()) < 0 ||
        init_sock_types(module.get()) < 0 || init_transport_type(module.get()) < 0 ||
        init_connection_types(module.get()) < 0 || init_datagram_types(module.get()) < 0)
        return nullptr;
    return module.release();
}
