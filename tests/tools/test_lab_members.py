"""`tools/lab add` / `remove`: address choice, argument checks, state and inventory changes.

The commands themselves run here with the host-changing steps (booting,
stopping, the bridge) replaced by fakes, in a state root under tmp_path.
"""
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from recete_lab import cli, inventory, machines, members, network, state, topology, up  # noqa: E402
from recete_lab.util import LabError  # noqa: E402

SUBNET = "10.213.4.0/24"


def lab_state(*hosts, name="t1"):
    """A lab that is up with HOSTS ((name, groups, release) or name) on .10, .11, ..."""
    machines_ = []
    for i, host in enumerate(hosts):
        host, groups, release = (host, ("api",), "bookworm") if isinstance(host, str) else host
        machines_.append(state.machine_entry(name, host, groups, release, {},
                                             network.machine_address(SUBNET, i), "/img/b"))
    return {"name": name, "topology": "common", "topology_path": "/x/common.yml",
            "topology_digest": "d", "subnet": SUBNET, "bridge": f"rlab-{name}",
            "gateway": network.gateway(SUBNET), "status": "up", "inventories": [],
            "machines": machines_}


# --- addresses ---------------------------------------------------------------------

def test_free_addresses_start_at_the_first_machine_address():
    assert network.free_addresses(SUBNET, [], 2) == ["10.213.4.10", "10.213.4.11"]


def test_free_addresses_fill_the_lowest_gap_first():
    taken = ["10.213.4.10", "10.213.4.12", "10.213.4.13"]
    assert network.free_addresses(SUBNET, taken, 1) == ["10.213.4.11"]
    assert network.free_addresses(SUBNET, taken, 3) == ["10.213.4.11", "10.213.4.14",
                                                        "10.213.4.15"]


def test_free_addresses_when_the_subnet_is_full():
    taken = [network.machine_address(SUBNET, i) for i in range(244)]
    assert network.free_addresses(SUBNET, taken, 1) == ["10.213.4.254"]
    with pytest.raises(LabError, match="no free address left in 10.213.4.0/24"):
        network.free_addresses(SUBNET, taken, 2)


# --- arguments -----------------------------------------------------------------------

def test_vars_are_strings_keyed_by_variable_names():
    assert members.parse_vars(["role=primary", "port=5432", "note=a=b", "empty="]) == {
        "role": "primary", "port": "5432", "note": "a=b", "empty": ""}
    assert members.parse_vars(None) == {}


@pytest.mark.parametrize("item", ["role", "=x", "1role=x", "my-role=x", "a b=x"])
def test_vars_need_key_equals_value(item):
    with pytest.raises(LabError, match="expected key=value"):
        members.parse_vars([item])


def test_a_var_given_twice_is_refused():
    with pytest.raises(LabError, match="--var a given twice"):
        members.parse_vars(["a=1", "a=2"])


def test_groups_repeated_or_comma_separated_in_order_without_repeats():
    assert members.parse_groups(["api", "worker,api", " mon "]) == ["api", "worker", "mon"]


@pytest.mark.parametrize("items, message", [
    (None, "at least one inventory group"),
    ([","], "at least one inventory group"),
    (["Api"], "invalid group name 'Api'"),
    (["all"], "invalid group name 'all'"),
    (["lab_bookworm"], "invalid group name 'lab_bookworm'"),
    (["my-group"], "invalid group name 'my-group'"),
])
def test_bad_groups(items, message):
    with pytest.raises(LabError, match=message):
        members.parse_groups(items)


def test_default_release_is_the_lab_majority_then_the_older():
    assert members.default_release(lab_state("a1", ("b1", [], "trixie"), "c1")) == "bookworm"
    assert members.default_release(lab_state(("b1", [], "trixie"), ("c1", [], "trixie"),
                                             "a1")) == "trixie"
    assert members.default_release(lab_state(("b1", [], "trixie"), "a1")) == "bookworm"


# --- the lab -----------------------------------------------------------------------

@pytest.mark.parametrize("st, message", [
    (None, "no lab named t1"),
    ({"name": "t1", "corrupt": True, "machines": []}, "unreadable or incomplete state"),
    ({**lab_state("a1"), "status": "creating"}, "lab t1 is not up .*'tools/lab up --name t1 "
                                                "--topology common"),
])
def test_lab_must_exist_and_be_up(st, message):
    with pytest.raises(LabError, match=message):
        members.check_lab("t1", st)


