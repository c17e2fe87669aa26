#!/usr/bin/env bash
# Soak and hostile peers (issue 15, docs/reliability.md): every scenario of asyncio_soak on
# both backends (io_uring where this machine has it), loopback only, each bounded in time by
# its own watchdog. `short` (the default, run by scripts/test.sh) takes about a minute on 2
# cores; `long` is the real figures (10,000 connections, about a minute per scenario).
#   scripts/soak.sh [short|long] [build dir, default build/release]
set -euo pipefail
cd "$(dirname "$0")/.."
form=${1:-short}
build=${2:-build/release}
soak=$build/tests/asyncio_soak
if [[ ! -x $soak ]]; then
  echo "soak: $soak is missing (cmake --preset release -DASYNCIO_BUILD_TESTS=ON && cmake --build --preset release --target asyncio_soak)" >&2
  exit 1
fi
case $form in
  short)
    runs=(
      "echo --connections 1000 --seconds 8 --think 0.1"
      "echo --connections 200 --seconds 3 --think 0.02 --faults 1:0.2:soft"
      "echo --connections 200 --seconds 3 --think 0.02 --faults 2:0.002:hard"
      "slowloris --connections 100 --others 10 --seconds 3 --timeout 1"
      "never-reading --connections 50 --hold 2"
      "half-closed --connections 200 --seconds 3"
      "connect-reset --connections 16 --others 10 --seconds 3"
      "fd-exhaustion --connections 50 --hold 2"
      "tls-garbage --connections 50 --others 5 --seconds 3 --timeout 1"
    ) ;;
  long)
    runs=(
      "echo --connections 10000 --seconds 60"
      "echo --connections 2000 --seconds 60 --think 0.1 --faults 1:0.2:soft"
      "echo --connections 2000 --seconds 60 --think 0.1 --faults 2:0.001:hard"
      "slowloris --connections 2000 --others 50 --seconds 60 --timeout 10"
      "never-reading --connections 1000 --hold 60"
      "half-closed --connections 2000 --seconds 60"
      "connect-reset --connections 64 --others 50 --seconds 60"
      "fd-exhaustion --connections 1000 --hold 60"
      "tls-garbage --connections 200 --others 20 --seconds 60 --timeout 5"
    ) ;;
  *) echo "usage: $0 [short|long] [build dir]" >&2; exit 2 ;;
esac
backends=(epoll)
if "$soak" half-closed --connections 1 --seconds 0.2 --backend io_uring 2>/dev/null | grep -q "backend=io_uring"; then
  backends+=(io_uring)
else
  echo "soak: io_uring is not usable here: epoll only"
fi
failed=0
start=$SECONDS
for backend in "${backends[@]}"; do
  for run in "${runs[@]}"; do
    echo "== soak $form [$backend]: asyncio_soak $run --backend $backend"
    # shellcheck disable=SC2086
    if ! "$soak" $run --backend "$backend"; then
      failed=$((failed + 1))
    fi
  done
done
echo "== soak $form: $((SECONDS - start)) s, $failed failed run(s)"
[[ $failed -eq 0 ]]
