#!/usr/bin/env bash
# The long fuzz campaign (docs/fuzzing.md): each libFuzzer target run to
# RUNS executions (default 10 million) from its seed corpus, then the
# inputs it found merged (libFuzzer -merge=1: only those that add coverage
# to the seeds, which stay) into tests/fuzz/corpus/NAME, and one line of
# figures per target.
# CI keeps its short smoke runs (tools/test.sh, FUZZ_SECONDS each).
#
#   tools/fuzz-campaign.sh [-r RUNS] [-j JOBS] [TARGET ...]   (default: all)
#
# Builds build-fuzz (clang, -Dfuzz=true) when it is missing. Findings land
# in build-fuzz/campaign/NAME/ (crash-*, leak-*, timeout-*); the script
# exits 1 when any target found one. JOBS targets run at once (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10000000
jobs=1
while getopts "r:j:" o; do
	case $o in
	r) runs=$OPTARG ;;
	j) jobs=$OPTARG ;;
	*) echo "usage: $0 [-r RUNS] [-j JOBS] [TARGET ...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))

if [ ! -d build-fuzz ]; then
	CC=clang meson setup build-fuzz -Dfuzz=true -Db_lundef=false >/dev/null
fi
meson compile -C build-fuzz >/dev/null

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for t in build-fuzz/tests/fuzz/fuzz_*; do
		[ -x "$t" ] && [ -f "$t" ] && targets+=("${t##*/fuzz_}")
	done
fi

out=build-fuzz/campaign
mkdir -p "$out"
: > "$out/results.txt"

one() {
	local t=$1 d="$out/$1" bin="build-fuzz/tests/fuzz/fuzz_$1" start end rc=0 execs
	rm -rf "$d"
	mkdir -p "$d/run" "$d/findings"
	if [ -d "tests/fuzz/corpus/$t" ]; then
		cp -r "tests/fuzz/corpus/$t/." "$d/run/"
	fi
	start=$(date +%s)
	"$bin" -runs="$runs" -print_final_stats=1 -artifact_prefix="$d/findings/" \
		"$d/run" >"$d/fuzz.log" 2>&1 || rc=$?
	end=$(date +%s)
	mkdir -p "tests/fuzz/corpus/$t"
	"$bin" -merge=1 "tests/fuzz/corpus/$t" "$d/run" >"$d/merge.log" 2>&1
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$d/fuzz.log")
	printf '%s rc=%d execs=%s seconds=%d corpus=%d files %s KiB findings=%d\n' \
		"$t" "$rc" "${execs:-?}" $((end - start)) \
		"$(find "tests/fuzz/corpus/$t" -type f | wc -l)" \
		"$(du -sk "tests/fuzz/corpus/$t" | cut -f1)" \
		"$(find "$d/findings" -type f | wc -l)" >>"$out/results.txt"
}

running=0
for t in "${targets[@]}"; do
	one "$t" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
done
wait
sort "$out/results.txt"
! grep -q 'findings=[1-9]' "$out/results.txt"
