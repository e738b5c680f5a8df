#!/usr/bin/env bash
# fresh-ci.sh - prove that .ci/run passes on a brand-new Debian 12 machine.
#
# Clones the committed HEAD (not the work tree: only commits are submitted)
# into a temporary folder and runs `bash .ci/run` there, as root, inside a new
# debian:bookworm-slim container (the local image tools/container-deps.sh
# builds with debootstrap) in which nothing has been installed. Prints CI's
# closing line "N passed, N failed" and exits with .ci/run's status.
#
# --network=host: the container reaches Debian's packages as the host does,
# and the tests' loopback servers stay inside it. The container suite is off
# inside (podman does not nest here). --privileged gives root in the container
# what root has on a CI machine (ptrace for LeakSanitizer, packet capture).
# The host's /etc/apt is lent read-only so apt inside sees the same package
# sources as a machine of this kind.
#
# usage: tools/fresh-ci.sh [--keep]   (--keep: leave the clone and its log)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "fresh-ci.sh: needs root (podman)" >&2; exit 1; }
keep=0
[ "${1:-}" = --keep ] && keep=1

tools/container-deps.sh
work=$(mktemp -d /var/tmp/estgw-fresh.XXXXXX)
[ $keep = 1 ] || trap 'rm -rf "$work"' EXIT
git clone -q --no-local "$PWD" "$work/estgw"
echo "fresh-ci: $(git -C "$work/estgw" log -1 --format='%h %s') in a new container; log: $work/ci.log"
name="estgw-fresh-$$"
set +e
timeout -s KILL 5400 podman run --rm --name "$name" --pull=never --network=host --privileged \
	-v "$work/estgw:/ci/estgw" -v /etc/apt:/etc/apt:ro -w /ci/estgw \
	-e CI=true -e ESTGW_CONTAINER_TESTS=0 \
	docker.io/library/debian:bookworm-slim bash .ci/run </dev/null >"$work/ci.log" 2>&1
rc=$?
set -e
podman rm -f "$name" >/dev/null 2>&1 || true
grep -E '^(fuzz:|[[:alnum:]]+: )?[0-9]+ passed, [0-9]+ failed' "$work/ci.log" | tail -1 ||
	{ echo "fresh-ci: no closing line; last lines:"; tail -40 "$work/ci.log"; }
echo "fresh-ci: .ci/run exit status $rc"
[ $rc = 0 ] || [ $keep = 1 ] || tail -60 "$work/ci.log"
exit $rc
