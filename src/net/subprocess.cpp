// src/net/subprocess.cpp - Process and create_subprocess_exec/_shell over the subprocess
// transport: a port of CPython 3.13's asyncio/subprocess.py.
#include <asyncio/subprocess.hpp>

#include <asyncio/tasks.hpp>

#include <cerrno>
#include <exception>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace asyncio {

namespace detail {

/// Python's SubprocessStreamProtocol: feeds the child's stdout/stderr into StreamReaders and
/// gives its stdin a StreamWriter whose drain() follows the pipe's flow control (through a
/// StreamReaderProtocol, the FlowControlMixin of this library's streams).
class SubprocessStreamProtocol final : public SubprocessProtocol {
public:
    explicit SubprocessStreamProtocol(std::size_t limit) : limit_(limit) {}

    void connection_made(std::shared_ptr<SubprocessTransport> transport) override {
        transport_ = transport;
        for (int fd : {1, 2}) {
            if (std::shared_ptr<Transport> pipe = transport->get_pipe_transport(fd)) {
                std::optional<StreamReader>& reader = fd == 1 ? stdout_ : stderr_;
                reader.emplace(limit_);
                reader->set_transport(pipe);
                pipe_fds_.push_back(fd);
            }
        }
        if (std::shared_ptr<Transport> pipe = transport->get_pipe_transport(0)) {
            stdin_flow_ = std::make_shared<StreamReaderProtocol>(StreamReader(limit_));
            stdin_flow_->connection_made(pipe);
            stdin_.emplace(pipe, stdin_flow_, std::nullopt);
        }
    }
    void pipe_data_received(int fd, std::string_view data) override {
        if (StreamReader* reader = reader_of(fd)) reader->feed_data(data);
    }
    void pipe_connection_lost(int fd, std::exception_ptr exc) override {
        if (fd == 0) {
            if (stdin_) stdin_->close();
            if (stdin_flow_) stdin_flow_->connection_lost(exc);  // wakes drain() and wait_closed()
            return;
        }
        if (StreamReader* reader = reader_of(fd)) {
            if (exc)
                reader->set_exception(exc);
            else
                reader->feed_eof();
        }
        std::erase(pipe_fds_, fd);
        maybe_close_transport();
    }
    void process_exited() override {
        exited_ = true;
        maybe_close_transport();
    }
    void pause_writing() override {
        if (stdin_flow_) stdin_flow_->pause_writing();
    }
    void resume_writing() override {
        if (stdin_flow_) stdin_flow_->resume_writing();
    }

    std::optional<StreamWriter> stdin_;
    std::optional<StreamReader> stdout_, stderr_;

private:
    StreamReader* reader_of(int fd) {
        std::optional<StreamReader>& r = fd == 1 ? stdout_ : stderr_;
        return fd != 0 && r ? &*r : nullptr;
    }
    /// Once the child has exited and its output pipes are closed, the transport is done.
    void maybe_close_transport() {
        if (pipe_fds_.empty() && exited_ && transport_) std::exchange(transport_, nullptr)->close();
    }

    std::size_t limit_;
    std::shared_ptr<SubprocessTransport> transport_;
    std::shared_ptr<StreamReaderProtocol> stdin_flow_;
    std::vector<int> pipe_fds_;
    bool exited_ = false;
};

namespace {

Coro<Process> make_process(Coro<MadeSubprocess> made) {
    MadeSubprocess m = co_await std::move(made);
    co_return Process(std::move(m.first), std::static_pointer_cast<SubprocessStreamProtocol>(m.second));
}

ProtocolFactory stream_protocol_factory(std::size_t limit) {
    return [limit] { return std::shared_ptr<BaseProtocol>(std::make_shared<SubprocessStreamProtocol>(limit)); };
}

bool is_broken_pipe(const std::system_error& e) {
    return e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset;
}

/// Python's Process._feed_stdin: a child that does not read its input is not an error.
/// The input goes in pieces with drain() between them, so the transport only ever copies what
/// the pipe does not take at once - never the whole input (Python writes it in one call).
Coro<void> feed_stdin(StreamWriter stdin_, std::string input) {
    constexpr std::size_t piece = 256 * 1024;
    try {
        std::string_view rest(input);
        do {
            std::string_view now = rest.substr(0, piece);
            rest.remove_prefix(now.size());
            if (!now.empty()) stdin_.write(now);
            co_await stdin_.drain();
        } while (!rest.empty());
    } catch (const std::system_error& e) {
        if (!is_broken_pipe(e)) throw;
    }
    stdin_.close();
}

/// Python's Process._read_stream: everything until EOF, then the pipe is closed. The output
/// goes into `*output` rather than being the task's result: gather() copies its children's
/// results (a task's result may be asked for again), and copying a large output costs as much
/// as reading it. Shared, not a reference into communicate()'s frame: when another child of
/// the gather fails, communicate() is gone while this one still runs.
Coro<void> read_stream(StreamReader reader, std::shared_ptr<Transport> pipe, std::shared_ptr<std::string> output) {
    *output = co_await reader.read();
    if (pipe) pipe->close();
}

Coro<void> nothing() { co_return; }

}  // namespace

}  // namespace detail

Process::Process(std::shared_ptr<SubprocessTransport> transport,
                 std::shared_ptr<detail::SubprocessStreamProtocol> protocol)
    : stdin_(protocol->stdin_),
      stdout_(protocol->stdout_),
      stderr_(protocol->stderr_),
      transport_(std::move(transport)),
      protocol_(std::move(protocol)),
      pid_(transport_->get_pid()) {}

std::optional<int> Process::returncode() const { return transport_->get_returncode(); }

Coro<int> Process::wait() { return detail::SubprocessAccess::wait(*transport_); }

Coro<std::pair<std::string, std::string>> Process::communicate(std::string input) {
    Coro<void> feed = stdin_ ? detail::feed_stdin(*stdin_, std::move(input)) : detail::nothing();
    auto out_bytes = std::make_shared<std::string>(), err_bytes = std::make_shared<std::string>();
    Coro<void> out =
        stdout_ ? detail::read_stream(*stdout_, transport_->get_pipe_transport(1), out_bytes) : detail::nothing();
    Coro<void> err =
        stderr_ ? detail::read_stream(*stderr_, transport_->get_pipe_transport(2), err_bytes) : detail::nothing();
    co_await gather(std::move(feed), std::move(out), std::move(err));
    co_await wait();
    co_return std::pair<std::string, std::string>(std::move(*out_bytes), std::move(*err_bytes));
}

void Process::send_signal(int sig) { transport_->send_signal(sig); }
void Process::terminate() { transport_->terminate(); }
void Process::kill() { transport_->kill(); }

Coro<Process> create_subprocess_exec(std::vector<std::string> argv, SubprocessOptions opts) {
    EventLoop& loop = get_running_loop();
    return detail::make_process(detail::SubprocessAccess::subprocess_exec(
        loop, detail::stream_protocol_factory(opts.limit), std::move(argv), opts));
}

Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions opts) {
    EventLoop& loop = get_running_loop();
    return detail::make_process(detail::SubprocessAccess::subprocess_shell(
        loop, detail::stream_protocol_factory(opts.limit), std::move(cmd), opts));
}

}  // namespace asyncio
