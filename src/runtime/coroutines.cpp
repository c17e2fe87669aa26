// src/runtime/coroutines.cpp - the debug-mode report of a coroutine destroyed without being awaited.
#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>

#include <cstdio>

namespace asyncio::detail {

bool running_loop_debug() noexcept { return tl_running_loop && tl_running_loop->get_debug(); }

void report_never_awaited(const void* frame_address) noexcept {
    EventLoop* loop = tl_running_loop;
    if (!loop) return;
    char addr[32];
    std::snprintf(addr, sizeof addr, "%p", frame_address);
    loop->call_exception_handler({std::string("coroutine was never awaited: a Coro (frame ") + addr +
                                      ") was destroyed without being started; co_await it, or pass it to create_task()",
                                  nullptr,
                                  {},
                                  {}});
}

}  // namespace asyncio::detail
