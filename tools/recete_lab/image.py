"""The lab image: a Debian root filesystem built by mmdebstrap, cached by recipe.

The recipe is lab/images/packages.txt + lab/images/customize.sh + the fixed
mmdebstrap options below + RECIPE_VERSION. Its hash is the cache key, so the
image is rebuilt exactly when one of those changes. Machines never write to
the image: each one mounts it as the read-only lower layer of an overlay.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import mounts
from .names import RELEASES
from .paths import RECIPE_DIR, images_dir
from .state import images_in_use
from .util import LabError, Stopwatch, file_lock, require_program

# Bump when the way the image is built changes outside the recipe files.
RECIPE_VERSION = 2

# Fixed mmdebstrap options (part of the cache key). Docs, man pages and
# translations are left out: smaller image, faster builds and installs.
MMDEBSTRAP_OPTIONS = [
    "--variant=minbase",
    "--mode=root",
    "--format=directory",
    "--aptopt=Acquire::Retries \"3\"",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
]


@dataclass(frozen=True)
class Recipe:
    release: str
    packages: tuple[str, ...]
    customize: Path
    customize_text: str

    @property
    def key(self) -> str:
        return cache_key(self.release, self.packages, self.customize_text)


def parse_packages(text: str) -> list[str]:
    """Package names from packages.txt: one per line, '#' comments, blanks ignored."""
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def cache_key(release: str, packages, customize_text: str,
              version: int = RECIPE_VERSION, options=tuple(MMDEBSTRAP_OPTIONS)) -> str:
    """Hash of everything that decides the image's content (12 hex digits).

    Package order does not matter to apt, so it does not change the key.
    """
    recipe = {
        "version": version,
        "release": release,
        "packages": sorted(set(packages)),
        "customize": customize_text,
        "options": list(options),
    }
    blob = json.dumps(recipe, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def load_recipe(release: str, recipe_dir: Path = RECIPE_DIR) -> Recipe:
    if release not in RELEASES:
        raise LabError(f"unknown release {release!r}: choose one of {', '.join(RELEASES)}")
    customize = recipe_dir / "customize.sh"
    packages = parse_packages((recipe_dir / "packages.txt").read_text())
    return Recipe(release, tuple(packages), customize, customize.read_text())


# --- apt mirror of the host -------------------------------------------------

def parse_apt_sources(files: dict[str, str]) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled 'deb' entry in .list and .sources texts."""
    entries = []
    for name, text in files.items():
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[0].isspace():
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
                if "deb" not in fields.get("types", "").split():
                    continue
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split()))
        elif name.endswith(".list"):
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                words = re.sub(r"\[[^\]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]]))
    return entries


def debian_mirrors(entries, host_codename: str) -> tuple[str | None, str | None]:
    """The host's Debian archive mirror and security mirror (None if not found).

    The archive is the entry carrying the host's own release (e.g. bookworm);
    security the one carrying <codename>-security. Third-party repositories
    (other suites) are ignored.
    """
    main = security = None
    for uri, suites in entries:
        if main is None and host_codename in suites:
            main = uri.rstrip("/")
        if security is None and f"{host_codename}-security" in suites:
            security = uri.rstrip("/")
    return main, security


def host_mirrors() -> tuple[str | None, str | None]:
    files = {}
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        if path.endswith((".list", ".sources")) and os.path.isfile(path):
            files[path] = Path(path).read_text()
    codename = ""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            codename = line.split("=", 1)[1].strip('"')
    return debian_mirrors(parse_apt_sources(files), codename)


def mirror_lines(release: str, main: str | None, security: str | None) -> list[str]:
    """sources.list lines for RELEASE on the host's mirrors (empty: mmdebstrap's default)."""
    if not main:
        return []
    lines = [f"deb {main} {release} main", f"deb {main} {release}-updates main"]
    if security:
        lines.append(f"deb {security} {release}-security main")
    return lines


# --- cache ------------------------------------------------------------------

def image_path(recipe: Recipe) -> Path:
    return images_dir() / f"{recipe.release}-{recipe.key}"


def cached(release: str) -> bool:
    return image_path(load_recipe(release)).is_dir()


def ensure(release: str) -> tuple[Path, str]:
    """Path of RELEASE's image, building it first if needed, and a one-line report."""
    recipe = load_recipe(release)
    final = image_path(recipe)
    if final.is_dir():
        # Tidy up images of older recipes that no lab uses any more, unless
        # someone is building right now (then they prune after their build).
        with file_lock(images_dir() / f".lock-{release}", blocking=False) as free:
            if free:
                _prune(release, keep=final)
        return final, f"image {release}: cached ({recipe.key})"
    require_program("mmdebstrap", "apt-get install mmdebstrap")
    # One builder per release; whoever waited finds the image already there.
    with file_lock(images_dir() / f".lock-{release}"):
        if final.is_dir():
            return final, f"image {release}: cached ({recipe.key})"
        watch = Stopwatch()
        _build(recipe, final)
        seconds = watch.seconds()
        _prune(release, keep=final)
    return final, f"image {release}: built in {seconds:.1f} s ({recipe.key})"


def _build(recipe: Recipe, final: Path) -> None:
    if not os.access(recipe.customize, os.X_OK):
        raise LabError(f"{recipe.customize} is not executable (chmod +x it)")
    tmp = final.parent / f".build-{final.name}-{os.getpid()}"
    log = final.parent / f".build-{recipe.release}.log"
    # We hold this release's build lock: any other build dir of it is a
    # crashed build's remains.
    for stale in final.parent.glob(f".build-{recipe.release}-*"):
        mounts.remove_tree(stale)
    main, security = host_mirrors()
    argv = ["mmdebstrap", *MMDEBSTRAP_OPTIONS,
            "--include=" + ",".join(recipe.packages),
            f"--customize-hook={recipe.customize}",
            recipe.release, str(tmp), *mirror_lines(recipe.release, main, security)]
    with open(log, "w") as out:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        mounts.remove_tree(tmp)
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise LabError(f"mmdebstrap {recipe.release} failed: {tail[0]} (full log: {log})")
    # mmdebstrap empties apt's package lists at the end but leaves their directory
    # dated from the build, which ansible.builtin.apt's cache_valid_time reads as an
    # update made minutes ago: a role would then find no package at all. Dated to
    # the epoch, the first apt task of a machine runs apt-get update, as it would on
    # any host whose lists are old.
    os.utime(tmp / "var" / "lib" / "apt" / "lists", (0, 0))
    # Atomic: a reader sees either no image or a complete one.
    os.rename(tmp, final)


def _prune(release: str, keep: Path) -> None:
    """Delete older images of RELEASE, except ones a running machine still uses."""
    in_use = set(mounts.overlay_lowerdirs()) | images_in_use()
    for old in images_dir().glob(f"{release}-*"):
        if old != keep and old.is_dir() and str(old) not in in_use:
            mounts.remove_tree(old)
