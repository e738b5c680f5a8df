#!/usr/bin/env bash
# cross-build.sh - cross-build estgw for an ARM border router and run it under qemu.
#
#   tools/cross-build.sh arm64|armhf [--unit-only] [--no-tests]
#
# 1. installs the host side (as root, when missing): the cross C compiler, binutils,
#    qemu-user; adds the Debian architecture to dpkg so apt can fetch its packages
# 2. unpacks the target's -dev packages and everything they depend on into a
#    sysroot, build-sysroot/<triplet>/ (apt-get download + dpkg -x: the host's
#    own packages are never touched; docs/deploy.md "Cross builds" says why)
# 3. meson setup + compile in build-<arch>/ with deploy/cross/<arch>.ini + deploy/cross/sysroot.ini
# 4. runs the unit suite under qemu-user (meson's exe_wrapper)
# 5. end to end (unless --unit-only): a few integration cases with the ARM estgw
#    under qemu (ESTGW_WRAP), the x86 test CA and coap-client-openssl as the device
# 6. prints the stripped size of the ARM estgw
# Results: build-<arch>/meson-logs/cross.json, meson's testlog format with each
# name prefixed "<arch>:" (tools/test.sh hands it to tools/summarize.py).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
arch=${1:-}
shift || true
e2e=1 tests=1
for a in "$@"; do
  case $a in
    --unit-only) e2e=0 ;;
    --no-tests) tests=0; e2e=0 ;;
    *) echo "usage: cross-build.sh arm64|armhf [--unit-only] [--no-tests]" >&2; exit 2 ;;
  esac
done
case $arch in
  arm64) triplet=aarch64-linux-gnu;   qemu=qemu-aarch64 ;;
  armhf) triplet=arm-linux-gnueabihf; qemu=qemu-arm ;;
  *) echo "usage: cross-build.sh arm64|armhf [--unit-only] [--no-tests]" >&2; exit 2 ;;
esac
BUILD=$SRC/build-$arch
SYSROOT=$SRC/build-sysroot/$triplet
t0=$(date +%s)
say() { echo "cross-build[$arch] +$(( $(date +%s) - t0 ))s: $*"; }

# What estgw links (and its unit tests: cmocka), for the target; libc6-dev makes
# the sysroot a complete one for gcc --sysroot.
target_pkgs=(libc6-dev libcoap3-dev libevent-dev libcurl4-openssl-dev libcbor-dev
             libmbedtls-dev libssl-dev libinih-dev libcmocka-dev libhiredis-dev)
# The host side. Not crossbuild-essential-$arch: it adds g++ and dpkg-cross (perl
# modules, which upgrade the host's perl on an older install); C needs only these.
host_pkgs=("gcc-$triplet" "binutils-$triplet" qemu-user meson ninja-build pkg-config file)

missing=()
for p in "${host_pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
need_arch=1
for a in $(dpkg --print-foreign-architectures); do [ "$a" != "$arch" ] || need_arch=0; done
if [ ${#missing[@]} -gt 0 ] || [ $need_arch = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "cross-build: need root to install ${missing[*]:-} and add dpkg architecture $arch" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  [ $need_arch = 0 ] || dpkg --add-architecture "$arch"
  apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "host packages installed: ${missing[*]:-none} (dpkg architecture $arch: $([ $need_arch = 1 ] && echo added || echo present))"
fi
# apt has the target's package lists only after an update with the architecture on
if ! apt-cache show "libc6:$arch" >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "cross-build: run apt-get update (as root) first" >&2; exit 1; }
  apt-get update -qq
fi

# The sysroot: every :$arch package in the dependency closure of target_pkgs, at
# the archive's candidate version. The stamp holds the .deb file names (name,
# version); the sysroot is made again only when that list changes.
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances "${target_pkgs[@]/%/:$arch}" 2>/dev/null |
          grep -E "^[a-z0-9][a-z0-9.+-]*:$arch\$" | sort -u)
