// src/loop/child_watch.cpp - child watching (see child_watch.hpp): a pidfd polled through the
// backend, or a waiting thread per child; the loop's per-loop record of its children.
#include "child_watch.hpp"

#include "loop_impl.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace asyncio::detail {

namespace {

// 0: not chosen yet (read the environment), else 1 + ChildWatchMode.
std::atomic<int> g_mode{0};
// Set once pidfd_open was refused for the process (ENOSYS, EPERM): no use asking again.
std::atomic<bool> g_pidfd_refused{false};

/// One watched child. `pidfd >= 0`: watched through the backend; else a thread waits for it.
struct ChildRecord {
    int pid = -1;
    int pidfd = -1;
    IoOperation op;                       // poll_readable on the pidfd
    ChildWatchAccess::Callback callback;  // empty once cancelled
    EventLoop* loop = nullptr;
};

void log_unknown_child(int pid) {
    // Python's wording (unix_events.py): someone else reaped our child.
    log_message("Unknown child process pid " + std::to_string(pid) + ", will report returncode 255");
}

/// Waits for `pid` in a detached thread so it never stays a zombie; nothing is reported.
void reap_in_background(int pid) noexcept {
    try {
        std::thread([pid] {
            while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
            }
        }).detach();
    } catch (...) {
        // No thread to be had: the child stays a zombie until this process exits.
    }
}

/// The loop's children, by pid (Python keeps its callbacks by pid as well). A LoopResource
/// found through Impl::state(): the loop owns it and tells it when it closes.
class ChildWatchState final : public LoopResource {
public:
    explicit ChildWatchState(EventLoop& loop) : loop_(loop) {}
    ~ChildWatchState() override { loop_closing(); }

    static ChildWatchState& of(EventLoop& loop);
    static ChildWatchState* find(EventLoop& loop) noexcept;

    void watch(int pid, int pidfd, ChildWatchAccess::Callback callback);
    bool cancel(int pid) noexcept;
    std::size_t size() const noexcept { return children_.size(); }
    /// A waiting thread's report arrived (on the loop's thread).
    void thread_reported(int pid, int returncode);

    void loop_closing() noexcept override;

private:
    static void pidfd_readable(IoOperation* op);
    void start_polling(ChildRecord& r);
    void start_waiting_thread(int pid);
    /// The child was reaped: forget the record, queue its callback.
    void finish(int pid, int returncode, bool as_callback);

    EventLoop& loop_;
    std::unordered_map<int, std::unique_ptr<ChildRecord>> children_;
};

/// The key of the per-loop ChildWatchState (Impl::state()).
const char* state_key() noexcept {
    static const char key = 0;
    return &key;
}

ChildWatchState& ChildWatchState::of(EventLoop& loop) {
    return static_cast<ChildWatchState&>(
        IoAccess::impl(loop).state(state_key(), [&loop] { return std::make_unique<ChildWatchState>(loop); }));
}

ChildWatchState* ChildWatchState::find(EventLoop& loop) noexcept {
    return static_cast<ChildWatchState*>(IoAccess::impl(loop).find_state(state_key()));
}

void ChildWatchState::watch(int pid, int pidfd, ChildWatchAccess::Callback callback) {
    auto& slot = children_[pid];
    if (slot) {
        if (pidfd >= 0) ::close(pidfd);  // the record has its own
        if (slot->callback) throw std::invalid_argument("child process " + std::to_string(pid) + " is already watched");
        slot->callback = std::move(callback);  // re-watched after a cancel
        return;
    }
    try {
        if (pidfd < 0) pidfd = open_pidfd(pid);
        auto r = std::make_unique<ChildRecord>();
        r->pid = pid;
        r->pidfd = pidfd;
        r->loop = &loop_;
        r->callback = std::move(callback);
        if (pidfd >= 0)
            start_polling(*r);
        else
            start_waiting_thread(pid);
        slot = std::move(r);
    } catch (...) {
        children_.erase(pid);
        if (pidfd >= 0) ::close(pidfd);
        throw;
    }
}

void ChildWatchState::start_polling(ChildRecord& r) {
    Backend& backend = IoAccess::backend(loop_);
    r.op.kind = IoOperation::Kind::poll_readable;
    r.op.reg = backend.registration(r.pidfd);
    r.op.user = &r;
    r.op.complete = pidfd_readable;
    backend.start(&r.op);
}

void ChildWatchState::pidfd_readable(IoOperation* op) {
    auto* r = static_cast<ChildRecord*>(op->user);
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    int rc = 0;
    // WNOHANG: a readable pidfd means the child exited, but a spurious report must not block.
    while ((rc = static_cast<int>(::syscall(SYS_waitid, P_PIDFD, r->pidfd, &info, WEXITED | WNOHANG, nullptr))) < 0 &&
           errno == EINTR) {
    }
    ChildWatchState& self = *find(*r->loop);
    if (rc < 0) {  // ECHILD: reaped behind our back (a waitpid(-1) elsewhere)
        log_unknown_child(r->pid);
        self.finish(r->pid, 255, true);
        return;
    }
    if (info.si_pid == 0) {  // not exited yet: keep watching
        IoAccess::backend(*r->loop).start(op);
        return;
    }
    const int code = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    self.finish(r->pid, code, true);
}