def test_lab_name_is_checked():
    with pytest.raises(LabError, match="invalid lab name"):
        members.check_lab("T1", lab_state("a1"))


# --- planning an add -------------------------------------------------------------------

def test_plan_add_takes_the_lowest_free_addresses_and_marks_the_machines():
    st = lab_state("deb12", "deb13", "api9")
    st["machines"].pop(1)  # deb13 removed: .11 is free again
    new = members.plan_add(st, ["api3", "api4"], ["api", "edge"], {"k": "v"}, "trixie", "/img/t")
    assert [(m["name"], m["address"]) for m in new] == [("api3", "10.213.4.11"),
                                                        ("api4", "10.213.4.13")]
    assert new[0] == {
        "name": "api3", "groups": ["api", "edge"], "release": "trixie", "vars": {"k": "v"},
        "address": "10.213.4.11", "image": "/img/t", "machine": "t1-api3", "pid": None,
        "added": True, **state.machine_paths("t1", "api3")}
    assert st["machines"][-1]["name"] == "api9"  # the plan does not change the state


def test_machine_entries_of_up_are_not_marked_added():
    entry = state.machine_entry("t1", "api1", ("api",), "bookworm", {}, "10.213.4.10", "/img")
    assert "added" not in entry
    assert entry["groups"] == ["api"]


@pytest.mark.parametrize("hosts, groups, message", [
    ([], ["api"], "give the new machine's name with --machine"),
    (["Api3"], ["api"], "invalid machine name 'Api3'"),
    (["api-3"], ["api"], "invalid machine name 'api-3'"),
    (["abcdefghijklm"], ["api"], "invalid machine name"),
    (["deb12"], ["api"], "lab t1 already has a machine deb12"),
    (["api3", "api3"], ["api"], "--machine api3 given more than once"),
    (["api"], ["web"], "api would be both a group and a machine"),    # existing group
    (["api3"], ["deb12"], "deb12 would be both a group and a machine"),  # existing machine
    (["edge"], ["edge"], "edge would be both a group and a machine"),
])
def test_plan_add_refuses(hosts, groups, message):
    with pytest.raises(LabError, match=message):
        members.plan_add(lab_state("deb12", "deb13"), hosts, groups, {}, "bookworm", "/img")


# --- choosing what to remove --------------------------------------------------------------

def test_unknown_machines_are_named_with_the_lab_machines():
    with pytest.raises(LabError, match="lab t1 has no machine api7, x; it has: deb12, deb13, api3"):
        members.pick_removed(lab_state("deb12", "deb13", "api3"), ["api3", "api7", "x"])


def test_any_machine_may_go_but_not_all():
    st = lab_state("deb12", "deb13", "api3")
    assert [m["name"] for m in members.pick_removed(st, ["deb12", "deb12"])] == ["deb12"]
    with pytest.raises(LabError, match="every machine of lab t1; use 'tools/lab down --name t1'"):
        members.pick_removed(st, ["deb12", "deb13", "api3"])
    with pytest.raises(LabError, match="--machine"):
        members.pick_removed(st, [])


# --- /etc/hosts ----------------------------------------------------------------------------

def test_hosts_block_gets_new_machines_and_loses_removed_ones():
    old = machines.render_hosts([("deb12", "10.213.4.10"), ("deb13", "10.213.4.11")])
    entries = [("deb12", "10.213.4.10"), ("api3", "10.213.4.12")]
    assert machines.update_hosts(old, entries, {"deb12", "deb13", "api3"}) == \
        machines.render_hosts(entries)


def test_hosts_lines_someone_else_added_stay():
    old = machines.render_hosts([("deb12", "10.213.4.10")]) + "192.0.2.7\tmirror\n"
    new = machines.update_hosts(old, [("deb12", "10.213.4.10"), ("api3", "10.213.4.11")],
                                {"deb12", "api3"})
    assert new.splitlines()[-3:] == ["10.213.4.10\tdeb12", "10.213.4.11\tapi3",
                                     "192.0.2.7\tmirror"]


def test_hosts_without_the_marker_are_not_ours():
    assert machines.update_hosts("127.0.0.1\tlocalhost\n", [("a1", "10.213.4.10")], {"a1"}) is None


# --- command line -----------------------------------------------------------------------------

