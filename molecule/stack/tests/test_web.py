"""The web tier (roles/web) behind nginx as its CDN origin (roles/nginx_lb), on the stack site.yml deployed.

Requests are made on each load balancer (curl on loopback, HTTPS, the web
server's name in the Host header): the items page renders the API's item
through both load balancers; a fingerprinted asset is a cache MISS then a HIT
with immutable headers, gzip-compressed with one `Vary: Accept-Encoding` when
asked; /ready and /health are never cached; the instances run hardened on the
web hosts' private addresses. Seconds of requests, no load.
"""
import json
import os
import re
import uuid

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("lb")
WEB_HOSTS = RUNNER.get_hosts("web")
WEB_NAME = "web.recete.internal"          # nginx_lb_web_server_name's default
ASSET = re.compile(r'/_next/static/[A-Za-z0-9_./~-]+\.(?:js|css|svg)')


def get(host, path, *headers, server=WEB_NAME):
    """(status, {header: [values]}, body) of GET https://127.0.0.1PATH on the load balancer."""
    args = " ".join("-H %s" % _quote(h) for h in ([f"Host: {server}"] if server else []) + list(headers))
    out = host.check_output(f"curl -sk --compressed -D - -o /tmp/recete-web-body {args} {_quote('https://127.0.0.1' + path)}; "
                            "echo '----'; cat /tmp/recete-web-body")
    head, body = out.split("\n----\n", 1) if "\n----\n" in out else (out, "")
    lines = head.strip().splitlines()
    status = int(lines[0].split()[1])
    found = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            found.setdefault(name.strip().lower(), []).append(value.strip())
    return status, found, body


def raw_headers(host, path, *headers):
    """Response headers without decompression (what the client gets on the wire)."""
    args = " ".join("-H %s" % _quote(h) for h in [f"Host: {WEB_NAME}"] + list(headers))
    out = host.check_output(f"curl -sk -o /dev/null -D - {args} {_quote('https://127.0.0.1' + path)}")
    found = {}
    for line in out.strip().splitlines()[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            found.setdefault(name.strip().lower(), []).append(value.strip())
    return found


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture(scope="module")
def item():
    """An item made through the API (the load balancer's default server)."""
    lb = RUNNER.get_host(testinfra_hosts[0])
    name = "web-test-%s" % uuid.uuid4().hex[:8]
    out = lb.check_output("curl -sk -X POST -H 'Content-Type: application/json' -d %s https://127.0.0.1/items",
                          json.dumps({"name": name, "payload": {"from": "test_web"}}))
    return json.loads(out)


@pytest.fixture(scope="module")
def assets():
    lb = RUNNER.get_host(testinfra_hosts[0])
    status, _, body = get(lb, "/")
    assert status == 200
    found = sorted(set(ASSET.findall(body)))
    assert any(a.endswith(".js") for a in found) and any(a.endswith(".css") for a in found), found
    return found


def test_the_items_page_renders_the_api_item_through_each_load_balancer(host, item):
    status, headers, body = get(host, "/items/%s" % item["id"])
    # The API's read pool may lag a moment behind the write.
    for _ in range(20):
        if status == 200:
            break
        status, headers, body = get(host, "/items/%s" % item["id"])
    assert status == 200, body[:500]
    assert item["name"] in body
    assert headers["cache-control"] == ["public, s-maxage=5, stale-while-revalidate=30"]
    assert re.match(r"(%s):31\d\d$" % "|".join(WEB_HOSTS), headers["x-instance"][0]), headers
    assert "x-cache-status" not in headers        # pages are not cached by nginx


def test_the_api_keeps_the_default_server(host):
    status, headers, body = get(host, "/health", server=None)
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert re.match(r"api\d+:30\d\d$", headers["x-instance"][0]), headers


def test_a_static_asset_is_a_miss_then_a_hit_with_immutable_headers(host, assets):
    path = "%s?t=%s" % (assets[0], uuid.uuid4().hex)   # a key no earlier run cached
    seen = []
    for _ in range(2):
        status, headers, _ = get(host, path)
        assert status == 200
        assert headers["cache-control"] == ["public, max-age=31536000, immutable"], headers
        seen.append(headers["x-cache-status"][0])
    assert seen == ["MISS", "HIT"]


@pytest.mark.parametrize("kind", ["js", "css"])
def test_text_assets_are_gzipped_with_one_vary_accept_encoding(host, assets, kind):
    # The largest one: nginx compresses bodies of nginx_lb_web_gzip_min_length (256) bytes and more.
    path = max((a for a in assets if a.endswith("." + kind)),
               key=lambda a: int(raw_headers(host, a).get("content-length", ["0"])[0]))
    gzipped = raw_headers(host, path, "Accept-Encoding: gzip")
    assert gzipped.get("content-encoding") == ["gzip"], gzipped
    assert gzipped.get("vary") == ["Accept-Encoding"], gzipped
    plain = raw_headers(host, path)
    assert "content-encoding" not in plain and plain.get("vary") == ["Accept-Encoding"], plain


@pytest.mark.parametrize("path", ["/ready", "/health"])
def test_ready_and_health_are_never_cached(host, path):
    for _ in range(2):
        status, headers, body = get(host, path)
        assert status == 200, body[:300]
        assert "x-cache-status" not in headers
        assert "no-store" in headers["cache-control"][0]
    assert json.loads(body)["status"] in ("ready", "ok")


def test_a_missing_asset_is_a_404_that_is_not_cached(host):
    for _ in range(2):
        status, headers, _ = get(host, "/_next/static/chunks/not-there-%s.js" % uuid.uuid4().hex[:6])
        assert status == 404
        assert headers["x-cache-status"] == ["MISS"]


def test_web_instances_run_hardened_on_the_private_address():
    for name in WEB_HOSTS:
        web = RUNNER.get_host(name)
        units = re.findall(r"recete-web@(\d+)\.service",
                           web.check_output("systemctl list-units 'recete-web@*' --state=running --no-legend --plain"))
        assert units, name
        for port in units:
            show = web.check_output("systemctl show -p ProtectSystem -p NoNewPrivileges -p User recete-web@%s", port)
            assert "ProtectSystem=strict" in show and "NoNewPrivileges=yes" in show and "User=recete" in show
            assert not web.socket("tcp://0.0.0.0:%s" % port).is_listening
        assert web.file("/opt/recete-web/current").is_symlink
