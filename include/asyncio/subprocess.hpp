// asyncio/subprocess.hpp - child processes with streams: create_subprocess_exec/_shell and
// Process (Python's asyncio.subprocess), and the loop's subprocess_exec/_shell with a
// SubprocessProtocol (Python's loop.subprocess_exec).
//
//   std::vector<std::string> argv{"ls", "-l"};
//   asyncio::Process p = co_await asyncio::create_subprocess_exec(argv, {.stdout_ = asyncio::PIPE});
//   auto [out, err] = co_await p.communicate();
//   int status = co_await p.wait();   // -N when signal N killed it
//
// As in Python: the child is watched by the loop (a pidfd per child, no SIGCHLD handler);
// wait() returns once the child has exited and its pipes are closed; cancelling wait() or
// communicate() leaves the child running; closing the transport kills a child that still
// runs; a child that exits without reading its stdin is not an error for communicate().
// Children start with default signal dispositions and an empty signal mask, and keep no fd
// of ours but 0, 1, 2 and `pass_fds`.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/connections.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/protocols.hpp>
#include <asyncio/streams.hpp>
#include <asyncio/transports.hpp>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace asyncio {

namespace detail {
class SubprocessStreamProtocol;
}  // namespace detail

/// A child process started by create_subprocess_exec/_shell (Python's asyncio.subprocess.Process).
class Process {
public:
    Process(std::shared_ptr<SubprocessTransport> transport, std::shared_ptr<detail::SubprocessStreamProtocol> protocol);

    int pid() const noexcept { return pid_; }
    /// nullopt while the child runs; its exit status, or -N when signal N killed it.
    std::optional<int> returncode() const;
    /// Waits until the child has exited and its pipes are closed; returns returncode().
    Coro<int> wait();
    /// Writes `input` to stdin (if it is a pipe) and closes it, reads stdout and stderr (those
    /// that are pipes) to EOF, and waits for the child: {stdout, stderr} ("" for a stream
    /// that is not a pipe). A child that exits without reading its input is not an error.
    Coro<std::pair<std::string, std::string>> communicate(std::string input = {});
    /// std::system_error ESRCH once the child has been waited for (Python's ProcessLookupError).
    void send_signal(int sig);
    void terminate();
    void kill();

    /// The child's stdin, stdout and stderr, when they are pipes.
    std::optional<StreamWriter> stdin_;
    std::optional<StreamReader> stdout_;
    std::optional<StreamReader> stderr_;

private:
    std::shared_ptr<SubprocessTransport> transport_;
    std::shared_ptr<detail::SubprocessStreamProtocol> protocol_;
    int pid_;
};

/// Starts `argv` (argv[0] searched in PATH) with the given streams and options.
Coro<Process> create_subprocess_exec(std::vector<std::string> argv, SubprocessOptions opts = {});
/// Starts `/bin/sh -c cmd`.
Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions opts = {});

// ---- EventLoop members --------------------------------------------------------------------

template <class F>
Coro<std::pair<std::shared_ptr<SubprocessTransport>, detail::factory_result_t<F>>> EventLoop::subprocess_exec(
    F protocol_factory, std::vector<std::string> argv, SubprocessOptions opts) {
    return detail::typed_subprocess<F>(detail::SubprocessAccess::subprocess_exec(
        *this, detail::erase_factory(std::move(protocol_factory)), std::move(argv), opts));
}
template <class F>
Coro<std::pair<std::shared_ptr<SubprocessTransport>, detail::factory_result_t<F>>> EventLoop::subprocess_exec(
    F protocol_factory, std::vector<std::string> argv) {
    return subprocess_exec(std::move(protocol_factory), std::move(argv), detail::three_pipes());
}
template <class F>
Coro<std::pair<std::shared_ptr<SubprocessTransport>, detail::factory_result_t<F>>> EventLoop::subprocess_shell(
    F protocol_factory, std::string cmd, SubprocessOptions opts) {
    return detail::typed_subprocess<F>(detail::SubprocessAccess::subprocess_shell(
        *this, detail::erase_factory(std::move(protocol_factory)), std::move(cmd), opts));
}
template <class F>
Coro<std::pair<std::shared_ptr<SubprocessTransport>, detail::factory_result_t<F>>> EventLoop::subprocess_shell(
    F protocol_factory, std::string cmd) {
    return subprocess_shell(std::move(protocol_factory), std::move(cmd), detail::three_pipes());
}

}  // namespace asyncio
