// src/loop/fd_watch.cpp - add_reader/remove_reader/add_writer/remove_writer (Python's
// selector-based watchers) on the completion-style backend: a standing poll operation per
// watched direction whose completion queues the user's callback, like the selector loop
// queueing the key's handle.
#include "loop_impl.hpp"

#include <cerrno>
#include <string>
#include <sys/stat.h>
#include <system_error>

namespace asyncio {

namespace {
void watch_ready(detail::IoOperation* op) {
    auto* w = static_cast<detail::FdWatch*>(op->user);
    const int dir = op->kind == detail::IoOperation::Kind::poll_readable ? 0 : 1;
    if (!w->fn[dir]) return;
    if (op->result < 0) {
        // The fd cannot be polled (closed behind the loop's back): report, stop watching.
        w->loop->call_exception_handler(
            {"Error polling file descriptor " + std::to_string(op->reg->fd),
             std::make_exception_ptr(std::system_error(static_cast<int>(-op->result), std::generic_category())),
             {}, {}});
        w->fn[dir].reset();
        return;
    }
    w->scheduled[dir] = w->loop->call_soon([f = w->fn[dir]] { (*f)(); });
    detail::IoAccess::backend(*w->loop).start(op);  // level-triggered: report again if still ready
}
}  // namespace

void EventLoop::add_watch(int fd, int direction, std::function<void()> fn) {
    check_closed();
    if (fd < 0) throw std::invalid_argument("Invalid file descriptor: " + std::to_string(fd));
    Impl& impl = *impl_;
    if (fd == impl.wakeup_fd) throw std::invalid_argument("File descriptor " + std::to_string(fd) + " is used by the loop itself");
    // epoll refuses regular files and directories (EPERM): say so now, as Python's selector.
    struct stat st {};
    if (::fstat(fd, &st) < 0) throw std::system_error(errno, std::generic_category(), "add_reader/add_writer");
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        throw std::system_error(EPERM, std::generic_category(), "add_reader/add_writer: fd " + std::to_string(fd) + " cannot be polled");
    auto& slot = impl.fd_watches[fd];
    if (!slot) {
        slot = std::make_unique<detail::FdWatch>();
        slot->loop = this;
        for (int d = 0; d < 2; ++d) {
            detail::IoOperation& op = slot->ops[d];
            op.kind = d == 0 ? detail::IoOperation::Kind::poll_readable : detail::IoOperation::Kind::poll_writable;
            op.reg = impl.backend->registration(fd);
            op.user = slot.get();
            op.complete = watch_ready;
        }
    }
    detail::FdWatch& w = *slot;
    if (w.scheduled[direction]) w.scheduled[direction].cancel();  // replaced, as Python does
    w.fn[direction] = std::make_shared<std::function<void()>>(std::move(fn));
    if (!w.ops[direction].in_flight) impl.backend->start(&w.ops[direction]);
}

bool EventLoop::remove_watch(int fd, int direction) {
    if (closed_) return false;
    Impl& impl = *impl_;
    auto it = impl.fd_watches.find(fd);
    if (it == impl.fd_watches.end() || !it->second->fn[direction]) return false;
    detail::FdWatch& w = *it->second;
    w.fn[direction].reset();
    if (w.scheduled[direction]) w.scheduled[direction].cancel();
    impl.backend->cancel(&w.ops[direction]);
    impl.backend->release_interest(w.ops[direction].reg);  // as Python's selector.unregister
    if (!w.fn[0] && !w.fn[1]) impl.fd_watches.erase(it);
    return true;
}

detail::FdWatch::~FdWatch() {
    if (!loop) return;
    for (auto& op : ops) detail::IoAccess::backend(*loop).cancel(&op);
}

}  // namespace asyncio
