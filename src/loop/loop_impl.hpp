// src/loop/loop_impl.hpp - EventLoop's private state, shared by the loop core (event_loop.cpp)
// and the I/O layer built on its backend (sockets, transports). Not installed.
#pragma once

#include <asyncio/detail/intrusive_list.hpp>
#include <asyncio/detail/event_loop.hpp>

#include "backend/backend.hpp"
#include "timer_queue.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace asyncio {

namespace detail {
/// The loop's one hook for the layers above: something they keep on the loop that must be
/// released when it closes - a transport, a server (their fds and backend registrations), a
/// layer's per-loop state (the runtime's default executor, say). The loop core knows no more
/// of it than this. A resource links itself (EventLoop::Impl::link) while it needs the loop
/// and unlinks itself when done; when the loop closes, after its callbacks, timers and tasks
/// are dropped, each resource still linked is unlinked and told, newest first.
struct LoopResource : ListNode {
    /// The loop is closing: release fds now, run no callbacks.
    virtual void loop_closing() noexcept = 0;
    virtual ~LoopResource() = default;
};

/// An fd watched with add_reader()/add_writer(): Python's selector key, one per fd. Each
/// direction is a standing poll operation, re-armed after every readiness report, whose
/// completion queues the callback (level-triggered, as Python's selectors).
struct FdWatch {
    /// One direction's state: a standing poll operation, the callback (null: not watched),
    /// and its last queued call (cancelled on removal or replacement).
    struct Direction {
        IoOperation op;
        std::shared_ptr<std::function<void()>> fn;
        Handle scheduled;
    };
    EventLoop* loop = nullptr;
    Direction dirs[2];
    Direction& operator[](Watch w) noexcept { return dirs[static_cast<int>(w)]; }
    bool watched() const noexcept { return dirs[0].fn || dirs[1].fn; }
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
    detail::IntrusiveList<detail::LoopResource> resources;  // open transports, servers..., newest first
    /// The layers' per-loop state, each under a key of its own (see state()).
    std::vector<std::pair<const void*, std::unique_ptr<detail::LoopResource>>> states;
    std::unordered_map<int, std::unique_ptr<detail::FdWatch>> fd_watches;

    /// An embedding's check after each poll of the backend (the Python face: CPython's
    /// pending signals, so Ctrl-C interrupts a sleeping loop as it does the stock one). It may
    /// throw: the iteration then ends there, its timers and callbacks still queued.
    void (*after_poll)(void* arg) = nullptr;
    void* after_poll_arg = nullptr;

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

    void link(detail::LoopResource* o) noexcept { resources.push_front(*o); }
    /// Does nothing when `o` is not linked (the loop's close() unlinked it already).
    void unlink(detail::LoopResource* o) noexcept { resources.remove(*o); }

    /// A higher layer's per-loop state, found by the address `key` of an object of that
    /// layer; `make()` creates it on first use. The loop owns it: it is linked as a resource
    /// (told when the loop closes) and destroyed with the loop.
    template <class Make>
    detail::LoopResource& state(const void* key, Make make) {
        if (detail::LoopResource* s = find_state(key)) return *s;
        std::unique_ptr<detail::LoopResource> s = make();
        detail::LoopResource& ref = *s;
        states.emplace_back(key, std::move(s));
        link(&ref);
        return ref;
    }
    detail::LoopResource* find_state(const void* key) const noexcept {
        for (auto& [k, s] : states)
            if (k == key) return s.get();
        return nullptr;
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
