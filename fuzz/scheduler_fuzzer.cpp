// fuzz/scheduler_fuzzer.cpp - random programs of tasks on a virtual-clock loop, checked
// against the scheduler's invariants.
//
// The input decodes to a small program: 1-4 worker tasks (create_task, eager or not), each
// running an interpreted script of steps - sleeps, cancellations of workers (with or without a
// message), timeout() and wait_for() around a block, a TaskGroup with child blocks, shield()
// of a block, Lock and Semaphore (BoundedSemaphore) held around a block (scoped_acquire),
// Event set/clear/wait, bounded Queue put/get, gather() of child blocks (with or without
// return_exceptions), raising FuzzError, and a try block catching what a program may catch
// (FuzzError, TimeoutError, an ExceptionGroup of those). It runs under asyncio::run on a
// virtual clock; a driver task waits for every task of the loop to end. Any broken invariant
// aborts (libFuzzer reports a crash) with a line saying which:
//   * every task ends: once the scripts' sleeps are long over (virtual time 1000 s), the
//     driver unblocks what a program may legitimately leave waiting (sets the events, puts an
//     item into empty queues, takes one from full queues) once per 50 s; a task still pending
//     after 400 such rounds is a hang. (Lock and semaphore waits cannot deadlock: a block
//     only takes resources above the ones its task - or the task that spawned it - holds.)
//   * every cancel() of a worker that returned true is delivered: the worker ends cancelled,
//     or a CancelledError went through one of its steps after that cancel, or its cancelling()
//     still counts it (a TaskGroup that failed reports the cancellation in the ExceptionGroup
//     and leaves it counted, as Python does);
//   * cancelling() bookkeeping: a worker leaving its outermost timeout()/wait_for()/
//     task_group() step normally or with TimeoutError/ExceptionGroup, with no cancel() of it in
//     between, has the cancelling() it had on entry; a task that ended normally without being cancelled by a CANCEL
//     step has cancelling() == 0;
//   * locks are free with no waiters at the end, semaphores are back at their initial value
//     with no waiters, events have no waiters, each queue holds puts - gets items (and never
//     more than its maxsize);
//   * no exception escapes that the program did not raise: tasks end with FuzzError,
//     TimeoutError, an ExceptionGroup of those, or cancelled - anything else (a RuntimeError of
//     misuse, a broken state) aborts, and so does anything escaping asyncio::run;
//   * ASan/UBSan (the fuzz preset) catch use-after-free and the like.
//
// Input format (fuzz/make_scheduler_corpus.py writes the seeds in fuzz/corpus/scheduler/):
//   byte 0: workers = 1 + (b & 3); eager workers if b & 4
//   byte 1: queue maxsizes 1 + (b & 3), 1 + (b >> 2 & 3); semaphore values 1 + (b >> 4 & 1),
//           1 + (b >> 5 & 1)
//   then each worker's script in turn: a block is a list of steps ended by END (or by the end
//   of the input); each step is an opcode byte (b % 16) and its operands:
//     0 END
//     1 SLEEP d           sleep((d % 6) * 0.5) - 0 yields
//     2 CANCEL t          workers[t % workers].cancel(), with a message if t & 4
//     3 TIMEOUT d block   timeout((d % 8) * 0.5, block); d % 8 == 7: no deadline
//     4 WAIT_FOR d block  wait_for(block, (d % 8) * 0.5) (0: a task cancelled at once)
//     5 GROUP n block...  task_group: 1 + n % 3 child blocks as tasks, then a body block
//     6 SHIELD block      shield(create_task(block))
//     7 LOCK i block      scoped_acquire of locks[i % 2] around the block
//     8 SEM i block       scoped_acquire of sems[i % 2] around the block
//     9 SET i             events[i % 2].set(), or clear() if i & 2
//    10 WAIT i            events[i % 2].wait()
//    11 PUT i             queues[i % 2].put(k)
//    12 GET i             queues[i % 2].get()
//    13 GATHER n block... gather of 1 + n % 3 child blocks; return_exceptions if n & 4
//    14 RAISE             throw FuzzError
//    15 TRY block         runs the block, catching FuzzError / TimeoutError / ExceptionGroup
//   Blocks nest at most 4 deep (deeper, a composite step runs an empty block) and a program
//   has at most 160 steps.
#include <asyncio.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace asyncio;

