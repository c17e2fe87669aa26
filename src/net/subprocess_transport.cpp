// src/net/subprocess_transport.cpp - UnixSubprocessTransport (see subprocess_transport.hpp), a
// port of CPython 3.13's base_subprocess.py and unix_events._make_subprocess_transport.
#include "subprocess_transport.hpp"

#include <asyncio/base_events.hpp>
#include <asyncio/detail/connections.hpp>
#include <asyncio/tasks.hpp>

#include "loop/child_watch.hpp"
#include "net/spawn.hpp"

#include <cerrno>
#include <csignal>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

namespace asyncio::detail {

namespace {

/// An fd we opened for the spawn, closed when this goes (unless released).
class OwnedFd {
public:
    OwnedFd() noexcept = default;
    explicit OwnedFd(int fd) noexcept : fd_(fd) {}
    OwnedFd(OwnedFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    OwnedFd& operator=(OwnedFd&& o) noexcept {
        reset();
        fd_ = std::exchange(o.fd_, -1);
        return *this;
    }
    ~OwnedFd() { reset(); }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_ = -1;
};

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

/// Our end and the child's end of one pipe (O_CLOEXEC both: spawn dup2s the child's).
struct PipeEnds {
    OwnedFd ours, childs;
};
PipeEnds make_pipe(bool child_reads) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) throw_errno("pipe2");
    OwnedFd r(fds[0]), w(fds[1]);
    if (child_reads) return {std::move(w), std::move(r)};
    return {std::move(r), std::move(w)};
}

const char* stream_name(int fd) { return fd == 0 ? "stdin_" : fd == 1 ? "stdout_" : "stderr_"; }

}  // namespace

// ---- the pipes' protocol ---------------------------------------------------------------------

void SubprocessPipeProtocol::data_received(std::string_view data) {
    if (proc_) proc_->pipe_data_received(fd_, data);
}
void SubprocessPipeProtocol::connection_lost(std::exception_ptr exc) {
    disconnected = true;
    if (auto proc = std::move(proc_)) proc->pipe_connection_lost(fd_, exc);
}
void SubprocessPipeProtocol::pause_writing() {
    if (proc_) proc_->pipe_pause_writing();
}
void SubprocessPipeProtocol::resume_writing() {
    if (proc_) proc_->pipe_resume_writing();
}

// ---- starting --------------------------------------------------------------------------------

UnixSubprocessTransport::UnixSubprocessTransport(EventLoop& loop, std::shared_ptr<SubprocessProtocol> protocol)
    : loop_(&loop), protocol_(std::move(protocol)) {}

UnixSubprocessTransport::~UnixSubprocessTransport() {
    for (int& fd : parent_fds_)
        if (fd >= 0) ::close(fd);
    if (linked_) IoAccess::impl(*loop_).unlink(this);
}

