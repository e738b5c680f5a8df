#!/usr/bin/env python3
"""Discovery lists only what works (A3; RFC 9148 §4.1: att, skg and skc are
"only included if implemented"): coap-client-openssl asks /.well-known/core of
estgw, whose test EST CA lacks /csrattrs or /serverkeygen from the start
(--no-csrattrs, --no-serverkeygen) or loses and regains them while estgw runs
(POST /control {"csrattrs": false}).

estgw's design, pinned here: an HTTP 404 or 501 for the unlabeled /csrattrs or
/serverkeygen takes att, or skg and skc, out of discovery with a log line; the
device still gets the CA's answer mapped (4.04, 5.01), and requests for them
still go to the CA. They come back on the next other answer: /csrattrs is
probed at start-up and every crts_refresh seconds while it is missing;
/serverkeygen cannot be probed (it needs a CSR and makes a key), so the next
device request for skg or skc tells, or a SIGHUP lists them again.
Run one test: test_discovery.py TestAttLost.test_A3_att_404_taken_out_back_on_next_use
"""
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import StackTest, wait_for  # noqa: E402

WK = "/.well-known/est"
ALWAYS = {WK + "/crts", WK + "/sen", WK + "/sren"}
ATT_OUT = "discovery: /csrattrs answered HTTP {}: att taken out of /.well-known/core"
ATT_BACK = "discovery: /csrattrs answered HTTP 200: att listed in /.well-known/core again"
SKG_OUT = "discovery: /serverkeygen answered HTTP {}: skg, skc taken out of /.well-known/core"
SKG_BACK = ("discovery: /serverkeygen answered HTTP 200: skg, skc listed in "
            "/.well-known/core again")


def csr_der(pki):
    with open(os.path.join(pki, "device.csr.der"), "rb") as f:
        return f.read()


class DiscoveryTest(StackTest):
    def listed(self):
        """The link targets of GET /.well-known/core (test-side parse)."""
        r = self.s.coap("/.well-known/core")
        self.assertEqual(r.rc, 0, r)
        return set(re.findall(r"<([^>]*)>", r.payload.decode()))

    def expect_listed(self, *shorts):
        links = self.listed()
        self.assertLessEqual(ALWAYS, links)
        for short in ("att", "skg", "skc"):
            if short in shorts:
                self.assertIn(f"{WK}/{short}", links)
            else:
                self.assertNotIn(f"{WK}/{short}", links)

    def att(self, path=WK + "/att"):
        return self.s.coap(path)

    def keygen(self, short, path=None):
        # Block1 (-b 64): a libcoap 4.3.1 client loses a multi-block separate answer otherwise.
        return self.s.coap(path or f"{WK}/{short}", method="post", cf=286, accept=62,
                           payload=csr_der(self.s.pki), block=64)

    def log_count(self, text):
        return self.s.log().count(text)


class TestAttLost(DiscoveryTest):
    """The CA loses /csrattrs while estgw runs (default crts_refresh: no probe meanwhile)."""

    def test_A3_att_404_taken_out_back_on_next_use(self):
        self.expect_listed("att", "skg", "skc")
        self.s.ca_control(csrattrs=False)
        r = self.att()
        self.assertEqual(r.code, "4.04", r)
        self.assertIn("upstream answered 404", r.diag)
        self.expect_listed("skg", "skc")
        self.assertEqual(self.log_count(ATT_OUT.format(404)), 1, self.s.log())
        # Still forwarded while unlisted: the CA's next other answer brings it back.
        self.s.ca_control(csrattrs=True)
        r = self.att()
        self.assertEqual(r.code, "2.xx", r)
        self.assertEqual(self.log_count(ATT_BACK), 1, self.s.log())
        self.expect_listed("att", "skg", "skc")

    def test_A3_att_501_taken_out(self):
        self.s.ca_control(mode="status=501", op="csrattrs")
        r = self.att()
        self.assertEqual(r.code, "5.01", r)
        self.expect_listed("skg", "skc")
        self.assertEqual(self.log_count(ATT_OUT.format(501)), 1, self.s.log())
        self.s.ca_control(mode="normal")
        self.assertEqual(self.att().code, "2.xx")
        self.expect_listed("att", "skg", "skc")

    def test_A3_labelled_404_leaves_discovery_alone(self):
        """A label selects another CA profile; discovery lists the unlabeled paths."""
        r = self.att(WK + "/nolabel/att")  # the CA knows no such label: 404
        self.assertEqual(r.code, "4.04", r)
        self.expect_listed("att", "skg", "skc")
        self.assertNotIn("taken out", self.s.log())

    def test_A3_sighup_lists_again_and_probes(self):
        self.s.ca_control(csrattrs=False)
        self.assertEqual(self.att().code, "4.04")
        self.expect_listed("skg", "skc")
        self.s.ca_control(csrattrs=True)
        probes = self.s.ca_stats()["ops"].get("csrattrs", 0)
        self.s.gw.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded:" in self.s.log()
                 and self.s.ca_stats()["ops"].get("csrattrs", 0) > probes,
                 what="reload and its /csrattrs probe")
        self.assertIn("discovery: configuration reloaded: att, skg and skc listed again",
                      self.s.log())
        self.expect_listed("att", "skg", "skc")


