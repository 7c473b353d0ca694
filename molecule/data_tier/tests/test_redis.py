"""Redis and Sentinel on the data tier's lab machines (role recete.stack.redis).

Every check talks to the real servers: sockets, ACLs as the application
user, replication of a write, the Sentinels' agreement. Passwords come from
the inventory Molecule uses, else from the lab's group_vars.
"""
import functools
import os
import shlex
import sys
import time
import uuid

import pytest
import testinfra
import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd()), "tests", "support"))
from lab_settings import private_address as _address_of_host, role_settings  # noqa: E402  (tests/support helper)
from lab_tls import CA, redis_cli_tls_args  # noqa: E402  (tests/support helper)

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
testinfra_hosts = sorted(set(RUNNER.get_hosts("redis")) | set(RUNNER.get_hosts("sentinel")))
REDIS_HOSTS = RUNNER.get_hosts("redis")
SENTINEL_HOSTS = RUNNER.get_hosts("sentinel")

MARKER = "# recete.stack: written once by the redis role"


@functools.lru_cache(maxsize=None)
def get_host(name):
    """A host of the inventory, reached through Ansible (as the tests' own hosts are)."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


_settings = role_settings(RUNNER, ["redis"], "redis")


def settings(host):
    return _settings(host.backend.get_hostname())


@functools.lru_cache(maxsize=None)
def _private_address(name):
    return _address_of_host(get_host(name))


def private_address(host):
    return _private_address(host.backend.get_hostname())


def tls_args(host):
    """redis-cli's TLS arguments when the lab runs Redis over TLS (redis_tls, from internal_tls_enabled)."""
    return redis_cli_tls_args(RUNNER.get_variables(host.backend.get_hostname()))


def cli(host, password, *args, user=None, port=6379, target="127.0.0.1", tls=True):
    """redis-cli on the host; the password goes through stdin (--askpass)."""
    words = ["redis-cli", "-h", target, "-p", str(port)] + (tls_args(host) if tls else [])
    if user:
        words += ["--user", user]
    if password is not None:
        words.append("--askpass")
    words += [str(a) for a in args]
    command = " ".join(shlex.quote(w) for w in words)
    if password is not None:
        command = "printf '%s\\n' {} | {}".format(shlex.quote(password), command)
    return host.run(command).stdout.strip()


def admin(host, *args, **kwargs):
    s = settings(host)
    return cli(host, s["redis_admin_password"], *args, user=s.get("redis_admin_user", "admin"), **kwargs)


def app(host, *args, **kwargs):
    s = settings(host)
    return cli(host, s["redis_app_password"], *args, user=s.get("redis_app_user", "recete"), **kwargs)


def sentinel(host, *args):
    s = settings(host)
    return cli(host, s["redis_sentinel_password"], *args, port=s.get("redis_sentinel_port", 26379))


