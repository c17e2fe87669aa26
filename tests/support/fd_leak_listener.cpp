// tests/support/fd_leak_listener.cpp - linked into every I/O suite (network, pipes,
// subprocesses, TLS): each test must leave the process's open-fd count as it found it. A test
// that does not is reported by name and the binary exits with status 1 right after it, so the
// ctest entry of that test (ctest runs each test on its own) fails. The NoFdLeak fixture
// (no_fd_leak.hpp) does the same check as a gtest failure, for suites that use it. Likewise
// for the fault-injection seam's setting.
#include <gtest/gtest.h>

#include "support.hpp"

#include "backend/faults.hpp"

#include <cstdio>
#include <cstdlib>

namespace {

class FdLeakListener : public ::testing::EmptyTestEventListener {
    void OnTestStart(const ::testing::TestInfo&) override {
        before_ = asyncio_test::open_fd_count();
        seam_ = asyncio::detail::faults::snapshot();
    }
    void OnTestEnd(const ::testing::TestInfo& info) override {
        // The fault-injection seam, too, is left as the test found it (on, with the generator
        // of $ASYNCIO_FAULTS, when the binary runs under it): faults::Restorer, Suspended.
        const asyncio::detail::faults::Snapshot seam = asyncio::detail::faults::snapshot();
        if (seam.active != seam_.active ||
            (seam.active &&
             (seam.seed != seam_.seed || seam.threshold != seam_.threshold || seam.kinds != seam_.kinds))) {
            std::fprintf(stderr, "\n*** %s.%s left the fault-injection seam changed (active %d -> %d)\n",
                         info.test_suite_name(), info.name(), int(seam_.active), int(seam.active));
            std::fflush(stderr);
            std::_Exit(1);
        }
        const std::size_t after = asyncio_test::open_fd_count();
        if (after == before_ || info.result()->Skipped()) return;
        std::fprintf(stderr, "\n*** %s.%s left %zd fd(s) open (%zu before, %zu after)\n", info.test_suite_name(),
                     info.name(), static_cast<std::ptrdiff_t>(after - before_), before_, after);
        std::fflush(stderr);
        std::_Exit(1);
    }
    std::size_t before_ = 0;
    asyncio::detail::faults::Snapshot seam_;
};

const bool installed = [] {
    ::testing::UnitTest::GetInstance()->listeners().Append(new FdLeakListener);
    return true;
}();

}  // namespace