struct FuzzError : std::runtime_error {
    FuzzError() : std::runtime_error("fuzz error") {}
};

[[noreturn]] void fail(const char* what, int worker = -1) {
    std::fprintf(stderr, "scheduler_fuzzer: INVARIANT BROKEN: %s (worker %d)\n", what, worker);
    std::abort();
}

// ---- the program ---------------------------------------------------------------------------
enum Op : std::uint8_t {
    END,
    SLEEP,
    CANCEL,
    TIMEOUT,
    WAIT_FOR,
    GROUP,
    SHIELD,
    LOCK,
    SEM,
    SET,
    WAIT,
    PUT,
    GET,
    GATHER,
    RAISE,
    TRY,
};

struct Node;
using Block = std::vector<Node>;

struct Node {
    Op op = END;
    std::uint8_t arg = 0;
    std::vector<Block> blocks;  // composite steps: their blocks (GROUP: children, then body)
};

struct Program {
    int workers = 1;
    bool eager = false;
    int qmax[2] = {1, 1};
    int sem_init[2] = {1, 1};
    std::vector<Block> scripts;
};

class Parser {
public:
    Parser(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
    bool empty() const { return n_ == 0; }
    std::uint8_t byte() {
        if (n_ == 0) return 0;
        --n_;
        return *p_++;
    }

    Block block(int depth) {
        Block b;
        if (depth > 4) return b;
        while (!empty() && steps_ < 160) {
            Node n;
            n.op = static_cast<Op>(byte() % 16);
            if (n.op == END) break;
            ++steps_;
            switch (n.op) {
                case SLEEP:
                case CANCEL:
                case LOCK:
                case SEM:
                case SET:
                case WAIT:
                case PUT:
                case GET:
                    n.arg = byte();
                    break;
                case TIMEOUT:
                case WAIT_FOR:
                    n.arg = byte();
                    n.blocks.push_back(block(depth + 1));
                    break;
                case SHIELD:
                case TRY:
                    n.blocks.push_back(block(depth + 1));
                    break;
                case GROUP:
                case GATHER: {
                    n.arg = byte();
                    const int children = 1 + n.arg % 3;
                    for (int i = 0; i < children; ++i) n.blocks.push_back(block(depth + 1));
                    if (n.op == GROUP) n.blocks.push_back(block(depth + 1));  // the body
                    break;
                }
                default:
                    break;
            }
            if (n.op == LOCK || n.op == SEM) n.blocks.push_back(block(depth + 1));
            b.push_back(std::move(n));
        }
        return b;
    }

private:
    const std::uint8_t* p_;
    std::size_t n_;
    int steps_ = 0;
};

Program parse(const std::uint8_t* data, std::size_t size) {
    Parser in(data, size);
    Program prog;
    const std::uint8_t b0 = in.byte();
    prog.workers = 1 + (b0 & 3);
    prog.eager = (b0 & 4) != 0;
    const std::uint8_t b1 = in.byte();
    prog.qmax[0] = 1 + (b1 & 3);
    prog.qmax[1] = 1 + (b1 >> 2 & 3);
    prog.sem_init[0] = 1 + (b1 >> 4 & 1);
    prog.sem_init[1] = 1 + (b1 >> 5 & 1);
    for (int w = 0; w < prog.workers; ++w) prog.scripts.push_back(in.block(0));
    return prog;
}

// ---- the world the program runs in ---------------------------------------------------------
struct World {
    explicit World(const Program& p) : prog(p), sems{BoundedSemaphore(p.sem_init[0]), BoundedSemaphore(p.sem_init[1])} {
        queues[0] = std::make_unique<Queue<int>>(p.qmax[0]);
        queues[1] = std::make_unique<Queue<int>>(p.qmax[1]);
    }
    const Program& prog;
    Lock locks[2];
    BoundedSemaphore sems[2];
    Event events[2];
    std::unique_ptr<Queue<int>> queues[2];
    long puts[2] = {0, 0};
    long gets[2] = {0, 0};
    std::vector<Task<>> workers;
    int cancels[4] = {0, 0, 0, 0};                      // cancel() calls on each worker that returned true
    bool saw_cancel[4] = {false, false, false, false};  // a CancelledError after the first
    // Each worker's task, recorded by the worker itself as it starts: an eager worker runs its
    // first steps inside create_task(), before `workers` holds its handle.
    const void* worker_ids[4] = {nullptr, nullptr, nullptr, nullptr};
    int nesting[4] = {0, 0, 0, 0};  // timeout / wait_for / group steps a worker is inside
    std::vector<Task<>> spawned;    // group children and shielded tasks
    int next_item = 0;
};

World* world = nullptr;

/// The worker the running task is, or -1 (a child task).
int current_worker() {
    const void* cur = current_task().state_ptr();
    for (int w = 0; w < 4; ++w)
        if (cur != nullptr && world->worker_ids[w] == cur) return w;
    return -1;
}

/// What a program may see escape a step: FuzzError, TimeoutError, an ExceptionGroup of those.
bool allowed(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const FuzzError&) {
        return true;
    } catch (const TimeoutError&) {
        return true;
    } catch (const ExceptionGroup& g) {
        for (const auto& inner : g.exceptions())
            if (!allowed(inner)) return false;
        return !g.exceptions().empty();
    } catch (...) {
        return false;
    }
}

