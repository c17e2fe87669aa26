// src/python/module.cpp - the extension module asyncio_cpp._core: the loop's native half and
// its handles (the package python/asyncio_cpp builds the public Loop on them).
#include "python/connections.hpp"
#include "python/datagram.hpp"
#include "python/handles.hpp"
#include "python/loop_object.hpp"
#include "python/py.hpp"
#include "python/sock_ops.hpp"
#include "python/transport_object.hpp"

namespace {

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
    if (init_asyncio_refs() < 0 || init_handle_types(module.get()) < 0 || init_loop_type(module.get()) < 0 ||
        init_sock_types(module.get()) < 0 || init_transport_type(module.get()) < 0 ||
        init_connection_types(module.get()) < 0 || init_datagram_types(module.get()) < 0)
        return nullptr;
    return module.release();
}