def test_add_arguments():
    args = cli.build_parser().parse_args(
        ["add", "--name", "t1", "--machine", "api3", "--machine", "api4", "--groups", "api",
         "--groups", "edge,mon", "--var", "a=1", "--release", "trixie"])
    assert (args.name, args.machine, args.groups, args.var, args.release) == \
        ("t1", ["api3", "api4"], ["api", "edge,mon"], ["a=1"], "trixie")


@pytest.mark.parametrize("argv", [["add", "--machine", "api3"], ["add", "--groups", "api"],
                                  ["remove", "--name", "t1"],
                                  ["add", "--machine", "a", "--groups", "b", "--release", "sid"]])
def test_missing_or_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("lab: tools/lab ")


# --- the commands, with fakes for the host ------------------------------------------------------

@pytest.fixture
def lab(tmp_path, monkeypatch):
    """Lab t1 (deb12, deb13) saved under a temporary state root; booting and stopping faked."""
    monkeypatch.setenv("RECETE_LAB_STATE_DIR", str(tmp_path / "state"))
    st = lab_state("deb12", ("deb13", ["api"], "trixie"))
    state.save(st)
    extra = tmp_path / "hosts.yml"
    up.write_inventories(st, extra)
    booted, stopped = [], []

    def fake_boot(st, to_boot):
        for m in to_boot:
            m["pid"] = 4242
            booted.append(m["name"])

    monkeypatch.setattr(members, "preflight", lambda: None)
    monkeypatch.setattr(members, "require_root", lambda: None)
    monkeypatch.setattr(members, "require_program", lambda *a: None)
    monkeypatch.setattr(members, "ensure_images", lambda releases, st: {"bookworm": Path("/img/b"),
                                                                        "trixie": Path("/img/t")})
    monkeypatch.setattr(members, "_boot", fake_boot)
    monkeypatch.setattr(members, "stop_under",
                        lambda directory, names: stopped.append((directory.name, *names)) or [])
    monkeypatch.setattr(members.network, "link_info", lambda bridge: {"ifalias": "recete-lab:t1"})
    monkeypatch.setattr(members.machines, "refresh_hosts", lambda m, entries, hosts: True)
    return {"extra": extra, "booted": booted, "stopped": stopped}


def hosts_of(path, group):
    return yaml.safe_load(Path(path).read_text())["all"]["children"].get(group, {}).get("hosts", {})


def test_add_records_the_machines_and_rewrites_every_inventory(lab, capsys):
    assert members.add("t1", ["api3", "api4"], ["api,edge"], ["role=x"], None) == 0
    st = state.load("t1")
    assert [(m["name"], m["address"], m.get("added", False)) for m in st["machines"]] == [
        ("deb12", "10.213.4.10", False), ("deb13", "10.213.4.11", False),
        ("api3", "10.213.4.12", True), ("api4", "10.213.4.13", True)]
    assert st["machines"][2]["pid"] == 4242 and st["machines"][2]["release"] == "bookworm"
    assert lab["booted"] == ["api3", "api4"]
    for path in (state.inventory_path("t1"), lab["extra"]):
        assert hosts_of(path, "edge") == {"api3": {"ansible_host": "10.213.4.12", "role": "x"},
                                          "api4": {"ansible_host": "10.213.4.13", "role": "x"}}
        assert list(hosts_of(path, "api")) == ["deb12", "deb13", "api3", "api4"]
    out = capsys.readouterr().out
    assert "/etc/hosts: updated on 2 of 2 other machine(s)" in out
    assert "lab t1: added api3 (10.213.4.12), api4 (10.213.4.13) in " in out


def test_add_checks_everything_before_a_change(lab):
    before = state.load("t1")
    with pytest.raises(LabError, match="already has a machine deb13"):
        members.add("t1", ["api3", "deb13"], ["api"], None, None)
    with pytest.raises(LabError, match="no lab named t2"):
        members.add("t2", ["api3"], ["api"], None, None)
    assert state.load("t1") == before and lab["booted"] == []


