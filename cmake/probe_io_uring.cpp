/* Configure-time probe: can this machine run the io_uring backend (tests/CMakeLists.txt)?
 * The same checks as UringBackend::init(): ring flags, provided buffers, synchronous cancel. */
#include <liburing.h>
#include <cerrno>
#include <cstdlib>

int main(void) {
    struct io_uring ring;
    struct io_uring_params p = {0};
    p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_CLAMP;
    if (io_uring_queue_init_params(8, &ring, &p) < 0) return 1;
    struct io_uring_buf_ring* br;
    if (posix_memalign(reinterpret_cast<void**>(&br), 4096, 4096)) return 1;
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = {0};
    reg.ring_addr = reinterpret_cast<unsigned long>(br);
    reg.ring_entries = 8;
    if (io_uring_register_buf_ring(&ring, &reg, 0) < 0) return 1;
    struct io_uring_sync_cancel_reg c = {0};
    c.addr = 1;
    c.fd = -1;
    c.timeout.tv_sec = -1;
    c.timeout.tv_nsec = -1;
    if (io_uring_register_sync_cancel(&ring, &c) != -ENOENT) return 1;
    io_uring_queue_exit(&ring);
    return 0;
}
