// TaskGroup, timeouts and cancellation together: fetch three "pages" concurrently, give the
// whole batch a deadline, and see how a failure cancels the siblings. Python equivalent:
//
//     async with asyncio.timeout(1.5):
//         async with asyncio.TaskGroup() as tg:
//             for name, delay in pages: tg.create_task(fetch(name, delay))
#include <asyncio.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

asyncio::Coro<std::string> fetch(std::string name, double delay, bool fail = false) {
    try {
        co_await asyncio::sleep(delay);
    } catch (const asyncio::CancelledError&) {
        std::printf("  %s: cancelled\n", name.c_str());
        throw;  // always let cancellation through
    }
    if (fail) throw std::runtime_error(name + " is broken");
    std::printf("  %s: done after %.1f s\n", name.c_str(), delay);
    co_return "<" + name + ">";
}

asyncio::Coro<> all_succeed() {
    std::printf("three pages, all fine:\n");
    std::vector<asyncio::Task<std::string>> tasks(3);
    co_await asyncio::task_group([&](asyncio::TaskGroup& tg) -> asyncio::Coro<> {
        tasks[0] = tg.create_task(fetch("a", 0.3));
        tasks[1] = tg.create_task(fetch("b", 0.1));
        tasks[2] = tg.create_task(fetch("c", 0.2));
        co_return;
    });
    for (auto& t : tasks) std::printf("  result %s\n", t.result().c_str());
}

asyncio::Coro<> one_fails() {
    std::printf("one page fails, the others are cancelled:\n");
    try {
        co_await asyncio::task_group([&](asyncio::TaskGroup& tg) -> asyncio::Coro<> {
            tg.create_task(fetch("a", 0.5));
            tg.create_task(fetch("b", 0.1, /*fail=*/true));
            tg.create_task(fetch("c", 0.5));
            co_return;
        });
    } catch (const asyncio::ExceptionGroup& eg) {
        for (auto& e : eg.exceptions()) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                std::printf("  error: %s\n", x.what());
            }
        }
    }
}

asyncio::Coro<> too_slow() {
    std::printf("a deadline of 0.2 s for pages that take 1 s:\n");
    try {
        co_await asyncio::timeout(0.2, fetch("slow", 1.0));
    } catch (const asyncio::TimeoutError&) {
        std::printf("  TimeoutError\n");
    }
    // wait_for cancels the inner task and waits for it before raising, like Python's.
    try {
        co_await asyncio::wait_for(fetch("slower", 2.0), 0.2);
    } catch (const asyncio::TimeoutError&) {
        std::printf("  TimeoutError from wait_for\n");
    }
}

asyncio::Coro<> main_coro() {
    co_await all_succeed();
    co_await one_fails();
    co_await too_slow();
}

}  // namespace

int main() { asyncio::run(main_coro()); }
