"""A training run's folder, the contract between `plates train` (which writes it) and the stages that read it
(infer, export, serve, demo).

ms-swift creates a versioned folder (``v3-20250101-120000``) under the output folder, with ``args.json``,
``logging.jsonl`` and ``checkpoint-N`` folders; plates adds ``plates_manifest.json`` (:class:`RunManifest`: what
the run was, including the ``max_pixels`` ms-swift does not save) and ``swift-sft.log`` (ms-swift's whole output).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plates.errors import UserError

MANIFEST_NAME = "plates_manifest.json"
LOG_NAME = "swift-sft.log"


@dataclass(frozen=True)
class RunManifest:
    """The fields of ``plates_manifest.json`` that later stages use; ``data`` keeps the whole JSON object
    (command, environment, packages, dataset hashes, preset), written by :func:`plates.train.build_manifest`."""

    path: Path
    run_dir: Path | None
    last_checkpoint: Path | None
    max_pixels: int | None
    exit_code: int | None
    merged_from: str | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, path: str | os.PathLike) -> RunManifest | None:
        """The manifest at ``path``, or None when it is missing or not a JSON object."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return cls(path=path, run_dir=_path_or_none(data.get("run_dir")),
                   last_checkpoint=_path_or_none(data.get("last_checkpoint")),
                   max_pixels=_int_or_none(data.get("max_pixels")), exit_code=_int_or_none(data.get("exit_code")),
                   merged_from=data.get("merged_from"), data=data)


def _path_or_none(value: Any) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def find_run_dir(output_dir: Path, before: set[str], seen_output_dir: str | None) -> Path | None:
    """The versioned folder (``v3-20250101-120000``) this run created under ``output_dir``."""
    if seen_output_dir and (Path(seen_output_dir) / "args.json").is_file():
        return Path(seen_output_dir)
    if not output_dir.is_dir():
        return None
    created = [p for p in output_dir.iterdir() if p.is_dir() and p.name not in before and re.match(r"v\d+-", p.name)]
    if created:
        return max(created, key=lambda p: p.stat().st_mtime)
    return output_dir if (output_dir / "args.json").is_file() else None


def last_checkpoint(run_dir: Path | None, seen: str | None = None) -> Path | None:
    """A run's newest ``checkpoint-N`` (``seen``: what ms-swift printed as last_model_checkpoint, when known)."""
    if seen and seen != "None" and Path(seen).is_dir():
        return Path(seen)
    if run_dir is None:
        return None
    link = run_dir / "last-checkpoint"
    if link.exists():
        return link.resolve()
    checkpoints = [p for p in run_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1])) if checkpoints else None


def find_manifest(checkpoint: str | os.PathLike) -> Path | None:
    """The plates manifest of the run a checkpoint belongs to (its folder or the folder above)."""
    path = Path(checkpoint).expanduser().resolve()
    for folder in (path, path.parent):
        candidate = folder / MANIFEST_NAME
        if candidate.is_file():
            return candidate
    return None


def read_manifest(checkpoint: str | os.PathLike) -> RunManifest | None:
    """The :class:`RunManifest` of the run a checkpoint (or merged model) belongs to, if plates trained it."""
    path = find_manifest(checkpoint)
    return RunManifest.read(path) if path is not None else None


def loss_history(run_dir: Path | None) -> list[float]:
    """The training losses ms-swift logged for a run (``logging.jsonl``), in step order."""
    log = run_dir / "logging.jsonl" if run_dir else None
    if log is None or not log.is_file():
        return []
    losses = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            losses.append(float(json.loads(line)["loss"]))
        except (ValueError, TypeError, KeyError):
            continue
    return losses


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """A LoRA checkpoint folder (``…/checkpoint-N``); a run folder resolves to its last checkpoint."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"{folder}: no such checkpoint folder")
    if (folder / "adapter_config.json").is_file():
        return folder
    latest = last_checkpoint(folder)
    if latest is not None and (latest / "adapter_config.json").is_file():
        return latest
    for candidate in (folder, latest):
        if candidate is not None and (candidate / "config.json").is_file():
            raise UserError(f"{folder}: a full fine-tune checkpoint (whole model, no adapter_config.json); "
                            f"answer with it as a model: --model {candidate}")
    raise UserError(f"{folder}: not a LoRA checkpoint (no adapter_config.json); pass a checkpoint-N folder "
                    "from `plates train`")


def checkpoint_max_pixels(checkpoint: str | os.PathLike) -> int | None:
    """The max_pixels a run trained with, from its plates manifest (ms-swift does not save it)."""
    manifest = read_manifest(checkpoint)
    return manifest.max_pixels if manifest is not None and manifest.max_pixels else None