void UnixSubprocessTransport::spawn_child(Request& request) {
    SpawnSpec spec;
    spec.argv = std::move(request.argv);
    spec.cwd = std::move(request.cwd);
    spec.env = std::move(request.env);
    spec.start_new_session = request.start_new_session;
    spec.process_group = request.process_group;
    spec.pass_fds = std::move(request.pass_fds);

    std::array<OwnedFd, 3> ours, childs;  // what we open for the child: closed on every path
    OwnedFd devnull;
    for (int fd = 0; fd < 3; ++fd) {
        const std::optional<int>& want = request.stdio[fd];
        if (!want) continue;  // inherit
        if (*want == PIPE) {
            PipeEnds ends = make_pipe(/*child_reads=*/fd == 0);
            ours[fd] = std::move(ends.ours);
            childs[fd] = std::move(ends.childs);
            spec.stdio[fd] = childs[fd].get();
        } else if (*want == DEVNULL) {
            if (devnull.get() < 0) {
                devnull = OwnedFd(::open("/dev/null", O_RDWR | O_CLOEXEC));
                if (devnull.get() < 0) throw_errno("open /dev/null");
            }
            spec.stdio[fd] = devnull.get();
        } else if (*want == STDOUT) {
            if (fd != 2) throw std::invalid_argument(std::string(stream_name(fd)) + " cannot be asyncio::STDOUT");
            spec.stdio[2] = spec.stdio[1] == spawn_inherit ? 1 : spec.stdio[1];
        } else if (*want >= 0) {
            spec.stdio[fd] = *want;
        } else {
            throw std::invalid_argument(std::string(stream_name(fd)) + " must be asyncio::PIPE, DEVNULL, " +
                                        (fd == 2 ? "STDOUT, " : "") + "an fd >= 0 or unset, not " +
                                        std::to_string(*want));
        }
    }
    SpawnedChild child = spawn(spec);  // throws with the child's errno; our fds close then
    pid_ = child.pid;
    // Watch at once, so the child is reaped even if what follows fails. The callback keeps
    // us alive until the child exits (Python's watcher holds the transport).
    ChildWatchAccess::watch(*loop_, child.pid, child.pidfd,
                            [self = shared_from_this()](int, int returncode) { self->process_exited(returncode); });
    watched_ = true;
    for (int fd = 0; fd < 3; ++fd) parent_fds_[fd] = ours[fd].release();
}

Coro<void> UnixSubprocessTransport::connect_pipes() {
    // Python's _connect_pipes: each pipe transport takes its fd over.
    for (int fd = 0; fd < 3; ++fd) {
        if (parent_fds_[fd] < 0) continue;
        auto proto = std::make_shared<SubprocessPipeProtocol>(shared_from_this(), fd);
        pipes_[fd] = proto;
        ProtocolFactory factory = [proto] { return std::shared_ptr<BaseProtocol>(proto); };
        int pipe_fd = std::exchange(parent_fds_[fd], -1);
        std::exception_ptr error;
        try {
            if (fd == 0)
                co_await ConnectionAccess::connect_write_pipe(*loop_, std::move(factory), pipe_fd);
            else
                co_await ConnectionAccess::connect_read_pipe(*loop_, std::move(factory), pipe_fd);
        } catch (...) {
            error = std::current_exception();
        }
        if (error) {
            pipes_[fd].reset();  // never connected: nothing to wait for on it
            for (int& rest : parent_fds_)
                if (rest >= 0) ::close(std::exchange(rest, -1));
            std::rethrow_exception(error);
        }
    }
    loop_->call_soon([self = shared_from_this()] {
        self->made_ = true;
        if (self->protocol_) self->protocol_->connection_made(self);
    });
    for (auto& fn : *pending_) loop_->call_soon(std::move(fn));
    pending_.reset();
}

Coro<std::shared_ptr<UnixSubprocessTransport>> UnixSubprocessTransport::start(
    EventLoop& loop, std::shared_ptr<SubprocessProtocol> protocol, Request request) {
    auto self = std::make_shared<UnixSubprocessTransport>(loop, std::move(protocol));
    self->spawn_child(request);
    IoAccess::impl(loop).link(self.get());
    self->linked_ = true;
    std::exception_ptr error;
    try {
        co_await self->connect_pipes();
        // Return after connection_made and the calls it was waiting for (Python's waiter
        // future wakes the caller in the next iteration, after them).
        co_await sleep(0);
    } catch (...) {
        error = std::current_exception();
    }
    if (error) {
        // Python: transp.close() (kills the child) and `await transp._wait()`, then raise.
        // The protocol never had connection_made: it hears nothing more.
        self->protocol_.reset();
        self->pending_.reset();
        self->close();
        try {
            co_await self->wait();
        } catch (...) {
        }
        std::rethrow_exception(error);
    }
    co_return self;
}

// ---- events from the pipes and the child ----------------------------------------------------

void UnixSubprocessTransport::call(std::function<void()> fn) {
    if (pending_)
        pending_->push_back(std::move(fn));
    else if (linked_)
        loop_->call_soon(std::move(fn));
}

bool UnixSubprocessTransport::can_deliver_now() const noexcept { return made_ && queued_data_ == 0; }

