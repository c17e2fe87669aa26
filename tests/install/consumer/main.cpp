// Built against the *installed* headers and library: prints what two tasks computed.
#include <asyncio.hpp>

#include <cstdio>

asyncio::Coro<int> twice(int x) {
    co_await asyncio::sleep(0.001);
    co_return 2 * x;
}

asyncio::Coro<int> main_coro() {
    auto [a, b] = co_await asyncio::gather(twice(20), twice(1));
    co_return a + b;
}

int main() { std::printf("consumer says %d\n", asyncio::run(main_coro())); }
