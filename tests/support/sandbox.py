"""What `systemd-analyze security` rates a unit, for the Molecule tests that
check the systemd sandboxes of recete.stack's services (the exporters'
drop-in, nginx, keepalived, PgBouncer, etcd, Alertmanager, the autoscaler).

0 is fully sandboxed, 10 not at all; systemd calls below 2 "OK", 2-5
"MEDIUM", 5-7 "EXPOSED", above 7 "UNSAFE". Each test states its own bound.
"""
import re

_LAST_LINE = re.compile(r"exposure level for \S+: ([0-9.]+)")


def exposure(host, unit):
    """The overall exposure of UNIT (a testinfra host; the unit with or without .service)."""
    name = unit if "." in unit else unit + ".service"
    out = host.check_output("systemd-analyze security --no-pager %s | tail -1", name)
    found = _LAST_LINE.search(out)
    assert found, "systemd-analyze security %s printed: %s" % (name, out)
    return float(found.group(1))


def assert_sandboxed(host, unit, below):
    """UNIT runs and rates below BELOW; returns the figure (printed for the test log)."""
    figure = exposure(host, unit)
    print("%s %s: %s" % (host.backend.get_hostname(), unit, figure))
    assert figure < below, "%s: exposure %s, expected below %s" % (unit, figure, below)
    assert host.service(unit).is_running, "%s is not running in its sandbox" % unit
    return figure