def master_address(host, name=None):
    name = name or settings(host).get("redis_master_name", "recete")
    reply = sentinel(host, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
    words = reply.split()
    assert len(words) == 2, f"the Sentinel on {host.backend.get_hostname()} answered {reply!r}"
    return words[0], int(words[1])


def master_host(name=None):
    """The inventory host that is the master now (after a drill, not the initial one); `name`: the
    master name Sentinel knows it by (default the queue's, redis_master_name)."""
    probe = get_host(SENTINEL_HOSTS[0])
    ip, _port = master_address(probe, name)
    for name in REDIS_HOSTS:
        candidate = get_host(name)
        if private_address(candidate) == ip:
            return candidate
    pytest.fail(f"Sentinel names {ip} as master, which is no host of group redis")


# --- packages, services, files -------------------------------------------------

def test_packages(host):
    names = ["python3-redis"]
    if host.backend.get_hostname() in REDIS_HOSTS:
        names.append("redis-server")
    if host.backend.get_hostname() in SENTINEL_HOSTS:
        names.append("redis-sentinel")
    for name in names:
        assert host.package(name).is_installed, name


def test_services_enabled_and_running(host):
    units = []
    if host.backend.get_hostname() in REDIS_HOSTS:
        units.append("redis-server")
    if host.backend.get_hostname() in SENTINEL_HOSTS:
        units.append("redis-sentinel")
    for unit in units:
        service = host.service(unit)
        assert service.is_enabled, unit
        assert service.is_running, unit


def test_acl_file_is_private_and_hashed(host):
    if host.backend.get_hostname() not in REDIS_HOSTS:
        pytest.skip("not a Redis server")
    s = settings(host)
    with host.sudo():
        acl = host.file("/etc/redis/users.acl")
        assert acl.user == "redis"
        assert acl.mode == 0o640
        content = acl.content_string
    for key in ("redis_admin_password", "redis_app_password", "redis_replication_password",
                "redis_sentinel_auth_password"):
        assert s[key] not in content, f"{key} stored in clear text"
    assert content.count(" #") >= 4, "passwords stored as #<sha256>"
    assert "user default off" in content


def test_config_files_written_once_and_owned_by_redis(host):
    paths = []
    if host.backend.get_hostname() in REDIS_HOSTS:
        paths.append("/etc/redis/redis.conf")
    if host.backend.get_hostname() in SENTINEL_HOSTS:
        paths.append("/etc/redis/sentinel.conf")
    with host.sudo():
        for path in paths:
            conf = host.file(path)
            assert conf.user == "redis", path
            assert MARKER in conf.content_string, f"{path} lacks the written-once marker"
        if "/etc/redis/redis.conf" in paths:
            main = host.file("/etc/redis/redis.conf").content_string.splitlines()
            includes = [i for i, line in enumerate(main) if line.startswith("include ")]
            assert len(includes) == 2
            # Options rewritten by Redis must sit before the includes, not shadow them.
            static_keys = {line.split(" ", 1)[0] for line in host.file("/etc/redis/redis-static.conf")
                           .content_string.splitlines() if line.strip() and not line.startswith("#")}
            assert {"bind", "port", "aclfile", "appendonly", "dir"} <= static_keys
            after = {line.split(" ", 1)[0] for line in main[includes[-1] + 1:]
                     if line.strip() and not line.startswith("#")}
            assert not after & static_keys, "settings after the includes would shadow the static file"


# --- network -----------------------------------------------------------------------

@pytest.mark.parametrize("port_var,default,group", [("redis_port", 6379, "redis"),
                                                    ("redis_sentinel_port", 26379, "sentinel")])
def test_listens_only_on_private_address_and_loopback(host, port_var, default, group):
    if host.backend.get_hostname() not in RUNNER.get_hosts(group):
        pytest.skip(f"not in group {group}")
    port = settings(host).get(port_var, default)
    listening = {s for s in host.check_output(f"ss -Hltn 'sport = :{port}'").split() if s.endswith(f":{port}")}
    assert listening == {f"{private_address(host)}:{port}", f"127.0.0.1:{port}"}


def test_not_reachable_on_other_addresses(host):
    """A listener on 0.0.0.0 or :: would answer on every interface, e.g. a public one."""
    out = host.check_output("ss -Hltn")
    for wildcard in ("0.0.0.0:6379", "[::]:6379", "*:6379", "0.0.0.0:26379", "[::]:26379", "*:26379"):
        assert wildcard not in out


@pytest.mark.parametrize("port_var,default,group", [("redis_port", 6379, "redis"),
                                                    ("redis_sentinel_port", 26379, "sentinel")])
def test_tls_only_with_a_certificate_for_the_address(host, port_var, default, group):
    """With redis_tls: plain TCP gets no answer, and the certificate verifies for the private address."""
    if host.backend.get_hostname() not in RUNNER.get_hosts(group):
        pytest.skip(f"not in group {group}")
    if not tls_args(host):
        pytest.skip("redis_tls is off")
    port = settings(host).get(port_var, default)
    plain = cli(host, None, "PING", port=port, target=private_address(host), tls=False)
    assert "NOAUTH" not in plain and "PONG" not in plain, plain
    assert cli(host, None, "PING", port=port, target=private_address(host)).startswith("NOAUTH")
    other = next(h for h in REDIS_HOSTS if h != host.backend.get_hostname())
    for verify_ip, ok in ((private_address(host), True), (_private_address(other), False)):
        result = get_host(other).run(
            f"echo | timeout 10 openssl s_client -brief -connect {private_address(host)}:{port} -CAfile {CA} "
            f"-verify_return_error -verify_ip {verify_ip}")
        assert (result.rc == 0) is ok, (verify_ip, result.stdout + result.stderr)


# --- authentication and the application's permissions --------------------------------

def test_unauthenticated_commands_are_refused(host):
    if host.backend.get_hostname() in REDIS_HOSTS:
        assert cli(host, None, "PING").startswith("NOAUTH")
        assert cli(host, None, "GET", "x", target=private_address(host)).startswith("NOAUTH")
    if host.backend.get_hostname() in SENTINEL_HOSTS:
        assert cli(host, None, "PING", port=settings(host).get("redis_sentinel_port", 26379)).startswith("NOAUTH")


def test_wrong_password_is_refused(host):
    if host.backend.get_hostname() not in REDIS_HOSTS:
        pytest.skip("not a Redis server")
    out = host.run("printf 'wrong\\n' | redis-cli %s --user recete --askpass PING" % " ".join(tls_args(host)))
    assert "WRONGPASS" in out.stdout + out.stderr


def test_app_user_can_do_what_bullmq_needs():
    primary = master_host()
    key = f"bull:test-{uuid.uuid4().hex[:8]}"
    assert app(primary, "SET", f"{key}:plain", "1") == "OK"
    assert app(primary, "EVAL", "return redis.call('INCR', KEYS[1])", 1, f"{key}:counter") == "1"
    assert app(primary, "ZADD", f"{key}:marker", 0, "0") == "1"
    assert app(primary, "BZPOPMIN", f"{key}:marker", 1).splitlines()[0] == f"{key}:marker"
    assert app(primary, "XADD", f"{key}:events", "*", "event", "added")
    assert "event" in app(primary, "XREAD", "COUNT", 1, "STREAMS", f"{key}:events", 0)
    assert "redis_version" in app(primary, "INFO", "server")
    assert app(primary, "CLIENT", "SETNAME", "bull-test") == "OK"
    assert app(primary, "DEL", f"{key}:plain", f"{key}:counter", f"{key}:events") == "3"


@pytest.mark.parametrize("command", [
    ["CONFIG", "GET", "maxmemory"],
    ["FLUSHALL"],
    ["FLUSHDB"],
    ["KEYS", "*"],
    ["CLIENT", "KILL", "TYPE", "normal"],
    ["SLOWLOG", "GET"],
    ["SAVE"],
    ["ACL", "LIST"],
    ["FUNCTION", "FLUSH"],
    ["SCRIPT", "FLUSH"],
])
def test_app_user_cannot_administer(command):
    assert app(master_host(), *command).startswith("NOPERM"), command


def test_app_user_can_count_the_shared_rate_limit():
    # What rate-limiter-flexible's RateLimiterRedis runs per request (examples/app/src/ratelimit.js).
    key = f"recete:rl:test-{uuid.uuid4().hex[:8]}"
    script = ("redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX') "
              "local consumed = redis.call('incrby', KEYS[1], ARGV[1]) "
              "return {consumed, redis.call('pttl', KEYS[1])}")
    assert app(master_host(), "EVAL", script, 1, key, 1, 5).splitlines()[0] == "1"
    assert app(master_host(), "DEL", key) == "1"


def test_app_user_keys_are_limited_to_its_patterns():
    assert app(master_host(), "SET", "outside:bullmq", "1").startswith("NOPERM")
    assert app(master_host(), "SET", "recete:other", "1").startswith("NOPERM")


# --- settings, replication, Sentinel ---------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("maxmemory-policy", "noeviction"),
    ("appendonly", "yes"),
    ("appendfsync", "everysec"),
    ("protected-mode", "yes"),
])
def test_settings_in_effect(host, name, expected):
    if host.backend.get_hostname() not in REDIS_HOSTS:
        pytest.skip("not a Redis server")
    assert admin(host, "CONFIG", "GET", name).splitlines()[1] == expected


