"""Image recipe: cache key and the host's apt mirror."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from recete_lab import image  # noqa: E402
from recete_lab.util import LabError  # noqa: E402

PKGS = ["systemd", "python3", "nginx"]


def test_cache_key_is_stable_and_short():
    key = image.cache_key("bookworm", PKGS, "echo hi\n")
    assert key == image.cache_key("bookworm", list(reversed(PKGS)), "echo hi\n")
    assert len(key) == 12 and all(c in "0123456789abcdef" for c in key)


@pytest.mark.parametrize("change", [
    dict(release="trixie"),
    dict(packages=PKGS + ["redis-server"]),
    dict(customize_text="echo bye\n"),
    dict(version=image.RECIPE_VERSION + 1),
    dict(options=("--variant=minbase",)),
])
def test_cache_key_changes_with_every_recipe_input(change):
    base = dict(release="bookworm", packages=PKGS, customize_text="echo hi\n")
    assert image.cache_key(**{**base, **change}) != image.cache_key(**base)


def test_parse_packages_skips_comments_and_blanks():
    text = "# head\nsystemd\n\n  nginx  # web\n#redis\n"
    assert image.parse_packages(text) == ["systemd", "nginx"]


def test_shipped_recipe_has_what_the_roles_need():
    recipe = image.load_recipe("bookworm")
    for pkg in ["systemd", "openssh-server", "sudo", "python3", "nginx", "redis-sentinel",
                "pgbouncer", "postgresql", "nodejs", "chrony"]:
        assert pkg in recipe.packages
    assert image.load_recipe("trixie").key != recipe.key


def test_unknown_release():
    with pytest.raises(LabError, match="unknown release"):
        image.load_recipe("buster")


DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security/
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main
"""
THIRD_PARTY = "deb [signed-by=/k.gpg] https://packages.example.com/apt cloud-sdk-bookworm main\n"


def test_mirrors_from_deb822_and_one_line_sources():
    entries = image.parse_apt_sources({"/etc/apt/sources.list.d/debian.sources": DEB822,
                                       "/etc/apt/sources.list.d/x.list": THIRD_PARTY})
    assert image.debian_mirrors(entries, "bookworm") == (
        "http://mirror.example/debian", "http://mirror.example/debian-security")


def test_one_line_sources_list():
    text = ("# comment\ndeb http://ftp.example/debian bookworm main contrib\n"
            "deb http://sec.example/debian-security bookworm-security main\n")
    entries = image.parse_apt_sources({"/etc/apt/sources.list": text})
    assert image.debian_mirrors(entries, "bookworm") == ("http://ftp.example/debian",
                                                         "http://sec.example/debian-security")


def test_mirror_lines_for_another_release():
    lines = image.mirror_lines("trixie", "http://m/debian", "http://m/debian-security")
    assert lines == ["deb http://m/debian trixie main", "deb http://m/debian trixie-updates main",
                     "deb http://m/debian-security trixie-security main"]
    assert image.mirror_lines("trixie", None, None) == []
