"""Host sysctls: raised on up, the originals restored by the last down."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from recete_lab import hostsysctl  # noqa: E402


@pytest.mark.parametrize("mode, value, current, expected", [
    ("exact", 1, 0, 1), ("exact", 1, 1, 1),
    ("min", 8192, 128, 8192), ("min", 8192, 65536, 65536),
])
def test_wanted(mode, value, current, expected):
    assert hostsysctl.wanted(mode, value, current) == expected


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    for key, value in {"net/ipv4/ip_forward": 0, "fs/inotify/max_user_instances": 128,
                       "fs/inotify/max_user_watches": 1048576}.items():
        (proc / key).parent.mkdir(parents=True, exist_ok=True)
        (proc / key).write_text(f"{value}\n")
    monkeypatch.setattr(hostsysctl, "PROC_SYS", proc)
    monkeypatch.setenv("RECETE_LAB_STATE_DIR", str(tmp_path / "state"))
    return proc


def read(proc, key):
    return int((proc / key).read_text())


def test_apply_then_restore_puts_the_host_back(fake_host):
    hostsysctl.apply()
    assert read(fake_host, "net/ipv4/ip_forward") == 1
    assert read(fake_host, "fs/inotify/max_user_instances") == 8192
    assert read(fake_host, "fs/inotify/max_user_watches") == 1048576  # already above: untouched
    assert hostsysctl.changed() == {"net/ipv4/ip_forward": 0,
                                    "fs/inotify/max_user_instances": 128}
    hostsysctl.apply()  # a second lab must not record the tool's own values as originals
    assert hostsysctl.changed()["fs/inotify/max_user_instances"] == 128
    done = hostsysctl.restore()
    assert sorted(done) == ["fs.inotify.max_user_instances=128", "net.ipv4.ip_forward=0"]
    assert read(fake_host, "net/ipv4/ip_forward") == 0
    assert read(fake_host, "fs/inotify/max_user_instances") == 128
    assert hostsysctl.changed() == {}
    assert hostsysctl.restore() == []


def test_legacy_ip_forward_marker_is_honoured(fake_host):
    (fake_host / "net/ipv4/ip_forward").write_text("1\n")
    hostsysctl.legacy_marker().parent.mkdir(parents=True)
    hostsysctl.legacy_marker().write_text("was 0\n")
    assert hostsysctl.changed() == {"net/ipv4/ip_forward": 0}
    hostsysctl.restore()
    assert read(fake_host, "net/ipv4/ip_forward") == 0
    assert not hostsysctl.legacy_marker().exists()
