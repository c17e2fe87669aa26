// The Python docs' queue example, in C++: three workers take "sleep for this long" jobs from an
// asyncio::Queue, the main task waits until every job is done (join), then shuts the queue
// down so the workers end (Python 3.13's Queue.shutdown) - no cancellation needed.
//
// https://docs.python.org/3/library/asyncio-queue.html#examples
#include <asyncio.hpp>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

asyncio::Coro<double> worker(std::string name, asyncio::Queue<double>& queue) {
    double slept = 0;
    for (;;) {
        double sleep_for = 0;
        try {
            sleep_for = co_await queue.get();  // QueueShutDown once shut down and empty
        } catch (const asyncio::QueueShutDown&) {
            co_return slept;
        }
        co_await asyncio::sleep(sleep_for);
        slept += sleep_for;
        queue.task_done();  // notify the queue that the "work item" has been processed
        std::printf("%s has slept for %.2f seconds\n", name.c_str(), sleep_for);
    }
}

asyncio::Coro<> main_coro() {
    asyncio::Queue<double> queue;

    // Generate random timings and put them into the queue.
    std::mt19937 rng(2024);
    std::uniform_real_distribution<double> dist(0.05, 1.0);
    double total_sleep_time = 0;
    for (int i = 0; i < 20; ++i) {
        double sleep_for = dist(rng);
        total_sleep_time += sleep_for;
        queue.put_nowait(sleep_for);
    }

    // Create three worker tasks to process the queue concurrently.
    std::vector<asyncio::Task<double>> tasks;
    for (int i = 0; i < 3; ++i) tasks.push_back(asyncio::create_task(worker("worker-" + std::to_string(i), queue)));

    // Wait until the queue is fully processed.
    auto& loop = asyncio::get_running_loop();
    double started_at = loop.time();
    co_await queue.join();
    double total_slept_for = loop.time() - started_at;

    // Let the workers finish: get() raises QueueShutDown once the queue is empty.
    queue.shutdown();
    co_await asyncio::gather(tasks);

    std::printf("====\n");
    std::printf("3 workers slept in parallel for %.2f seconds\n", total_slept_for);
    std::printf("total expected sleep time: %.2f seconds\n", total_sleep_time);
}

}  // namespace

int main() { asyncio::run(main_coro()); }