# shellcheck disable=SC2086
want=$(apt-get download --print-uris $closure | awk '{print $2}' | sort)
if [ "$(cat "$SYSROOT.stamp" 2>/dev/null)" != "$want" ]; then
  say "making the sysroot ($(echo "$want" | wc -l) packages)"
  rm -rf "$SYSROOT" "$SYSROOT.debs"
  mkdir -p "$SYSROOT" "$SYSROOT.debs"
  # shellcheck disable=SC2086
  (cd "$SYSROOT.debs" && apt-get download -q -o APT::Sandbox::User=root $closure >/dev/null)
  for d in "$SYSROOT.debs"/*.deb; do dpkg-deb -x "$d" "$SYSROOT"; done
  # Absolute symlinks (/lib/..., /usr/lib/...) would point into the host's tree:
  # make each one relative inside the sysroot. (Debian 12's packages ship /lib
  # and /usr/lib apart; libc.so's linker script names /lib/<triplet>/libc.so.6,
  # which gcc --sysroot looks up inside the sysroot.)
  find "$SYSROOT" -type l -lname '/*' -print0 | while IFS= read -r -d '' l; do
    ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$SYSROOT$(readlink "$l")")" "$l"
  done
  rm -rf "$SYSROOT.debs"
  echo "$want" > "$SYSROOT.stamp"
fi
# meson 1.0 machine files cannot name their own directory: the sysroot's
# absolute path goes in as a constant of its own file.
printf "[constants]\nsysroot = '%s'\n" "$SYSROOT" > "$SYSROOT.ini"

say "meson setup + compile in build-$arch"
cross=(--cross-file "$SRC/deploy/cross/$arch.ini" --cross-file "$SYSROOT.ini"
       --cross-file "$SRC/deploy/cross/sysroot.ini")
# The bench tools are x86 measurement programs: not built for the target.
setup_log=$(mktemp)
if [ -f "$BUILD/meson-private/coredata.dat" ]; then set -- --reconfigure; else set --; fi
if ! meson setup "$@" "$BUILD" "${cross[@]}" -Dbench=false --buildtype=release >"$setup_log" 2>&1 ||
   ! meson compile -C "$BUILD" >>"$setup_log" 2>&1; then
  tail -40 "$setup_log" >&2; rm -f "$setup_log"; exit 1
fi
rm -f "$setup_log"
file -b "$BUILD/src/estgw" | cut -d, -f1-2
"$triplet-strip" -o "$BUILD/estgw.stripped" "$BUILD/src/estgw"
size=$(stat -c %s "$BUILD/estgw.stripped")
# the file size includes the padding between segments (64 KiB pages on arm64)
read -r text data bss _ < <("$triplet-size" "$BUILD/estgw.stripped" | tail -1)
sizes="$size bytes ($(( (size + 512) / 1024 )) KiB; text $text, data $data, bss $bss)"
say "stripped estgw for $arch: $sizes"
say "needs: $("$triplet-readelf" -d "$BUILD/src/estgw" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
[ $tests = 1 ] || exit 0
logs=$BUILD/meson-logs
rm -f "$logs"/cross-unit.json "$logs"/cross-e2e.json "$logs"/cross.json

rc=0
# qemu-user emulates the CPU: 4x meson's timeouts
meson test -C "$BUILD" --suite unit --num-processes 2 --timeout-multiplier 4 \
  --print-errorlogs --logbase cross-unit || rc=1
say "unit suite under $qemu done"
if [ $e2e = 1 ]; then
  # estgw for the target under qemu-user; the test CA (python), openssl and
  # coap-client-openssl are the host's. The cases: a CSR in Block1 blocks and the
  # certificate back in Block2 (sen), /crts, /sren with the issued certificate,
  # discovery, a refused untrusted device, and a clean SIGTERM exit (each case).
  ESTGW_WRAP="$qemu -L $SYSROOT" meson test -C "$BUILD" --num-processes 2 \
    --timeout-multiplier 2 --print-errorlogs --logbase cross-e2e \
    TestCore.test_C_sen_block1_block2 TestCore.test_C_crts_accept_281 \
    TestCore.test_C_sren_with_issued_certificate TestCore.test_G2_untrusted_client_refused \
    TestDiscovery.test_A3_discovery_lists_est_resources || rc=1
  say "end-to-end enrollment with estgw under $qemu done"
fi
python3 - "$arch" "$logs/cross.json" "$logs"/cross-unit.json "$logs"/cross-e2e.json <<'PY'
import json, os, sys
arch, out, *ins = sys.argv[1:]
with open(out, "w") as o:
    for path in ins:
        if not os.path.exists(path):
            continue
        for line in open(path):
            if line.strip():
                r = json.loads(line)
                r["name"] = f"{arch}:{r['name']}"
                o.write(json.dumps(r) + "\n")
PY
say "stripped estgw for $arch: $sizes"
exit $rc
