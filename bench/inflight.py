#!/usr/bin/env python3
"""inflight.py - estgw's RSS per request waiting on the CA (docs/performance.md,
"Memory budget"; by hand, not part of run.sh).

N devices (tests/tools/block_client, one DTLS session each) fetch /crts and go
idle until the sweep has released their buffers; RSS is read; then each posts a
/sen with its own CSR (distinct CSRs: identical requests would share one
exchange, J1) which the test CA holds (tests/ca/est_ca.py mode "hold"); RSS is
read again once the CA holds them (or, with more devices than MC, holds MC
and estgw queues the rest). The CA then answers them all.

  MC=64 python3 bench/inflight.py 32     # each request with its own upstream connection
  MC=4  python3 bench/inflight.py 64     # 4 with a connection, 60 queued

Environment: ESTGW, BLOCK_CLIENT (default: the build/ tree), MC (upstream
max_concurrent, default 64).
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("ESTGW", os.path.join(HERE, "..", "build", "src", "estgw"))
os.environ.setdefault("BLOCK_CLIENT", os.path.join(HERE, "..", "build", "tests", "tools", "block_client"))
from harness import Stack, wait_for  # noqa: E402
from test_blockwise import BlockClient  # noqa: E402
from test_sessions import released, rss_kb  # noqa: E402

WK = "/.well-known/est"


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    mc = int(os.environ.get("MC", "64"))
    s = Stack(extra_upstream=f"answer_within = 3600\nmax_concurrent = {mc}\n", timeout=600)
    s.start()
    devices = []
    try:
        pid = s.gw.pid
        s.ca_control(mode="hold", op="simpleenroll")
        devices = [BlockClient(s) for _ in range(n)]
        for d in devices:
            assert d.send(WK + "/crts").resp.code == "2.05"

        def idle():
            log = s.log()
            return released(log) >= n and log.rfind("heap trimmed") > log.rfind("idle sessions released")
        wait_for(idle, timeout=60, what="idle sessions released")
        before = rss_kb(pid)
        for i, d in enumerate(devices):
            csr = subprocess.run(["openssl", "req", "-new", "-key", f"{s.pki}/device.key",
                                  "-subj", f"/CN=device-001-{i}", "-outform", "DER"],
                                 capture_output=True, check=True).stdout
            d.send(WK + "/sen", method="post", opts=[(12, b"\x01\x1e")], payload=csr, wait_ms=0)
        wait_for(lambda: s.ca_stats().get("held", 0) >= min(n, mc), timeout=60, what="the CA holding")
        time.sleep(1.5)  # the queued ones: parked as soon as their datagram is read
        during = rss_kb(pid)
        print(f"{n} devices, upstream max_concurrent {mc}: RSS {before} kB idle, {during} kB with a "
              f"request each waiting: {(during - before) / n:.1f} KiB per request")
        s.ca_control(release=True)
        for d in devices:
            d.wait()
    finally:
        for d in devices:
            d.close()
        s.stop()
        s.cleanup()


if __name__ == "__main__":
    main()
