# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The operator's status screen (playbooks/status.yml) from what the plays read.

The plays only collect: each tier's raw module results, per host, into one
dict (roles/status/tasks/summary.yml builds it). Everything that interprets
them - which host is unreachable, which upstream member is down, who is the
Redis master, how far a replica lags - lives here, so the status screen and
the scaling checklist (_checklist.py) read the stack the same way.

The collected data (every key optional):

    {"app": {"api": {host: app_instances result}, "worker": {...}, "web": {...}},
     "lb": {host: slurp result of the upstream file},
     "sentinel": {host: sentinel_info result}, "addresses": {ip: host},
     "postgres": {"mode": "self_hosted", "hosts": {host: {"node": query, "replication": query}}},
     "pgbouncer": {host: pgbouncer_admin result},
     "monitoring": {"host": name, "ready": uri, "jobs": uri, "latency": uri,
                    "alerts": uri, "targets": uri, "rules": uri} or {},
     "queue": {"name": "recete-jobs", "host": master host, "result": command result}}

A host's value is None when no play read it (outside --limit), or a result
flagged unreachable/failed. Pure Python, no Ansible imports: unit-tested.
"""

from __future__ import annotations

import base64
import re
import time

_SERVER = re.compile(r"^\s*server\s+(\S+)([^;]*);", re.M)
_UPSTREAM = re.compile(r"^\s*upstream\s+(\S+)\s*\{", re.M)
QUEUE_STATES = ("waiting", "active", "delayed", "failed")


# --- one host's result ----------------------------------------------------------

def problem(result, need=None):
    """Why a result holds no data ("not read", "unreachable", "error: ..."), or None.

    The read tasks run with failed_when: false (a down service is a status,
    not a reason to stop), so a failure shows as the missing key need.
    """
    if result is None:
        return "not read (outside the play: --limit?)"
    if not isinstance(result, dict):
        return "no data"
    if result.get("unreachable"):
        return "unreachable"
    if result.get("skipped"):
        return "not read (%s)" % (result.get("skip_reason") or "skipped").lower()
    if result.get("failed") or (need and need not in result):
        return "error: %s" % first_line(result.get("msg") or result.get("stderr") or "no %s in the answer" % need)
    return None


def first_line(text):
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def seconds(value, digits=1):
    """'1.5 s' for a number of seconds; '?' when unknown."""
    if value is None or value == "":
        return "?"
    try:
        return "%.*f s" % (digits, float(value))
    except (TypeError, ValueError):
        return "?"


# --- API and workers -------------------------------------------------------------

def instance_word(inst):
    if inst.get("running"):
        return "stale" if inst.get("stale") else "running"
    return inst.get("active_state") or "stopped"


def app_line(host, result):
    """'api1: 3000 (1.0.0) running, 3001 (1.0.0) running' from one app_instances result."""
    why = problem(result, "instances")
    if why:
        return "%s: %s" % (host, why)
    if not result.get("unit_installed"):
        return "%s: not deployed" % host
    insts = [i for i in result.get("instances", []) if i.get("current") or i.get("running")]
    if not insts:
        return "%s: no instance (release %s)" % (host, result.get("release") or "none")
    words = ["%s (%s) %s" % (i["slot"], i.get("release") or "?", instance_word(i))
             for i in sorted(insts, key=lambda i: i["slot"])]
    return "%s: %s" % (host, ", ".join(words))


def running_count(results):
    return sum(1 for r in results.values() if not problem(r, "instances")
               for i in r.get("instances", []) if i.get("running"))


# --- load balancer ---------------------------------------------------------------

def parse_upstream(text):
    """{"name", "members": [{"address", "down", "options"}]} of an upstream file nginx_upstream wrote."""
    name = _UPSTREAM.search(text or "")
    members = []
    for address, rest in _SERVER.findall(text or ""):
        words = rest.split()
        members.append({"address": address, "down": "down" in words,
                        "options": [w for w in words if w != "down"]})
    return {"name": name.group(1) if name else None, "members": members}


def slurped_text(result):
    """The text of an ansible.builtin.slurp result."""
    return base64.b64decode(result.get("content") or "").decode("utf-8", "replace")


def lb_line(host, result):
    why = problem(result, "content")
    if why:
        if "no such file" in why.lower() or "not found" in why.lower():
            return "%s: no upstream file (load balancer not deployed)" % host
        return "%s: %s" % (host, why)
    upstream = parse_upstream(slurped_text(result))
    if not upstream["members"]:
        return "%s: upstream %s has no member" % (host, upstream["name"])
    active = [m for m in upstream["members"] if not m["down"]]
    return "%s: %d/%d active: %s" % (host, len(active), len(upstream["members"]),
                                     ", ".join(m["address"] + (" DOWN" if m["down"] else "") for m in upstream["members"]))


# --- Redis and Sentinel ----------------------------------------------------------

def sentinel_view(sentinels):
    """What the Sentinels say together: {"masters", "answered", "ckquorum", "sentinels", "replicas", "problems"}."""
    answered = {h: r for h, r in sentinels.items() if not problem(r, "reachable") and r["reachable"]}
    monitored = {h: r for h, r in answered.items() if r.get("monitored")}
    masters = sorted(set(r["master"]["address"] for r in monitored.values()))
    known = max([r.get("num_other_sentinels", 0) + 1 for r in monitored.values()] or [0])
    ck = [(h, r.get("ckquorum", {})) for h, r in sorted(monitored.items())]
    replicas = []
    if monitored:
        replicas = monitored[sorted(monitored)[0]].get("replicas", [])
    return {"masters": masters, "answered": sorted(answered), "monitoring": sorted(monitored),
            "sentinels": known, "ckquorum": ck, "replicas": replicas,
            "quorum_ok": bool(ck) and all(pair[1].get("ok") for pair in ck)}


def redis_lines(sentinels, addresses):
    if not sentinels:
        return ["no sentinel host in the inventory"]
    view = sentinel_view(sentinels)
    lines = []
    if len(view["masters"]) == 1:
        master = view["masters"][0]
        lines.append("master %s (%s)" % (master, addresses.get(master.rsplit(":", 1)[0], "?")))
    elif view["masters"]:
        lines.append("Sentinels DISAGREE on the master: %s (a failover in progress?)" % ", ".join(view["masters"]))
    else:
        lines.append("master unknown: no Sentinel answered for it")
    if view["replicas"]:
        lines.append("replicas: " + ", ".join(
            "%s (%s) link %s%s" % (r.get("address"), addresses.get(r.get("ip"), "?"), r.get("master_link_status") or "?",
                                   "" if r.get("flags") in (None, ["slave"]) else " flags " + ",".join(r["flags"]))
            for r in view["replicas"]))
    words = []
    for host in sorted(sentinels):
        why = problem(sentinels[host], "reachable")
        result = sentinels[host] or {}
        if not why and not result["reachable"]:
            why = "Sentinel %s" % result.get("unreachable_reason", "unreachable")
        if not why and not result.get("monitored"):
            why = "does not monitor the master"
        if not why:
            ck = result.get("ckquorum", {})
            why = "ckquorum OK" if ck.get("ok") else "ckquorum FAILS: %s" % ck.get("message", "?")
        words.append("%s %s" % (host, why))
    lines.append("sentinels: " + "; ".join(words))
    lines.append("%d Sentinel(s) known, quorum %s" % (view["sentinels"], "OK" if view["quorum_ok"] else "NOT reachable"))
    return lines


# --- PostgreSQL -------------------------------------------------------------------

def rows(result):
    return (result or {}).get("query_result") or []


def postgres_view(hosts):
    """{"primaries": [host], "replicas": {host: row}, "streams": [pg_stat_replication rows], "problems": {host: why}}."""
    view = {"primaries": [], "replicas": {}, "streams": [], "problems": {}}
    for host in sorted(hosts):
        entry = hosts[host] or {}
        node = entry.get("node") if isinstance(entry, dict) else None
        why = problem(node, "query_result")
        if why:
            view["problems"][host] = why
            continue
        row = (rows(node) or [{}])[0]
        if row.get("in_recovery"):
            view["replicas"][host] = row
        else:
            view["primaries"].append(host)
        if not problem(entry.get("replication"), "query_result"):
            view["streams"].extend(dict(r, upstream=host) for r in rows(entry.get("replication")))
    return view


def postgres_lines(postgres, addresses):
    mode = (postgres or {}).get("mode") or "self_hosted"
    if mode == "external":
        return ["external (postgresql_mode: external): managed outside this stack"]
    hosts = (postgres or {}).get("hosts") or {}
    if not hosts:
        return ["no host in the postgres group"]
    view = postgres_view(hosts)
    lines = []
    for host in view["primaries"]:
        streams = [s for s in view["streams"] if s["upstream"] == host]
        attached = "".join("; %s (%s) %s %s replay lag %s" % (
            s.get("application_name") or "?", addresses.get(s.get("client_addr") or "", s.get("client_addr") or "?"),
            s.get("state"), s.get("sync_state"), seconds(s.get("replay_lag") or 0, 3)) for s in streams)
        lines.append("%s: primary, %d replica(s) attached%s" % (host, len(streams), attached))
    for host, row in sorted(view["replicas"].items()):
        lines.append("%s: replica, receiver %s, %s, last replayed transaction %s ago" % (
            host, row.get("receiver") or "not running", "caught up" if row.get("caught_up") else "REPLAYING BEHIND",
            seconds(row.get("replay_age"))))
    for host, why in sorted(view["problems"].items()):
        lines.append("%s: %s" % (host, why))
    if len(view["primaries"]) > 1:
        lines.append("MORE THAN ONE PRIMARY: %s" % ", ".join(view["primaries"]))
    return lines


# --- PgBouncer --------------------------------------------------------------------

def pgbouncer_lines(results):
    if not results:
        return ["no host in the pgbouncer group"]
    lines = []
    for host in sorted(results):
        why = problem(results[host], "pools")
        if why:
            lines.append("%s: %s" % (host, why))
            continue
        pools = [p for p in results[host].get("pools", []) if p.get("database") != "pgbouncer"]
        if not pools:
            lines.append("%s: answering, no pool open yet" % host)
        for p in pools:
            lines.append("%s: %s/%s %s cl_active %s cl_waiting %s sv_active %s sv_idle %s maxwait %s" % (
                host, p.get("database"), p.get("user"), p.get("pool_mode") or "?", p.get("cl_active"),
                p.get("cl_waiting"), p.get("sv_active"), p.get("sv_idle"),
                seconds((p.get("maxwait") or 0) + (p.get("maxwait_us") or 0) / 1e6, 3)))
    return lines


# --- Prometheus -------------------------------------------------------------------

def prom_data(result):
    """The "data" of a Prometheus API answer, or None."""
    if problem(result, "json"):
        return None
    body = result.get("json") or {}
    return body.get("data") if body.get("status") == "success" else None


def prom_vector(result, label):
    """{label value: float} of an instant-vector query."""
    data = prom_data(result)
    out = {}
    for sample in (data or {}).get("result", []):
        try:
            out[sample["metric"].get(label, "")] = float(sample["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return out


def firing_alerts(result):
    data = prom_data(result)
    alerts = [a for a in (data or {}).get("alerts", []) if a.get("state") == "firing"]
    return sorted(alerts, key=lambda a: (a.get("activeAt") or "", a.get("labels", {}).get("alertname", "")))


def targets(result, job=None):
    data = prom_data(result)
    found = (data or {}).get("activeTargets", [])
    return [t for t in found if job is None or t.get("labels", {}).get("job") == job]


def alerting_rules(result):
    data = prom_data(result)
    return [r for g in (data or {}).get("groups", []) for r in g.get("rules", []) if r.get("type") == "alerting"]


def redis_queue(result, now=None):
    """Counts and latency from the EVAL in roles/status/tasks/queue_redis.yml, or None.

    Its lines: waiting, active, delayed, failed, the oldest waiting job's
    timestamp in ms ('' without one), the server's time in s.
    """
    if problem(result, "stdout") or result.get("rc"):
        return None
    lines = [line.strip() for line in (result.get("stdout") or "").splitlines()]
    if len(lines) < 6:
        return None
    try:
        counts = dict(zip(QUEUE_STATES, (int(v) for v in lines[:4])))
        server_now = float(lines[5]) if lines[5] else (now or time.time())
    except ValueError:
        return None
    latency = max(0.0, server_now - float(lines[4]) / 1000.0) if lines[4] else 0.0
    return {"counts": counts, "latency": latency}


def queue_lines(monitoring, queue):
    monitoring, queue = monitoring or {}, queue or {}
    # The plays read Redis only when asked to (or without monitoring): that read wins.
    if monitoring.get("host") and not queue.get("host"):
        counts = prom_vector(monitoring.get("jobs"), "state")
        latency = prom_vector(monitoring.get("latency"), "")
        if problem(monitoring.get("jobs"), "json"):
            return ["Prometheus on %s: %s" % (monitoring["host"], problem(monitoring.get("jobs"), "json"))]
        if not counts:
            return ["no recete_queue_jobs series in Prometheus on %s (workers not scraped yet?)" % monitoring["host"]]
        return ["%s (Prometheus on %s); latency %s" % (
            ", ".join("%s %d" % (s, counts.get(s, 0)) for s in QUEUE_STATES), monitoring["host"],
            seconds(max(latency.values())) if latency else "no data (recete:queue_latency_seconds:max)")]
    if not queue.get("host"):
        return ["unknown: no monitoring, and no Redis master found to read the queue from"]
    found = redis_queue(queue.get("result"))
    if found is None:
        result = queue.get("result")
        why = problem(result, "stdout") or first_line((result or {}).get("stderr") or (result or {}).get("stdout") or "")
        return ["%s on %s: %s" % (queue.get("name"), queue["host"], why or "unreadable answer")]
    return ["%s: %s (Redis on %s); latency %s" % (
        queue.get("name"), ", ".join("%s %d" % (s, found["counts"][s]) for s in QUEUE_STATES), queue["host"],
        seconds(found["latency"]))]


def alert_lines(monitoring):
    monitoring = monitoring or {}
    if not monitoring.get("host"):
        return ["monitoring not deployed (no host in the monitoring group)"]
    why = problem(monitoring.get("alerts"), "json")
    if why:
        return ["Prometheus on %s: %s" % (monitoring["host"], why)]
    lines = []
    up = [t for t in targets(monitoring.get("targets")) if t.get("health") == "up"]
    every = targets(monitoring.get("targets"))
    if every:
        down = [t for t in every if t.get("health") != "up"]
        lines.append("targets: %d/%d up%s" % (len(up), len(every), "".join(
            "; DOWN %s %s" % (t.get("labels", {}).get("job"), t.get("labels", {}).get("instance")) for t in down)))
    firing = firing_alerts(monitoring.get("alerts"))
    if not firing:
        lines.append("no alert firing")
    for alert in firing:
        labels = alert.get("labels", {})
        lines.append("FIRING %s %s%s since %s" % (
            labels.get("alertname", "?"), labels.get("instance") or labels.get("host") or "-",
            " (%s)" % labels["severity"] if labels.get("severity") else "",
            re.sub(r"\.\d+(?=Z|[+-]\d\d:\d\d$)", "", alert.get("activeAt") or "?")))
    return lines


# --- the screen -------------------------------------------------------------------

def status_lines(data):
    """The whole status screen: a header line per tier, then its lines indented."""
    data = data or {}
    addresses = data.get("addresses") or {}
    app = data.get("app") or {}
    sections = [
        ("API and workers (%d API, %d worker instances running)" % (
            running_count(app.get("api") or {}), running_count(app.get("worker") or {})),
         ["api " + app_line(h, r) for h, r in sorted((app.get("api") or {}).items())]
         + ["worker " + app_line(h, r) for h, r in sorted((app.get("worker") or {}).items())]
         or ["no host in the api or worker group"]),
    ] + ([
        # Only a stack with a web tier shows its section.
        ("Web (%d instances running)" % running_count(app["web"]),
         ["web " + app_line(h, r) for h, r in sorted(app["web"].items())]),
    ] if app.get("web") else []) + [
        ("Load balancer (upstream members)",
         [lb_line(h, r) for h, r in sorted((data.get("lb") or {}).items())] or ["no host in the lb group"]),
        ("Redis (Sentinel)", redis_lines(data.get("sentinel") or {}, addresses)),
        ("PostgreSQL", postgres_lines(data.get("postgres"), addresses)),
        ("PgBouncer (SHOW POOLS)", pgbouncer_lines(data.get("pgbouncer") or {})),
        ("Queue (waiting/active/delayed/failed, latency = age of the oldest waiting job)",
         queue_lines(data.get("monitoring"), data.get("queue"))),
        ("Alerts", alert_lines(data.get("monitoring"))),
    ]
    lines = []
    for title, body in sections:
        lines.append("== %s" % title)
        lines.extend("   " + line for line in body)
    return lines
