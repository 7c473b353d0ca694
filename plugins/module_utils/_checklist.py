# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scaling checklist (playbooks/checklist.yml) evaluated against what the plays read.

Input: the status data (see _status.py) plus facts read on the controller and
the hosts for the items the status screen does not show:

    {"playbooks": ["deploy.yml", ...],     # file names in playbooks/
     "results_md": text or None,           # docs/results.md
     "bench_out": ["file", ...],           # files under bench/out/
     "lb_hosts": [host], "autoscaler": {"hosts": [host], "active": [host]},
     "cdn": {"groups": {"web": [host], "cdn": [host]}, "setting": str, "caching_lbs": [host]},
     "backup": {host: {"configs": [path], "timers": [unit]}}}

Each item is {"id", "title", "ok", "evidence"}: ok only on evidence found in
the live stack or the repository, never on a setting that merely says so.
Pure Python, no Ansible imports: unit-tested.
"""

from __future__ import annotations

import re

from ansible_collections.recete.stack.plugins.module_utils import _status as st

# A measured figure: a number with the unit of one of our targets.
_FIGURE = re.compile(r"(?<![\w.])\d[\d,.]*\s*(?:req/s|requests/s|rps|jobs/s|ms|s\b|%)", re.I)
MARKS = {True: "\u2714", False: "\u2718"}


def item(ident, title, ok, evidence):
    return {"id": ident, "title": title, "ok": bool(ok), "evidence": evidence}


def load_testing(facts):
    text = facts.get("results_md")
    figure = _FIGURE.search(text or "")
    if figure:
        return True, "docs/results.md names a figure: %s" % figure.group(0)
    outs = sorted(facts.get("bench_out") or [])
    if outs:
        return True, "bench/out holds %d file(s): %s" % (len(outs), ", ".join(outs[:3]) + (", ..." if len(outs) > 3 else ""))
    if text is not None:
        return False, "docs/results.md names no figure and bench/out is empty: run the benches (bench/)"
    return False, "no docs/results.md and no file in bench/out: no load test result recorded"


def monitoring(data):
    mon = data.get("monitoring") or {}
    if not mon.get("host"):
        return False, "no host in the monitoring group"
    ready = mon.get("ready")
    if st.problem(ready, "status") or ready["status"] != 200:
        return False, "Prometheus on %s not ready at /-/ready: %s" % (
            mon["host"], st.problem(ready, "status") or (st.first_line(ready["msg"]) if ready.get("msg")
                                                         else "HTTP %s" % ready["status"]))
    parts, ok = [], True
    for job in ("recete_api", "node"):
        found = st.targets(mon.get("targets"), job)
        up = [t for t in found if t.get("health") == "up"]
        ok = ok and bool(found) and len(up) == len(found)
        parts.append("%s %d/%d up" % (job, len(up), len(found)))
    return ok, "Prometheus on %s ready; targets %s" % (mon["host"], ", ".join(parts))


def alerts_loaded(data):
    mon = data.get("monitoring") or {}
    if not mon.get("host"):
        return False, "no Prometheus (no host in the monitoring group)"
    why = st.problem(mon.get("rules"), "json")
    if why:
        return False, "Prometheus /api/v1/rules: %s" % why
    count = len(st.alerting_rules(mon.get("rules")))
    return count > 0, "%d alerting rule(s) loaded in Prometheus" % count


def autoscaling(facts):
    auto = facts.get("autoscaler") or {}
    hosts = auto.get("hosts") or []
    if not hosts:
        return False, "no autoscaler: the autoscaler group is empty or absent (not built yet)"
    active = sorted(auto.get("active") or [])
    return bool(active), ("autoscaler service active on %s" % ", ".join(active) if active
                          else "autoscaler group %s but no active autoscaler service" % ", ".join(hosts))


def pooling(data):
    results = data.get("pgbouncer") or {}
    if not results:
        return False, "no host in the pgbouncer group"
    modes, problems = set(), []
    for host in sorted(results):
        why = st.problem(results[host], "pools")
        if why:
            problems.append("%s %s" % (host, why))
            continue
        pools = [p for p in results[host].get("pools", []) if p.get("database") != "pgbouncer"]
        modes.update(p.get("pool_mode") or "?" for p in pools)
    if problems:
        return False, "PgBouncer not answering SHOW POOLS: " + "; ".join(problems)
    if not modes:
        return False, "PgBouncer answers but no pool is open: pool_mode not observable"
    return modes == {"transaction"}, "PgBouncer answers SHOW POOLS on %d host(s); pool_mode %s" % (
        len(results), ", ".join(sorted(modes)))


def sentinel(data):
    view = st.sentinel_view(data.get("sentinel") or {})
    if not view["monitoring"]:
        return False, "no Sentinel answered for the master"
    ok = view["quorum_ok"] and view["sentinels"] >= 3 and len(view["masters"]) == 1
    return ok, "%d Sentinel(s) known, ckquorum %s, master %s" % (
        view["sentinels"], "OK on " + ", ".join(view["monitoring"]) if view["quorum_ok"] else "failing",
        ", ".join(view["masters"]) or "unknown")


def replicas(data):
    postgres = data.get("postgres") or {}
    if postgres.get("mode") == "external":
        return False, "postgresql_mode external: replicas are outside this stack, not checked"
    view = st.postgres_view(postgres.get("hosts") or {})
    streaming = [s for s in view["streams"] if s.get("state") == "streaming"]
    if not view["primaries"]:
        return False, "no primary answered (%s)" % ("; ".join("%s %s" % p for p in sorted(view["problems"].items()))
                                                    or "no host in the postgres group")
    return len(streaming) >= 1, "%d streaming replica(s) on %s%s" % (
        len(streaming), ", ".join(view["primaries"]),
        "" if not streaming else " (%s)" % ", ".join(s.get("application_name") or "?" for s in streaming))


def cdn(facts):
    """An external CDN (cdn_url), edge hosts (a `cdn` group), or the web tier's static
    assets cached by nginx on the load balancers, the origin a CDN pulls from."""
    info = facts.get("cdn") or {}
    groups = {g: hosts for g, hosts in (info.get("groups") or {}).items() if hosts}
    caching = info.get("caching_lbs") or []
    if info.get("setting"):
        return True, "CDN setting: %s" % info["setting"]
    if groups.get("cdn"):
        return True, "CDN edge group: cdn (%s)" % ", ".join(groups["cdn"])
    named = ", ".join("%s (%s)" % (g, ", ".join(h)) for g, h in sorted(groups.items()))
    if groups and caching:
        return True, "static assets of %s cached by nginx on %s (the CDN origin; no cdn_url set)" % (
            named, ", ".join(caching))
    if groups:
        return False, "group(s) %s but no load balancer caches their static assets" % named
    return False, "no CDN: no web/cdn group and no cdn setting (not built)"


def backups(facts):
    found = facts.get("backup") or {}
    if not found:
        return False, "no backup checked: no host in the postgres group answered"
    configs = sorted("%s:%s" % (h, c) for h, b in found.items() for c in (b or {}).get("configs", []))
    timers = sorted("%s:%s" % (h, t) for h, b in found.items() for t in (b or {}).get("timers", []))
    if configs and timers:
        return True, "pgbackrest config %s, timer %s" % (", ".join(configs), ", ".join(timers))
    return False, "no backups: %s, %s (not built)" % (
        "config " + ", ".join(configs) if configs else "no pgbackrest config",
        "timer " + ", ".join(timers) if timers else "no backup timer")


def dr_plan(facts):
    books = sorted(b for b in facts.get("playbooks") or [] if re.match(r"^(restore|promote).*\.ya?ml$", b))
    if books:
        return True, "DR playbooks: %s" % ", ".join(books)
    return False, "no restore*.yml or promote*.yml playbook"


def lb_redundancy(facts):
    hosts = facts.get("lb_hosts") or []
    return len(hosts) >= 2, "%d load balancer host(s)%s%s" % (
        len(hosts), ": " + ", ".join(hosts) if hosts else "", "" if len(hosts) >= 2 else " (a single point of failure)")


def zero_downtime(facts):
    books = set(facts.get("playbooks") or [])
    missing = [b for b in ("deploy.yml", "rollback.yml") if b not in books]
    if missing:
        return False, "missing playbooks/%s" % ", playbooks/".join(missing)
    return True, "playbooks/deploy.yml and playbooks/rollback.yml (rolling, drained, rolled back on failure)"


def evaluate(data, facts):
    """The checklist items, in the checklist's order."""
    data, facts = data or {}, facts or {}
    checks = [
        ("load_testing", "Load testing done", load_testing(facts)),
        ("monitoring", "Monitoring set up", monitoring(data)),
        ("alerts", "Alerts loaded", alerts_loaded(data)),
        ("autoscaling", "Autoscaling configured", autoscaling(facts)),
        ("connection_pooling", "Connection pooling (PgBouncer, transaction mode)", pooling(data)),
        ("redis_sentinel", "Redis Sentinel (quorum, >= 3 Sentinels)", sentinel(data)),
        ("read_replicas", "Read replicas (>= 1 streaming)", replicas(data)),
        ("cdn", "CDN for static content", cdn(facts)),
        ("backups", "Backups (pgBackRest + timer)", backups(facts)),
        ("dr_plan", "Disaster recovery plan (restore/promote playbooks)", dr_plan(facts)),
        ("lb_redundancy", "Load balancer redundancy (>= 2)", lb_redundancy(facts)),
        ("zero_downtime", "Zero-downtime deploy tooling", zero_downtime(facts)),
    ]
    return [item(ident, title, ok, evidence) for ident, title, (ok, evidence) in checks]


def text_lines(items):
    """'✔ Title: evidence' per item, then the count."""
    lines = ["%s %s: %s" % (MARKS[i["ok"]], i["title"], i["evidence"]) for i in items]
    return lines + ["%d/%d done" % (sum(1 for i in items if i["ok"]), len(items))]


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(items, title="Scaling checklist", generated="", source=""):
    """The Markdown report: a table of the items with their evidence."""
    done = sum(1 for i in items if i["ok"])
    out = ["# %s" % title, ""]
    if generated or source:
        out += ["Evaluated %s%s." % (generated, (" against " + source) if source else ""), ""]
    out += ["**%d of %d done.**" % (done, len(items)), "", "| | Item | Evidence |", "|---|---|---|"]
    out += ["| %s | %s | %s |" % (MARKS[i["ok"]], _cell(i["title"]), _cell(i["evidence"])) for i in items]
    return "\n".join(out) + "\n"
