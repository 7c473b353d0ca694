"""Which lab owns a leftover: the basis of `tools/lab leftovers --name`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from recete_lab import report  # noqa: E402


def test_lab_of_path(monkeypatch, tmp_path):
    monkeypatch.setenv("RECETE_LAB_STATE_DIR", str(tmp_path))
    assert report._lab_of_path(f"{tmp_path}/demo/machines/api1/rootfs") == "demo"
    assert report._lab_of_path("/elsewhere/demo/machines/api1/rootfs") is None


def test_lab_of_rule():
    rule = ["-A", "POSTROUTING", "-s", "10.213.0.0/24", "-m", "comment", "--comment", '"recete-lab:ci"',
            "-j", "MASQUERADE"]
    assert report._lab_of_rule(rule) == "ci"
    assert report._lab_of_rule(["-A", "FORWARD", "-j", "ACCEPT"]) is None


def test_lab_of_cgroup():
    assert report._lab_of_cgroup("/sys/fs/cgroup/systemd/recete-lab/mstack-pgbouncer1") == "mstack"
