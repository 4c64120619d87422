"""`plates train`: run `swift sft` from a preset in ``swift_args/`` plus overrides, and record the run.

A preset is a native ms-swift YAML config (``swift sft preset.yaml`` runs it without plates): argument names and
values, plus an ``ENV:`` block. plates adds what ms-swift cannot know: the dataset folder from `plates build`,
checking every argument name and value against the installed ms-swift before minutes of model loading, GPU and
multi-node environment from short flags, a paste-able `--dry-run`, and a manifest that says exactly how a
checkpoint was made.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plates.errors import UserError
from plates.io import repo_root, write_json
from plates import swift_cli

MANIFEST_NAME = "plates_manifest.json"
PRESET_SUFFIXES = (".yaml", ".yml")


def presets_dir() -> Path:
    return repo_root() / "swift_args"


def available_presets() -> list[str]:
    folder = presets_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_description(path: Path) -> str:
    """The first comment line of a preset (its one-line summary)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


@dataclass
class Preset:
    name: str
    path: Path
    text: str
    env: dict[str, str]
    options: dict[str, Any]


def load_preset(name_or_path: str) -> Preset:
    """A preset by name (``swift_args/NAME.yaml``) or by path to any ms-swift YAML config."""
    import yaml

    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in PRESET_SUFFIXES or os.sep in name_or_path or candidate.is_file():
        path = candidate
    else:
        path = presets_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        names = available_presets()
        hint = swift_cli.suggest(name_or_path, names)
        raise UserError(f"no preset {name_or_path!r}" + (f"; did you mean {hint!r}?" if hint else "")
                        + (f" (available: {', '.join(names)})" if names else ""))
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a preset is a mapping of ms-swift argument names to values")
    env = data.pop("ENV", None) or {}
    if not isinstance(env, dict):
        raise UserError(f"{path}: ENV must be a mapping of environment variables")
    return Preset(name=path.stem, path=path.resolve(), text=text,
                  env={str(k): "" if v is None else str(v) for k, v in env.items()}, options=data)


@dataclass
class TrainPlan:
    """Everything needed to launch (or print) one `swift sft` run."""

    argv: list[str]
    env: dict[str, str]
    options: dict[str, Any]
    preset: Preset
    overrides: list[str]
    dataset_files: list[Path]
    output_dir: Path
    notes: list[str] = field(default_factory=list)


def parse_gpus(text: str) -> list[str]:
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(re.fullmatch(r"\d+", g) for g in gpus):
        raise UserError(f"--gpus takes comma-separated GPU indices like 0,1,2,3, not {text!r}")
    if len(set(gpus)) != len(gpus):
        raise UserError(f"--gpus lists a GPU twice: {text!r}")
    return gpus


def distributed_env(gpus: str | None = None, *, model_parallel: bool = False, nnodes: int | None = None,
                    node_rank: int | None = None, master_addr: str | None = None,
                    master_port: int | None = None) -> dict[str, str]:
    """The environment ms-swift reads to launch torchrun: CUDA_VISIBLE_DEVICES, NPROC_PER_NODE, NNODES,
    NODE_RANK, MASTER_ADDR, MASTER_PORT. ``model_parallel`` keeps one process spreading the model over all the
    listed GPUs (the seed's way), instead of one process per GPU."""
    env: dict[str, str] = {}
    if gpus is not None:
        ids = parse_gpus(gpus)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
        if not model_parallel and (len(ids) > 1 or (nnodes or 1) > 1):
            env["NPROC_PER_NODE"] = str(len(ids))
    if nnodes is not None:
        if nnodes < 1:
            raise UserError("--nnodes must be at least 1")
        if nnodes > 1:
            if master_addr is None:
                raise UserError("--nnodes > 1 needs --master-addr (the address of node rank 0)")
            if node_rank is None:
                raise UserError("--nnodes > 1 needs --node-rank (0 on the master node)")
        env["NNODES"] = str(nnodes)
    if node_rank is not None:
        if node_rank < 0 or (nnodes is not None and node_rank >= nnodes):
            raise UserError(f"--node-rank must be between 0 and {(nnodes or 1) - 1}")
        env["NODE_RANK"] = str(node_rank)
    if master_addr is not None:
        env["MASTER_ADDR"] = master_addr
    if master_port is not None:
        if not 0 < master_port < 65536:
            raise UserError("--master-port must be a TCP port (1-65535)")
        env["MASTER_PORT"] = str(master_port)
    return env


