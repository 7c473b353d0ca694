# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What runs of one systemd template unit on this host, read from systemd and /proc.

Shared by the app_instances module (which reports it) and unit tests. Each
instance of recete-api@.service / recete-worker@.service runs the release its
own drop-in pins (recete-api@3001.service.d/release.conf, written by the
app_instance role before each start), so two releases can run side by side on
one host during a deploy. community.general.systemd_info lists units but not
the process's working directory, the drop-in's release, or whether the
configuration changed after the start, which is what a rolling change needs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import time

UNIT_DIR = "/etc/systemd/system"
RUNNING = ("active", "activating", "reloading")
RELEASE_DROPIN = "release.conf"
_WORKDIR = re.compile(r"^\s*WorkingDirectory\s*=\s*(\S+)\s*$", re.M)


def parse_show(text):
    """Blocks of `systemctl show` output as a list of dicts (units without an Id are dropped)."""
    units = []
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units.append(props)
    return units


def mtime(path, follow=True):
    try:
        return os.stat(path).st_mtime if follow else os.lstat(path).st_mtime
    except OSError:
        return None


def dropin_path(unit, slot):
    return os.path.join(UNIT_DIR, "%s@%s.service.d" % (unit, slot), RELEASE_DROPIN)


def pinned_release_dir(unit, slot):
    """The release directory an instance's drop-in pins, or None."""
    try:
        with open(dropin_path(unit, slot)) as handle:
            found = _WORKDIR.findall(handle.read())
    except (IOError, OSError):
        return None
    return found[-1] if found else None


def release_name(path):
    """A release directory's version (its basename), or None."""
    return os.path.basename(path.rstrip("/")) if path else None


def describe(unit, props, config_mtime, link_dir, mono_offset, read_cwd):
    """One instance's report from its `systemctl show` properties."""
    slot = props["Id"][len(unit) + 1:-len(".service")]
    pid = int(props.get("MainPID") or 0)
    started_mono = int(props.get("ExecMainStartTimestampMonotonic") or 0)
    started = mono_offset + started_mono / 1e6 if pid and started_mono else None
    running = props["ActiveState"] in RUNNING
    cwd = read_cwd(pid) if pid else None
    # What it runs: the process's directory; a stopped instance: what its drop-in pins.
    release_dir = cwd or pinned_release_dir(unit, slot) or (link_dir if running else None)
    stale = []
    if running and started is not None and config_mtime is not None and started < config_mtime:
        stale.append("configuration changed after the start")
    enabled = props.get("UnitFileState") in ("enabled", "enabled-runtime")
    return {
        "slot": int(slot),
        "unit": props["Id"],
        "active_state": props["ActiveState"],
        "sub_state": props.get("SubState"),
        "enabled": enabled,
        "running": running,
        "current": enabled or running,
        "pid": pid,
        "started": started,
        "restarts": int(props.get("NRestarts") or 0),
        "release_dir": release_dir,
        "release": release_name(release_dir),
        "stale": bool(stale),
        "stale_reasons": stale,
    }


def config_mtime_of(unit, watch):
    """Newest change time of what every instance reads at start: template, its drop-ins, watched files."""
    template = os.path.join(UNIT_DIR, unit + "@.service")
    files = [template] + list(watch) + sorted(glob.glob(template + ".d/*.conf"))
    times = [t for t in (mtime(f) for f in files) if t is not None]
    return max(times) if times else None


def monotonic_offset():
    """Add to systemd's monotonic timestamps to get wall-clock time."""
    return time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)


# The host facts a rolling plan needs (private address, cores, memory), read in
# the same call as the instances: a separate `setup` per app host cost the
# engine two more SSH round trips per host and run, for three values. Named
# and shaped as ansible.builtin.setup names them, so a later gather replaces
# them unchanged and roles reading ansible_facts.default_ipv4 see the same.
_ROUTE = re.compile(r"\bdev\s+(?P<dev>\S+).*?\bsrc\s+(?P<src>\S+)")


def parse_route_get(text):
    """{"address", "interface"} of the default route from `ip -4 route get`, or None."""
    match = _ROUTE.search(text or "")
    if not match:
        return None
    return {"address": match.group("src"), "interface": match.group("dev")}


def parse_meminfo_mb(text):
    """MemTotal of /proc/meminfo in MiB (as setup's memtotal_mb), or None."""
    match = re.search(r"^MemTotal:\s+(\d+)\s+kB", text or "", re.M)
    return int(match.group(1)) // 1024 if match else None


def count_processors(text):
    """Logical processors listed in /proc/cpuinfo (as setup's processor_vcpus), or None."""
    count = len(re.findall(r"^processor\s*:", text or "", re.M))
    return count or None


def host_facts(route_text, meminfo_text, cpuinfo_text):
    """The facts this module returns, leaving out what could not be read."""
    facts = {}
    route = parse_route_get(route_text)
    if route:
        facts["default_ipv4"] = route
    for name, value in (("memtotal_mb", parse_meminfo_mb(meminfo_text)),
                        ("processor_vcpus", count_processors(cpuinfo_text) or os.cpu_count())):
        if value:
            facts[name] = value
    return facts