void check_allowed(const std::exception_ptr& e, int worker) {
    if (!allowed(e)) {
        std::fprintf(stderr, "unexpected exception: %s\n", describe_exception(e).c_str());
        fail("an exception the program did not raise", worker);
    }
}

/// Resources are ordered (locks 0-1, then semaphores 2-3): a block only takes resources at
/// or above `level`, and holding resource r runs the inner block at level r + 1. Children
/// tasks inherit the level, so nothing waits in a cycle.
struct Ctx {
    int level = 0;
};

Coro<> run_block(Ctx ctx, const Block& b);

/// Checks a worker's cancelling() after the outermost timeout / wait_for / group step of its
/// own frames, left normally or with a non-cancellation error, when no cancel() of it came in
/// between. (Inside such a step the count may legitimately differ on exit: an enclosing
/// timeout that expired counts one until its own exit uncancels it.)
struct CancellingProbe {
    int worker = current_worker();
    bool outermost = worker >= 0 && world->nesting[worker]++ == 0;
    int cancels_before = worker >= 0 ? world->cancels[worker] : 0;
    int cancelling_before = worker >= 0 ? current_task().cancelling() : 0;
    CancellingProbe() = default;
    CancellingProbe(const CancellingProbe&) = delete;
    CancellingProbe& operator=(const CancellingProbe&) = delete;
    ~CancellingProbe() {
        if (worker >= 0) --world->nesting[worker];
    }
    void check(const char* what) const {
        if (!outermost || world->cancels[worker] != cancels_before) return;
        if (current_task().cancelling() != cancelling_before) {
            std::fprintf(stderr, "%s: cancelling() %d on entry, %d on exit\n", what, cancelling_before,
                         current_task().cancelling());
            fail("cancelling() bookkeeping", worker);
        }
    }
};

