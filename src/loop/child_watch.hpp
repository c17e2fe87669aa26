// src/loop/child_watch.hpp - watching child processes from the loop (Python's child watchers).
//
// A watched child is reported once, on the loop's thread, with its decoded return code (exit
// status N -> N, killed by signal N -> -N), and reaped exactly once. Two mechanisms, as
// CPython's unix_events.py:
//  * pidfd (Python's PidfdChildWatcher, Linux >= 5.3): the child's pidfd is watched for
//    readability through the loop's backend (a poll_readable operation, so epoll and io_uring
//    alike), then waitid(P_PIDFD, WEXITED|WNOHANG) reaps it. No thread, no signal.
//  * thread (Python's ThreadedChildWatcher): when pidfd_open is refused (ENOSYS, EPERM under a
//    seccomp filter...) or forced (ASYNCIO_CHILD_WATCHER=thread, set_child_watch_mode), a
//    detached thread per child blocks in waitpid(pid) and posts the result to the loop with
//    the call_soon_threadsafe machinery.
// No process-wide SIGCHLD handler is installed, so any number of loops in any threads can
// watch their own children at once.
//
// Lifetime rules (see docs/architecture.md, "Child processes"):
//  * cancel() only drops the callback: the loop keeps the child's record and still reaps it
//    when it exits (no zombie), so the same pid may be watched again meanwhile.
//  * When the loop closes, its watches are released without killing anything and without
//    reporting: the pidfds are closed at once (no fd outlives the loop) and each child still
//    running is handed to a detached reaper thread that waits for it (Python 3.12+'s threaded
//    watcher does the same: the child is reaped whenever it exits, the report is dropped).
#pragma once

#include <cstddef>
#include <functional>

namespace asyncio {
class EventLoop;
}

namespace asyncio::detail {

/// How newly watched children are waited for.
enum class ChildWatchMode { pidfd, thread };

/// The mode new watches use: the last set_child_watch_mode(), else $ASYNCIO_CHILD_WATCHER
/// ("thread" or "pidfd", read once), else pidfd. Even in pidfd mode a watch uses a thread
/// when this kernel refuses pidfd_open.
ChildWatchMode child_watch_mode() noexcept;
/// Forces the mode of watches started from now on (tests run both paths with it).
void set_child_watch_mode(ChildWatchMode mode) noexcept;

/// A pidfd (O_CLOEXEC) for child `pid`, or -1 (errno set) when the mode is `thread` or the
/// kernel refuses pidfd_open; a refusal with ENOSYS or EPERM is remembered for the process.
/// Call right after spawning, before anything can reap the child.
int open_pidfd(int pid) noexcept;

/// A waitpid() status as Python's returncode: exit status N -> N, killed by signal N -> -N.
int returncode_from_wait_status(int status) noexcept;

/// The child-watching door for the layers above (the subprocess transport). Every call is
/// made on the loop's thread.
struct ChildWatchAccess {
    /// Called on the loop's thread, as a loop callback (an exception it throws goes to the
    /// loop's exception handler), after the child was reaped.
    using Callback = std::function<void(int pid, int returncode)>;

    /// Watches child `pid` of this process; `callback` runs once when it has exited.
    /// `pidfd` is a pidfd of `pid` that the watch takes over (closes), or -1 to let the watch
    /// open one (open_pidfd) - falling back to a waiting thread where pidfds are unavailable.
    /// A pid whose earlier watch was cancelled gets the new callback. Throws RuntimeError
    /// when the loop is closed (`pidfd` is closed then too), std::invalid_argument when `pid`
    /// is already watched with a callback on this loop, std::system_error when no thread can
    /// be started for the fallback.
    static void watch(EventLoop& loop, int pid, int pidfd, Callback callback);

    /// Drops the callback of `pid`'s watch (Python: the transport closed before the child
    /// exited): it will never run. The loop still reaps the child when it exits. False when
    /// `pid` is not watched with a callback (or the loop is closed).
    static bool cancel(EventLoop& loop, int pid) noexcept;

    /// Children this loop still has to reap, cancelled watches included (for tests).
    static std::size_t pending_count(EventLoop& loop) noexcept;
};

}  // namespace asyncio::detail
