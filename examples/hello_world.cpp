// The Python docs' coroutine quickstart, in C++ (docs.python.org/3/library/asyncio-task.html):
// say_after() twice, first one after the other (about 3 s), then as two concurrent tasks
// (about 2 s).
#include <asyncio.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace {

std::string now() {
    std::time_t t = std::time(nullptr);
    char buf[16];
    std::strftime(buf, sizeof buf, "%X", std::localtime(&t));
    return buf;
}

asyncio::Coro<> say_after(double delay, std::string what) {
    co_await asyncio::sleep(delay);
    std::printf("%s\n", what.c_str());
}

asyncio::Coro<> sequential() {
    std::printf("started at %s\n", now().c_str());
    co_await say_after(1, "hello");
    co_await say_after(2, "world");
    std::printf("finished at %s\n", now().c_str());
}

asyncio::Coro<> concurrent() {
    auto task1 = asyncio::create_task(say_after(1, "hello"));
    auto task2 = asyncio::create_task(say_after(2, "world"));
    std::printf("started at %s\n", now().c_str());
    // Wait until both tasks are completed (should take around 2 seconds).
    co_await task1;
    co_await task2;
    std::printf("finished at %s\n", now().c_str());
}

}  // namespace

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::printf("-- one after the other (about 3 seconds) --\n");
    asyncio::run(sequential());
    std::printf("-- as concurrent tasks (about 2 seconds) --\n");
    asyncio::run(concurrent());
}
