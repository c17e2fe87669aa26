#!/usr/bin/env bash
# The Python face's tests (tests/python, stdlib unittest) for each interpreter there is:
# Debian's python3 (3.11) and, when present, pyenv's 3.12 and 3.13; on both backends, in
# Python's development mode (the loop's debug mode on, ResourceWarnings shown).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh python3-dev python3-aiohttp python3-uvicorn libpython3.11-testsuite python3-uvloop wrk
pythons=(/usr/bin/python3)
for v in 3.12 3.13; do
  for exe in "$HOME"/.pyenv/versions/$v.*/bin/python3; do
    [ -x "$exe" ] && pythons+=("$exe") && break
  done
done
for exe in "${pythons[@]}"; do
  tag=$("$exe" -c 'import sys; print(sys.implementation.cache_tag)')
  build=build/python-$tag
  echo "== python face: $exe ($tag)"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
    -DASYNCIO_BUILD_PYTHON=ON -DPython3_EXECUTABLE="$exe" -DASYNCIO_BUILD_TESTS=OFF \
    -DASYNCIO_BUILD_EXAMPLES=OFF -DASYNCIO_WARNINGS_AS_ERRORS=ON >/dev/null
  cmake --build "$build" --target asyncio_python
  for backend in epoll io_uring; do
    echo "-- $backend"
    ASYNCIO_BACKEND=$backend PYTHONPATH="$build/python" timeout 600 "$exe" -X dev -m unittest discover -s tests/python
  done
done
