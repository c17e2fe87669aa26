#!/usr/bin/env bash
# The Python face's tests (tests/python, stdlib unittest) for each interpreter there is:
# Debian's python3 (3.11) and, when present, pyenv's 3.12 and 3.13; on both backends, in
# Python's development mode (the loop's debug mode on, ResourceWarnings shown). The modules are
# built in the release preset's tree, against its library (one library, a module per
# interpreter: <build>/python-<cache tag>).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh python3-dev python3-aiohttp python3-uvicorn libpython3.11-testsuite python3-uvloop wrk
pythons=(/usr/bin/python3)
for v in 3.12 3.13; do
  for exe in "$HOME"/.pyenv/versions/$v.*/bin/python3; do
    [ -x "$exe" ] && pythons+=("$exe") && break
  done
done
list=$(IFS=';'; echo "${pythons[*]}")
cmake --preset release -DASYNCIO_BUILD_TESTS=ON -DASYNCIO_BUILD_PYTHON=ON "-DASYNCIO_PYTHON_EXECUTABLES=$list" >/dev/null
cmake --build --preset release --target asyncio_python
for exe in "${pythons[@]}"; do
  tag=$("$exe" -c 'import sys; print(sys.implementation.cache_tag)')
  for backend in epoll io_uring; do
    echo "== python face: $exe ($tag), $backend"
    ASYNCIO_BACKEND=$backend PYTHONPATH="build/release/python-$tag" timeout 600 "$exe" -X dev -m unittest discover -s tests/python
  done
done