def test_maxmemory_is_set(host):
    if host.backend.get_hostname() not in REDIS_HOSTS:
        pytest.skip("not a Redis server")
    assert int(admin(host, "CONFIG", "GET", "maxmemory").splitlines()[1]) > 0


def test_one_master_the_others_replicate_from_it():
    primary = master_host()
    primary_ip = private_address(primary)
    roles = {}
    for name in REDIS_HOSTS:
        node = get_host(name)
        info = dict(line.split(":", 1) for line in admin(node, "INFO", "replication").splitlines() if ":" in line)
        roles[name] = info
    masters = [n for n, i in roles.items() if i["role"] == "master"]
    assert masters == [primary.backend.get_hostname()]
    for name, info in roles.items():
        if name in masters:
            continue
        assert info["master_host"] == primary_ip, name
        assert info["master_link_status"] == "up", name


def test_write_on_master_is_visible_on_replicas():
    primary = master_host()
    key, value = f"bull:replication-test:{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assert app(primary, "SET", key, value, "EX", 60) == "OK"
    for name in REDIS_HOSTS:
        node = get_host(name)
        if node.backend.get_hostname() == primary.backend.get_hostname():
            continue
        deadline = time.time() + 10
        while app(node, "GET", key) != value and time.time() < deadline:
            time.sleep(0.2)
        assert app(node, "GET", key) == value, name
        assert app(node, "SET", key, "x").startswith("READONLY"), f"{name} accepts writes"


