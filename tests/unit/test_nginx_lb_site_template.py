"""nginx_lb's site template rendered by Ansible's own templar with the role's
defaults, for what nginx would otherwise only show on a live request: an
add_header in a location drops every add_header of its server, so a location
with its own header must repeat the server's HSTS."""
import pathlib
import re

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = pathlib.Path(__file__).resolve().parents[2] / "roles" / "nginx_lb"
HSTS = "Strict-Transport-Security"


def render(template="recete-lb.conf.j2", **settings):
    loader = DataLoader()
    variables = {}
    for name in ("defaults/main.yml", "vars/main.yml"):
        variables.update(loader.load_from_file(str(ROLE / name)))
    variables.update({"groups": {"lb": ["lb1"], "api": ["api1"], "web": ["api1"], "all": ["lb1", "api1"]},
                      "inventory_hostname": "lb1", "hostvars": {}, "ansible_managed": "managed"}, **settings)
    source = (ROLE / "templates" / template).read_text()
    return Templar(loader=loader, variables=variables).template(trust_as_template(source))


def blocks(text, keyword):
    """The bodies of the `keyword ... { ... }` blocks of text (outermost only), braces matched."""
    found = []
    for match in re.finditer(r"^\s*%s\b[^{;]*\{" % keyword, text, re.M):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found.append(text[start:i])
                break
    return found


def own_lines(body):
    """A block's own directives, its nested blocks left out."""
    depth, lines = 0, []
    for line in body.splitlines():
        if depth == 0 and "{" not in line:
            lines.append(line.strip())
        depth += line.count("{") - line.count("}")
    return lines


@pytest.mark.parametrize("redirect", [True, False])
def test_every_location_with_its_own_headers_keeps_the_servers_hsts(redirect):
    config = render(nginx_lb_http_redirect=redirect)
    servers = blocks(config, "server")
    with_hsts = [s for s in servers if any(line.startswith("add_header " + HSTS) for line in own_lines(s))]
    # HTTPS servers only, and only where port 80 only redirects: the API's and the web tier's.
    assert len(with_hsts) == (2 if redirect else 0), config
    checked = 0
    for server in with_hsts:
        for location in blocks(server, "location"):
            if any(line.startswith("add_header ") for line in own_lines(location)):
                checked += 1
                assert any(line.startswith("add_header " + HSTS) for line in own_lines(location)), location
    # The web tier's cached assets carry X-Cache-Status: at least that location was checked.
    assert checked >= (1 if redirect else 0)
    assert (HSTS in config) == redirect


def web_retries(config):
    """(asset retry lines, page retry lines) of each web server of config that proxies assets."""
    found = []
    for server in blocks(config, "server"):
        if not any(line.startswith("server_name web.") for line in own_lines(server)):
            continue
        # Keyed by modifier and path ("= /metrics", "/_next/static/", "/").
        locations = dict(zip(re.findall(r"^\s*location\s+((?:[=~^*]+\s+)?\S+)\s*\{", server, re.M),
                             blocks(server, "location")))
        if "/_next/static/" in locations:   # not port 80's server of a redirecting setup
            found.append(tuple([line for line in own_lines(locations[path]) if line.startswith("proxy_next_upstream ")]
                               for path in ("/_next/static/", "/")))
    return found


@pytest.mark.parametrize("router", [True, False])
def test_a_missing_asset_is_asked_of_another_instance_in_either_layout(router):
    """During a rolling deploy an instance lacks the other release's assets: a 404 for
    /_next/static/ goes to the next instance (in the router nginx, or in the one nginx
    without it); a page's 404 is the app's answer and is not retried."""
    edge = web_retries(render(nginx_lb_router_enabled=router))
    assert edge, "no web server proxies /_next/static/"
    retrying = web_retries(render("router.conf.j2")) if router else edge
    if router:
        # The edge hands everything to the router once; the router retries.
        assert all(assets == ["proxy_next_upstream off;"] for assets, _ in edge), edge
    assert len(retrying) == 1, retrying
    for assets, pages in retrying:
        assert len(assets) == 1 and "http_404" in assets[0].rstrip(";").split(), assets
        assert len(pages) == 1 and "http_404" not in pages[0].rstrip(";").split(), pages


@pytest.mark.parametrize("router", [True, False])
def test_no_server_hands_an_instances_metrics_to_the_public(router):
    """Prometheus scrapes each API and web instance directly; through the load balancer
    /metrics is a 404 on every server that proxies to them, the API's and the web tier's."""
    servers = [body for body in blocks(render(nginx_lb_router_enabled=router), "server") if "proxy_pass" in body]
    assert len(servers) >= 2, "no API and web servers rendered"
    for body in servers:
        assert re.search(r"location = /metrics \{\s*return 404;\s*\}", body), \
            "a server proxies /metrics to the instances:\n" + body[:400]
