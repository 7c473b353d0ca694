#!/usr/bin/env python3
"""How fast a no-change site.yml runs, with each way of running Ansible side by side.

    bench/site_speed.py INVENTORY [--variants baseline,free,factcache,mitogen] [--top 15]

On a lab whose stack site.yml has already deployed (so every run should change
nothing), runs site.yml once per variant, one after the other on the same
machine, and prints for each: the wall time, the task banners (TASK and
RUNNING HANDLER lines: what the operator waits through), the time per banner,
and the PLAY RECAP's changed/failed/unreachable sums - a variant that changes
something or fails is not a faster way to do the same thing. Issue 13's goal:
under 45 s and at most 0.15 s per banner on the default lab.

Variants (environment of one run; the repository's ansible.cfg otherwise):
  baseline   as the README runs it (linear strategy, forks 20, SSH pipelining,
             ControlPersist, gathering smart); also prints the slowest tasks
             (ansible.posix.profile_tasks)
  free       ANSIBLE_STRATEGY=free: a host runs ahead of the others within a play
  factcache  facts cached in a JSON file between runs (filled by an untimed run)
  mitogen    the mitogen_linear strategy (mitogen 0.3.x, installed with pip into
             .cache/bench/mitogen when missing: PyPI)
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _lab import REPO, VENV_BIN, Lab, LabError  # noqa: E402  (bench/ helper)

MITOGEN_DIR = os.path.join(REPO, ".cache", "bench", "mitogen")
MITOGEN_VERSION = "0.3.54"
RECAP = re.compile(r"^\S+\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)
BANNER = re.compile(r"^(TASK|RUNNING HANDLER) \[", re.MULTILINE)
PROFILE_LINE = re.compile(r"^(.+?) -+ (\d+\.\d+)s$", re.MULTILINE)


def mitogen_strategy_dir():
    """Where mitogen's strategy plugins are; installs mitogen there first if it is missing."""
    found = glob.glob(os.path.join(MITOGEN_DIR, "ansible_mitogen", "plugins", "strategy"))
    if not found:
        subprocess.run([os.path.join(VENV_BIN, "pip"), "install", "--quiet", "--target", MITOGEN_DIR,
                        "mitogen==%s" % MITOGEN_VERSION], check=True)
        found = glob.glob(os.path.join(MITOGEN_DIR, "ansible_mitogen", "plugins", "strategy"))
    return found[0]


def variant_env(name, cache_dir):
    if name == "baseline":
        return {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all"}
    if name == "free":
        return {"ANSIBLE_STRATEGY": "free"}
    if name == "factcache":
        return {"ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": cache_dir,
                "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600"}
    if name == "mitogen":
        # The lab's inventory turns host key checking off with ssh arguments, which mitogen's own
        # SSH setup does not read; Lab() has refused any inventory but a lab's.
        return {"ANSIBLE_STRATEGY_PLUGINS": mitogen_strategy_dir(), "ANSIBLE_STRATEGY": "mitogen_linear",
                "ANSIBLE_HOST_KEY_CHECKING": "False"}
    raise LabError("unknown variant %r (baseline, free, factcache, mitogen)" % name)


def summary(run):
    recap = [tuple(int(x) for x in m) for m in RECAP.findall(run.stdout)]
    banners = len(BANNER.findall(run.stdout))
    return {"rc": run.rc, "seconds": run.seconds, "banners": banners,
            "per_banner": run.seconds / banners if banners else float("nan"),
            "changed": sum(r[0] for r in recap), "unreachable": sum(r[1] for r in recap),
            "failed": sum(r[2] for r in recap)}


def slowest(run, top):
    """The profile_tasks lines of the run, slowest first."""
    rows = [(float(seconds), name.strip()) for name, seconds in PROFILE_LINE.findall(run.stdout)]
    return sorted(rows, reverse=True)[:top]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory")
    parser.add_argument("--variants", default="baseline,free,factcache,mitogen",
                        help="comma-separated, run in this order (default: all four)")
    parser.add_argument("--top", type=int, default=15, help="slowest tasks of the baseline to print (15)")
    args = parser.parse_args()
    try:
        lab = Lab(args.inventory)
    except LabError as exc:
        sys.exit("site_speed: %s" % exc)
    results, profile = [], []
    with tempfile.TemporaryDirectory(prefix="site-speed-facts-") as cache_dir:
        for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
            try:
                env = variant_env(name, cache_dir)
            except (LabError, subprocess.CalledProcessError) as exc:
                print("%s: not run (%s)" % (name, exc), flush=True)
                continue
            if name == "factcache":   # fill the cache; the timed run is the next one
                lab.playbook("site.yml", env=env, timeout=3600)
            run = lab.playbook("site.yml", env=env, timeout=3600,
                               log=os.path.join(tempfile.gettempdir(), "site_speed-%s.log" % name))
            row = summary(run)
            results.append((name, row))
            print("%-10s rc %s, %.1f s, %d banners, %.3f s per banner, changed %d, failed %d, unreachable %d"
                  % (name, row["rc"], row["seconds"], row["banners"], row["per_banner"], row["changed"],
                     row["failed"], row["unreachable"]), flush=True)
            if name == "baseline":
                profile = slowest(run, args.top)
    print()
    print("no-change site.yml on %s (goal: < 45 s, <= 0.15 s per banner)" % args.inventory)
    print("%-10s %4s %9s %8s %11s %8s %7s" % ("variant", "rc", "seconds", "banners", "s/banner", "changed", "failed"))
    base = next((row["seconds"] for name, row in results if name == "baseline"), None)
    for name, row in results:
        print("%-10s %4s %9.1f %8d %11.3f %8d %7d%s" % (
            name, row["rc"], row["seconds"], row["banners"], row["per_banner"], row["changed"], row["failed"],
            "" if base is None or name == "baseline" else "   %.2fx the baseline" % (row["seconds"] / base)))
    if profile:
        print("\nslowest tasks of the baseline (ansible.posix.profile_tasks):")
        for seconds, name in profile:
            print("%7.2f s  %s" % (seconds, name))
    return 0 if results and all(row["rc"] == 0 and row["changed"] == 0 for _, row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
