// src/python/future_bridge.hpp - a C++ coroutine of the loop's API (create_connection,
// create_server, Server.serve_forever...) seen from Python as an asyncio.Future: the
// coroutine runs as a C++ task on the loop and settles the future; cancelling the future
// cancels the task, as cancelling the awaiting Python task would cancel Python's own
// coroutine.
#pragma once

#include "python/loop_object.hpp"
#include "python/py.hpp"

#include <asyncio/events.hpp>

#include <exception>
#include <type_traits>
#include <utility>

namespace asyncio::python {

namespace bridge {
/// An asyncio.Future of `loop`; null with an exception on failure.
PyObject* new_future(LoopObject* loop) noexcept;
/// set_result(result) (a new reference, taken over; null: set_exception(the current Python
/// exception)) unless the future is done already.
void settle(PyObject* future, PyObject* result) noexcept;
/// set_exception(the Python form of `error`) unless done.
void settle_error(PyObject* future, const std::exception_ptr& error) noexcept;
/// Whether the future is done (an error asking counts as done: nothing more is set on it).
bool is_done(PyObject* future) noexcept;
/// future.add_done_callback(callback); -1 with a Python error set on failure.
int add_done_callback(PyObject* future, PyObject* callback) noexcept;
/// cancel() unless done.
void settle_cancelled(PyObject* future) noexcept;
/// Adds a done callback to `future` that cancels `task` when the future was cancelled.
int cancel_task_with(PyObject* future, AnyTask task) noexcept;
int init_types() noexcept;

template <class T, class Convert>
Coro<void> run(Coro<T> coro, Ref future, Convert convert) {
    std::exception_ptr error;
    bool cancelled = false;
    PyObject* result = nullptr;
    bool converted = false;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(coro);
            result = Py_NewRef(Py_None);
        } else {
            T value = co_await std::move(coro);
            result = convert(value);  // null: a Python error is set
        }
        converted = true;
    } catch (const asyncio::KeyboardInterrupt&) {
        throw;  // SystemExit/KeyboardInterrupt: out of the loop
    } catch (const CancelledError&) {
        cancelled = true;
    } catch (...) {
        error = std::current_exception();
    }
    if (converted)
        settle(future.get(), result);
    else if (cancelled)
        settle_cancelled(future.get());
    else
        settle_error(future.get(), error);
}
}  // namespace bridge

/// Runs `coro` on `loop` and returns a future for convert(its result) (a new reference, or
/// null with a Python error set).
template <class T, class Convert>
PyObject* run_as_future(LoopObject* loop, Coro<T> coro, Convert convert) {
    Ref future = Ref::steal(bridge::new_future(loop));
    if (!future) return nullptr;
    try {
        Task<void> task = loop->core->create_task(bridge::run(std::move(coro), future, std::move(convert)));
        if (bridge::cancel_task_with(future.get(), task) < 0) {
            task.cancel();
            return nullptr;
        }
    } catch (...) {
        return set_python_error();
    }
    return future.release();
}

}  // namespace asyncio::python
