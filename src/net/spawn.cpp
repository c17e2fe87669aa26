// src/net/spawn.cpp - spawn() on posix_spawn (see spawn.hpp). Python's _posixsubprocess does
// the same steps by hand between fork and exec: dup2 the three streams, chdir, setsid /
// setpgid, restore signal dispositions, close the fds that are not passed, exec.
#include "spawn.hpp"

#include "loop/child_watch.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

extern char** environ;

namespace asyncio::detail {

namespace {

/// posix_spawn's two argument objects, destroyed on every path.
struct SpawnArgs {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    SpawnArgs() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~SpawnArgs() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnArgs(const SpawnArgs&) = delete;
    SpawnArgs& operator=(const SpawnArgs&) = delete;
};

/// Parent-side copies of low fds, closed when the spawn returns.
struct TempFds {
    std::vector<int> fds;
    ~TempFds() {
        for (int fd : fds) ::close(fd);
    }
};

void check(int rc, const char* what) {
    if (rc != 0) throw std::system_error(rc, std::generic_category(), what);
}

bool has_nul(const std::string& s) { return s.find('\0') != std::string::npos; }

/// The dup2 actions for fds 0-2. A source fd below 3 other than its own target could be
/// overwritten by an earlier dup2 in the child (Python's bpo-12607); such a source is copied
/// above 2 in the parent first (rare: only when the caller's own 0-2 were closed or reused).
void add_stdio(SpawnArgs& a, const std::array<int, 3>& stdio, TempFds& temps) {
    for (int target = 0; target < 3; ++target) {
        int src = stdio[target];
        if (src == spawn_inherit) continue;
        if (src < 0) throw std::invalid_argument("spawn: invalid fd " + std::to_string(src));
        if (src < 3 && src != target) {
            src = ::fcntl(src, F_DUPFD_CLOEXEC, 3);
            if (src < 0) throw std::system_error(errno, std::generic_category(), "spawn: fcntl(F_DUPFD_CLOEXEC)");
            temps.fds.push_back(src);
        }
        // dup2(fd, fd) included: glibc then clears FD_CLOEXEC, so the fd survives the exec.
        check(posix_spawn_file_actions_adddup2(&a.actions, src, target), "posix_spawn_file_actions_adddup2");
    }
}

/// Popen's close_fds=True with pass_fds: the passed fds lose FD_CLOEXEC (dup2 onto
/// themselves), the gaps between them are closed one by one (glibc ignores EBADF there) and
/// everything above the highest is closed with one close_range (addclosefrom_np).
void add_close_fds(SpawnArgs& a, std::vector<int> pass) {
    std::sort(pass.begin(), pass.end());
    pass.erase(std::unique(pass.begin(), pass.end()), pass.end());
    int next = 3;  // the lowest fd not yet kept or closed
    for (int fd : pass) {
        if (fd < 3) continue;  // 0-2 are the stdio's business
        for (; next < fd; ++next) check(posix_spawn_file_actions_addclose(&a.actions, next), "addclose");
        check(posix_spawn_file_actions_adddup2(&a.actions, fd, fd), "posix_spawn_file_actions_adddup2");
        next = fd + 1;
    }
    check(posix_spawn_file_actions_addclosefrom_np(&a.actions, next), "posix_spawn_file_actions_addclosefrom_np");
}

/// Popen's restore_signals (for every signal, not only SIGPIPE/SIGXFSZ) and an empty mask:
/// the loop may ignore SIGPIPE or block signals, and a child must not inherit that.
void add_attributes(SpawnArgs& a, const SpawnSpec& spec) {
    short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    sigset_t all;
    sigset_t none;
    sigfillset(&all);
    sigemptyset(&none);
    check(posix_spawnattr_setsigdefault(&a.attr, &all), "posix_spawnattr_setsigdefault");
    check(posix_spawnattr_setsigmask(&a.attr, &none), "posix_spawnattr_setsigmask");
    if (spec.start_new_session) flags |= POSIX_SPAWN_SETSID;
    if (spec.process_group) {
        flags |= POSIX_SPAWN_SETPGROUP;
        check(posix_spawnattr_setpgroup(&a.attr, *spec.process_group), "posix_spawnattr_setpgroup");
    }
    check(posix_spawnattr_setflags(&a.attr, flags), "posix_spawnattr_setflags");
}

/// The message of a failed spawn: the program, and the cwd when that is what failed.
std::string failure_message(const SpawnSpec& spec) {
    std::string msg = "cannot run '" + spec.argv[0] + "'";
    if (spec.cwd) {
        struct stat st {};
        if (::stat(spec.cwd->c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) msg += " in cwd '" + *spec.cwd + "'";
    }
    return msg;
}

const char* path_of(const SpawnSpec& spec) {
    if (!spec.env) return ::getenv("PATH");
    auto it = spec.env->find("PATH");
    return it == spec.env->end() ? nullptr : it->second.c_str();
}

}  // namespace

std::string find_program(const std::string& program, const char* path) {
    if (program.find('/') != std::string::npos) return program;
    if (program.empty()) throw std::system_error(ENOENT, std::generic_category(), "cannot run ''");
    std::string_view dirs = path ? path : "/bin:/usr/bin";
    bool denied = false;
    for (;;) {
        const std::size_t colon = dirs.find(':');
        std::string_view dir = dirs.substr(0, colon);
        std::string candidate = dir.empty() ? program : std::string(dir) + "/" + program;  // "": the cwd
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0) {
            // execvp goes on after EACCES (a directory, a file without x) and reports it at the end.
            if (S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) return candidate;
            denied = true;
        } else if (errno == EACCES) {
            denied = true;
        }
        if (colon == std::string_view::npos) break;
        dirs.remove_prefix(colon + 1);
    }
    throw std::system_error(denied ? EACCES : ENOENT, std::generic_category(), "cannot run '" + program + "'");
}

SpawnedChild spawn(const SpawnSpec& spec) {
    if (spec.argv.empty()) throw std::invalid_argument("spawn: empty argv");
    std::vector<char*> argv;
    argv.reserve(spec.argv.size() + 1);
    for (const std::string& s : spec.argv) {
        if (has_nul(s)) throw std::invalid_argument("spawn: embedded null byte in an argument");
        argv.push_back(const_cast<char*>(s.c_str()));  // exec does not write them
    }
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    std::vector<char*> envp;
    if (spec.env) {
        env_strings.reserve(spec.env->size());
        for (const auto& [k, v] : *spec.env) {
            if (k.empty() || k.find('=') != std::string::npos || has_nul(k) || has_nul(v))
                throw std::invalid_argument("spawn: illegal environment variable name or value");
            env_strings.push_back(k + "=" + v);
        }
        for (std::string& s : env_strings) envp.push_back(s.data());
        envp.push_back(nullptr);
    }
    const std::string program = find_program(spec.argv[0], path_of(spec));

    SpawnArgs args;
    TempFds temps;
    add_stdio(args, spec.stdio, temps);
    if (spec.cwd) check(posix_spawn_file_actions_addchdir_np(&args.actions, spec.cwd->c_str()), "addchdir_np");
    add_close_fds(args, spec.pass_fds);
    add_attributes(args, spec);

    pid_t pid = -1;
    const int rc =
        ::posix_spawn(&pid, program.c_str(), &args.actions, &args.attr, argv.data(), spec.env ? envp.data() : environ);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), failure_message(spec));
    return SpawnedChild{pid, open_pidfd(pid)};
}

}  // namespace asyncio::detail