Coro<> run_step(Ctx ctx, const Node& n) {
    World& W = *world;
    try {
        switch (n.op) {
            case END:
                break;
            case SLEEP:
                co_await sleep((n.arg % 6) * 0.5);
                break;
            case CANCEL: {
                const int t = n.arg % W.prog.workers;
                if (static_cast<std::size_t>(t) >= W.workers.size() || !W.workers[t]) break;  // not created yet
                const bool with_msg = (n.arg & 4) != 0;
                if (W.workers[t].cancel(with_msg ? "fuzz cancel" : "")) ++W.cancels[t];
                break;
            }
            case TIMEOUT:
            case WAIT_FOR: {
                const int d = n.arg % 8;
                CancellingProbe probe;
                std::exception_ptr error;
                try {
                    if (n.op == TIMEOUT) {
                        std::optional<double> delay;
                        if (d != 7) delay = d * 0.5;
                        co_await asyncio::timeout(delay, run_block(ctx, n.blocks[0]));
                    } else {
                        OptionalDelay delay(d * 0.5);
                        co_await wait_for(run_block(ctx, n.blocks[0]), delay);
                    }
                } catch (const CancelledError&) {
                    throw;
                } catch (...) {
                    error = std::current_exception();
                }
                probe.check(n.op == TIMEOUT ? "timeout" : "wait_for");
                if (error) std::rethrow_exception(error);
                break;
            }
            case GROUP: {
                CancellingProbe probe;
                const std::size_t children = n.blocks.size() - 1;
                auto body = [&](TaskGroup& tg) -> Coro<> {
                    for (std::size_t i = 0; i < children; ++i)
                        W.spawned.push_back(tg.create_task(run_block(ctx, n.blocks[i])));
                    co_await run_block(ctx, n.blocks[children]);
                };
                std::exception_ptr error;
                try {
                    co_await task_group(body);
                } catch (const CancelledError&) {
                    throw;
                } catch (const ExceptionGroup&) {
                    // A cancellation of this worker that came while the group failed is
                    // reported inside the group's error: counted by cancelling() (checked at
                    // the end), and the TaskGroup saw the CancelledError go by.
                    if (probe.worker >= 0 && W.cancels[probe.worker] > 0) W.saw_cancel[probe.worker] = true;
                    error = std::current_exception();
                } catch (...) {
                    error = std::current_exception();
                }
                probe.check("task_group");
                if (error) std::rethrow_exception(error);
                break;
            }
            case SHIELD: {
                Task<> inner = create_task(run_block(ctx, n.blocks[0]));
                W.spawned.push_back(inner);
                co_await shield(inner);
                break;
            }
            case LOCK:
            case SEM: {
                const int i = n.arg % 2;
                const int resource = (n.op == LOCK ? 0 : 2) + i;
                if (resource < ctx.level) {  // would break the order: run the block without it
                    co_await run_block(ctx, n.blocks[0]);
                    break;
                }
                Ctx inner{resource + 1};
                if (n.op == LOCK) {
                    auto guard = co_await W.locks[i].scoped_acquire();
                    if (!W.locks[i].locked()) fail("a held lock is not locked");
                    co_await run_block(inner, n.blocks[0]);
                } else {
                    auto guard = co_await W.sems[i].scoped_acquire();
                    if (W.sems[i].value() < 0) fail("a semaphore went below zero");
                    co_await run_block(inner, n.blocks[0]);
                }
                break;
            }
            case SET:
                if (n.arg & 2)
                    W.events[n.arg % 2].clear();
                else
                    W.events[n.arg % 2].set();
                break;
            case WAIT:
                co_await W.events[n.arg % 2].wait();
                break;
            case PUT: {
                const int i = n.arg % 2;
                co_await W.queues[i]->put(W.next_item++);
                ++W.puts[i];
                if (W.queues[i]->qsize() > static_cast<std::size_t>(W.prog.qmax[i])) fail("a queue above its maxsize");
                break;
            }
            case GET: {
                const int i = n.arg % 2;
                (void)co_await W.queues[i]->get();
                ++W.gets[i];
                break;
            }
            case GATHER: {
                std::vector<Coro<>> children;
                for (const Block& b : n.blocks) children.push_back(run_block(ctx, b));
                if (n.arg & 4) {
                    auto results = co_await gather(return_exceptions, std::move(children));
                    for (const auto& r : results)
                        if (!r.has_value() && !is_cancelled_error(r.error()))
                            check_allowed(r.error(), current_worker());
                } else {
                    (void)co_await gather(std::move(children));
                }
                break;
            }
            case RAISE:
                throw FuzzError();
            case TRY: {
                try {
                    co_await run_block(ctx, n.blocks[0]);
                } catch (const FuzzError&) {
                } catch (const TimeoutError&) {
                } catch (const ExceptionGroup&) {
                    check_allowed(std::current_exception(), current_worker());
                }
                break;
            }
        }
    } catch (const CancelledError&) {
        const int w = current_worker();
        if (w >= 0 && W.cancels[w] > 0) W.saw_cancel[w] = true;
        throw;
    }
}

