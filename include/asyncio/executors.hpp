// asyncio/executors.hpp - executors for blocking work (Python's concurrent.futures
// ThreadPoolExecutor, as used by loop.run_in_executor and asyncio.to_thread).
//
// An executor runs plain functions on other threads. The loop's default executor is a
// ThreadPoolExecutor created on first use and shut down (waiting for its threads) at the end
// of asyncio::run, as in Python.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace asyncio {

/// Something that runs work items on other threads.
class Executor {
public:
    virtual ~Executor() = default;
    /// Queues `work`. RuntimeError after shutdown().
    virtual void submit(std::function<void()> work) = 0;
    /// Stops accepting work; with `wait`, returns once every queued item has run and the
    /// threads have exited.
    virtual void shutdown(bool wait = true) = 0;
};

/// A pool of up to `max_workers` threads (default min(32, cores + 4), like Python's), started
/// on demand. Thread-safe.
class ThreadPoolExecutor final : public Executor {
public:
    explicit ThreadPoolExecutor(std::size_t max_workers = 0);
    ~ThreadPoolExecutor() override;
    ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
    ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

    void submit(std::function<void()> work) override;
    void shutdown(bool wait = true) override;
    std::size_t max_workers() const noexcept { return max_workers_; }
    /// Threads started so far.
    std::size_t thread_count() const;

private:
    void worker();

    std::size_t max_workers_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> queue_;
    std::vector<std::thread> threads_;
    std::size_t idle_ = 0;
    bool shutdown_ = false;
};

}  // namespace asyncio
