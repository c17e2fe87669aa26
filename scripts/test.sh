#!/usr/bin/env bash
# Builds and runs the whole test suite twice - GCC release (-O2, warnings as errors) and
# Clang 16 Debug with AddressSanitizer + UndefinedBehaviorSanitizer - then the release suite
# with shuffled scheduling (two seeds) and under soft fault injection (two seeds; and each I/O binary in
# one process), the soak and hostile-peer scenarios in their short form (scripts/soak.sh short), the
# Python face's tests, each fuzzer for a short run, and the tests that cross
# threads once more under ThreadSanitizer. First, the tree must follow .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
echo "== format"
scripts/check_format.sh
for preset in release dev; do
  echo "== $preset: configure and build"
  cmake --preset "$preset" -DASYNCIO_BUILD_TESTS=ON >/dev/null
  cmake --build --preset "$preset"
  echo "== $preset: test"
  ctest --preset "$preset"
done
echo "== release: the suite again with shuffled scheduling (ASYNCIO_SHUFFLE_SEED), two seeds"
for seed in 1 2; do
  ASYNCIO_SHUFFLE_SEED=$seed ctest --preset release
done
echo "== release: the suite again under soft fault injection (ASYNCIO_FAULTS: EINTR, EAGAIN, 1-byte transfers), two seeds"
for seed in 1 2; do
  ASYNCIO_FAULTS=$seed:0.2:soft ctest --preset release -j2
done
echo "== release: each I/O suite's binary in one process under soft faults (one injection sequence across its tests), both backends"
backends=epoll  # io_uring where this machine runs it (the build registered its tests)
case "$(ctest --preset release -N -R '^io_uring:')" in *io_uring:*) backends="epoll io_uring" ;; esac
for bin in test_net_smoke test_sock_lowlevel test_streams test_server test_protocols test_buffered_proto test_datagram \
           test_sendfile test_pipes test_spawn test_subprocess test_subprocess_protocol test_ssl test_faults test_backend; do
  [ -x "build/release/tests/$bin" ] || continue
  for backend in $backends; do
    ASYNCIO_BACKEND=$backend ASYNCIO_FAULTS=1:0.2:soft "build/release/tests/$bin" --gtest_brief=1 >build/release/faults.log 2>&1 \
      || { cat build/release/faults.log; echo "$bin failed under ASYNCIO_BACKEND=$backend ASYNCIO_FAULTS=1:0.2:soft"; exit 1; }
  done
done
echo "== release: soak and hostile peers, the short form on both backends (scripts/soak.sh; docs/reliability.md)"
scripts/soak.sh short build/release
echo "== python: the Python face (asyncio_cpp) for each interpreter, both backends; then under ASan/UBSan"
scripts/test_python.sh
echo "== fuzz: each fuzzer for 20 s over its seed corpus (clang-16, libFuzzer + ASan/UBSan)"
scripts/fuzz.sh 20
echo "== tsan: the thread-facing tests under ThreadSanitizer"
cmake --preset tsan -DASYNCIO_BUILD_TESTS=ON >/dev/null
cmake --build --preset tsan --target test_threads test_events test_runners test_child_watch test_subprocess
ctest --preset tsan
