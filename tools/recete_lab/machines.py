"""One lab machine: an overlay root on the cached image, a few files written
into it, and a detached systemd-nspawn booting it on the lab's bridge."""
from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import cgroups, mounts, procs
from .util import LabError

LOGIN_USER = "ops"
NETWORK_FILE = "etc/systemd/network/10-recete-lab.network"
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR"]


# --- files written into each machine (pure) ------------------------------------

def host_nameservers(resolv_conf: str) -> list[str]:
    """Nameservers of the host usable from a machine: loopback ones (127.x,
    ::1, e.g. a local stub resolver) would point at the machine itself."""
    found = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                if not ipaddress.ip_address(words[1].split("%")[0]).is_loopback:
                    found.append(words[1])
            except ValueError:
                pass
    return found


def render_network(address: str, subnet: str, gateway: str, dns: list[str]) -> str:
    prefix = ipaddress.ip_network(subnet).prefixlen
    lines = ["# written by tools/lab: the machine's static address on the lab bridge",
             "[Match]", "Name=host0", "", "[Network]", f"Address={address}/{prefix}",
             f"Gateway={gateway}", *[f"DNS={d}" for d in dns],
             "LinkLocalAddressing=no", "IPv6AcceptRA=no", ""]
    return "\n".join(lines)


def render_resolv(dns: list[str]) -> str:
    return "".join(f"nameserver {d}\n" for d in dns)


HOSTS_MARKER = "# machines of this lab (tools/lab)"


def render_hosts(entries: list[tuple[str, str]]) -> str:
    """/etc/hosts with localhost and every machine of the lab by name."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", HOSTS_MARKER]
    lines += [f"{address}\t{host}" for host, address in entries]
    return "\n".join(lines) + "\n"


def update_hosts(text: str, entries: list[tuple[str, str]], lab_hosts: set[str]) -> str | None:
    """TEXT (an /etc/hosts render_hosts wrote) with the lab's block replaced by ENTRIES.

    Lines after the marker naming one of LAB_HOSTS (machines the lab has or
    had) are the lab's and are replaced; any other line is kept where it is.
    None if the marker is gone: the file is no longer ours to rewrite.
    """
    lines = text.splitlines()
    if HOSTS_MARKER not in lines:
        return None
    cut = lines.index(HOSTS_MARKER) + 1
    others = [line for line in lines[cut:]
              if not (len(line.split()) == 2 and line.split()[1] in lab_hosts)]
    block = [f"{address}\t{host}" for host, address in entries]
    return "\n".join([*lines[:cut], *block, *others]) + "\n"


def nspawn_argv(rootfs: str, machine: str, host: str, bridge: str) -> list[str]:
    return [
        "systemd-nspawn", "-D", rootfs, "--boot",
        # No systemd on the host to register with or to create a scope unit:
        # without these two nspawn fails with "Failed to open system bus".
        "--register=no", "--keep-unit",
        f"--machine={machine}", f"--hostname={host}",
        # Host side is vb-<machine>, shortened by nspawn with a hash of the
        # full name when longer than 15 characters, so labs never collide.
        f"--network-bridge={bridge}",
        # /etc/resolv.conf and the clock zone come from the image and the
        # files tools/lab writes, not from the host.
        "--resolv-conf=off", "--timezone=off", "--link-journal=no",
        # No terminal: read-only relays the console to our stdout (the log)
        # and needs no input; 'interactive' needs a tty, 'passive' logs nothing.
        "--console=read-only",
        # The log is a file: no colour escapes in it.
        "--setenv=SYSTEMD_COLORS=0",
    ]


# --- preparing and starting -----------------------------------------------------

def _write(rootfs: Path, rel: str, content: str, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Write ROOTFS/REL without ever following a symlink out of the machine."""
    target = rootfs / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if not str(target.parent.resolve()).startswith(str(rootfs.resolve()) + "/"):
        raise LabError(f"{target} leaves the machine's root (symlinked directory in the image?)")
    if target.is_symlink():
        target.unlink()
    tmp = target.with_name(f".{target.name}.lab-tmp")
    tmp.write_text(content)
    os.chown(tmp, uid, gid)
    os.chmod(tmp, mode)
    os.replace(tmp, target)


def _user_ids(rootfs: Path, user: str) -> tuple[int, int, str]:
    for line in (rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3]), fields[5]
    raise LabError(f"user {user} missing in the image at {rootfs}: rebuild the image")


