#!/usr/bin/env bash
# Builds the Python face (module asyncio_cpp) for one interpreter and installs it into that
# interpreter's site-packages, offline. Usage: scripts/install_python.sh [python]   (default:
# python3 on PATH; any CPython >= 3.11 with its headers, e.g. Debian's /usr/bin/python3 with
# python3-dev, or "$(PYENV_VERSION=3.13.0 pyenv which python3)"). Prints where it went.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
exe=$("$python" -c 'import sys; print(sys.executable)')
case "$exe" in
  /usr/bin/python3*) scripts/deps.sh python3-dev ;;
  *) scripts/deps.sh ;;
esac
tag=$("$exe" -c 'import sys; print(sys.implementation.cache_tag)')
build=build/python-install
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
  -DASYNCIO_BUILD_PYTHON=ON "-DASYNCIO_PYTHON_EXECUTABLES=$exe" -DASYNCIO_BUILD_TESTS=OFF \
  -DASYNCIO_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target asyncio_python
site=$("$exe" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
rm -rf "$site/asyncio_cpp"
cp -r "$build/python-$tag/asyncio_cpp" "$site/asyncio_cpp"
"$exe" -c 'import asyncio_cpp, sys; print("asyncio_cpp installed for", sys.executable, "in", asyncio_cpp.__path__[0])'
