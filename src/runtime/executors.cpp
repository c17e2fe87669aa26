// src/runtime/executors.cpp - ThreadPoolExecutor.
#include <asyncio/exceptions.hpp>
#include <asyncio/executors.hpp>

#include <algorithm>

namespace asyncio {

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t max_workers)
    : max_workers_(max_workers ? max_workers
                               : std::min<std::size_t>(32, std::max(1u, std::thread::hardware_concurrency()) + 4)) {}

ThreadPoolExecutor::~ThreadPoolExecutor() { shutdown(true); }

std::size_t ThreadPoolExecutor::thread_count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return threads_.size();
}

void ThreadPoolExecutor::submit(std::function<void()> work) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (shutdown_) throw RuntimeError("cannot schedule new futures after shutdown");
    queue_.push_back(std::move(work));
    // Like Python's _adjust_thread_count: a new thread only when none is idle.
    if (idle_ == 0 && threads_.size() < max_workers_) {
        threads_.emplace_back([this] { worker(); });
    } else {
        lock.unlock();
        wake_.notify_one();
    }
}

void ThreadPoolExecutor::worker() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        ++idle_;
        wake_.wait(lock, [this] { return shutdown_ || !queue_.empty(); });
        --idle_;
        if (queue_.empty()) return;  // shut down and drained
        std::function<void()> work = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        work();  // work items catch their own exceptions (run_in_executor does)
        work = nullptr;
        lock.lock();
    }
}

void ThreadPoolExecutor::shutdown(bool wait) {
    std::vector<std::thread> threads;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        shutdown_ = true;
        if (wait) threads.swap(threads_);
    }
    wake_.notify_all();
    for (std::thread& t : threads) {
        if (t.get_id() == std::this_thread::get_id())
            t.detach();  // shutdown from one of our own work items
        else
            t.join();
    }
}

}  // namespace asyncio
