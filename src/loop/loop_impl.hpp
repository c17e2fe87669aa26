// src/loop/loop_impl.hpp - EventLoop's private state, shared by the loop core (event_loop.cpp)
// and the I/O layer built on its backend (sockets, transports). Not installed.
#pragma once

#include <asyncio/events.hpp>
#include <asyncio/executors.hpp>

#include "../backend/backend.hpp"
#include "timer_queue.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <unordered_map>

namespace asyncio {

namespace detail {
/// Something that owns fds registered with the loop's backend (a transport, a server, a
/// watched fd): the loop closes what is still open when it closes, so no fd leaks and no
/// registration outlives the backend.
struct IoObject {
    IoObject* prev = nullptr;
    IoObject* next = nullptr;
    /// The loop is closing: release fds now, run no callbacks.
    virtual void loop_closing() noexcept = 0;

protected:
    ~IoObject() = default;
};

/// An fd watched with add_reader()/add_writer(): Python's selector key, one per fd. Each
/// direction is a standing poll operation, re-armed after every readiness report, whose
/// completion queues the callback (level-triggered, as Python's selectors).
struct FdWatch {
    EventLoop* loop = nullptr;
    IoOperation ops[2];                             // [0] readable, [1] writable
    std::shared_ptr<std::function<void()>> fn[2];  // null: not watched
    Handle scheduled[2];                            // the last queued call, cancelled on removal
    ~FdWatch();
};
}  // namespace detail

struct EventLoop::Impl {
    std::unique_ptr<detail::Backend> backend;  // set first by EventLoop's constructor
    detail::TimerQueue timers;
    bool virtual_clock = false;
    double virtual_now = 0;
    ExceptionHandler exception_handler;
    std::thread::id owner_thread = std::this_thread::get_id();  // created or last run on
    std::map<int, std::function<void()>> signal_handlers;
    std::unique_ptr<Executor> default_executor;
    detail::AsyncGenHook* asyncgens = nullptr;  // started async generators (intrusive list)
    std::unordered_map<std::uint64_t, detail::RefPtr<detail::FutureStateBase>> parked_futures;
    std::uint64_t next_parked_id = 0;
    bool executor_shutdown_called = false;
    detail::IoObject* io_objects = nullptr;  // open transports, servers... (intrusive list)
    std::unordered_map<int, std::unique_ptr<detail::FdWatch>> fd_watches;

    int wakeup_fd = -1;  // owned here; writers reach it through the anchor (see LoopAnchor)
    std::uint64_t wakeup_buffer = 0;
    detail::IoOperation wakeup_read;

    void arm_wakeup() {
        wakeup_read.kind = detail::IoOperation::Kind::read;
        wakeup_read.reg = backend->registration(wakeup_fd);
        wakeup_read.buffer = &wakeup_buffer;
        wakeup_read.length = sizeof wakeup_buffer;
        wakeup_read.complete = [](detail::IoOperation*) {};  // re-armed by the loop
        backend->start(&wakeup_read);
    }

    void link(detail::IoObject* o) noexcept {
        o->prev = nullptr;
        o->next = io_objects;
        if (io_objects) io_objects->prev = o;
        io_objects = o;
    }
    void unlink(detail::IoObject* o) noexcept {
        if (o->prev) o->prev->next = o->next; else if (io_objects == o) io_objects = o->next;
        if (o->next) o->next->prev = o->prev;
        o->prev = o->next = nullptr;
    }
    ~Impl();
};

namespace detail {
/// The I/O layer's door into the loop's private state.
struct IoAccess {
    static EventLoop::Impl& impl(EventLoop& loop) noexcept;
    static Backend& backend(EventLoop& loop) noexcept { return *impl(loop).backend; }
};
}  // namespace detail

}  // namespace asyncio
