#!/usr/bin/env bash
# The Python face's tests (tests/python, stdlib unittest) for each interpreter there is:
# Debian's python3 (3.11) and, when present, pyenv's 3.12 and 3.13; on both backends, in
# Python's development mode (the loop's debug mode on, ResourceWarnings shown). The modules are
# built in the release preset's tree, against its library (one library, a module per
# interpreter: <build>/python-<cache tag>). Then Debian's python3 once more with the module
# built under AddressSanitizer and UBSan (the dev preset's tree).
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
# Once more under AddressSanitizer and UBSan (the dev preset's tree, Clang), with Debian's
# python3 and the sanitizers' runtime preloaded: a use-after-free or overflow in the binding
# stops the run. (Leak checking is off: CPython keeps its own objects until exit.)
asan_rt=$(clang++-16 -print-file-name=libclang_rt.asan-x86_64.so)
cmake --preset dev -DASYNCIO_BUILD_TESTS=ON -DASYNCIO_BUILD_PYTHON=ON -DASYNCIO_PYTHON_EXECUTABLES=/usr/bin/python3 >/dev/null
cmake --build --preset dev --target asyncio_python
tag=$(/usr/bin/python3 -c 'import sys; print(sys.implementation.cache_tag)')
for backend in epoll io_uring; do
  echo "== python face under ASan/UBSan: /usr/bin/python3 ($tag), $backend"
  ASYNCIO_BACKEND=$backend LD_PRELOAD="$asan_rt" ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PYTHONPATH="build/dev/python-$tag" \
    timeout 900 /usr/bin/python3 -X dev -m unittest discover -s tests/python
done
