#!/usr/bin/env bash
# systemd_security.sh UNIT [MAX] - `systemd-analyze security --offline=true` must
# rate the unit MAX (default 2.0) or lower. Exit 77 (skip) without systemd-analyze.
set -euo pipefail
unit=$1 max=${2:-2.0}
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found"; exit 77; }
out=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || true
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
[ -n "$score" ] || { echo "no score in: $out"; exit 1; }
echo "exposure level $score (at most $max)"
grep '✗' <<<"$out" || true
python3 -c "import sys; sys.exit(0 if float('$score') <= float('$max') else 1)"
