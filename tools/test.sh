#!/usr/bin/env bash
# test.sh - build estgw under ASan+UBSan and run every test (unit, integration).
# Installs missing Debian packages first when run as root. Ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
logs=()
run_suite() { # build-dir, meson setup args...
  local dir=$1; shift
  if [ -d "$dir/meson-private" ]; then meson setup --reconfigure "$dir" "$@" >/dev/null; else meson setup "$dir" "$@" >/dev/null; fi
  meson compile -C "$dir" >/dev/null
  meson test -C "$dir" --print-errorlogs --num-processes 2 || true
  logs+=("$dir/meson-logs/testlog.json")
}
run_suite build-asan -Db_sanitize=address,undefined -Db_lundef=false
python3 tools/summarize.py "${logs[@]}"
