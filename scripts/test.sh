#!/usr/bin/env bash
# Builds and runs the whole test suite twice - GCC release (-O2, warnings as errors) and
# Clang 16 Debug with AddressSanitizer + UndefinedBehaviorSanitizer - then the release suite
# with shuffled scheduling (two seeds) and under soft fault injection (two seeds), the soak and hostile-peer
# scenarios in their short form (scripts/soak.sh short), each fuzzer for a short run, and the tests that cross
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
# Left out (docs/reliability.md): the shuffle contract test asserts an exact completion order,
# which the injected EAGAINs change; AcceptBurst's small-backlog test fails under 1-byte sends
# (its clients past the listen queue depend on TCP retransmitting their first segment).
for seed in 1 2; do
  ASYNCIO_FAULTS=$seed:0.2:soft ctest --preset release -j2 \
    -E 'ShuffledCompletionsComeInASeededOrder|AcceptBurst.MoreClientsThanASmallBacklog'
done
echo "== release: soak and hostile peers, the short form on both backends (scripts/soak.sh; docs/reliability.md)"
scripts/soak.sh short build/release
echo "== fuzz: each fuzzer for 20 s over its seed corpus (clang-16, libFuzzer + ASan/UBSan)"
scripts/fuzz.sh 20
echo "== tsan: the thread-facing tests under ThreadSanitizer"
cmake --preset tsan -DASYNCIO_BUILD_TESTS=ON >/dev/null
cmake --build --preset tsan --target test_threads test_events test_runners test_child_watch test_subprocess
ctest --preset tsan
