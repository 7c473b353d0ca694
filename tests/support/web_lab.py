"""What the web tier's Molecule tests share (molecule/scale, molecule/deploy): its instances, the
web upstream nginx loaded, the web artifacts of several versions, and an open-loop page and asset
load through the load balancer (bench/_lab.py's OpenLoop with web_host) that must drop nothing.

    from web_lab import WebLoad, web_artifact, web_instances, web_upstream
    with WebLoad(inventory):            # asserts 0 failed on exit
        playbook("scale.yml", "-e", "web_replicas=4")

Only the standard library and testinfra, like the tests that use it.
"""
import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile

import testinfra

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
RELEASES = os.path.join(PROJECT, ".cache", "release")
WEB_NAME = "web.recete.internal"     # nginx_lb_web_server_name's default
sys.path.insert(0, os.path.join(PROJECT, "bench"))
from _lab import OpenLoop  # noqa: E402  (bench/ holds the one load generator)

# Injected at the top of a release's server.js: GET /ready answers 503 whatever the API says.
NOT_READY = (
    "// injected by tests/support/web_lab.py: never ready\n"
    "{ const http = require('http'); const emit = http.Server.prototype.emit;\n"
    "  http.Server.prototype.emit = function (event, req, res) {\n"
    "    if (event === 'request' && req.url.startsWith('/ready')) {\n"
    "      res.writeHead(503, {'content-type': 'application/json', 'cache-control': 'no-store'});\n"
    "      res.end('{\"status\":\"not_ready\",\"checks\":{\"api\":\"injected\"}}'); return true; }\n"
    "    return emit.apply(this, arguments); }; }\n")


def on(inventory, name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}", sudo=True)


def web_artifact(version, fault=None):
    """recete-web-VERSION.tar.gz in .cache/release: built from examples/web (about a minute), or
    with fault="not-ready" a copy of 1.0.0 whose /ready always answers 503."""
    path = os.path.join(RELEASES, f"recete-web-{version}.tar.gz")
    if os.path.exists(path):
        return path
    if fault is None:
        subprocess.run([os.path.join(PROJECT, "examples", "web", "scripts", "build-release.sh"), RELEASES],
                       check=True, capture_output=True, env=dict(os.environ, APP_VERSION=version))
        return path
    assert fault == "not-ready", fault
    good = web_artifact("1.0.0")
    top = f"recete-web-{version}"
    with tarfile.open(good) as src, tarfile.open(path + ".tmp", "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            member.name = top + member.name[member.name.index("/"):] if "/" in member.name else top
            if data is not None and member.name == top + "/server.js":
                data = NOT_READY.encode() + data
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    os.replace(path + ".tmp", path)
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    with open(path + ".sha256", "w", encoding="utf-8") as handle:
        handle.write(f"{digest}  {os.path.basename(path)}\n")
    return path


def web_instances(inventory, hosts):
    """{host: {port: release}} of the running web instances (the release their process runs in)."""
    found = {}
    for name in hosts:
        host = on(inventory, name)
        ports = re.findall(r"recete-web@(\d+)\.service",
                           host.check_output("systemctl list-units 'recete-web@*' --state=running --no-legend --plain"))
        found[name] = {int(port): os.path.basename(host.check_output(
            f"readlink /proc/$(systemctl show -p MainPID --value recete-web@{port})/cwd")) for port in ports}
    return found


def web_upstream(inventory, lb="lb1"):
    """Active server addresses of upstream recete_web as the nginx that holds it loaded it."""
    router = "/etc/nginx/recete/router.conf"
    config = on(inventory, lb).check_output(f"if [ -e {router} ]; then nginx -c {router} -T; else nginx -T; fi 2>/dev/null")
    block = re.search(r"upstream recete_web \{(.*?)\}", config, re.S).group(1)
    return sorted(a for a, opts in re.findall(r"^\s*server\s+(\S+)([^;]*);", block, re.M) if "down" not in opts)


def address(inventory, name):
    return on(inventory, name).ansible("setup", "gather_subset=network")["ansible_facts"]["ansible_default_ipv4"]["address"]


def assert_web_serving(inventory, hosts, release, count):
    """`count` web instances, all on `release`, exactly those in the web upstream, current -> release."""
    instances = web_instances(inventory, hosts)
    assert sum(len(v) for v in instances.values()) == count, instances
    assert {r for ports in instances.values() for r in ports.values()} == {release}, instances
    addr = {name: address(inventory, name) for name in hosts}
    assert web_upstream(inventory) == sorted(f"{addr[h]}:{p}" for h, ports in instances.items() for p in ports)
    for name in hosts:
        assert on(inventory, name).file("/opt/recete-web/current").linked_to == f"/opt/recete-web/releases/{release}"
    return instances


class WebLoad:
    """Open-loop page loads and asset loads of the web tier through lb1 around one operation.

    Every non-2xx answer and every broken connection counts as failed, never resent; on exit
    (without an exception) it asserts that none failed, and keeps the figures in .stats.
    """

    def __init__(self, inventory, rate=10, connections=8):
        self.inventory, self.rate, self.connections = inventory, rate, connections
        self.load, self.stats = None, None

    def __enter__(self):
        self.load = OpenLoop(address(self.inventory, "lb1"), rate=self.rate, connections=self.connections,
                             max_seconds=900, web_host=WEB_NAME)
        self.load.start()
        self.load.phase = "operation"
        return self

    def __exit__(self, *exc):
        self.load.stop()
        rows = [r for r in self.load.results if r.phase == "operation"]
        self.stats = dict(self.load.stats("operation"),
                          pages=sum(1 for r in rows if r.kind == "page"), assets=sum(1 for r in rows if r.kind == "asset"))
        print("web load: %(sent)d sent (%(pages)d pages, %(assets)d assets), %(non2xx)d non-2xx, "
              "%(conn_err)d connection errors, p95 %(p95).0f ms, versions %(versions)s" % self.stats)
        if exc[0] is None:
            assert self.stats["sent"] > 0 and self.stats["assets"] > 0
            assert self.load.failed() == 0, self.stats
        return False
