"""The nginx load balancer (role recete.stack.nginx_lb) on the lb hosts of the stack scenario.

Requests are made on the load balancer itself (curl on loopback), except the
check that stub_status is not reachable from outside, which connects from the
controller to the load balancer's private address.

RECETE_LB_TEST_API_UNITS (default "recete-api@*.service") is the pattern of
the API units whose instances must answer through the load balancer; set it
to run these tests against stand-in upstreams.

With nginx_lb_router_enabled (the default) two nginx masters run: the edge
(nginx.service, the listeners) and the router (recete-router.service, the
upstream block and the access log); the tests read each one's configuration
where it belongs.
"""
import os
import re
import socket
import sys

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd()), "tests", "support"))
from sandbox import assert_sandboxed  # noqa: E402  (tests/support helper)

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("lb")
API_HOSTS = RUNNER.get_hosts("api")
API_UNITS = os.environ.get("RECETE_LB_TEST_API_UNITS", "recete-api@*.service")

DEFAULTS = {
    "nginx_lb_upstream_name": "recete_api",
    "nginx_lb_http_port": 80,
    "nginx_lb_https_port": 443,
    "nginx_lb_http_redirect": True,
    "nginx_lb_stub_status_port": 8080,
    "nginx_lb_tls_certificate_path": "/etc/nginx/recete/tls/lb.crt",
    "nginx_lb_access_log": "/var/log/nginx/recete-lb.access.log",
    "nginx_lb_verify_path": "/health",
    "nginx_lb_router_enabled": True,
}
ROUTER_SERVICE = "recete-router.service"
ROUTER_SOCKET_UNIT = "recete-router.socket"
ROUTER_CONF = "/etc/nginx/recete/router.conf"
ROUTER_SOCKET = "/run/recete-router/router.sock"
ROUTER_PID = "/run/recete-router/nginx.pid"
REQUESTS_PER_INSTANCE = 10


def setting(host, name):
    return host.ansible.get_variables().get(name, DEFAULTS[name])


def sudo_run(host, command, *args):
    with host.sudo():
        return host.run(command, *args)


def running_instances():
    """APP_INSTANCE names (host:port) of the API units that run now on the api hosts."""
    names = set()
    for api in API_HOSTS:
        api_host = RUNNER.get_host(api)
        out = api_host.check_output("systemctl list-units --type=service --state=running --plain --no-legend %s",
                                    API_UNITS)
        for line in out.splitlines():
            match = re.search(r"(\d+)\.service", line.split()[0]) if line.strip() else None
            if match:
                names.add("%s:%s" % (api, match.group(1)))
    return names


def instances_seen(host, count):
    """X-Instance of `count` GETs through the load balancer (HTTPS, one keep-alive connection)."""
    url = "https://127.0.0.1:%s%s" % (setting(host, "nginx_lb_https_port"), setting(host, "nginx_lb_verify_path"))
    out = host.check_output("curl -sk -o /dev/null -D - " + " ".join([url] * count))
    return [m.strip() for m in re.findall(r"^x-instance:(.*)$", out, re.M | re.I)]


def router(host):
    return setting(host, "nginx_lb_router_enabled")


def workers(host, pid_file):
    return sorted(sudo_run(host, "pgrep -P $(cat %s)" % pid_file).stdout.split())


def test_nginx_running_and_enabled(host):
    service = host.service("nginx")
    assert service.is_running
    assert service.is_enabled


def test_router_running_and_enabled_only_with_the_router(host):
    service, socket_unit = host.service(ROUTER_SERVICE), host.service(ROUTER_SOCKET_UNIT)
    if router(host):
        assert service.is_running
        assert service.is_enabled
        # systemd holds the listening socket and hands it to nginx (it outlives router restarts).
        assert socket_unit.is_running
        assert socket_unit.is_enabled
        listeners = sudo_run(host, "ss -xlpn src %s" % ROUTER_SOCKET).stdout
        assert '"systemd"' in listeners and '"nginx"' in listeners, listeners
    else:
        assert not service.is_running
        assert not socket_unit.is_running
        for unit in (ROUTER_SERVICE, ROUTER_SOCKET_UNIT):
            assert not host.file("/etc/systemd/system/" + unit).exists
        assert not host.file(ROUTER_CONF).exists


def test_configuration_is_valid(host):
    result = sudo_run(host, "nginx -t")
    assert result.rc == 0, result.stderr
    assert "test is successful" in result.stderr
    if router(host):
        result = sudo_run(host, "nginx -c %s -t" % ROUTER_CONF)
        assert result.rc == 0, result.stderr
        assert "test is successful" in result.stderr


