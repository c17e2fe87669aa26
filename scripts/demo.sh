#!/usr/bin/env bash
# Builds the library (release preset) and runs the demo: the Python docs' say_after quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release -DASYNCIO_BUILD_TESTS=OFF >/dev/null
cmake --build --preset release --target hello_world
./build/release/examples/hello_world