def test_remove_then_add_reuses_the_freed_address(lab, capsys):
    members.add("t1", ["api3"], ["api"], None, None)
    assert members.remove("t1", ["deb12"]) == 0
    assert lab["stopped"] == [("deb12", "t1-deb12")]
    st = state.load("t1")
    assert [m["name"] for m in st["machines"]] == ["deb13", "api3"]
    for path in (state.inventory_path("t1"), lab["extra"]):
        assert list(hosts_of(path, "api")) == ["deb13", "api3"]
        assert "deb12" not in hosts_of(path, "lab_bookworm")
    assert "lab t1: removed deb12 (10.213.4.10) in " in capsys.readouterr().out
    members.add("t1", ["api4"], ["api"], None, None)
    assert state.load("t1")["machines"][-1]["address"] == "10.213.4.10"


def test_remove_refuses_unknown_machines_before_a_change(lab):
    with pytest.raises(LabError, match="has no machine api9; it has: deb12, deb13"):
        members.remove("t1", ["deb13", "api9"])
    assert lab["stopped"] == [] and len(state.load("t1")["machines"]) == 2


def test_inventory_replaced_by_someone_else_is_left_alone(lab, capsys):
    lab["extra"].write_text("all: {}\n")
    members.add("t1", ["api3"], ["api"], None, None)
    assert lab["extra"].read_text() == "all: {}\n"
    assert f"inventory {lab['extra']}: left alone" in capsys.readouterr().out


def test_up_keeps_added_machines_and_brings_back_removed_topology_ones(lab, monkeypatch, tmp_path):
    topo_file = tmp_path / "common.yml"
    topo_file.write_text("machines:\n  - {name: deb12, groups: [api]}\n"
                         "  - {name: deb13, groups: [api], release: trixie}\n")
    topo = topology.load(str(topo_file))
    members.add("t1", ["api3"], ["api"], None, None)
    members.remove("t1", ["deb12"])
    st = state.load("t1")
    booted = []
    monkeypatch.setattr(up.procs, "is_machine", lambda pid, rootfs: pid == 4242)
    monkeypatch.setattr(up.procs, "nspawn_under", lambda directory: {})
    monkeypatch.setattr(up, "_network", lambda st: None)
    monkeypatch.setattr(up, "_boot", lambda st, to_boot: booted.extend(m["name"] for m in to_boot))
    state.key_path("t1").parent.mkdir(parents=True)
    state.key_path("t1").write_text("key")
    st = up._reconcile(st, {"bookworm": Path("/img/b"), "trixie": Path("/img/t")}, topo)
    # deb13 never got a PID from the fake boot: it counts as dead and is restarted.
    assert booted == ["deb13", "deb12"]
    assert [(m["name"], m["address"], m.get("added", False)) for m in st["machines"]] == [
        ("deb13", "10.213.4.11", False), ("api3", "10.213.4.12", True),
        ("deb12", "10.213.4.10", False)]
    assert state.load("t1")["machines"] == st["machines"]


def test_inventory_lists_an_added_machine_in_its_groups_and_release_group():
    st = lab_state("deb12")
    st["machines"] += members.plan_add(st, ["api3"], ["api"], {}, "trixie", "/img/t")
    children = inventory.build(st, "/k")["all"]["children"]
    assert children["lab_trixie"]["hosts"] == {"api3": {"ansible_host": "10.213.4.11"}}


def test_running_machines_get_the_new_list_unless_their_hosts_file_is_not_ours(tmp_path,
                                                                               monkeypatch):
    st = lab_state("deb12", "deb13", "api3")
    for m, text in ((st["machines"][0], machines.render_hosts([("deb12", "10.213.4.10"),
                                                                ("gone1", "10.213.4.99")])),
                    (st["machines"][1], "127.0.0.1\tlocalhost\n")):
        m["rootfs"] = str(tmp_path / m["name"])
        (tmp_path / m["name"] / "etc").mkdir(parents=True)
        (tmp_path / m["name"] / "etc/hosts").write_text(text)
    monkeypatch.setattr(machines.mounts, "is_mounted", lambda path: path.parent == tmp_path)
    monkeypatch.setattr(machines.os, "chown", lambda *args: None)  # tests may run unprivileged
    assert machines.refresh_lab_hosts(st, st["machines"], {"gone1"}) == 1
    assert (tmp_path / "deb12/etc/hosts").read_text() == machines.render_hosts(
        [("deb12", "10.213.4.10"), ("deb13", "10.213.4.11"), ("api3", "10.213.4.12")])
    assert (tmp_path / "deb13/etc/hosts").read_text() == "127.0.0.1\tlocalhost\n"