@pytest.fixture(name="config")
def fixture_config(host):
    """The whole configuration nginx (the edge, with the router) loads (nginx -T), every included file."""
    return sudo_run(host, "nginx -T").stdout


@pytest.fixture(name="upstream_config")
def fixture_upstream_config(host, config):
    """The whole configuration of the nginx that holds the upstream block: the router, else nginx."""
    return sudo_run(host, "nginx -c %s -T" % ROUTER_CONF).stdout if router(host) else config


def test_upstream_least_conn_keepalive(host, upstream_config):
    config = upstream_config
    name = setting(host, "nginx_lb_upstream_name")
    block = re.search(r"upstream %s \{(.*?)\}" % re.escape(name), config, re.S)
    assert block, "no upstream %s in nginx -T" % name
    body = block.group(1)
    assert re.search(r"^\s*least_conn;", body, re.M)
    assert re.search(r"^\s*keepalive \d+;", body, re.M)
    servers = re.findall(r"^\s*server (\S+) .*max_fails=\d+ fail_timeout=\d+s", body, re.M)
    assert servers, "server lines carry max_fails/fail_timeout (passive failure detection)"


def test_proxy_settings(host, config, upstream_config):
    # The forwarding headers are computed from the real client where clients connect.
    for directive in (
        "proxy_set_header Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "server_tokens off;",
    ):
        assert directive in config, directive
    # Upstream keep-alive, retries and the drain bound where the upstream block is.
    for directive in ("proxy_http_version 1.1;", 'proxy_set_header Connection "";', "server_tokens off;"):
        assert directive in upstream_config, directive
    assert re.search(r"worker_shutdown_timeout \d+s;", upstream_config)
    retry = re.search(r"proxy_next_upstream ([^;]*);", upstream_config).group(1).split()
    assert {"error", "timeout", "http_502", "http_503"} <= set(retry)
    assert "non_idempotent" not in retry
    assert re.search(r"proxy_next_upstream_tries \d+;", upstream_config)
    log = re.search(r"log_format recete_lb (.*?);", upstream_config, re.S).group(1)
    for variable in ("$remote_addr", "$upstream_addr", "$upstream_response_time", "$request_time", "$upstream_status"):
        assert variable in log, "log format carries %s" % variable
    assert re.search(r"access_log %s recete_lb" % re.escape(setting(host, "nginx_lb_access_log")), upstream_config)


def test_edge_reaches_the_router_without_keepalive(host, config):
    if not router(host):
        pytest.skip("single nginx (nginx_lb_router_enabled false)")
    block = re.search(r"upstream recete_router \{(.*?)\}", config, re.S)
    assert block, "no upstream recete_router in nginx -T"
    assert re.findall(r"^\s*server (\S+);", block.group(1), re.M) == ["unix:%s" % ROUTER_SOCKET]
    # No idle edge->router connection ever exists: no keepalive, nginx's HTTP/1.0 + "Connection: close".
    assert "keepalive" not in block.group(1)
    assert "proxy_http_version" not in config
    assert 'proxy_set_header Connection "";' not in config
    assert "proxy_next_upstream off;" in config
    # The edge never loads the API's upstream block.
    assert not re.search(r"upstream %s \{" % re.escape(setting(host, "nginx_lb_upstream_name")), config)


def test_router_passes_the_edge_headers_on_unchanged(host, upstream_config):
    if not router(host):
        pytest.skip("single nginx (nginx_lb_router_enabled false)")
    for directive in (
        "listen unix:%s" % ROUTER_SOCKET,
        "set_real_ip_from unix:;",
        "real_ip_header X-Real-IP;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Real-IP $http_x_real_ip;",
        "proxy_set_header X-Forwarded-For $http_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;",
        "pid %s;" % ROUTER_PID,
    ):
        assert directive in upstream_config, directive
    assert "$proxy_add_x_forwarded_for" not in upstream_config
    assert not re.search(r"^\s*listen\s+[0-9*\[]", upstream_config, re.M), "the router listens on its socket only"


def test_router_socket_reachable_by_the_edge_workers(host):
    if not router(host):
        pytest.skip("single nginx (nginx_lb_router_enabled false)")
    socket_file = host.file(ROUTER_SOCKET)
    assert socket_file.is_socket
    assert socket_file.mode == 0o666
    assert host.file(ROUTER_SOCKET.rsplit("/", 1)[0]).mode == 0o755
    assert sudo_run(host, "runuser -u www-data -- test -w %s" % ROUTER_SOCKET).rc == 0