void UnixSubprocessTransport::pipe_data_received(int fd, std::string_view data) {
    // Python defers this call too (call_soon); once connection_made has run and no deferred
    // data is waiting we call the protocol at once instead - the same order, one copy and one
    // callback less per chunk (the pipe transport already calls us from a loop callback).
    // Not as soon as connection_made is scheduled: output read before it runs would reach a
    // protocol that has not set up its readers (Process lost a short child's output so).
    if (can_deliver_now()) {
        if (protocol_) protocol_->pipe_data_received(fd, data);
        return;
    }
    ++queued_data_;
    call([self = shared_from_this(), fd, bytes = std::string(data)] {
        --self->queued_data_;
        if (self->protocol_) self->protocol_->pipe_data_received(fd, bytes);
    });
}

void UnixSubprocessTransport::pipe_connection_lost(int fd, std::exception_ptr exc) {
    call([self = shared_from_this(), fd, exc] {
        if (self->protocol_) self->protocol_->pipe_connection_lost(fd, exc);
    });
    try_finish();
}

void UnixSubprocessTransport::pipe_pause_writing() {
    if (protocol_) protocol_->pause_writing();
}
void UnixSubprocessTransport::pipe_resume_writing() {
    if (protocol_) protocol_->resume_writing();
}

void UnixSubprocessTransport::process_exited(int returncode) {
    watched_ = false;
    if (loop_->get_debug())
        log_message("<UnixSubprocessTransport pid=" + std::to_string(pid_) + "> exited with return code " +
                        std::to_string(returncode),
                    LogLevel::info);
    returncode_ = returncode;
    call([self = shared_from_this()] {
        if (self->protocol_) self->protocol_->process_exited();
    });
    try_finish();
}

void UnixSubprocessTransport::try_finish() {
    if (finished_ || !returncode_) return;
    for (const auto& p : pipes_)
        if (p && !p->disconnected) return;
    finished_ = true;
    call([self = shared_from_this()] { self->call_connection_lost(); });
}

void UnixSubprocessTransport::call_connection_lost() {
    // Python's _call_connection_lost: whatever connection_lost does, wait() wakes up after it.
    struct Finally {
        UnixSubprocessTransport* self;
        ~Finally() { self->finish(); }
    } finally{this};
    if (std::shared_ptr<SubprocessProtocol> protocol = std::move(protocol_)) protocol->connection_lost(nullptr);
}

void UnixSubprocessTransport::finish() noexcept {
    proc_gone_ = true;
    for (auto& w : exit_waiters_)
        if (!w.done()) w.set_result(*returncode_);
    exit_waiters_.clear();
    if (linked_) {
        IoAccess::impl(*loop_).unlink(this);
        linked_ = false;
    }
}

Coro<int> UnixSubprocessTransport::wait() {
    if (returncode_ && proc_gone_) co_return *returncode_;
    if (!linked_ && !proc_gone_) throw RuntimeError("the event loop of this subprocess transport is closed");
    Future<int> waiter(*loop_);
    exit_waiters_.push_back(waiter);
    co_return co_await waiter;
}

// ---- the transport's methods -------------------------------------------------------------------

void UnixSubprocessTransport::close() {
    if (closed_) return;
    closed_ = true;
    for (auto& p : pipes_)
        if (p && p->pipe) p->pipe->close();
    if (!returncode_ && watched_) {
        if (loop_->get_debug())
            log_message("Close running child process: kill <UnixSubprocessTransport pid=" + std::to_string(pid_) + ">");
        ::kill(pid_, SIGKILL);  // ESRCH: it has exited, not yet reported
    }
}

std::any UnixSubprocessTransport::get_extra_info(std::string_view name) const {
    if (name == "pid") return pid_;  // Python's extra 'subprocess' is the Popen object
    return {};
}

void UnixSubprocessTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
    auto p = std::dynamic_pointer_cast<SubprocessProtocol>(protocol);
    if (!p) throw std::invalid_argument("a subprocess transport needs a SubprocessProtocol");
    protocol_ = std::move(p);
}

