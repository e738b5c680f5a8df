#!/usr/bin/env bash
# man_lint.sh PAGE... - mandoc -Tlint reports nothing at level warning or above.
# Exit 77 (skip) without mandoc.
set -euo pipefail
command -v mandoc >/dev/null || { echo "mandoc not found"; exit 77; }
out=$(mandoc -Tlint -W warning "$@" 2>&1) && rc=0 || rc=$?
[ -z "$out" ] && [ "$rc" -eq 0 ] || { echo "$out"; exit 1; }
echo "lint-clean: $*"
