#!/usr/bin/env python3
"""k8s_lint.py - the cluster manifests (on paper) hold together (K1): parsed with
a YAML parser; deploy/kubernetes/estgw.yaml has a Deployment of N >= 2 estgw
replicas, a UDP Service on 5684 with sessionAffinity ClientIP selecting them,
a Redis Deployment and Service, and a ConfigMap whose estgw.conf names that
Redis in [cluster] and mounts every file it names; compose.cluster.yaml has two
estgw instances, Redis and the test CA, and its config file names the redis
service. usage: k8s_lint.py SOURCE_ROOT
"""
import configparser
import os
import sys

import yaml

problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


def conf_of(text):
    c = configparser.ConfigParser(interpolation=None)
    c.read_string(text)
    return c


def kube(root):
    docs = [d for d in yaml.safe_load_all(open(os.path.join(root, "deploy/kubernetes/estgw.yaml"))) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    dep = by.get(("Deployment", "estgw"))
    svc = by.get(("Service", "estgw"))
    check(dep and dep["spec"]["replicas"] >= 2, "Deployment estgw with >= 2 replicas")
    check(svc and svc["spec"].get("sessionAffinity") == "ClientIP", "Service estgw: sessionAffinity ClientIP")
    if dep and svc:
        labels = dep["spec"]["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
              "Service estgw selects the Deployment's pods")
        ports = svc["spec"]["ports"]
        check(any(p["protocol"] == "UDP" and p["port"] == 5684 for p in ports), "Service estgw: 5684/UDP")
        c = dep["spec"]["template"]["spec"]["containers"][0]
        named = {p["name"]: p for p in c["ports"]}
        check(all(p["targetPort"] in named and named[p["targetPort"]]["protocol"] == p["protocol"]
                  for p in ports), "Service targetPort names a container port of that protocol")
    rsvc = by.get(("Service", "redis"))
    check(by.get(("Deployment", "redis")) and rsvc, "Redis Deployment and Service")
    cm = by.get(("ConfigMap", "estgw-conf"))
    check(cm is not None, "ConfigMap estgw-conf")
    if cm and rsvc and dep:
        conf = conf_of(cm["data"]["estgw.conf"])
        host, port = conf["cluster"]["redis"].rsplit(":", 1)
        check(host.split(".")[0] == "redis" and int(port) == rsvc["spec"]["ports"][0]["port"],
              "[cluster] redis names the Redis Service and its port")
        check("seal_key" in conf["cluster"], "[cluster] seal_key set")
        mounts = [m["mountPath"] for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]]
        for sec in conf.sections():
            for key in ("certificate", "private_key", "client_trust", "trust", "seal_key"):
                if key in conf[sec]:
                    path = conf[sec][key]
                    check(any(path.startswith(m + "/") for m in mounts), f"[{sec}] {key} {path} is mounted")


def compose(root):
    d = yaml.safe_load(open(os.path.join(root, "deploy/container/compose.cluster.yaml")))
    svcs = d["services"]
    gws = [n for n in svcs if n.startswith("estgw")]
    check(len(gws) == 2, "compose.cluster.yaml: two estgw instances")
    check("redis" in svcs and "ca" in svcs, "compose.cluster.yaml: redis and ca")
    conf = conf_of(open(os.path.join(root, "deploy/container/estgw-cluster.conf")).read())
    check(conf["cluster"]["redis"].startswith("redis:"), "estgw-cluster.conf names the redis service")


def main():
    root = sys.argv[1]
    kube(root)
    compose(root)
    for p in problems:
        print("problem:", p)
    print(f"k8s_lint: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