class TestAttMissingAtStart(DiscoveryTest):
    """A CA without /csrattrs: the start-up probe sees it before estgw is ready."""

    stack_kwargs = {"ca_args": ("--label", "lbl1", "--no-csrattrs"),
                    "extra_upstream": "crts_refresh = 1"}

    def test_A3_startup_probe_then_periodic_probe_brings_att_back(self):
        log = self.s.log()
        self.assertIn(ATT_OUT.format(404), log)
        self.assertLess(log.index(ATT_OUT.format(404)), log.index(" ready, upstream"))
        self.expect_listed("skg", "skc")
        # The device asking anyway gets the CA's answer.
        self.assertEqual(self.att().code, "4.04")
        self.assertEqual(self.log_count(ATT_OUT.format(404)), 1)
        # The CA gains /csrattrs: the next probe (every crts_refresh = 1 s) lists att again
        # without any device asking.
        self.s.ca_control(csrattrs=True)
        wait_for(lambda: ATT_BACK in self.s.log(), what="the probe's log line")
        self.expect_listed("att", "skg", "skc")


class TestSkgLost(DiscoveryTest):
    """serverkeygen = upstream (the default); the CA loses /serverkeygen while estgw runs."""

    def test_A3_skg_404_takes_out_skg_and_skc_next_success_back(self):
        self.expect_listed("att", "skg", "skc")
        self.s.ca_control(serverkeygen=False)
        r = self.keygen("skg")
        self.assertEqual(r.code, "4.04", r)
        self.expect_listed("att")
        self.assertEqual(self.log_count(SKG_OUT.format(404)), 1, self.s.log())
        # skc is /serverkeygen too: a device that does not use discovery still gets
        # through, and its success lists both again.
        self.s.ca_control(serverkeygen=True)
        r = self.keygen("skc")
        self.assertEqual(r.code, "2.xx", r)
        self.assertEqual(self.log_count(SKG_BACK), 1, self.s.log())
        self.expect_listed("att", "skg", "skc")

    def test_A3_skc_501_takes_out_skg_and_skc(self):
        self.s.ca_control(mode="status=501", op="serverkeygen")
        r = self.keygen("skc")
        self.assertEqual(r.code, "5.01", r)
        self.expect_listed("att")
        self.assertEqual(self.log_count(SKG_OUT.format(501)), 1, self.s.log())

    def test_A3_no_serverkeygen_probe_sighup_lists_again(self):
        self.s.ca_control(serverkeygen=False)
        self.assertEqual(self.keygen("skg").code, "4.04")
        self.expect_listed("att")
        self.s.gw.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded from" in self.s.log(), what="reload")
        self.expect_listed("att", "skg", "skc")
        # Nothing was sent to /serverkeygen by estgw itself (no probe).
        self.assertEqual(self.s.ca_stats()["paths"].get(WK + "/serverkeygen"), 1)


class TestSkgMissingRegistrar(DiscoveryTest):
    """serverkeygen = registrar: estgw makes the key, the CA's /serverkeygen is never used."""

    stack_kwargs = {"extra_server": "serverkeygen = registrar",
                    "ca_args": ("--label", "lbl1", "--no-serverkeygen")}

    def test_A3_registrar_keygen_keeps_skg_skc_listed(self):
        self.expect_listed("att", "skg", "skc")
        r = self.keygen("skg")
        self.assertEqual(r.code, "2.xx", r)
        self.expect_listed("att", "skg", "skc")
        self.assertNotIn("taken out", self.s.log())
        self.assertNotIn("serverkeygen", self.s.ca_stats()["ops"])


if __name__ == "__main__":
    harness.main(__name__)