def test_sentinels_agree_and_reach_quorum():
    name = settings(get_host(SENTINEL_HOSTS[0])).get("redis_master_name", "recete")
    answers = set()
    for host_name in SENTINEL_HOSTS:
        node = get_host(host_name)
        answers.add(master_address(node))
        assert sentinel(node, "SENTINEL", "CKQUORUM", name).startswith("OK"), host_name
        master = sentinel(node, "SENTINEL", "MASTER", name).splitlines()
        fields = dict(zip(master[0::2], master[1::2]))
        assert fields["flags"] == "master", host_name
        assert int(fields["num-other-sentinels"]) == len(SENTINEL_HOSTS) - 1, host_name
        assert int(fields["num-slaves"]) == len(REDIS_HOSTS) - 1, host_name
        assert int(fields["quorum"]) == settings(node).get("redis_sentinel_quorum", 2), host_name
        assert int(fields["down-after-milliseconds"]) == settings(node).get(
            "redis_sentinel_down_after_milliseconds", 5000), host_name
    assert len(answers) == 1, f"Sentinels name different masters: {answers}"


# --- Sentinel's ACL users: clients may look, not change ---------------------------------

def sentinel_as(host, who, *args):
    """A command to the local Sentinel as its client or peer ACL user."""
    s = settings(host)
    return cli(host, s[f"redis_sentinel_{who}_password"], *args, user=s.get(f"redis_sentinel_{who}_user", who),
               port=s.get("redis_sentinel_port", 26379))


def sentinel_hosts():
    return [get_host(name) for name in SENTINEL_HOSTS]


def test_sentinel_client_user_finds_the_master():
    name = settings(get_host(SENTINEL_HOSTS[0])).get("redis_master_name", "recete")
    for node in sentinel_hosts():
        words = sentinel_as(node, "client", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name).split()
        assert len(words) == 2 and (words[0], int(words[1])) == master_address(node)
        # What ioredis (sentinels, replicas) and the exporter (masters, INFO, ckquorum) ask too.
        assert "ip" in sentinel_as(node, "client", "SENTINEL", "SENTINELS", name).splitlines()
        assert "ip" in sentinel_as(node, "client", "SENTINEL", "REPLICAS", name).splitlines()
        assert name in sentinel_as(node, "client", "SENTINEL", "MASTERS").splitlines()
        assert sentinel_as(node, "client", "SENTINEL", "CKQUORUM", name).startswith("OK")
        assert "redis_mode:sentinel" in sentinel_as(node, "client", "INFO", "server")


@pytest.mark.parametrize("command", [
    ["SENTINEL", "SET", "{name}", "down-after-milliseconds", "1000"],
    ["SENTINEL", "FAILOVER", "{name}"],
    ["SENTINEL", "MONITOR", "rogue", "192.0.2.1", "6379", "2"],
    ["SENTINEL", "REMOVE", "{name}"],
    ["SENTINEL", "RESET", "*"],
    ["SENTINEL", "CONFIG", "SET", "announce-ip", "192.0.2.1"],
    ["SENTINEL", "FLUSHCONFIG"],
    ["ACL", "SETUSER", "client", "+@all"],
    ["SHUTDOWN"],
])
@pytest.mark.parametrize("who", ["client", "peer"])
def test_sentinel_client_and_peer_users_cannot_change_sentinel(who, command):
    node = get_host(SENTINEL_HOSTS[0])
    name = settings(node).get("redis_master_name", "recete")
    reply = sentinel_as(node, who, *[word.format(name=name) for word in command])
    assert reply.startswith("NOPERM"), f"{who}: {command} -> {reply!r}"


@pytest.mark.parametrize("who", ["client", "peer"])
def test_sentinel_config_set_is_refused(who):
    """Sentinel 7.0 has no CONFIG command (SENTINEL CONFIG SET, refused above, is its form)."""
    node = get_host(SENTINEL_HOSTS[0])
    reply = sentinel_as(node, who, "CONFIG", "SET", "sentinel-pass", "x")
    assert reply.startswith(("NOPERM", "ERR unknown command")), reply


