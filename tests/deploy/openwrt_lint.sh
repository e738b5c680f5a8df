#!/usr/bin/env bash
# openwrt_lint.sh SRCDIR - what can be checked of deploy/openwrt/estgw without an
# OpenWrt SDK (docs/deploy.md, "OpenWrt"): the procd init script parses as POSIX sh
# (and passes shellcheck when it is installed), the package's DEPENDS name an
# OpenWrt package for every library meson.build looks for, and each -D option of
# MESON_ARGS exists in meson_options.txt. Prints "N passed, N failed".
set -euo pipefail
src=$1
pkg=$src/deploy/openwrt/estgw
pass=0 fail=0
check() { # description, command...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $what"; fi
}
check "init script parses (sh -n)" sh -n "$pkg/files/estgw.init"
check "init script is procd (USE_PROCD=1)" grep -qx 'USE_PROCD=1' "$pkg/files/estgw.init"
check "init script sends SIGHUP on reload" grep -q "procd_send_signal estgw '\*' HUP" "$pkg/files/estgw.init"
if command -v shellcheck >/dev/null; then
  # rc.common provides procd_* and reads START/STOP/USE_PROCD
  check "shellcheck" shellcheck -s sh -e SC2034,SC2154,SC1008 "$pkg/files/estgw.init"
fi
deps=$(sed -n 's/^ *DEPENDS:=//p' "$pkg/Makefile")
# meson dependency or library name -> OpenWrt package
while read -r lib owrt; do
  if grep -Eq "(dependency|find_library)\('$lib'" "$src/meson.build"; then
    check "DEPENDS has +$owrt (meson: $lib)" bash -c "[[ ' $deps ' == *' +$owrt '* ]]"
  else
    check "meson.build still looks for $lib" false
  fi
done <<'MAP'
libcoap-3-openssl libcoap
openssl libopenssl
libevent libevent2
libcurl libcurl
inih libinih
libcbor libcbor
hiredis libhiredis
mbedcrypto libmbedtls
mbedx509 libmbedtls
MAP
for o in $(grep -o -- '-D[a-z_]*=' "$pkg/Makefile" | sed 's/^-D//; s/=$//'); do
  check "meson option $o exists" grep -q "option('$o'" "$src/meson_options.txt"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
