#!/usr/bin/env bash
# Builds the fuzz preset (clang-16: libFuzzer + ASan/UBSan, build/fuzz) and runs each fuzzer
# for N seconds over its seed corpus (fuzz/corpus/<name>/), failing on a crash, a sanitizer
# report, a mismatch against a reference model, a timeout or an out-of-memory.
# New inputs go to build/fuzz/corpus/<name>/ (the seeds in the repository are left alone);
# a failing input is written to build/fuzz/artifacts/<name>/ - reproduce it with
#   build/fuzz/fuzz/<name>_fuzzer build/fuzz/artifacts/<name>/crash-...
# Usage: scripts/fuzz.sh [seconds per fuzzer, default 30] [fuzzer names, default: all]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
fuzzers=("$@")

# ASan's stack-use-after-return check makes every C++ throw scan a fake stack: 7x slower here
# (the stream fuzzer throws on most reads), for frames that are mostly coroutine frames on the
# heap anyway. Set ASAN_OPTIONS yourself to turn it back on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_stack_use_after_return=0}

cmake --preset fuzz >/dev/null
if [ ${#fuzzers[@]} -eq 0 ]; then
  fuzzers=(stream_reader scheduler)
  # tls_record only when the build has TLS (OpenSSL 3 found: ASYNCIO_WITH_TLS=ON)
  if grep -q '^ASYNCIO_WITH_TLS:BOOL=ON' build/fuzz/CMakeCache.txt; then fuzzers+=(tls_record); fi
fi
targets=()
for f in "${fuzzers[@]}"; do targets+=("${f}_fuzzer"); done
cmake --build --preset fuzz --target "${targets[@]}"

for f in "${fuzzers[@]}"; do
  work=build/fuzz/corpus/$f
  artifacts=build/fuzz/artifacts/$f
  mkdir -p "$work" "$artifacts"
  echo "== $f: ${seconds} s over fuzz/corpus/$f"
  build/fuzz/fuzz/${f}_fuzzer -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" "fuzz/corpus/$f"
done
echo "fuzz: ${#fuzzers[@]} fuzzer(s), ${seconds} s each, no crash"
