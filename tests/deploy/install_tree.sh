#!/usr/bin/env bash
# install_tree.sh BUILD_DIR - `meson install` into a DESTDIR and check the tree:
# the binary, the example config under sysconfdir, the man pages, the systemd
# unit (Type= matching the sd_notify choice, ExecStart naming the installed
# binary) and the sysusers.d file. Prints "N passed, N failed".
set -euo pipefail
build=$1
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null
meson introspect "$build" --buildoptions > "$dest.opts.json"
trap 'rm -rf "$dest" "$dest.opts.json"' EXIT
opt() { python3 -c "import json,sys; print(next(o['value'] for o in json.load(open(sys.argv[1]))
  if o['name'] == sys.argv[2]))" "$dest.opts.json" "$1"; }
prefix=$(opt prefix); sbindir=$(opt sbindir); sysconfdir=$(opt sysconfdir)
mandir=$(opt mandir); unit_on=$(opt systemd_unit); unitdir=$(opt systemdunitdir)
abs() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
sbin=$(abs "$sbindir"); etc=$(abs "$sysconfdir"); man=$(abs "$mandir")
[ -n "$unitdir" ] || unitdir=$prefix/lib/systemd/system
pass=0 fail=0
check() { # description, command...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $what"; fi
}
check "binary $sbin/estgw" test -x "$dest$sbin/estgw"
check "binary runs --version" "$dest$sbin/estgw" --version
check "example config $etc/estgw/estgw.conf" test -f "$dest$etc/estgw/estgw.conf"
check "man page estgw.8" test -f "$dest$man/man8/estgw.8"
check "man page estgw.conf.5" test -f "$dest$man/man5/estgw.conf.5"
if [ "$unit_on" = True ] || [ "$unit_on" = true ]; then
  unit=$dest$unitdir/estgw.service
  check "unit $unitdir/estgw.service" test -f "$unit"
  check "sysusers.d/estgw.conf" test -f "$dest$prefix/lib/sysusers.d/estgw.conf"
  check "ExecStart names the installed binary and config" \
    grep -qx "ExecStart=$sbin/estgw -c $etc/estgw/estgw.conf" "$unit"
  check "ExecReload sends SIGHUP" grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit"
  check "runs as its own user" grep -qx 'User=estgw' "$unit"
  if grep -q '^#define ESTGW_SD_NOTIFY' "$build/estgw_build.h"; then want=notify; else want=exec; fi
  check "Type=$want" grep -qx "Type=$want" "$unit"
  check "no @placeholders@ left" bash -c "! grep -q '@[A-Z_]*@' '$unit'"
fi
nfiles=4
case $unit_on in True|true) nfiles=6 ;; esac
check "$nfiles files installed, nothing else" test "$(find "$dest" -type f | wc -l)" -eq "$nfiles"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