Coro<> run_block(Ctx ctx, const Block& b) {
    for (const Node& n : b) co_await run_step(ctx, n);
}

Coro<> worker(int w) {
    world->worker_ids[w] = current_task().state_ptr();
    co_await run_block(Ctx{}, world->prog.scripts[w]);
}

/// Checks a finished task: cancelled, an allowed exception, or a normal end.
void check_task(Task<>& t, int worker, int cancels) {
    if (!t.done()) fail("a task is still pending", worker);
    if (t.cancelled()) return;
    if (std::exception_ptr e = t.exception()) {
        check_allowed(e, worker);
        return;
    }
    if (cancels == 0 && t.cancelling() != 0) {
        std::fprintf(stderr, "cancelling() = %d\n", t.cancelling());
        fail("a task that ended normally, never cancelled, has cancelling() != 0", worker);
    }
}

Coro<> driver() {
    World& W = *world;
    EventLoop& loop = get_running_loop();
    for (int w = 0; w < W.prog.workers; ++w) W.workers.emplace_back();
    for (int w = 0; w < W.prog.workers; ++w) W.workers[w] = create_task(worker(w), TaskOptions{{}, W.prog.eager});
    const double start = loop.time();
    while (all_tasks().size() > 1) {
        co_await sleep(50.0);
        const double elapsed = loop.time() - start;
        if (elapsed < 1000) continue;
        if (elapsed > 1000 + 400 * 50.0) fail("hang: tasks still pending after the unblocking rounds");
        for (auto& e : W.events) e.set();
        for (int i = 0; i < 2; ++i) {
            if (W.queues[i]->empty()) {
                W.queues[i]->put_nowait(W.next_item++);
                ++W.puts[i];
            } else if (W.queues[i]->full()) {
                (void)W.queues[i]->get_nowait();
                ++W.gets[i];
            }
        }
    }
    // Every task ended: check them and the primitives.
    for (int w = 0; w < W.prog.workers; ++w) {
        Task<>& t = W.workers[w];
        check_task(t, w, W.cancels[w]);
        if (W.cancels[w] > 0 && !t.cancelled() && !W.saw_cancel[w] && t.cancelling() == 0)
            fail("a cancel() that returned true was never delivered", w);
    }
    // Group children are cancelled by their group when a sibling fails: the program may then
    // swallow that cancellation (a nested failing group's ExceptionGroup caught by TRY), so
    // their cancelling() is not checked (-1: "cancelled by someone").
    for (Task<>& t : W.spawned) check_task(t, -1, -1);
    for (int i = 0; i < 2; ++i) {
        if (W.locks[i].locked() || W.locks[i].waiter_count() != 0) fail("a lock is held or has waiters at the end");
        if (W.sems[i].value() != W.prog.sem_init[i] || W.sems[i].waiter_count() != 0) {
            std::fprintf(stderr, "semaphore %d: value %d (initial %d), %zu waiters\n", i, W.sems[i].value(),
                         W.prog.sem_init[i], W.sems[i].waiter_count());
            fail("a semaphore is not back at its initial value at the end");
        }
        if (W.events[i].waiter_count() != 0) fail("an event has waiters at the end");
        if (static_cast<long>(W.queues[i]->qsize()) != W.puts[i] - W.gets[i]) {
            std::fprintf(stderr, "queue %d: qsize %zu, puts %ld, gets %ld\n", i, W.queues[i]->qsize(), W.puts[i],
                         W.gets[i]);
            fail("a queue's size is not puts - gets");
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const bool quiet = [] {
        set_log_handler([](std::string_view) {});  // "exception never retrieved" and the like
        return true;
    }();
    (void)quiet;
    const Program prog = parse(data, size);
    World w(prog);
    world = &w;
    try {
        asyncio::run(driver(), RunOptions{.virtual_clock = true});
    } catch (...) {
        std::fprintf(stderr, "escaped asyncio::run: %s\n", describe_exception(std::current_exception()).c_str());
        fail("an exception escaped the run");
    }
    world = nullptr;
    return 0;
}
