// src/net/spawn.hpp - starting a child process: what Python's subprocess.Popen does for
// asyncio (close_fds=True, restore_signals=True), on posix_spawn.
//
// glibc's posix_spawn starts the child with clone(CLONE_VM|CLONE_VFORK) (no copy of a big
// parent's page tables), runs only async-signal-safe steps in it and reports an exec failure
// as its return value after reaping the failed child itself - so a failure here leaves no
// zombie and no fd behind.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace asyncio::detail {

/// SpawnSpec::stdio: the child gets the parent's own fd 0, 1 or 2.
inline constexpr int spawn_inherit = -1;

/// What to start. Each field is Popen's argument of the same name.
struct SpawnSpec {
    /// argv[0] is the program: searched in PATH (the PATH of `env` when given, else this
    /// process's, "/bin:/usr/bin" without one) unless it contains a '/', as execvp/Popen.
    std::vector<std::string> argv;
    /// The child's working directory (a relative argv[0] with '/' is taken from there).
    std::optional<std::string> cwd;
    /// The child's whole environment; nullopt: this process's.
    std::optional<std::map<std::string, std::string>> env;
    /// The parent fds that become the child's 0, 1 and 2 (dup2), or spawn_inherit. The caller
    /// keeps (and closes) its fds; they may be any fds, even 0-2 in another order.
    std::array<int, 3> stdio{spawn_inherit, spawn_inherit, spawn_inherit};
    /// setsid() in the child.
    bool start_new_session = false;
    /// setpgid(0, *process_group) in the child (0: a new group led by the child).
    std::optional<int> process_group;
    /// Fds (>= 3) that stay open in the child, at the same numbers; every other fd >= 3 is
    /// closed in the child (Popen's close_fds=True), CLOEXEC or not.
    std::vector<int> pass_fds;
};

/// A started child. Nothing reaps it yet: give it to ChildWatchAccess::watch (which takes
/// over `pidfd`) or waitpid it.
struct SpawnedChild {
    int pid = -1;
    /// A pidfd (O_CLOEXEC) for the child, opened right after the spawn; -1 when pidfds are
    /// unavailable or the thread watcher is chosen (see child_watch.hpp).
    int pidfd = -1;
};

/// Starts `spec.argv` with default dispositions for every signal and an empty signal mask
/// (the loop's thread may block or ignore some: Popen's restore_signals, done for all). The
/// exception: glibc's posix_spawn leaves its two internal signals (32, 33: below SIGRTMIN, no
/// program can use them) ignored; glibc programs install their handlers when they need them.
/// Throws std::system_error with the errno of the failure (ENOENT, EACCES, ENOEXEC, a bad
/// cwd...) and a message naming the program; std::invalid_argument for an empty argv or an
/// argument with a NUL byte.
SpawnedChild spawn(const SpawnSpec& spec);

/// The file execvp would run for `program` when PATH is `path` (null: "/bin:/usr/bin"):
/// `program` itself when it contains '/', else the first executable regular file in PATH's
/// directories. Throws std::system_error EACCES (found, not executable) or ENOENT.
std::string find_program(const std::string& program, const char* path);

}  // namespace asyncio::detail