def test_router_unit_is_hardened(host):
    if not router(host):
        pytest.skip("single nginx (nginx_lb_router_enabled false)")
    show = host.check_output("systemctl show %s -p CapabilityBoundingSet -p NoNewPrivileges -p ProtectSystem "
                             "-p PrivateDevices -p MemoryDenyWriteExecute -p User", ROUTER_SERVICE)
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert set(props["CapabilityBoundingSet"].split()) == {
        "cap_chown", "cap_dac_override", "cap_kill", "cap_setgid", "cap_setuid"}
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateDevices"] == "yes"
    assert props["MemoryDenyWriteExecute"] == "yes"
    # Workers run as www-data, the master as root (it drops them).
    users = sudo_run(host, "ps -o user= --ppid $(cat %s)" % ROUTER_PID).stdout.split()
    assert users and set(users) == {"www-data"}


# What the sandboxes leave must be enough: a line of these in a unit's journal
# since its start means a step was refused (a write, a capability, a call).
REFUSED = "Operation not permitted|Permission denied|Read-only file system|Bad system call"


def refusals(host, unit):
    out = sudo_run(host, 'journalctl -q -o cat -u %s --since "$(systemctl show -p ActiveEnterTimestamp --value %s)"',
                   unit, unit).stdout
    return [line for line in out.splitlines() if re.search(REFUSED, line)]


def test_edge_nginx_is_sandboxed_and_still_binds_drops_and_reloads(host):
    """The edge's drop-in (nginx-hardening.conf.j2): Debian's unit alone rates 9.6."""
    assert_sandboxed(host, "nginx", 3.0)
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show nginx -p CapabilityBoundingSet -p ProtectSystem -p NoNewPrivileges").splitlines())
    assert set(props["CapabilityBoundingSet"].split()) == {
        "cap_net_bind_service", "cap_chown", "cap_dac_override", "cap_kill", "cap_setgid", "cap_setuid"}
    assert props["ProtectSystem"] == "strict" and props["NoNewPrivileges"] == "yes"
    listening = sudo_run(host, "ss -Hltnp").stdout
    for port in (setting(host, "nginx_lb_http_port"), setting(host, "nginx_lb_https_port")):
        assert re.search(r":%d\s.*\"nginx\"" % port, listening), "nothing of nginx on :%d" % port
    before = workers(host, "/run/nginx.pid")
    assert before and set(sudo_run(host, "ps -o user= --ppid $(cat /run/nginx.pid)").stdout.split()) == {"www-data"}
    assert sudo_run(host, "systemctl reload nginx").rc == 0
    for _ in range(50):
        if set(workers(host, "/run/nginx.pid")).isdisjoint(before):
            break
        host.run("sleep 0.1")
    assert set(workers(host, "/run/nginx.pid")).isdisjoint(before), "the reload started no new workers"
    assert instances_seen(host, 2), "requests pass after the reload"
    assert refusals(host, "nginx") == []


def test_keepalived_is_sandboxed_and_runs_its_check(host):
    """keepalived's drop-in (keepalived-hardening.conf.j2): Debian's unit alone rates 9.6. The
    address moving between the pair under the sandbox is test_lb_pair.py's."""
    assert_sandboxed(host, "keepalived", 3.5)
    caps = host.check_output("systemctl show keepalived -p CapabilityBoundingSet --value").split()
    assert {"cap_net_admin", "cap_net_raw"} <= set(caps) and "cap_sys_admin" not in caps
    # The check script ran (as its own user) and passed: keepalived logs the
    # script's state when it starts, and each change.
    journal = sudo_run(host, "journalctl -q -o cat -u keepalived -n 200").stdout
    assert "Script `recete_nginx` now returning 0" in journal or "VRRP_Script(recete_nginx) succeeded" in journal, journal
    assert refusals(host, "keepalived") == []


def test_router_reload_leaves_the_edge_alone(host):
    if not router(host):
        pytest.skip("single nginx (nginx_lb_router_enabled false)")
    edge, routers = workers(host, "/run/nginx.pid"), workers(host, ROUTER_PID)
    assert sudo_run(host, "systemctl reload %s" % ROUTER_SERVICE).rc == 0
    for _ in range(50):
        if set(workers(host, ROUTER_PID)).isdisjoint(routers):
            break
        host.run("sleep 0.1")
    assert set(workers(host, ROUTER_PID)).isdisjoint(routers), "the router started new workers"
    assert workers(host, "/run/nginx.pid") == edge, "the edge was not reloaded"
    assert instances_seen(host, 2), "requests still pass"


