"""The common role on Debian 12 and Debian 13 lab machines."""
import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")


def test_base_packages_installed(host):
    for name in ("ca-certificates", "curl", "acl", "chrony", "python3-apt"):
        assert host.package(name).is_installed, name


def test_kernel_settings_in_effect(host):
    # Values read back from the running kernel, not just the file.
    assert host.sysctl("net.core.somaxconn") == 4096
    assert host.sysctl("net.ipv4.tcp_max_syn_backlog") == 8192
    assert host.sysctl("net.ipv4.tcp_tw_reuse") == 1
    port_range = host.file("/proc/sys/net/ipv4/ip_local_port_range").content_string
    assert port_range.split() == ["10240", "65000"]


def test_kernel_settings_persisted(host):
    conf = host.file("/etc/sysctl.d/60-recete.conf")
    assert conf.is_file
    assert conf.user == "root"
    assert "net.core.somaxconn=4096" in conf.content_string.replace(" ", "")


def test_host_wide_settings_skipped_in_containers(host):
    # The lab machines are containers: their host-wide sysctls belong to the host.
    conf = host.file("/etc/sysctl.d/60-recete.conf").content_string
    assert "fs.file-max" not in conf


def test_chrony_configured_but_not_run_in_a_container(host):
    conf = host.file("/etc/chrony/chrony.conf")
    assert conf.mode == 0o644
    assert "Ansible managed" in conf.content_string
    service = host.service("chrony")
    assert not service.is_running
    assert not service.is_enabled


def test_service_account(host):
    user = host.user("recete")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000, "a system account"
    with host.sudo():
        assert host.user("recete").password in ("!", "*", "!*"), "no usable password"
    home = host.file("/srv/recete")
    assert home.is_directory
    assert home.user == "recete"
    assert home.mode == 0o750
