/* Echo benchmark: plain C epoll echo server, the practical limit for one thread.
 *
 * Single thread, non-blocking sockets, level-triggered epoll, TCP_NODELAY. A readable
 * connection is read once into a 64 KiB buffer shared by all connections and the bytes are
 * written straight back. If the write is partial, the rest is copied into a per-connection
 * buffer (allocated only then) and the connection waits for EPOLLOUT instead of EPOLLIN
 * until that buffer is drained, so a slow reader gets back-pressure rather than unbounded
 * buffering. Per idle connection the process holds one small struct.
 *
 * Usage: c_epoll_server --port P [--read-size BYTES]
 *        (listens on 127.0.0.1:P; prints nothing but errors). --read-size (default 65536) is
 *        for experiments only; run_echo.py uses the default.
 * Build: cc -O2 -Wall -Wextra c_epoll_server.c -o c_epoll_server
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct conn {
    int fd;
    size_t pend_off, pend_len; /* unsent bytes are pend[pend_off, pend_len) */
    char *pend;                /* NULL unless a write was partial */
};

static int epfd;
static size_t read_size = 64 * 1024; /* --read-size */
static char *rbuf;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void conn_close(struct conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c->pend);
    free(c);
}

static int set_events(struct conn *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        perror("epoll_ctl(MOD)");
        return -1;
    }
    return 0;
}

/* Writes buf[0, len) and keeps what the socket did not take. Returns -1 to close. */
static int send_or_keep(struct conn *c, const char *buf, size_t len) {
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            return -1; /* EPIPE / ECONNRESET: the client went away */
        n = 0;
    }
    if ((size_t)n == len)
        return 0;
    size_t rest = len - (size_t)n;
    if (!c->pend && !(c->pend = malloc(read_size)))
        die("malloc");
    memcpy(c->pend, buf + n, rest);
    c->pend_off = 0;
    c->pend_len = rest;
    return set_events(c, EPOLLOUT);
}

static void on_readable(struct conn *c) {
    ssize_t n = read(c->fd, rbuf, read_size);
    if (n > 0) {
        if (send_or_keep(c, rbuf, (size_t)n) < 0)
            conn_close(c);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        conn_close(c); /* EOF or reset */
    }
}

static void on_writable(struct conn *c) {
    ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_close(c);
        return;
    }
    c->pend_off += (size_t)n;
    if (c->pend_off == c->pend_len) {
        c->pend_off = c->pend_len = 0;
        if (set_events(c, EPOLLIN) < 0)
            conn_close(c);
    }
}

static void on_accept(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            perror("accept4"); /* EMFILE etc.: report and retry on the next event */
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            perror("epoll_ctl(ADD)");
            close(fd);
            free(c);
        }
    }
}

int main(int argc, char **argv) {
    int port = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--read-size") && i + 1 < argc)
            read_size = (size_t)atol(argv[++i]);
        else
            port = -1, i = argc;
    }
    if (port <= 0 || port > 65535 || read_size == 0) {
        fprintf(stderr, "usage: %s --port P [--read-size BYTES]\n", argv[0]);
        return 2;
    }
    if (!(rbuf = malloc(read_size)))
        die("malloc");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(lfd, SOMAXCONN) < 0)
        die("listen");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL = the listener */
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll_ctl(listener)");

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {
                on_accept(lfd);
            } else if (c->pend_len) {
                on_writable(c); /* EPOLLOUT, or EPOLLERR/EPOLLHUP which the send reports */
            } else {
                on_readable(c); /* EPOLLIN, or EPOLLERR/EPOLLHUP which the read reports */
            }
        }
    }
}