def test_no_version_in_server_header(host):
    port = setting(host, "nginx_lb_https_port")
    headers = host.check_output("curl -skI https://127.0.0.1:%s/" % port)
    server = re.search(r"^server:\s*(.*?)\s*$", headers, re.M | re.I)
    assert server and server.group(1) == "nginx"
    # An error page nginx writes itself (the stub_status server's 404).
    page = host.check_output("curl -s http://127.0.0.1:%s/no-such-page" % setting(host, "nginx_lb_stub_status_port"))
    assert "nginx/" not in page


def test_stub_status_on_loopback(host):
    port = setting(host, "nginx_lb_stub_status_port")
    body = host.check_output("curl -sf http://127.0.0.1:%s/stub_status" % port)
    assert "Active connections:" in body
    assert host.socket("tcp://127.0.0.1:%s" % port).is_listening
    assert not host.socket("tcp://0.0.0.0:%s" % port).is_listening


def test_stub_status_not_reachable_from_outside(host):
    address = host.ansible.get_variables()["ansible_host"]
    port = setting(host, "nginx_lb_stub_status_port")
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=3).close()


def test_tls_served_with_the_configured_certificate(host):
    path = setting(host, "nginx_lb_tls_certificate_path")
    port = setting(host, "nginx_lb_https_port")
    with host.sudo():
        configured = host.check_output("openssl x509 -in %s -noout -fingerprint -sha256", path)
    served = host.check_output(
        "echo | openssl s_client -connect 127.0.0.1:%s -servername localhost 2>/dev/null "
        "| openssl x509 -noout -fingerprint -sha256" % port)
    assert served == configured


def test_http_port(host):
    port = setting(host, "nginx_lb_http_port")
    out = host.check_output("curl -s -o /dev/null -w '%%{http_code} %%{redirect_url}' http://127.0.0.1:%s%s"
                            % (port, setting(host, "nginx_lb_verify_path")))
    code, _, location = out.partition(" ")
    if setting(host, "nginx_lb_http_redirect"):
        assert code == "301"
        assert location.startswith("https://")
    else:
        assert code == "200"


def test_requests_reach_every_api_instance(host):
    expected = running_instances()
    assert expected, "no API instance runs on %s (%s)" % (", ".join(API_HOSTS), API_UNITS)
    seen = instances_seen(host, REQUESTS_PER_INSTANCE * len(expected))
    assert len(seen) == REQUESTS_PER_INSTANCE * len(expected), "every request answered by an instance"
    assert set(seen) == expected
    # least_conn with idle instances rotates: nobody gets less than half its share.
    for name in expected:
        assert seen.count(name) >= REQUESTS_PER_INSTANCE // 2, (name, seen.count(name))


def test_access_log_names_the_instance(host):
    instances_seen(host, 1)
    log = setting(host, "nginx_lb_access_log")
    # The log is buffered (flush=1s).
    host.run("sleep 1.5")
    with host.sudo():
        last = host.check_output("tail -n 1 %s", log)
    assert re.search(r"upstream_addr=\S+:\d+ upstream_status=200 upstream_response_time=[\d.]+ request_time=[\d.]+",
                     last), last
    # The client the request came from (curl on loopback), also through the router.
    assert last.split()[0] == "127.0.0.1", last


def handshake(host, *options):
    """openssl s_client from the controller (a client outside the stack) to the load balancer's TLS port."""
    import subprocess
    address = host.ansible.get_variables()["ansible_host"]
    proc = subprocess.run(["openssl", "s_client", "-connect", "%s:%s" % (address, setting(host, "nginx_lb_https_port")),
                           "-servername", "localhost", *options], input="", capture_output=True, text=True, timeout=20)
    return proc.returncode == 0 and "Cipher is (NONE)" not in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("options", [
    ["-tls1_3"],
    ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256"],
    ["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-CHACHA20-POLY1305"],
])
def test_tls_offers_the_intermediate_profile(host, options):
    ok, out = handshake(host, *options)
    assert ok, out[-1500:]


@pytest.mark.parametrize("options", [
    ["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],          # TLS 1.0 (the client must allow it to ask)
    ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],        # TLS 1.1
    ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384"],  # CBC
    ["-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384"],   # RSA key exchange: no forward secrecy
])
def test_tls_refuses_old_versions_cbc_and_static_rsa(host, options):
    ok, out = handshake(host, *options)
    assert not ok, out[-1500:]


def test_slow_clients_are_bounded(host, config):
    assert re.search(r"^\s*client_header_timeout 10s;", config, re.M), config[:2000]
    assert re.search(r"^\s*client_body_timeout 10s;", config, re.M)
    assert re.search(r"^\s*limit_conn recete_conn \d+;", config, re.M)
    # HSTS only where port 80 only redirects (the lab's port 80 serves the API).
    assert ("Strict-Transport-Security" in config) == bool(setting(host, "nginx_lb_http_redirect"))
