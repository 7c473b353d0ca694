"""`ansible-builder create` turns execution-environment.yml into a build context
that carries our requirements (no container engine works here, so no build)."""
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# The definition and the files it names, copied as they are: the tarball goes
# to the copy's dist/, so the checkout is left untouched.
EE_FILES = ["execution-environment.yml", "requirements.yml",
            "meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt"]


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    work = tmp_path_factory.mktemp("ee")
    for name in EE_FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, work / name)
    subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", str(work / "dist"), str(REPO)],
                   check=True, capture_output=True, text=True)
    out = work / "context"
    run = subprocess.run(["ansible-builder", "create", "--file", str(work / "execution-environment.yml"),
                          "--context", str(out), "--output-filename", "Containerfile"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


def _requirement_names(text):
    names = set()
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[\[<>=! ]", line)[0])
    return names


def test_context_has_our_collections(context):
    ours = yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]
    built = yaml.safe_load((context / "_build/requirements.yml").read_text())["collections"]
    assert built == ours


def test_context_has_our_python_and_system_requirements(context):
    python = _requirement_names((context / "_build/requirements.txt").read_text())
    assert {"redis", "psycopg", "netaddr"} <= python
    system = _requirement_names((context / "_build/bindep.txt").read_text())
    assert {"rsync", "openssh-client", "openssh-clients"} <= system


def test_containerfile_installs_core_runner_and_our_tarball(context):
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-core>=2.19,<2.20" in containerfile
    assert "ansible-runner>=2.4,<2.5" in containerfile
    assert "/build/collection/recete-stack-*.tar.gz" in containerfile


def test_tarball_in_context_carries_the_collection_ee_metadata(context):
    """ansible-builder introspects installed collections through meta/execution-environment.yml."""
    tarballs = list((context / "_build/collection").glob("recete-stack-*.tar.gz"))
    assert len(tarballs) == 1
    with tarfile.open(tarballs[0]) as tar:
        names = set(tar.getnames())
    assert {"meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt"} <= names
    assert not any(n.startswith(("tests/", "lab/", "dist/")) for n in names)
    assert "execution-environment.yml" not in names
