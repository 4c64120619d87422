"""Where plates finds its data folders: ``labels/``, ``eval/``, ``prompts/`` and ``swift_args/``.

They live at the top of the repository (the project's layout, readable without Python) and ship inside the wheel
and sdist as package data under ``plates/_assets/`` (``pyproject.toml`` maps each folder to a subpackage such as
``plates._assets.labels``). This module is the one place that knows both homes: the installed copy, found through
:mod:`importlib.resources`, and the checkout's folder beside ``plates/`` (an editable install or a plain checkout
has no ``_assets``). Every stage asks here; nothing else builds paths to these folders.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from pathlib import Path

ASSETS = ("labels", "eval", "prompts", "swift_args")
ASSETS_PACKAGE = "_assets"
LABELS_ENV = "PLATES_LABELS_DIR"


@functools.lru_cache(maxsize=None)
def asset_dir(name: str) -> Path:
    """The folder holding the data folder ``name`` (one of :data:`ASSETS`): the installed package data when the
    package carries it, else the checkout's top-level folder."""
    if name not in ASSETS:
        raise ValueError(f"unknown asset folder {name!r}; one of {', '.join(ASSETS)}")
    installed = importlib.resources.files("plates") / ASSETS_PACKAGE / name
    if installed.is_dir():
        # A wheel is always unpacked on disk; a zip import would need importlib.resources.as_file per file.
        return Path(os.fspath(installed))
    return Path(__file__).resolve().parent.parent / name


def labels_dir() -> Path:
    """The vocabularies (``fields.yaml``, ``plates.yaml``): ``$PLATES_LABELS_DIR`` when set, else the shipped ones."""
    env = os.environ.get(LABELS_ENV)
    return Path(env) if env else asset_dir("labels")


def schema_path() -> Path:
    """The answer's JSON Schema, ``eval/answer.schema.json``."""
    return asset_dir("eval") / "answer.schema.json"


def prompts_dir(version: str = "v1") -> Path:
    """A prompt set's folder (``prompts/v1``: ``prompts.yaml`` and ``template.yaml``)."""
    return asset_dir("prompts") / version


def presets_dir() -> Path:
    """The training presets (``swift_args/*.yaml``, native ms-swift configs)."""
    return asset_dir("swift_args")


def from_checkout(name: str = "labels") -> bool:
    """Whether ``name`` is read from a repository checkout (editable install), not from an installed copy: an
    installed copy is read-only data, so commands that regenerate a file default to another place."""
    return asset_dir(name) == Path(__file__).resolve().parent.parent / name
