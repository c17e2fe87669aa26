// asyncio.hpp - Python's asyncio in C++20. Brings in every part.
#pragma once

#include <asyncio/asyncgen.hpp>
#include <asyncio/base_events.hpp>
#include <asyncio/contextvars.hpp>
#include <asyncio/coroutines.hpp>
#include <asyncio/events.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/executors.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/locks.hpp>
#include <asyncio/protocols.hpp>
#include <asyncio/queues.hpp>
#include <asyncio/runners.hpp>
#include <asyncio/sockets.hpp>
#include <asyncio/ssl.hpp>
#include <asyncio/streams.hpp>
#include <asyncio/subprocess.hpp>
#include <asyncio/taskgroups.hpp>
#include <asyncio/tasks.hpp>
#include <asyncio/threads.hpp>
#include <asyncio/transports.hpp>
#include <asyncio/timeouts.hpp>
