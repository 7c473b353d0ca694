"""Parsing host state: mountinfo, cgroup mounts, nspawn command lines, resolv.conf,
and the files written into each machine."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from recete_lab import cgroups, machines, mounts, procs  # noqa: E402

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /var/lib/recete-lab/t1/machines/api1/rootfs rw shared:9 - overlay overlay rw,lowerdir=/var/cache/recete-lab/images/bookworm-abc,upperdir=/var/lib/recete-lab/t1/machines/api1/upper,workdir=/var/lib/recete-lab/t1/machines/api1/work
31 30 0:41 / /var/lib/recete-lab/t1/machines/api1/rootfs/proc rw - proc proc rw
32 22 0:42 / /var/lib/recete-lab/t10/machines/a\\040b/rootfs rw - overlay overlay rw,lowerdir=/img/x:/img/y,upperdir=/u,workdir=/w
40 22 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
41 22 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
42 22 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
"""


def test_mounts_under_a_lab_deepest_first_and_not_its_neighbour():
    found = mounts.mounts_under(Path("/var/lib/recete-lab/t1"), MOUNTINFO)
    assert found == ["/var/lib/recete-lab/t1/machines/api1/rootfs/proc",
                     "/var/lib/recete-lab/t1/machines/api1/rootfs"]


def test_mountinfo_octal_escapes():
    found = mounts.mounts_under(Path("/var/lib/recete-lab/t10"), MOUNTINFO)
    assert found == ["/var/lib/recete-lab/t10/machines/a b/rootfs"]


def test_overlay_lowerdirs():
    assert mounts.overlay_lowerdirs(MOUNTINFO) == ["/var/cache/recete-lab/images/bookworm-abc",
                                                   "/img/x", "/img/y"]


def test_cgroup_hierarchies_used_by_systemd():
    assert cgroups.hierarchies(MOUNTINFO) == [Path("/sys/fs/cgroup/systemd"),
                                              Path("/sys/fs/cgroup/unified")]


def test_nspawn_root_from_command_line():
    argv = ["systemd-nspawn", "-D", "/var/lib/recete-lab/t1/machines/api1/rootfs", "--boot"]
    assert procs.nspawn_root(argv) == "/var/lib/recete-lab/t1/machines/api1/rootfs"
    assert procs.nspawn_root(["/usr/bin/systemd-nspawn", "--directory=/r"]) == "/r"
    assert procs.nspawn_root(["sleep", "-D", "/r"]) is None
    assert procs.nspawn_root([]) is None


def test_nspawn_command_line_round_trips():
    argv = machines.nspawn_argv("/r/rootfs", "t1-api1", "api1", "rlab-t1")
    assert procs.nspawn_root(argv) == "/r/rootfs"
    for flag in ["--register=no", "--keep-unit", "--network-bridge=rlab-t1",
                 "--machine=t1-api1", "--console=read-only"]:
        assert flag in argv


def test_host_nameservers_skip_loopback():
    text = "nameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\n" \
           "# nameserver 9.9.9.9\nsearch example\nnameserver fe80::1%eth0\n"
    assert machines.host_nameservers(text) == ["10.255.255.53", "fe80::1%eth0"]


def test_network_file():
    text = machines.render_network("10.213.0.10", "10.213.0.0/24", "10.213.0.1", ["10.0.0.53"])
    assert "Name=host0" in text
    assert "Address=10.213.0.10/24" in text
    assert "Gateway=10.213.0.1" in text
    assert "DNS=10.0.0.53" in text


def test_hosts_file_lists_every_machine():
    text = machines.render_hosts([("api1", "10.213.0.10"), ("pg1", "10.213.0.11")])
    assert "127.0.0.1\tlocalhost" in text.splitlines()
    assert "10.213.0.10\tapi1" in text.splitlines()
    assert "10.213.0.11\tpg1" in text.splitlines()