def test_sentinel_peer_user_is_only_for_sentinels():
    node = get_host(SENTINEL_HOSTS[0])
    reply = sentinel_as(node, "peer", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", settings(node).get("redis_master_name", "recete"))
    assert reply.startswith("NOPERM"), reply
    assert sentinel_as(node, "peer", "PING") == "PONG"


def test_sentinels_log_in_to_each_other_as_the_peer_user(host):
    """sentinel.conf (rewritten by Sentinel itself) keeps the users, hashed, and the peer login."""
    if host.backend.get_hostname() not in SENTINEL_HOSTS:
        pytest.skip("no Sentinel")
    s = settings(host)
    with host.sudo():
        conf = host.file("/etc/redis/sentinel.conf").content_string
    lines = conf.splitlines()
    peer, client = s.get("redis_sentinel_peer_user", "peer"), s.get("redis_sentinel_client_user", "client")
    assert f"sentinel sentinel-user {peer}" in lines
    # e.g. "user peer on sanitize-payload #<sha256> ... -@all +@fast ..."
    for user in (peer, client):
        assert any(line.startswith(f"user {user} on ") and " #" in line and "-@all" in line for line in lines), conf
    assert s["redis_sentinel_client_password"] not in conf
    # The others see this Sentinel (hello messages published as the peer user).
    name = s.get("redis_master_name", "recete")
    fields = sentinel(host, "SENTINEL", "MASTER", name).splitlines()
    assert int(dict(zip(fields[0::2], fields[1::2]))["num-other-sentinels"]) == len(SENTINEL_HOSTS) - 1


# --- the cache Redis beside the queue's (role recete.stack.redis_cache) ----------

CACHE_PORT = 6380
CACHE_MASTER = "recete-cache"


def cache_user(host, *args):
    s = settings(host)
    return cli(host, s["redis_cache_password"], *args, user="cache", port=CACHE_PORT)


def cache_config(host, key):
    reply = admin(host, "CONFIG", "GET", key, port=CACHE_PORT).splitlines()
    assert len(reply) >= 1 and reply[0] == key, reply
    return reply[1] if len(reply) > 1 else ""


def test_cache_servers_evict_and_keep_nothing_on_disk_the_queue_keeps_its_settings(host):
    if host.backend.get_hostname() not in REDIS_HOSTS:
        pytest.skip("not a Redis server")
    unit = host.service("redis-server@cache")
    assert unit.is_running and unit.is_enabled
    assert host.socket(f"tcp://{private_address(host)}:{CACHE_PORT}").is_listening
    assert {key: cache_config(host, key) for key in ("maxmemory-policy", "appendonly", "save", "maxmemory")} == {
        "maxmemory-policy": "allkeys-lru", "appendonly": "no", "save": "", "maxmemory": str(64 * 1024 * 1024)}
    # The queue's server beside it: still noeviction and AOF (BullMQ must never lose a job to eviction).
    queue = {key: admin(host, "CONFIG", "GET", key).splitlines()[1] for key in ("maxmemory-policy", "appendonly")}
    assert queue == {"maxmemory-policy": "noeviction", "appendonly": "yes"}
    assert not host.file("/var/lib/redis/dump-cache.rdb").exists


def test_cache_has_one_master_that_every_sentinel_follows():
    answers = {}
    for name in SENTINEL_HOSTS:
        node = get_host(name)
        words = sentinel(node, "SENTINEL", "MASTER", CACHE_MASTER).splitlines()
        info = dict(zip(words[0::2], words[1::2]))
        answers[name] = (info.get("ip"), info.get("port"), info.get("flags"), info.get("num-slaves"),
                         info.get("num-other-sentinels"), info.get("quorum"))
    assert len(set(answers.values())) == 1, answers
    ip, port, flags, replicas, others, quorum = next(iter(answers.values()))
    assert (port, flags) == (str(CACHE_PORT), "master"), answers
    assert replicas == str(len(REDIS_HOSTS) - 1) and others == str(len(SENTINEL_HOSTS) - 1), answers
    master = master_host(CACHE_MASTER)
    info = admin(master, "INFO", "replication", port=CACHE_PORT)
    assert f"connected_slaves:{len(REDIS_HOSTS) - 1}" in info, info


def test_cache_user_touches_only_cache_keys_and_neither_user_crosses_over():
    master = master_host(CACHE_MASTER)
    key = "recete:cache:probe:" + uuid.uuid4().hex[:8]
    assert cache_user(master, "SET", key, "1", "PX", "60000") == "OK"
    assert cache_user(master, "GET", key) == "1"
    for command in (["SET", "bull:probe", "1"], ["GET", "recete:rl:probe"], ["KEYS", "*"], ["FLUSHALL"],
                    ["CONFIG", "GET", "maxmemory"]):
        assert cache_user(master, *command).startswith("NOPERM"), command
    # The queue's app user does not exist on the cache servers, nor the cache user on the queue's.
    assert app(master, "PING") == "PONG" and cache_user(master, "PING") == "PONG"
    assert app(master, "PING", port=CACHE_PORT) != "PONG"
    assert cli(master, settings(master)["redis_cache_password"], "PING", user="cache") != "PONG"
