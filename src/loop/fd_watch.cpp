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
    const detail::Watch which =
        op->kind == detail::IoOperation::Kind::poll_readable ? detail::Watch::readable : detail::Watch::writable;
    detail::FdWatch::Direction& d = (*w)[which];
    if (!d.fn) return;
    if (op->result < 0) {
        // The fd cannot be polled (closed behind the loop's back): report, stop watching.
        w->loop->call_exception_handler(
            {"Error polling file descriptor " + std::to_string(op->reg->fd),
             std::make_exception_ptr(std::system_error(static_cast<int>(-op->result), std::generic_category())),
             {},
             {}});
        d.fn.reset();
        return;
    }
    d.scheduled = w->loop->call_soon([f = d.fn] { (*f)(); });
    detail::IoAccess::backend(*w->loop).start(op);  // level-triggered: report again if still ready
}
}  // namespace

void EventLoop::add_watch(int fd, detail::Watch direction, std::function<void()> fn) {
    check_closed();
    if (fd < 0) throw std::invalid_argument("Invalid file descriptor: " + std::to_string(fd));
    Impl& impl = *impl_;
    if (fd == impl.wakeup_fd)
        throw std::invalid_argument("File descriptor " + std::to_string(fd) + " is used by the loop itself");
    // epoll refuses regular files and directories (EPERM): say so now, as Python's selector.
    struct stat st {};
    if (::fstat(fd, &st) < 0) throw std::system_error(errno, std::generic_category(), "add_reader/add_writer");
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
        throw std::system_error(EPERM, std::generic_category(),
                                "add_reader/add_writer: fd " + std::to_string(fd) + " cannot be polled");
    auto& slot = impl.fd_watches[fd];
    if (!slot) {
        slot = std::make_unique<detail::FdWatch>();
        slot->loop = this;
        for (detail::Watch w : {detail::Watch::readable, detail::Watch::writable}) {
            detail::IoOperation& op = (*slot)[w].op;
            op.kind = w == detail::Watch::readable ? detail::IoOperation::Kind::poll_readable
                                                   : detail::IoOperation::Kind::poll_writable;
            op.reg = impl.backend->registration(fd);
            op.user = slot.get();
            op.complete = watch_ready;
        }
    }
    detail::FdWatch::Direction& d = (*slot)[direction];
    if (d.scheduled) d.scheduled.cancel();  // replaced, as Python does
    d.fn = std::make_shared<std::function<void()>>(std::move(fn));
    if (!d.op.in_flight) impl.backend->start(&d.op);
}

bool EventLoop::remove_watch(int fd, detail::Watch direction) {
    if (closed_) return false;
    Impl& impl = *impl_;
    auto it = impl.fd_watches.find(fd);
    if (it == impl.fd_watches.end() || !(*it->second)[direction].fn) return false;
    detail::FdWatch::Direction& d = (*it->second)[direction];
    d.fn.reset();
    if (d.scheduled) d.scheduled.cancel();
    impl.backend->cancel(&d.op);
    impl.backend->release_interest(d.op.reg);  // as Python's selector.unregister
    if (!it->second->watched()) impl.fd_watches.erase(it);
    return true;
}

detail::FdWatch::~FdWatch() {
    if (!loop) return;
    for (Direction& d : dirs) detail::IoAccess::backend(*loop).cancel(&d.op);
}

}  // namespace asyncio
