"""Where things live: the repository's data files, lab state, image cache."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY_DIR = REPO / "lab" / "topologies"
RECIPE_DIR = REPO / "lab" / "images"


def state_root() -> Path:
    """Root of all lab state; RECETE_LAB_STATE_DIR overrides (e.g. for tests)."""
    return Path(os.environ.get("RECETE_LAB_STATE_DIR", "/var/lib/recete-lab")).resolve()


def cache_root() -> Path:
    return Path(os.environ.get("RECETE_LAB_CACHE_DIR", "/var/cache/recete-lab")).resolve()


def images_dir() -> Path:
    return cache_root() / "images"


def lab_dir(name: str) -> Path:
    return state_root() / name
