// src/python/protocol_bridge.hpp - the C++ protocols a C++ transport calls when its protocol
// is a Python one: each callback (connection_made, data_received, eof_received,
// connection_lost, pause_writing, resume_writing; get_buffer/buffer_updated for an
// asyncio.BufferedProtocol) becomes the Python method call, straight from the transport's
// completion, with the GIL held. A Python exception travels through the transport as a
// PyError (its fatal-error path reports it to the loop's exception handler and closes the
// connection, as Python's transports do); SystemExit and KeyboardInterrupt leave the loop.
#pragma once

#include "python/py.hpp"

#include <asyncio/detail/connections.hpp>
#include <asyncio/protocols.hpp>

#include <memory>

namespace asyncio::python {

struct LoopObject;
struct TransportObject;

/// A C++ protocol forwarding to the Python `protocol`. `transport`, when not null, is the
/// Python transport it belongs to already (set_protocol); else connection_made makes one.
std::shared_ptr<BaseProtocol> make_protocol_bridge(LoopObject* loop, PyObject* protocol, TransportObject* transport);

/// A protocol factory for the C++ connection methods: calls the Python factory, bridges what
/// it returns. `sock` (optional): the caller's socket object behind the connection (sock=),
/// which becomes get_extra_info('socket') and is closed with the connection, as Python's.
detail::ProtocolFactory python_protocol_factory(LoopObject* loop, PyObject* factory, PyObject* sock = nullptr);

/// (transport, protocol) as Python objects for a connection made with a bridged protocol.
PyObject* connection_tuple(LoopObject* loop, const detail::MadeConnection& made);

}  // namespace asyncio::python