std::shared_ptr<Transport> UnixSubprocessTransport::get_pipe_transport(int fd) const {
    if (fd < 0 || fd > 2 || !pipes_[fd]) return nullptr;
    return pipes_[fd]->pipe;
}

void UnixSubprocessTransport::check_proc() const {
    if (proc_gone_)
        throw std::system_error(ESRCH, std::generic_category(),
                                "process " + std::to_string(pid_) + " has finished (ProcessLookupError)");
}

void UnixSubprocessTransport::send_signal(int sig) {
    check_proc();
    // Exited but not finished (pipes still open): Popen.send_signal does nothing then - the
    // pid is reaped and may already belong to someone else.
    if (returncode_) return;
    if (::kill(pid_, sig) < 0) throw_errno("kill");
}
void UnixSubprocessTransport::terminate() { send_signal(SIGTERM); }
void UnixSubprocessTransport::kill() { send_signal(SIGKILL); }

void UnixSubprocessTransport::loop_closing() noexcept {
    // The loop core lets go of the child (it is reaped, not killed); the pipes are released by
    // their own hooks. Drop what keeps us alive or waits for us.
    linked_ = false;
    closed_ = true;
    watched_ = false;
    pending_.reset();
    exit_waiters_.clear();
    for (auto& p : pipes_) p.reset();
    protocol_.reset();
}

// ---- the loop's door -------------------------------------------------------------------------

namespace {

UnixSubprocessTransport::Request make_request(std::vector<std::string> argv, const SubprocessOptions& opts) {
    if (argv.empty()) throw std::invalid_argument("subprocess_exec() needs a program: argv is empty");
    UnixSubprocessTransport::Request r;
    r.argv = std::move(argv);
    if (!opts.cwd.empty()) r.cwd = std::string(opts.cwd);
    if (opts.env) r.env = *opts.env.get();
    r.stdio = {opts.stdin_, opts.stdout_, opts.stderr_};
    r.start_new_session = opts.start_new_session;
    r.process_group = opts.process_group;
    r.pass_fds.assign(opts.pass_fds.begin(), opts.pass_fds.end());
    return r;
}

Coro<MadeSubprocess> run_subprocess(EventLoop& loop, ProtocolFactory factory, UnixSubprocessTransport::Request r) {
    std::shared_ptr<BaseProtocol> made = factory();
    auto protocol = std::dynamic_pointer_cast<SubprocessProtocol>(made);
    if (!protocol) throw std::invalid_argument("subprocess_exec(): the factory must return a SubprocessProtocol");
    if (loop.get_debug()) log_message("execute program '" + r.argv[0] + "'", LogLevel::debug);
    std::shared_ptr<UnixSubprocessTransport> transport =
        co_await UnixSubprocessTransport::start(loop, protocol, std::move(r));
    co_return MadeSubprocess(std::move(transport), std::move(made));
}

}  // namespace

Coro<MadeSubprocess> SubprocessAccess::subprocess_exec(EventLoop& loop, ProtocolFactory factory,
                                                       std::vector<std::string> argv, const SubprocessOptions& opts) {
    return run_subprocess(loop, std::move(factory), make_request(std::move(argv), opts));
}

Coro<MadeSubprocess> SubprocessAccess::subprocess_shell(EventLoop& loop, ProtocolFactory factory, std::string cmd,
                                                        const SubprocessOptions& opts) {
    std::vector<std::string> argv{"/bin/sh", "-c", std::move(cmd)};
    return run_subprocess(loop, std::move(factory), make_request(std::move(argv), opts));
}

Coro<int> SubprocessAccess::wait(SubprocessTransport& transport) {
    auto* t = dynamic_cast<UnixSubprocessTransport*>(&transport);
    if (!t) throw std::invalid_argument("wait(): not a transport made by subprocess_exec/subprocess_shell");
    return t->wait();
}

}  // namespace asyncio::detail
