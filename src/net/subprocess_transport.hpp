// src/net/subprocess_transport.hpp - a child process and its pipes as a transport (Python's
// base_subprocess.BaseSubprocessTransport with unix_events._UnixSubprocessTransport).
//
// The child is started by spawn.hpp and watched by the loop core (child_watch.hpp); each of
// its streams that is a pipe becomes a pipe transport (pipe_transport.hpp) whose protocol, a
// SubprocessPipeProtocol, reports to this transport. The order of calls is Python's: nothing
// reaches the protocol before connection_made (pipe data and the exit that come first wait in
// `pending_`), and connection_lost comes once the child has exited and every pipe is closed;
// only then does wait() return.
//
// Ownership, as Python's references: the child watch's callback and each pipe protocol hold
// the transport until the child exits / the pipe closes, so a transport nobody else holds
// still hears its child out. The transport is a loop resource: a closing loop lets go of the
// child (not killed, still reaped by the loop core) and breaks those references.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/protocols.hpp>
#include <asyncio/transports.hpp>

#include "loop/loop_impl.hpp"

#include <array>
#include <map>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asyncio::detail {

class UnixSubprocessTransport;

/// Python's WriteSubprocessPipeProto / ReadSubprocessPipeProto: the protocol of the pipe
/// transport of the child's fd 0, 1 or 2.
class SubprocessPipeProtocol final : public Protocol {
public:
    SubprocessPipeProtocol(std::shared_ptr<UnixSubprocessTransport> proc, int fd) : proc_(std::move(proc)), fd_(fd) {}
    void connection_made(std::shared_ptr<Transport> transport) override { pipe = std::move(transport); }
    void data_received(std::string_view data) override;
    void connection_lost(std::exception_ptr exc) override;
    void pause_writing() override;
    void resume_writing() override;

    std::shared_ptr<Transport> pipe;  // set by connection_made
    bool disconnected = false;

private:
    std::shared_ptr<UnixSubprocessTransport> proc_;  // until connection_lost (Python's self.proc)
    int fd_;
};

class UnixSubprocessTransport final : public SubprocessTransport,
                                      public LoopResource,
                                      public std::enable_shared_from_this<UnixSubprocessTransport> {
public:
    /// What start() needs, owned (the options' views copied).
    struct Request {
        std::vector<std::string> argv;
        std::optional<std::string> cwd;
        std::optional<std::map<std::string, std::string>> env;
        std::array<std::optional<int>, 3> stdio;  // PIPE, DEVNULL, STDOUT (fd 2), an fd, or inherit
        bool start_new_session = false;
        std::optional<int> process_group;
        std::vector<int> pass_fds;
    };

    /// Starts the child and connects its pipes; returns once the protocol has been given
    /// connection_made (Python's _make_subprocess_transport). On failure nothing is left: no
    /// fd, no watch; a child already started is killed and reaped, as Python does.
    static Coro<std::shared_ptr<UnixSubprocessTransport>> start(EventLoop& loop,
                                                                std::shared_ptr<SubprocessProtocol> protocol,
                                                                Request request);

    UnixSubprocessTransport(EventLoop& loop, std::shared_ptr<SubprocessProtocol> protocol);
    ~UnixSubprocessTransport() override;

    // BaseTransport
    void close() override;
    bool is_closing() const noexcept override { return closed_; }
    std::any get_extra_info(std::string_view name) const override;
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
    std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

    // SubprocessTransport
    int get_pid() const override { return pid_; }
    std::optional<int> get_returncode() const override { return returncode_; }
    std::shared_ptr<Transport> get_pipe_transport(int fd) const override;
    void send_signal(int sig) override;
    void terminate() override;
    void kill() override;

    /// Python's _wait(): the return code once the child exited and the pipes closed.
    Coro<int> wait();

    // From the pipes' protocols.
    void pipe_data_received(int fd, std::string_view data);
    void pipe_connection_lost(int fd, std::exception_ptr exc);
    void pipe_pause_writing();
    void pipe_resume_writing();

private:
    void spawn_child(Request& request);
    Coro<void> connect_pipes();
    void process_exited(int returncode);
    /// Python's _call: queued until connection_made has been scheduled, then call_soon.
    void call(std::function<void()> fn);
    void try_finish();
    /// Pipe data may go to the protocol at once: connection_made has run and no earlier data
    /// waits in the loop's queue.
    bool can_deliver_now() const noexcept;
    void call_connection_lost();
    /// wait() returns from now on; the loop lets go of us.
    void finish() noexcept;
    /// ESRCH once the transport has finished (Python's _check_proc: ProcessLookupError).
    void check_proc() const;
    void loop_closing() noexcept override;

    EventLoop* loop_;
    std::shared_ptr<SubprocessProtocol> protocol_;
    int pid_ = -1;
    std::optional<int> returncode_;
    bool closed_ = false;
    bool made_ = false;                          // the protocol's connection_made has run
    std::size_t queued_data_ = 0;                // pipe data deferred with call_soon, not yet delivered
    bool finished_ = false;                      // connection_lost scheduled
    bool proc_gone_ = false;                     // connection_lost ran (Python's _proc = None)
    bool linked_ = false;                        // a loop resource
    bool watched_ = false;                       // the loop core watches the child for us
    std::array<int, 3> parent_fds_{-1, -1, -1};  // our ends of the pipes, until connected
    std::array<std::shared_ptr<SubprocessPipeProtocol>, 3> pipes_;
    std::optional<std::vector<std::function<void()>>> pending_{std::in_place};
    std::vector<Future<int>> exit_waiters_;
};

}  // namespace asyncio::detail
