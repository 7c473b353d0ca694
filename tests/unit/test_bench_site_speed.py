"""bench/site_speed.py: what it reads from an ansible-playbook run's output."""
from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

speed = pytest.importorskip("site_speed")  # bench/ is a folder of scripts, not a package

OUTPUT = """
TASK [recete.stack.common : Install base packages] *****************************
ok: [lb1]

RUNNING HANDLER [recete.stack.nginx_lb : Reload nginx] *************************
changed: [lb1]

TASK [recete.stack.redis : Write redis.conf] ***********************************
fatal: [redis1]: FAILED! => {}

PLAY RECAP *********************************************************************
lb1                        : ok=2    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
redis1                     : ok=0    changed=0    unreachable=1    failed=1    skipped=0    rescued=0    ignored=0

recete.stack.common : Apply kernel settings for busy network servers ---- 13.30s
recete.stack.exporters : Write each exporter's settings ----------------- 8.04s
recete.stack.common : Install base packages ----------------------------- 7.14s
"""


def test_banners_and_the_recap_sums_are_read():
    run = speed.subprocess.CompletedProcess([], 0)
    run.rc, run.seconds, run.stdout = 2, 3.0, OUTPUT
    row = speed.summary(run)
    assert (row["banners"], row["changed"], row["unreachable"], row["failed"]) == (3, 1, 1, 1)
    assert row["per_banner"] == pytest.approx(1.0)


def test_the_slowest_tasks_come_first():
    run = speed.subprocess.CompletedProcess([], 0)
    run.stdout = OUTPUT
    assert speed.slowest(run, 2) == [(13.3, "recete.stack.common : Apply kernel settings for busy network servers"),
                                     (8.04, "recete.stack.exporters : Write each exporter's settings")]


def test_an_unknown_variant_is_refused():
    with pytest.raises(speed.LabError, match="unknown variant"):
        speed.variant_env("turbo", "/tmp")
