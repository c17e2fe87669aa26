// tests/support/no_fd_leak.hpp - a fixture that fails a test which leaves an fd open: the
// process's open-fd count after the test (its loops closed) must equal the count before.
#pragma once

#include <gtest/gtest.h>

#include "support.hpp"

#include <cstddef>

namespace asyncio_test {

class NoFdLeak : public ::testing::Test {
protected:
    void SetUp() override { fds_before_ = open_fd_count(); }
    void TearDown() override { EXPECT_EQ(open_fd_count(), fds_before_) << "the test left an fd open"; }

private:
    std::size_t fds_before_ = 0;
};

}  // namespace asyncio_test
