#!/usr/bin/env bash
# Checks that every C++ file follows .clang-format (clang-format 16); with --fix, rewrites
# the files that do not.
# Usage: scripts/check_format.sh [--fix]
set -euo pipefail
cd "$(dirname "$0")/.."
fmt=clang-format-16
files=$(git ls-files '*.hpp' '*.cpp' '*.h' '*.cc')
if [ "${1:-}" = "--fix" ]; then
  $fmt -i $files
  exit 0
fi
if ! $fmt --dry-run --Werror $files; then
  echo "format check failed: run scripts/check_format.sh --fix" >&2
  exit 1
fi
echo "format: $(echo "$files" | wc -l) files follow .clang-format"
