// tests/support.hpp - shared helpers for the test suite.
#pragma once

#include <asyncio.hpp>

#include <string>
#include <vector>

namespace asyncio_test {

/// Runs `main` with asyncio::run on a virtual-clock loop: timers fire instantly and in order,
/// loop.time() only moves when the loop would otherwise sleep (like CPython's TestLoop).
template <class T>
T run_virtual(asyncio::Coro<T> main, bool debug = false) {
    return asyncio::run(std::move(main), asyncio::RunOptions{.debug = debug, .virtual_clock = true});
}

/// Captures what the runtime logs while alive (restores the default sink after).
class LogCapture {
public:
    LogCapture() {
        asyncio::set_log_handler([this](std::string_view m) { messages.emplace_back(m); });
    }
    ~LogCapture() { asyncio::set_log_handler(nullptr); }
    bool contains(std::string_view needle) const {
        for (auto& m : messages)
            if (m.find(needle) != std::string::npos) return true;
        return false;
    }
    std::string joined() const {
        std::string s;
        for (auto& m : messages) s += m + "\n";
        return s;
    }
    std::vector<std::string> messages;
};

/// Collects every context passed to a loop's exception handler.
struct HandlerCapture {
    std::vector<asyncio::ExceptionContext> contexts;
    void install(asyncio::EventLoop& loop) {
        loop.set_exception_handler(
            [this](asyncio::EventLoop&, const asyncio::ExceptionContext& c) { contexts.push_back(c); });
    }
    bool contains(std::string_view needle) const {
        for (auto& c : contexts)
            if (c.message.find(needle) != std::string::npos) return true;
        return false;
    }
};

}  // namespace asyncio_test
