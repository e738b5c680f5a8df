#!/usr/bin/env python3
"""layers.py - the folder layout is the data path, and each external library
has one owner (docs/architecture.md). Fails when:
- a source file includes an external library's header outside the folder (or
  file) that owns that library;
- a file includes a project header of a layer that is not below its own
  (USES): nothing points back up;
- a .c or .h file sits directly in src/ other than main.c.
usage: layers.py SOURCE_ROOT
"""
import os
import re
import sys

# library include prefix -> the paths (folders or files under src/) that may use it
OWNERS = {
    "coap3/": ["downstream/coap_server.c"],
    "openssl/": ["tls/"],
    "curl/": ["upstream/"],
    "mbedtls/": ["pki/"],
    "cbor.h": ["codec/"],
    "ini.h": ["ops/config.c"],
    "systemd/": ["main.c"],
    "hiredis/": ["upstream/store_redis.c"],
    # the loop: everything that runs on it, never the pure codecs
    "event2/": ["main.c", "core/exchange.c", "core/proxy.c", "core/brski.c",
                "downstream/", "upstream/", "ops/metrics_http.c"],
}
# floors: a file may include headers of its own floor or below
# what each layer may include (its own folder and the ones below it); the
# order of the table is the data path, bottom to top
USES = {
    "codec": {"codec"},
    "ops": {"codec", "ops"},
    "tls": {"codec", "ops", "tls"},
    "pki": {"codec", "ops", "pki"},
    "upstream": {"codec", "ops", "tls", "upstream"},
    "core": {"codec", "ops", "pki", "upstream", "core"},
    "downstream": {"codec", "ops", "tls", "pki", "upstream", "core", "downstream"},
    "": {"codec", "ops", "tls", "pki", "upstream", "core", "downstream"},
}


def layer_of(rel):
    return rel.split("/", 1)[0] if "/" in rel else ""


def main():
    root = sys.argv[1]
    src = os.path.join(root, "src")
    problems = []
    for dirpath, _, names in os.walk(src):
        for n in sorted(names):
            if not n.endswith((".c", ".h")):
                continue
            path = os.path.join(dirpath, n)
            rel = os.path.relpath(path, src)
            if "/" not in rel and rel != "main.c":
                problems.append(f"src/{rel}: belongs in a layer folder")
            me = layer_of(rel)
            with open(path, encoding="utf-8") as f:
                for no, line in enumerate(f, 1):
                    m = re.match(r'\s*#\s*include\s*<([^>]+)>', line)
                    if m:
                        hdr = m.group(1)
                        for lib, owners in OWNERS.items():
                            if hdr.startswith(lib) and not any(
                                    rel == o or (o.endswith("/") and rel.startswith(o))
                                    for o in owners):
                                problems.append(f"src/{rel}:{no}: <{hdr}> belongs to "
                                                f"{', '.join(owners)} only")
                    m = re.match(r'\s*#\s*include\s*"([a-z_]+)/[a-z_]+\.h"', line)
                    if m and m.group(1) in USES and m.group(1) not in USES[me]:
                        problems.append(f'src/{rel}:{no}: includes "{m.group(1)}/..." '
                                        f"from layer {me or 'src'}: points back up")
    for p in problems:
        print(p)
    print(f"layers: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