def dataset_files(dataset: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(train, val or None)`` from a `plates build` folder, or a single JSONL file used as is."""
    path = Path(dataset).expanduser().resolve()
    if path.is_dir():
        train, val = path / "train.jsonl", path / "val.jsonl"
        if not train.is_file():
            raise UserError(f"{path}: no train.jsonl (is this a `plates build` output folder?)")
        return train, (val if val.is_file() and val.stat().st_size > 0 else None)
    if path.is_file():
        return path, None
    raise UserError(f"{path}: no such dataset folder or file")


def dataset_image_root(folder: Path) -> str | None:
    """The root a `plates build` dataset's relative image paths resolve against (its stats.json says), or None
    for absolute paths. ms-swift resolves relative paths against ROOT_IMAGE_DIR or the working directory."""
    import json

    stats = folder / "stats.json"
    if not stats.is_file():
        return None
    try:
        paths = json.loads(stats.read_text(encoding="utf-8")).get("image_paths")
    except (json.JSONDecodeError, AttributeError):
        return None
    return paths.get("relative_to") if isinstance(paths, dict) else None


def build_plan(preset: str, dataset: str | os.PathLike | None, *, model: str | None = None,
               overrides: list[str] | None = None, env_overrides: list[str] | None = None,
               gpus: str | None = None, model_parallel: bool = False, nnodes: int | None = None,
               node_rank: int | None = None, master_addr: str | None = None, master_port: int | None = None,
               output_dir: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> TrainPlan:
    """Pure: preset + overrides -> argv and environment for `swift sft`. Raises UserError for anything ms-swift
    would reject by name or type, before anything is launched."""
    loaded = load_preset(preset)
    environ = dict(os.environ) if environ is None else environ
    notes: list[str] = []
    options = swift_cli.resolve_options("sft", loaded.options, notes=notes)

    raw: dict[str, str] = {}
    values: dict[str, Any] = {}
    for text in overrides or []:
        key, value, raw_text = swift_cli.parse_assignment(text)
        values[key] = value
        raw[key] = raw_text
    override_options = swift_cli.resolve_options("sft", values, raw, notes=notes)
    dropped = [swift_cli.canonical_name(k, swift_cli.argument_fields("sft"))[0] for k, v in values.items()
               if v is None]
    for key in dropped:
        options.pop(key, None)
    options.update(override_options)

    files: list[Path] = []
    if dataset is not None:
        train, val = dataset_files(dataset)
        options["dataset"] = [str(train)]
        files.append(train)
        if val is not None:
            options["val_dataset"] = [str(val)]
            files.append(val)
        else:
            options.pop("val_dataset", None)
    elif not options.get("dataset"):
        raise UserError("no dataset: pass --dataset DIR (a `plates build` output) or --set dataset=FILE")
    else:
        files = [Path(p) for p in options.get("dataset", []) + options.get("val_dataset", []) if Path(p).is_file()]
    if model is not None:
        options["model"] = model
    if not options.get("model"):
        raise UserError(f"preset {loaded.name!r} names no model: pass --model (a hub id or a local folder; "
                        "`plates tiny-model DIR` builds a tiny one)")
    if output_dir is not None:
        options["output_dir"] = str(Path(output_dir).expanduser().resolve())
    options.setdefault("output_dir", "output")
    out = Path(options["output_dir"]).expanduser()
    out = out if out.is_absolute() else Path.cwd() / out
    options["output_dir"] = str(out)

    # Environment: the preset's ENV yields to what the caller already exported (as `swift sft preset.yaml`
    # does); explicit plates flags win over both.
    env = {k: v for k, v in loaded.env.items() if k not in environ}
    for k, v in loaded.env.items():
        if k in environ and environ[k] != v:
            notes.append(f"{k} is set in your environment ({environ[k]!r}); the preset's {v!r} is not used")
    for text in env_overrides or []:
        key, sep, value = text.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UserError(f"--env takes NAME=value, not {text!r}")
        env[key.strip()] = value
    image_root = dataset_image_root(files[0].parent) if files else None
    if image_root and "ROOT_IMAGE_DIR" not in environ and "ROOT_IMAGE_DIR" not in env:
        env["ROOT_IMAGE_DIR"] = image_root
        notes.append(f"the dataset's image paths are relative: ROOT_IMAGE_DIR={image_root}")
    dist = distributed_env(gpus, model_parallel=model_parallel, nnodes=nnodes, node_rank=node_rank,
                           master_addr=master_addr, master_port=master_port)
    if dist and "NPROC_PER_NODE" not in dist and gpus is not None:
        env.pop("NPROC_PER_NODE", None)
    env.update(dist)
    if env.get("NPROC_PER_NODE") and not options.get("deepspeed") and int(env["NPROC_PER_NODE"]) > 1:
        notes.append("several processes without DeepSpeed: plain DDP (every GPU holds the whole model)")

    first = ("model", "dataset", "val_dataset")
    options = {**{k: options[k] for k in first if k in options}, **{k: v for k, v in options.items() if k not in first}}
    argv = [*swift_cli.swift_command(), "sft", *swift_cli.options_to_argv(options)]
    return TrainPlan(argv=argv, env=env, options=options, preset=loaded, overrides=list(overrides or []),
                     dataset_files=files, output_dir=out, notes=notes)


def check_launchable(plan: TrainPlan) -> None:
    """What only matters on the machine that runs the plan (a dry run may be for another machine)."""
    import importlib.util

    if "swanlab" in plan.options.get("report_to", []) and importlib.util.find_spec("swanlab") is None:
        raise UserError("report_to swanlab needs the swanlab package: pip install swanlab "
                        "(and SWANLAB_API_KEY in the environment), or --set report_to=tensorboard")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_file(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size, "lines": lines}


def build_manifest(plan: TrainPlan, *, exit_code: int | None = None, run_dir: Path | None = None,
                   last_checkpoint: Path | None = None, started: float | None = None,
                   finished: float | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """What a run was: command, environment (secrets redacted), versions, data hashes, preset; JSON-ready."""
    from plates import __version__

    def stamp(t: float | None) -> str | None:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds") if t else None

    return {
        "tool": f"plates {__version__}",
        "command": swift_cli.redact_argv(plan.argv),
        "command_line": swift_cli.format_command(swift_cli.redact_argv(plan.argv), swift_cli.redact_env(plan.env),
                                                 multiline=False),
        "env": swift_cli.redact_env(plan.env),
        "inherited_env": swift_cli.relevant_environment(environ),
        "options": {k: (swift_cli.REDACTED if swift_cli.is_secret(k) else v) for k, v in plan.options.items()},
        "overrides": [o if not swift_cli.is_secret(o.partition("=")[0]) else
                      f"{o.partition('=')[0]}={swift_cli.REDACTED}" for o in plan.overrides],
        "preset": {"name": plan.preset.name, "path": str(plan.preset.path), "content": plan.preset.text},
        "dataset_files": [describe_file(p) for p in plan.dataset_files if p.is_file()],
        "packages": swift_cli.package_versions(),
        "output_dir": str(plan.output_dir),
        "run_dir": str(run_dir) if run_dir else None,
        "last_checkpoint": str(last_checkpoint) if last_checkpoint else None,
        "max_pixels": plan.options.get("max_pixels") or _int_or_none(plan.env.get("MAX_PIXELS")),
        "exit_code": exit_code,
        "started": stamp(started),
        "finished": stamp(finished),
        "duration_s": round(finished - started, 1) if started and finished else None,
        "notes": plan.notes,
    }


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


_OUTPUT_DIR_LINE = re.compile(r"output_dir: (.+?)\s*$")
_LAST_CKPT_LINE = re.compile(r"last_model_checkpoint: (.+?)\s*$")


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
    if seen and seen != "None" and Path(seen).is_dir():
        return Path(seen)
    if run_dir is None:
        return None
    link = run_dir / "last-checkpoint"
    if link.exists():
        return link.resolve()
    checkpoints = [p for p in run_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1])) if checkpoints else None


def execute(plan: TrainPlan) -> tuple[int, Path | None, Path | None, Path]:
    """Run the plan, streaming ms-swift's output; write the manifest. Returns
    ``(exit code, run folder, last checkpoint, manifest path)``."""
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in plan.output_dir.iterdir()}
    seen: dict[str, str] = {}

    def watch(line: str) -> None:
        for key, pattern in (("output_dir", _OUTPUT_DIR_LINE), ("last", _LAST_CKPT_LINE)):
            match = pattern.search(line)
            if match and "[INFO:swift]" in line:
                seen[key] = match.group(1).strip().strip("`")

    started = time.time()
    try:
        code = swift_cli.run_streaming(plan.argv, plan.env, on_line=watch)
    except KeyboardInterrupt:
        code = 130
    finished = time.time()
    run_dir = find_run_dir(plan.output_dir, before, seen.get("output_dir"))
    checkpoint = last_checkpoint(run_dir, seen.get("last"))
    manifest = build_manifest(plan, exit_code=code, run_dir=run_dir, last_checkpoint=checkpoint,
                              started=started, finished=finished)
    if run_dir is not None:
        manifest_path = run_dir / MANIFEST_NAME
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        manifest_path = plan.output_dir / f"plates_manifest-{stamp}.json"
    write_json(manifest_path, manifest)
    return code, run_dir, checkpoint, manifest_path


def find_manifest(checkpoint: str | os.PathLike) -> Path | None:
    """The plates manifest of the run a checkpoint belongs to (its folder or the folder above)."""
    path = Path(checkpoint).expanduser().resolve()
    for folder in (path, path.parent):
        candidate = folder / MANIFEST_NAME
        if candidate.is_file():
            return candidate
    return None


# ---- CLI ------------------------------------------------------------------------------------------------------

def _configure(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(available_presets()) or "none found"
    parser.add_argument("--preset", default=None,
                        help=f"preset name in swift_args/ ({names}) or path to an ms-swift YAML config")
    parser.add_argument("--dataset", help="`plates build` output folder (train.jsonl, val.jsonl) or one JSONL file")
    parser.add_argument("--model", help="base model: hub id or local folder (overrides the preset's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override an ms-swift argument, e.g. --set num_train_epochs=3 --set "
                             "report_to=tensorboard; lists as YAML: --set 'target_modules=[q_proj,v_proj]'; "
                             "KEY=null drops a preset key. Checked against the installed ms-swift.")
    parser.add_argument("--env", dest="env_overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment variable for ms-swift, e.g. --env MAX_PIXELS=200704")
    parser.add_argument("--gpus", help="GPUs to use, e.g. 0,1,2,3 (sets CUDA_VISIBLE_DEVICES and, for several, "
                                       "NPROC_PER_NODE: one process per GPU)")
    parser.add_argument("--model-parallel", action="store_true",
                        help="with several --gpus: one process spreading the model over them (the seed's way)")
    parser.add_argument("--nnodes", type=int, help="number of machines (NNODES)")
    parser.add_argument("--node-rank", type=int, help="this machine's rank, 0 on the master (NODE_RANK)")
    parser.add_argument("--master-addr", help="address of the rank-0 machine (MASTER_ADDR)")
    parser.add_argument("--master-port", type=int, help="port on the rank-0 machine (MASTER_PORT)")
    parser.add_argument("--output-dir", help="where ms-swift writes its versioned run folders "
                                             "(default: the preset's output_dir)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the exact command line and environment, paste-able into a shell; run nothing")
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")


def _run(args: argparse.Namespace) -> int:
    """Fine-tune with ms-swift (`swift sft`) from a preset plus overrides.

    Every argument name and value is checked against the installed ms-swift first (3.x names such as
    train_type are translated; misspelt ones are rejected with the closest valid name). The run's output
    streams through; afterwards plates_manifest.json (command, environment minus secrets, package versions,
    dataset hashes, preset) is written into ms-swift's run folder, and the folder and last checkpoint are
    printed. The exit code is ms-swift's.

    examples:
      plates train --preset qwen2_5_vl_7b_lora --dataset data/ --gpus 0,1,2,3 --model-parallel
      plates train --preset qwen2_5_vl_7b_lora_deepspeed --dataset data/ --set deepspeed=zero3
      plates train --preset tiny_cpu --model tiny/ --dataset data/ --dry-run
    """
    if args.list_presets:
        for name in available_presets():
            print(f"{name:32s} {preset_description(presets_dir() / f'{name}.yaml')}")
        return 0
    if not args.preset:
        raise UserError("--preset is required (see --list-presets)")
    plan = build_plan(args.preset, args.dataset, model=args.model, overrides=args.overrides,
                      env_overrides=args.env_overrides, gpus=args.gpus, model_parallel=args.model_parallel,
                      nnodes=args.nnodes, node_rank=args.node_rank, master_addr=args.master_addr,
                      master_port=args.master_port, output_dir=args.output_dir)
    import sys

    for note in plan.notes:
        print(f"plates train: note: {note}", file=sys.stderr)
    if args.dry_run:
        print(swift_cli.format_command(swift_cli.redact_argv(plan.argv), swift_cli.redact_env(plan.env)))
        return 0
    check_launchable(plan)
    code, run_dir, checkpoint, manifest_path = execute(plan)
    print(f"plates train: ms-swift exited with {code}", file=sys.stderr)
    print(f"output folder: {run_dir or plan.output_dir}")
    print(f"last checkpoint: {checkpoint or 'none'}")
    print(f"manifest: {manifest_path}")
    return code


COMMANDS = {"train": (_configure, _run, "fine-tune with ms-swift (swift sft) from a preset; --dry-run prints it")}
