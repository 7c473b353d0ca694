#!/bin/sh
# mmdebstrap customize hook of the lab image (tools/lab image). Runs on the
# host with the new root filesystem as $1, after all packages are installed.
# Changing this file changes the image's cache key.
set -eu
# Called by mmdebstrap with the root directory; anything else is refused.
[ "$#" -eq 1 ] && [ -d "$1" ] || { echo "customize.sh: usage: customize.sh ROOTDIR" >&2; exit 2; }
root="$1"
in_root() { chroot "$root" "$@"; }

# Services the baked-in packages enable: disabled, not masked, so the roles
# can enable exactly what a machine needs and an unconfigured machine runs
# nothing. apt's timers would run `apt-get update` behind the roles' backs
# and hold the dpkg lock, so they go too.
for unit in nginx keepalived redis-server redis-sentinel postgresql pgbouncer chrony etcd patroni \
            prometheus prometheus-alertmanager prometheus-node-exporter \
            prometheus-nginx-exporter prometheus-redis-exporter \
            prometheus-postgres-exporter \
            apt-daily.timer apt-daily-upgrade.timer; do
  case "$unit" in *.*) ;; *) unit="$unit.service" ;; esac
  if [ -e "$root/usr/lib/systemd/system/$unit" ] || [ -e "$root/lib/systemd/system/$unit" ]; then
    in_root systemctl disable "$unit"
  fi
done

# Static addresses come from a systemd-networkd .network file that
# tools/lab writes per machine before boot.
in_root systemctl enable systemd-networkd.service

# Every machine is a copy of this image: give each its own identity at first
# boot. An empty machine-id makes systemd generate one; host keys are made
# by a oneshot unit before sshd starts.
: > "$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate this machine's SSH host keys (recete lab image)
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target ssh.service
UNIT
in_root systemctl enable ssh-hostkeys.service

# Unprivileged ping (ICMP sockets) for every user, as systemd's defaults set
# it; trixie ships those defaults in a package minbase leaves out, and its
# ping has no file capabilities.
mkdir -p "$root/etc/sysctl.d"
printf 'net.ipv4.ping_group_range = 0 2147483647\n' > "$root/etc/sysctl.d/60-recete-lab-ping.conf"

# Login user for Ansible: key only (tools/lab installs the lab's key per
# machine), passwordless sudo. '*' = no password, but not a locked account.
in_root useradd --uid 1000 --user-group --create-home --shell /bin/bash ops
in_root usermod --password '*' ops
printf 'ops ALL=(ALL:ALL) NOPASSWD: ALL\n' > "$root/etc/sudoers.d/ops"
chmod 0440 "$root/etc/sudoers.d/ops"
in_root passwd --lock root
mkdir -p "$root/etc/ssh/sshd_config.d"
cat > "$root/etc/ssh/sshd_config.d/recete-lab.conf" <<'CONF'
# recete lab image: keys only
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
CONF

# Per-machine files (hostname, hosts, resolv.conf, network) are written by
# tools/lab into each machine's overlay; keep the image free of the
# builder's own.
: > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
rm -f "$root/etc/resolv.conf"
: > "$root/etc/resolv.conf"
