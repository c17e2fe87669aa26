// asyncio/events.hpp - the event loop (Python's asyncio.events / base_events).
//
// An EventLoop runs callbacks, task steps and timers on one thread. Like Python's:
//  * call_soon() callbacks run in FIFO order, one "iteration" at a time: callbacks scheduled
//    while an iteration runs wait for the next one;
//  * timers (call_later/call_at) become ready when the loop's monotonic clock reaches them;
//  * the only thread-safe entry is call_soon_threadsafe() (an eventfd wakes the loop);
//  * a closed loop refuses everything with RuntimeError("Event loop is closed").
// The loop core lives in src/loop/; the I/O backend behind it in src/backend/.
#pragma once

// The class and its inline members; every member template's definition comes with the layer
// it belongs to, so `loop.create_task(...)` and `loop.create_connection(...)` work with this
// header alone.
#include <asyncio/detail/event_loop.hpp>

#include <asyncio/base_events.hpp>  // create_connection, create_server, sock_*, start_tls...
#include <asyncio/tasks.hpp>        // create_task, run_until_complete
#include <asyncio/subprocess.hpp>   // subprocess_exec, subprocess_shell
#include <asyncio/threads.hpp>      // run_in_executor, call_soon_threadsafe with a result
