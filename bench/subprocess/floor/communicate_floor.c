// bench/subprocess/floor/communicate_floor.c - the floor for communicate() of SIZE bytes
// through `cat`: the same work without an event loop, in plain C (fork/exec, two non-blocking
// pipes, poll, one write of up to 256 KiB and one read per readiness). Like the benchmark, it
// builds the input in memory (memset) and collects the whole output in memory:
//
//   prealloc   the output buffer has its final size from the start (the size is known)
//   realloc    grows by doubling with realloc (glibc moves large blocks with mremap: no copy)
//   copygrow   grows by doubling with malloc + memcpy + free, as std::string does
//
// and, as a third argument, "populate": each block is pre-faulted with MADV_POPULATE_WRITE just
// before it is written (what StreamReader::read() to EOF does past 8 MiB), or "thp":
// MADV_HUGEPAGE on the buffers. Build and run:
//
//   gcc -O2 -o /tmp/communicate_floor bench/subprocess/floor/communicate_floor.c
//   /tmp/communicate_floor 1073741824 prealloc|realloc|copygrow [populate|thp]
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static int thp, populate;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/// The hint of the chosen variant on [p, p + n), page-aligned inwards.
static void advise(char* p, size_t n, int for_write) {
    unsigned long b = ((unsigned long)p + 4095) & ~4095UL, e = ((unsigned long)p + n) & ~4095UL;
    if (e <= b) return;
    if (thp) madvise((void*)b, e - b, MADV_HUGEPAGE);
    if (populate && for_write) madvise((void*)b, e - b, MADV_POPULATE_WRITE);
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SIZE prealloc|realloc|copygrow [populate|thp]\n", argv[0]);
        return 2;
    }
    size_t size = strtoull(argv[1], 0, 10);
    const char* mode = argv[2];
    thp = argc > 3 && !strcmp(argv[3], "thp");
    populate = argc > 3 && !strcmp(argv[3], "populate");
    int prealloc = !strcmp(mode, "prealloc"), use_realloc = !strcmp(mode, "realloc");
    signal(SIGPIPE, SIG_IGN);
    double t0 = now();

    char* in = malloc(size);
    advise(in, size, 0);
    memset(in, 'x', size);
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(from_child, O_CLOEXEC) < 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        execlp("cat", "cat", (char*)0);
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    fcntl(to_child[1], F_SETFL, O_NONBLOCK);
    fcntl(from_child[0], F_SETFL, O_NONBLOCK);

    size_t cap = prealloc ? size : 65536, len = 0, off = 0, faulted = 0;
    char* out = malloc(cap);
    static char tmp[262144];
    int in_open = 1, out_open = 1;
    while (in_open || out_open) {
        struct pollfd p[2] = {{in_open ? to_child[1] : -1, POLLOUT, 0}, {out_open ? from_child[0] : -1, POLLIN, 0}};
        poll(p, 2, -1);
        if (in_open && p[0].revents) {
            size_t want = size - off > sizeof tmp ? sizeof tmp : size - off;
            ssize_t n = write(to_child[1], in + off, want);
            if (n > 0) off += n;
            if (off == size || (n < 0 && errno != EAGAIN)) {
                close(to_child[1]);
                in_open = 0;
            }
        }
        if (!out_open || !p[1].revents) continue;
        if (prealloc) {  // read straight into the final buffer, pre-faulted 4 MiB ahead
            if (len + 65536 > faulted && faulted < cap) {
                size_t upto = len + (4 << 20) < cap ? len + (4 << 20) : cap;
                advise(out + faulted, upto - faulted, 1);
                faulted = upto;
            }
            ssize_t n = read(from_child[0], out + len, cap - len);
            if (n > 0)
                len += n;
            else if (n == 0 || errno != EAGAIN)
                out_open = 0;
            continue;
        }
        ssize_t n = read(from_child[0], tmp, sizeof tmp);
        if (n <= 0) {
            if (n == 0 || errno != EAGAIN) out_open = 0;
            continue;
        }
        if (len + n > cap) {
            size_t grown = cap * 2;
            while (grown < len + n) grown *= 2;
            if (use_realloc) {
                out = realloc(out, grown);
            } else {
                char* block = malloc(grown);
                advise(block, len, 1);
                memcpy(block, out, len);
                free(out);
                out = block;
            }
            cap = grown;
            faulted = len;
        }
        if (len + n > faulted && cap >= (8 << 20)) {
            size_t upto = len + n + (4 << 20) < cap ? len + n + (4 << 20) : cap;
            advise(out + faulted, upto - faulted, 1);
            faulted = upto;
        }
        memcpy(out + len, tmp, n);
        len += n;
    }
    int status;
    waitpid(pid, &status, 0);
    if (len != size) {
        fprintf(stderr, "short output: %zu bytes\n", len);
        return 1;
    }
    printf("{\"floor\": \"%s%s\", \"bytes\": %zu, \"seconds\": %.6f}\n", mode,
           thp ? "+thp" : populate ? "+populate" : "", size, now() - t0);
    free(in);
    free(out);
    return 0;
}
