#!/usr/bin/env bash
# test.sh - build estgw and run every test; ends with "N passed, N failed".
#   1. ASan+UBSan build: unit + integration suites (the main run), the 'attack' suite
#      (bounded floods while a device enrolls, ~70 s)
#   2. plain build: unit tests under valgrind, the 'valgrind' suite
#      (estgw itself under valgrind for a few end-to-end cases), the 'bench' smoke
#   3. clang libFuzzer build: each fuzz target for FUZZ_SECONDS (default 10)
#   4. as root (unless ESTGW_CROSS_TESTS=0; =1 runs it as any user whose machine has
#      the cross toolchains): tools/cross-build.sh for arm64 and armhf, the unit
#      suite and five end-to-end cases with the ARM estgw under qemu-user
#      (~75 s for both with the sysroots made from scratch, ~40 s after)
#   5. as root (unless ESTGW_CONTAINER_TESTS=0): the 'container' suite, the image
#      and the interop compose stack with podman (tools/container-deps.sh first)
# The 'deploy' suite (install tree, unit security score, man lint) runs in 1.
# Installs missing Debian packages first when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
logs=()
setup() { # build-dir, meson setup args...
  local dir=$1; shift
  if [ -d "$dir/meson-private" ]; then meson setup --reconfigure "$dir" "$@" >/dev/null
  else meson setup "$dir" "$@" >/dev/null; fi
  meson compile -C "$dir" >/dev/null
}

setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
meson test -C build-asan --print-errorlogs --num-processes 2 --suite unit --suite integration --suite attack \
  --suite deploy || true
logs+=("build-asan/meson-logs/testlog.json")

setup build
meson test -C build --print-errorlogs --num-processes 2 --suite unit \
  --wrap='valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect' \
  --logbase vg-unit || true
meson test -C build --print-errorlogs --num-processes 2 --suite valgrind --logbase valgrind-it || true
# bench smoke (bench/run.sh --smoke: every bench tool end to end, ~15 s)
meson test -C build --print-errorlogs --suite bench --logbase bench || true
logs+=("build/meson-logs/vg-unit-valgrind.json" "build/meson-logs/valgrind-it.json" "build/meson-logs/bench.json")

CC=clang setup build-fuzz -Dfuzz=true -Db_lundef=false
fuzz_log=build-fuzz/meson-logs/fuzz.json
: > "$fuzz_log"
for t in build-fuzz/tests/fuzz/fuzz_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  name=${t##*/fuzz_}
  corpus=$(mktemp -d)
  [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$corpus/"
  if "$t" -max_total_time="${FUZZ_SECONDS:-10}" -rss_limit_mb=2048 "$corpus" \
       >"build-fuzz/meson-logs/fuzz_$name.log" 2>&1; then res=OK
  else res=FAIL; tail -30 "build-fuzz/meson-logs/fuzz_$name.log"; fi
  echo "{\"name\": \"fuzz:$name\", \"result\": \"$res\"}" >> "$fuzz_log"
  echo "fuzz:$name $res ($(grep -o 'Done [0-9]* runs' "build-fuzz/meson-logs/fuzz_$name.log" || echo ?))"
  rm -rf "$corpus"
done
logs+=("$fuzz_log")

cross=${ESTGW_CROSS_TESTS:-auto}
if [ "$cross" = 1 ] || { [ "$cross" = auto ] && [ "$(id -u)" = 0 ]; }; then
  for a in arm64 armhf; do
    rm -f "build-$a/meson-logs/cross.json"
    timeout 900 tools/cross-build.sh "$a" || true
    if [ -s "build-$a/meson-logs/cross.json" ]; then logs+=("build-$a/meson-logs/cross.json")
    else
      mkdir -p build/meson-logs
      echo "{\"name\": \"$a:cross-build\", \"result\": \"FAIL\"}" > "build/meson-logs/cross-$a-setup.json"
      logs+=("build/meson-logs/cross-$a-setup.json")
    fi
  done
fi

if [ "$(id -u)" = 0 ] && [ "${ESTGW_CONTAINER_TESTS:-1}" = 1 ]; then
  if timeout 900 tools/container-deps.sh; then
    meson test -C build --print-errorlogs --suite container --logbase container || true
    logs+=("build/meson-logs/container.json")
  else
    echo '{"name": "container:setup", "result": "FAIL"}' > build/meson-logs/container-setup.json
    logs+=("build/meson-logs/container-setup.json")
  fi
fi
python3 tools/summarize.py "${logs[@]}"