void ChildWatchState::start_waiting_thread(int pid) {
    LoopAnchor* anchor = LoopAccess::anchor(loop_);
    anchor->add_ref();  // the thread's: posting stays safe after the loop is gone
    try {
        std::thread([anchor, pid] {
            int status = 0;
            int r;
            while ((r = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
            }
            const int code = r < 0 ? 255 : returncode_from_wait_status(status);
            const bool unknown = r < 0;
            HandleState* h = make_handle_state(anchor, true, [anchor, pid, code, unknown] {
                if (unknown) log_unknown_child(pid);
                if (ChildWatchState* s = find(*anchor->loop)) s->thread_reported(pid, code);
            });
            h->ops = &HandleState::ready_ops;    // as call_soon_threadsafe queues it
            if (!anchor->post(h)) h->release();  // the loop closed: the child is reaped anyway
            anchor->release();
        }).detach();
    } catch (const std::system_error&) {
        anchor->release();
        throw;
    }
}

void ChildWatchState::thread_reported(int pid, int returncode) {
    auto it = children_.find(pid);
    if (it == children_.end() || it->second->pidfd >= 0) return;
    finish(pid, returncode, false);
}

void ChildWatchState::finish(int pid, int returncode, bool as_callback) {
    auto it = children_.find(pid);
    std::unique_ptr<ChildRecord> r = std::move(it->second);
    children_.erase(it);
    if (r->pidfd >= 0) {
        Backend& backend = IoAccess::backend(loop_);
        backend.cancel(&r->op);
        backend.forget(r->pidfd);
        ::close(r->pidfd);
    }
    if (!r->callback) return;  // cancelled: reaped, nobody to tell
    if (as_callback) {
        // From a backend completion: run it as a loop callback, so what it throws goes to the
        // exception handler like any callback's.
        loop_.call_soon([cb = std::move(r->callback), pid, returncode] { cb(pid, returncode); });
    } else {
        r->callback(pid, returncode);  // already a loop callback (the thread's post)
    }
}

bool ChildWatchState::cancel(int pid) noexcept {
    auto it = children_.find(pid);
    if (it == children_.end() || !it->second->callback) return false;
    it->second->callback = nullptr;  // still reaped when it exits
    return true;
}

void ChildWatchState::loop_closing() noexcept {
    if (children_.empty()) return;
    Backend& backend = IoAccess::backend(loop_);
    for (auto& [pid, r] : children_) {
        if (r->pidfd < 0) continue;  // its thread reaps it; the post will be refused
        backend.cancel(&r->op);
        backend.forget(r->pidfd);
        ::close(r->pidfd);
        // Still running (or a zombie the loop had no iteration left to see): reap it now if
        // it is done, else when it exits, without keeping an fd.
        if (::waitpid(pid, nullptr, WNOHANG) == 0) reap_in_background(pid);
    }
    children_.clear();
}

}  // namespace

ChildWatchMode child_watch_mode() noexcept {
    int m = g_mode.load(std::memory_order_relaxed);
    if (m == 0) {
        const char* env = std::getenv("ASYNCIO_CHILD_WATCHER");
        m = 1 +
            static_cast<int>(env && std::strcmp(env, "thread") == 0 ? ChildWatchMode::thread : ChildWatchMode::pidfd);
        int expected = 0;
        if (!g_mode.compare_exchange_strong(expected, m)) m = expected;  // a set_ won the race
    }
    return static_cast<ChildWatchMode>(m - 1);
}

void set_child_watch_mode(ChildWatchMode mode) noexcept { g_mode.store(1 + static_cast<int>(mode)); }

int open_pidfd(int pid) noexcept {
    if (child_watch_mode() == ChildWatchMode::thread || g_pidfd_refused.load(std::memory_order_relaxed)) {
        errno = ENOSYS;
        return -1;
    }
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));  // O_CLOEXEC always
    if (fd < 0 && (errno == ENOSYS || errno == EPERM)) g_pidfd_refused.store(true, std::memory_order_relaxed);
    return fd;
}

int returncode_from_wait_status(int status) noexcept {
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return status;  // stopped/continued are never asked for (no WUNTRACED)
}

void ChildWatchAccess::watch(EventLoop& loop, int pid, int pidfd, Callback callback) {
    if (loop.is_closed()) {
        if (pidfd >= 0) ::close(pidfd);
        LoopAnchor::throw_closed();
    }
    ChildWatchState::of(loop).watch(pid, pidfd, std::move(callback));
}

bool ChildWatchAccess::cancel(EventLoop& loop, int pid) noexcept {
    if (loop.is_closed()) return false;
    ChildWatchState* s = ChildWatchState::find(loop);
    return s && s->cancel(pid);
}

std::size_t ChildWatchAccess::pending_count(EventLoop& loop) noexcept {
    ChildWatchState* s = ChildWatchState::find(loop);
    return s ? s->size() : 0;
}

}  // namespace asyncio::detail