def prepare(m: dict, image: str, bridge_gateway: str, subnet: str, dns: list[str],
            hosts: list[tuple[str, str]], public_key: str) -> None:
    """Mount M's overlay root (if not mounted) and write its per-machine files."""
    rootfs = Path(m["rootfs"])
    for key in ("upper", "work", "rootfs"):
        Path(m[key]).mkdir(parents=True, exist_ok=True)
    if not mounts.is_mounted(rootfs):
        mounts.mount_overlay(Path(image), Path(m["upper"]), Path(m["work"]), rootfs)
    _write(rootfs, "etc/hostname", m["name"] + "\n", 0o644)
    _write(rootfs, NETWORK_FILE, render_network(m["address"], subnet, bridge_gateway, dns), 0o644)
    _write(rootfs, "etc/resolv.conf", render_resolv(dns), 0o644)
    _write(rootfs, "etc/hosts", render_hosts(hosts), 0o644)
    uid, gid, home = _user_ids(rootfs, LOGIN_USER)
    ssh_dir = rootfs / home.lstrip("/") / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(ssh_dir, uid, gid)
    _write(rootfs, f"{home.lstrip('/')}/.ssh/authorized_keys", public_key, 0o600, uid, gid)


def refresh_hosts(m: dict, entries: list[tuple[str, str]], lab_hosts: set[str]) -> bool:
    """Rewrite the lab's block of M's /etc/hosts while it runs; False if left alone
    (root not mounted: `up` writes the whole file when it restarts the machine)."""
    rootfs = Path(m["rootfs"])
    if not mounts.is_mounted(rootfs):
        return False
    try:
        text = (rootfs / "etc/hosts").read_text()
    except OSError:
        return False
    new = update_hosts(text, entries, lab_hosts)
    if new is None:
        return False
    if new != text:
        _write(rootfs, "etc/hosts", new, 0o644)
    return True


def refresh_lab_hosts(st: dict, targets: list[dict], gone=()) -> int:
    """Give TARGETS (running machines of the lab ST) the lab's current list of
    machines in /etc/hosts, dropping GONE (names of machines just removed).
    Returns on how many the block was rewritten."""
    entries = [(m["name"], m["address"]) for m in st["machines"]]
    lab_hosts = {m["name"] for m in st["machines"]} | set(gone)
    return sum(refresh_hosts(m, entries, lab_hosts) for m in targets)


def launch(m: dict, bridge: str) -> int:
    """Start the machine detached (own session, own cgroup); returns nspawn's PID."""
    dirs = cgroups.prepare(m["machine"])
    Path(m["log"]).parent.mkdir(parents=True, exist_ok=True)
    with open(m["log"], "ab") as log:
        proc = subprocess.Popen(
            nspawn_argv(m["rootfs"], m["machine"], m["name"], bridge),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
            # Runs in the child between fork and exec; launch() is only called
            # from the main thread, where preexec_fn is safe.
            preexec_fn=lambda: cgroups.enter(dirs))
    return proc.pid


# --- waiting for SSH ---------------------------------------------------------------

def ssh_argv(key: str, address: str, command: list[str], extra: list[str] = ()) -> list[str]:
    # Host keys are new on every boot: do not record or check them.
    return ["ssh", "-i", key, *SSH_OPTIONS, *extra, f"{LOGIN_USER}@{address}", *command]


def _port_open(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _wait_one(m: dict, key: str, start: float, deadline: float) -> tuple[float, float]:
    """Seconds from START until M's sshd listens ('booted') and `ssh true` works."""
    booted = None
    while time.monotonic() < deadline:
        if not procs.is_machine(m["pid"], m["rootfs"]):
            raise LabError(f"machine {m['name']} stopped while booting; see its log {m['log']}")
        if booted is None:
            if _port_open(m["address"]):
                booted = time.monotonic() - start
            else:
                time.sleep(0.2)
                continue
        try:
            proc = subprocess.run(ssh_argv(key, m["address"], ["true"],
                                           ["-o", "ConnectTimeout=3", "-o", "BatchMode=yes"]),
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        except subprocess.TimeoutExpired:
            continue
        if proc.returncode == 0:
            return booted, time.monotonic() - start
        time.sleep(0.3)
    state = "no sshd on port 22" if booted is None else "sshd answers but login fails"
    raise LabError(f"machine {m['name']} ({m['address']}) not reachable by ssh after "
                   f"{deadline - start:.0f} s ({state}); see its log {m['log']}")


def wait_ready(machines: list[dict], key: str, start: float, timeout: float = 90.0):
    """Wait for all MACHINES in parallel; (booted, ssh ready) seconds of the slowest."""
    if not machines:
        return 0.0, 0.0
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=min(32, len(machines))) as pool:
        results = list(pool.map(lambda m: _wait_one(m, key, start, deadline), machines))
    return max(r[0] for r in results), max(r[1] for r in results)
