# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Report the instances of one systemd template unit on this host as JSON.

Used by the app roles (tasks_from: instances) to learn, without changing
anything, what runs now and what is out of date:

  app_instances.py --unit recete-api --watch /etc/recete/app.env --link /opt/recete/current

For each loaded instance (recete-api@3000.service, ...): its slot (the part
after @), ActiveState, whether it is enabled, its main PID and the release
directory that process runs from (its working directory). An instance is
"current" (it belongs to what runs now) when it is enabled or active; it is
"stale" when it runs but started before its configuration last changed (the
template unit file, its drop-ins, a watched file such as the environment
file, or the release link) or runs another release than the link points at.
Start times come from systemd (microseconds) so a change made a moment before
a start is not mistaken for a change after it.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

UNIT_DIR = "/etc/systemd/system"
RUNNING = ("active", "activating", "reloading")


def systemctl_show(names, properties):
    """Blocks of `systemctl show` for the units or patterns in names, as dicts.

    A pattern matches loaded units only; a full unit name is loaded if needed.
    """
    out = subprocess.run(
        ["systemctl", "show", "--no-pager", "--property=" + ",".join(properties), "--"] + names,
        check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True).stdout
    units = []
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units.append(props)
    return units


def unit_names(unit):
    """Instances of the template that are loaded (running, failed...) or enabled.

    systemd unloads a stopped instance even when it is enabled, so the
    enablement symlinks are read too.
    """
    loaded = [u["Id"] for u in systemctl_show([unit + "@*.service"], ["Id"])]
    enabled = [os.path.basename(p) for p in glob.glob(os.path.join(UNIT_DIR, "*.wants", unit + "@*.service"))]
    return sorted(set(loaded) | set(enabled))


def mtime(path, follow=True):
    try:
        return os.stat(path).st_mtime if follow else os.lstat(path).st_mtime
    except OSError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", required=True, help="template name without @.service, e.g. recete-api")
    parser.add_argument("--watch", action="append", default=[], help="a file whose change makes instances stale")
    parser.add_argument("--link", help="the release symlink (e.g. /opt/recete/current)")
    args = parser.parse_args()

    template = os.path.join(UNIT_DIR, args.unit + "@.service")
    config_files = [template] + args.watch + sorted(glob.glob(template + ".d/*.conf"))
    changed = [t for t in (mtime(f) for f in config_files) if t is not None]
    link_changed = mtime(args.link, follow=False) if args.link else None
    if link_changed is not None:
        changed.append(link_changed)
    config_mtime = max(changed) if changed else None
    release = os.path.realpath(args.link) if args.link and os.path.lexists(args.link) else None

    # systemd's monotonic clock to wall-clock time, to microseconds.
    mono_offset = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)
    instances = []
    props = ["Id", "ActiveState", "SubState", "UnitFileState", "MainPID", "ExecMainStartTimestampMonotonic", "NRestarts"]
    names = unit_names(args.unit)
    for unit in systemctl_show(names, props) if names else []:
        name = unit["Id"][len(args.unit) + 1:-len(".service")]
        if not name.isdigit():
            continue
        pid = int(unit.get("MainPID") or 0)
        started_mono = int(unit.get("ExecMainStartTimestampMonotonic") or 0)
        started = mono_offset + started_mono / 1e6 if pid and started_mono else None
        cwd = None
        if pid:
            try:
                cwd = os.readlink("/proc/%d/cwd" % pid)
            except OSError:
                pass
        running = unit["ActiveState"] in RUNNING
        reasons = []
        if running and started is not None and config_mtime is not None and started < config_mtime:
            reasons.append("configuration changed after the start")
        if running and release and cwd and cwd != release:
            reasons.append("runs %s, the release is %s" % (cwd, release))
        enabled = unit.get("UnitFileState") in ("enabled", "enabled-runtime")
        instances.append({
            "slot": int(name),
            "unit": unit["Id"],
            "active_state": unit["ActiveState"],
            "sub_state": unit.get("SubState"),
            "enabled": enabled,
            "running": running,
            "current": enabled or running,
            "pid": pid,
            "started": started,
            "restarts": int(unit.get("NRestarts") or 0),
            "release": cwd,
            "stale": bool(reasons),
            "stale_reasons": reasons,
        })
    instances.sort(key=lambda i: i["slot"])
    json.dump({
        "unit_installed": os.path.exists(template),
        "release": release,
        "config_mtime": config_mtime,
        "instances": instances,
        "current_slots": [i["slot"] for i in instances if i["current"]],
        "running_slots": [i["slot"] for i in instances if i["running"]],
        "stale_slots": [i["slot"] for i in instances if i["stale"]],
    }, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
