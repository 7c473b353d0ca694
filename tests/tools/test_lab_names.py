"""Lab and host names end up in interface names: keep them short and plain."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from recete_lab import names  # noqa: E402


@pytest.mark.parametrize("name", ["demo", "t1", "a", "abcdefgh", "x9y8z7"])
def test_valid_lab_names(name):
    assert names.check_lab_name(name) is None


@pytest.mark.parametrize("name", ["", "Demo", "1lab", "abcdefghi", "my-lab", "my_lab", "lab "])
def test_invalid_lab_names(name):
    assert "invalid lab name" in names.check_lab_name(name)


def test_bridge_name_fits_an_interface_name():
    assert names.bridge_name("abcdefgh") == "rlab-abcdefgh"
    assert len(names.bridge_name("abcdefgh")) <= 15


def test_machine_name_and_comment():
    assert names.machine_name("t1", "api1") == "t1-api1"
    assert names.rule_comment("t1") == "recete-lab:t1"


@pytest.mark.parametrize("host, ok", [("api1", True), ("pgbouncer1", True),
                                      ("abcdefghijkl", True), ("abcdefghijklm", False),
                                      ("1api", False), ("api-1", False)])
def test_host_names(host, ok):
    assert bool(names.HOST_NAME.match(host)) is ok
