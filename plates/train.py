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
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plates.errors import Terminated, UserError
from plates.io import check_output_dir, sha256_file, write_json
from plates import __version__, field_weights, grpo, resources, student, swift_cli
from plates.contracts import DatasetLayout, dataset_grounding_env, dataset_image_root
from plates.decoding import plugin_path
from plates.outputs import input_path, output_dir
from plates.placeholder_loss import PLACEHOLDER_LOSS_ENV, placeholder_loss_mode
from plates.swift_cli import parse_gpus
from plates.launch import add_distributed_arguments, distributed_env
from plates.train_scale import LARGE_DATASET, MODES, count_samples, scale_options
from plates.runs import LOG_NAME, MANIFEST_NAME, find_run_dir, last_checkpoint, loss_history

PRESET_SUFFIXES = (".yaml", ".yml")


def presets_dir() -> Path:
    return resources.presets_dir()


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
    """Everything needed to launch (or print) one `swift sft` (or, for a preset with ``rlhf_type``, `swift rlhf`)
    run."""

    argv: list[str]
    env: dict[str, str]
    options: dict[str, Any]
    preset: Preset
    overrides: list[str]
    dataset_files: list[Path]
    output_dir: Path
    notes: list[str] = field(default_factory=list)
    command: str = "sft"


def dataset_files(dataset: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(train, val or None)`` from a `plates build` folder, or a single JSONL file used as is."""
    path = Path(dataset).expanduser().resolve()
    if path.is_dir():
        layout = DatasetLayout.of(path)
        train, val = layout.train, layout.val
        if not train.is_file():
            raise UserError(f"{path}: no train.jsonl (is this a `plates build` output folder?)")
        return train, (val if val.is_file() and val.stat().st_size > 0 else None)
    if path.is_file():
        return path, None
    raise UserError(f"{path}: no such dataset folder or file")


# ms-swift arguments that may name local files or folders; the runs record them (args.json) and later stages
# (infer --adapters from another folder) read them back, so they must not depend on the working directory
PATH_OPTIONS = ("model", "adapters", "ckpt_dir", "resume_from_checkpoint", "dataset", "val_dataset",
                "output_dir", "logging_dir", "deepspeed", "external_plugins", "custom_register_path",
                "result_path", "ref_model", "ref_adapters", "reward_model")


def absolute_paths(options: dict[str, Any], keys: tuple[str, ...] = PATH_OPTIONS) -> None:
    """Make every value of ``keys`` that names an existing local path absolute, in place. Hub ids
    ('Qwen/Qwen2.5-VL-7B-Instruct') and names like 'zero2' stay as they are, unless such a path exists here,
    where ms-swift itself would take the local one. Dataset specs with a subset/sample suffix are left alone."""
    for key in keys:
        value = options.get(key)
        if isinstance(value, list):
            options[key] = [_absolute_if_local(v) for v in value]
        elif value is not None:
            options[key] = _absolute_if_local(value)


def _absolute_if_local(value: Any) -> Any:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return value
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


def _add_field_weights(options: dict[str, Any], env: dict[str, str], environ: dict[str, str],
                       notes: list[str]) -> None:
    """``loss_scale: plates_fields`` (per-field loss weights, plates.field_weights): check the weights now, before
    minutes of loading, and add the plugin file that registers the strategy inside ms-swift."""
    text = env.get(field_weights.FIELD_WEIGHTS_ENV, environ.get(field_weights.FIELD_WEIGHTS_ENV))
    if not field_weights.uses_field_weights(options.get("loss_scale")):
        if text is not None:
            notes.append(f"{field_weights.FIELD_WEIGHTS_ENV} is set but loss_scale is not "
                         f"{field_weights.LOSS_SCALE_NAME}: the weights are not used")
        return
    if text is None:
        raise UserError(f"loss_scale {options['loss_scale']} needs {field_weights.FIELD_WEIGHTS_ENV} (e.g. "
                        f"--env {field_weights.FIELD_WEIGHTS_ENV}={field_weights.example_weights()}, or the preset's "
                        "ENV block)")
    weights = field_weights.parse_field_weights(text)
    options["external_plugins"] = swift_cli.with_plugins(options.get("external_plugins"), str(plugin_path()))
    notes.append("loss weights per answer field: " + ", ".join(f"{k} x{v:g}" for k, v in weights.items()))


def _add_placeholder_loss(options: dict[str, Any], env: dict[str, str], environ: dict[str, str],
                          notes: list[str]) -> None:
    """``PLATES_PLACEHOLDER_LOSS=closed_form`` (plates.placeholder_loss): check the value now and add the plugin
    file that installs the shortcut inside ms-swift."""
    if placeholder_loss_mode({**environ, **env}) == "off":
        return
    options["external_plugins"] = swift_cli.with_plugins(options.get("external_plugins"), str(plugin_path()))
    notes.append(f"{PLACEHOLDER_LOSS_ENV}=closed_form: the tiny model's placeholder logits are one closed-form "
                 "term of the loss")


def build_plan(preset: str, dataset: str | os.PathLike | None, *, model: str | None = None,
               overrides: list[str] | None = None, env_overrides: list[str] | None = None,
               gpus: str | None = None, model_parallel: bool = False, nnodes: int | None = None,
               node_rank: int | None = None, master_addr: str | None = None, master_port: int | None = None,
               output_dir: str | os.PathLike | None = None, environ: dict[str, str] | None = None,
               large_dataset: str = "auto", adapters: str | os.PathLike | None = None) -> TrainPlan:
    """Pure: preset + overrides -> argv and environment for `swift sft` (`swift rlhf` when the preset or an
    override sets ``rlhf_type``). Raises UserError for anything ms-swift would reject by name or type, before
    anything is launched. ``adapters``: a checkpoint to start from (its base model when ``model`` is None)."""
    loaded = load_preset(preset)
    environ = dict(os.environ) if environ is None else environ
    notes: list[str] = []
    values, raw = swift_cli.parse_overrides(overrides)
    command = "rlhf" if grpo.is_rlhf({**loaded.options, **values}) else "sft"
    options = swift_cli.resolve_options(command, loaded.options, notes=notes)

    override_options = swift_cli.resolve_options(command, values, raw, notes=notes)
    dropped = [swift_cli.canonical_name(k, swift_cli.argument_fields(command))[0] for k, v in values.items()
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
    if model is not None and "model" in override_options:
        raise UserError("the model is given twice (--model and --set model=…); give it once, with --model")
    if output_dir is not None and "output_dir" in override_options:
        raise UserError("the output folder is given twice (--output-dir and --set output_dir=…); "
                        "give it once, with --output-dir")
    if model is not None:
        options["model"] = model
    if adapters is not None:
        if "adapters" in override_options:
            raise UserError("the adapters are given twice (--adapters and --set adapters=…); give them once")
        options["adapters"] = [str(adapters)]
    if not options.get("model") and options.get("adapters"):
        options["model"] = grpo.checkpoint_model(options["adapters"][0])
        if options["model"]:
            notes.append(f"base model {options['model']} from the checkpoint's args.json")
    if not options.get("model"):
        raise UserError(f"preset {loaded.name!r} names no model: pass --model (a hub id or a local folder; "
                        "`plates tiny-model DIR` builds a tiny one)")
    if output_dir is not None:
        options["output_dir"] = str(Path(output_dir).expanduser().resolve())
    options.setdefault("output_dir", "output")
    out = Path(options["output_dir"]).expanduser()
    out = out if out.is_absolute() else Path.cwd() / out
    check_output_dir(out, "--output-dir", contents=False)
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
        if gpus is not None and key.strip() in ("CUDA_VISIBLE_DEVICES", "NPROC_PER_NODE"):
            raise UserError(f"--env {key.strip()}=… and --gpus both choose the GPUs; give only --gpus")
        env[key.strip()] = value
    if model_parallel and (gpus is None or len(parse_gpus(gpus)) < 2):
        notes.append("--model-parallel has no effect without several --gpus (e.g. --gpus 0,1)")
    image_root = dataset_image_root(files[0].parent) if files else None
    if image_root and "ROOT_IMAGE_DIR" not in environ and "ROOT_IMAGE_DIR" not in env:
        env["ROOT_IMAGE_DIR"] = image_root
        notes.append(f"the dataset's image paths are relative: ROOT_IMAGE_DIR={image_root}")
    for key, value in (dataset_grounding_env(files[0].parent) if files else {}).items():
        if environ.get(key, env.get(key, value)) != value:
            raise UserError(f"the dataset was built with --grounding and needs {key}={value} "
                            f"(boxes as JSON lists), but {key}={environ.get(key, env.get(key))!r} is set")
        if key not in env:
            env[key] = value
            notes.append(f"grounding dataset: {key}={value}")
    dist = distributed_env(gpus, model_parallel=model_parallel, nnodes=nnodes, node_rank=node_rank,
                           master_addr=master_addr, master_port=master_port)
    if dist and "NPROC_PER_NODE" not in dist and gpus is not None:
        env.pop("NPROC_PER_NODE", None)
    env.update(dist)
    if env.get("NPROC_PER_NODE") and not options.get("deepspeed") and int(env["NPROC_PER_NODE"]) > 1:
        notes.append("several processes without DeepSpeed: plain DDP (every GPU holds the whole model)")

    samples = count_samples(options.get("dataset") or []) if large_dataset != "off" else None
    added, scale_notes = scale_options(large_dataset, options, env, samples)
    options.update(added)
    notes.extend(scale_notes)
    _add_field_weights(options, env, environ, notes)
    _add_placeholder_loss(options, env, environ, notes)
    if command == "rlhf":
        grpo.prepare_plan(options, files, notes)
    absolute_paths(options)
    first = ("model", "dataset", "val_dataset")
    options = {**{k: options[k] for k in first if k in options}, **{k: v for k, v in options.items() if k not in first}}
    argv = [*swift_cli.swift_command(), command, *swift_cli.options_to_argv(options)]
    return TrainPlan(argv=argv, env=env, options=options, preset=loaded, overrides=list(overrides or []),
                     dataset_files=files, output_dir=out, notes=notes, command=command)


def check_launchable(plan: TrainPlan) -> None:
    """What only matters on the machine that runs the plan (a dry run may be for another machine)."""
    import importlib.util

    if "swanlab" in plan.options.get("report_to", []) and importlib.util.find_spec("swanlab") is None:
        raise UserError("report_to swanlab needs the swanlab package: pip install swanlab "
                        "(and SWANLAB_API_KEY in the environment), or --set report_to=tensorboard")
    if plan.command == "rlhf":
        grpo.check_launchable(plan.options)


def describe_file(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size, "lines": lines}


def build_manifest(plan: TrainPlan, *, exit_code: int | None = None, run_dir: Path | None = None,
                   last_checkpoint: Path | None = None, started: float | None = None,
                   finished: float | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """What a run was: command, environment (secrets redacted), versions, data hashes, preset; JSON-ready."""
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
        "student": trained_contract(plan.dataset_files),
        **grpo.manifest_fields(plan.options),
    }


def trained_contract(files: list[Path]) -> dict[str, Any] | None:
    """The question and system text the model is trained with (the dataset's stats.json, read through
    :mod:`plates.student`): infer, predict, serve and export ask the trained model with them. None for a dataset
    without stats.json (made by hand: its samples carry their own questions)."""
    contract = student.for_dataset(files[0].parent) if files else None
    return contract.to_json() if contract is not None else None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


_OUTPUT_DIR_LINE = re.compile(r"output_dir: (.+?)\s*$")
_LAST_CKPT_LINE = re.compile(r"last_model_checkpoint: (.+?)\s*$")




@dataclass
class TrainResult:
    """What one `plates train` run left behind (the closing summary prints it)."""

    code: int
    run_dir: Path | None
    checkpoint: Path | None
    manifest_path: Path
    log_path: Path
    seconds: float
    losses: list[float]
    rewards: dict[str, list[float]] | None = None  # rlhf runs: total and per reward function (plates.grpo)

    def summary(self) -> str:
        minutes, seconds = divmod(round(self.seconds), 60)
        if len(self.losses) >= 2:
            loss = f"{self.losses[0]:.4g} → {self.losses[-1]:.4g} over {len(self.losses)} logged steps"
        else:
            loss = f"{self.losses[0]:.4g}" if self.losses else "not logged"
        return "\n".join([
            f"plates train: {'finished' if self.code == 0 else f'ms-swift exited with {self.code}'} "
            f"in {minutes}m {seconds:02d}s",
            f"training loss: {loss}",
            *(grpo.summary_lines(self.rewards) if self.rewards is not None else []),
            f"output folder: {self.run_dir or 'none'}",
            f"last checkpoint: {self.checkpoint or 'none'}",
            f"manifest: {self.manifest_path}",
            f"ms-swift log: {self.log_path}",
        ])


def execute(plan: TrainPlan) -> tuple[int, Path | None, Path | None, Path]:
    """Run the plan with ms-swift's output streaming through; write the manifest. Returns
    ``(exit code, run folder, last checkpoint, manifest path)``; :func:`run_plan` is the quiet form."""
    result = run_plan(plan, verbose=True)
    return result.code, result.run_dir, result.checkpoint, result.manifest_path


def run_plan(plan: TrainPlan, *, verbose: bool = False) -> TrainResult:
    """Run the plan: one progress bar (``verbose`` streams ms-swift's output instead), ms-swift's full output in
    ``swift-sft.log`` beside the checkpoints, and the manifest in the run folder."""
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in plan.output_dir.iterdir()}
    seen: dict[str, str] = {}
    log_path = plan.output_dir / f"{LOG_NAME[:-4]}-{dt.datetime.now():%Y%m%d-%H%M%S}.log"

    def watch(line: str) -> None:
        for key, pattern in (("output_dir", _OUTPUT_DIR_LINE), ("last", _LAST_CKPT_LINE)):
            match = pattern.search(line)
            if match and "[INFO:swift]" in line:
                seen[key] = match.group(1).strip().strip("`")

    started = time.time()
    terminated: Terminated | None = None
    progress = swift_cli.SwiftProgress(bar="Train", desc="train", unit="step")
    try:
        code = swift_cli.run_swift(plan.argv, plan.env, log_path=log_path, verbose=verbose, progress=progress,
                                   on_line=watch, who="plates train", log_hint=False).code
    except KeyboardInterrupt as exc:  # the run folder and manifest are still recorded below
        code = 128 + getattr(exc, "signum", 2)
        terminated = exc if isinstance(exc, Terminated) else None
    finished = time.time()
    run_dir = find_run_dir(plan.output_dir, before, seen.get("output_dir"))
    if run_dir is not None and log_path.is_file():
        os.replace(log_path, run_dir / LOG_NAME)
        log_path = run_dir / LOG_NAME
    checkpoint = last_checkpoint(run_dir, seen.get("last"))
    manifest = build_manifest(plan, exit_code=code, run_dir=run_dir, last_checkpoint=checkpoint,
                              started=started, finished=finished)
    if run_dir is not None:
        manifest_path = run_dir / MANIFEST_NAME
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        manifest_path = plan.output_dir / f"plates_manifest-{stamp}.json"
    write_json(manifest_path, manifest)
    if terminated is not None:  # SIGTERM/SIGHUP: `plates` says so in one line and exits 128 + signum
        raise terminated
    return TrainResult(code=code, run_dir=run_dir, checkpoint=checkpoint, manifest_path=manifest_path,
                       log_path=log_path, seconds=finished - started,
                       losses=loss_history(run_dir) or progress.losses,
                       rewards=grpo.reward_history(run_dir) if plan.command == "rlhf" else None)


# ---- CLI ------------------------------------------------------------------------------------------------------

def _configure(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(available_presets()) or "none found"
    parser.add_argument("--preset", default=None,
                        help=f"preset name in swift_args/ ({names}) or path to an ms-swift YAML config")
    parser.add_argument("--dataset", help="`plates build` output folder (train.jsonl, val.jsonl) or one JSONL file",
                        type=input_path())
    parser.add_argument("--model", help="base model: hub id or local folder (overrides the preset's)",
                        type=input_path())
    parser.add_argument("--adapters", metavar="CHECKPOINT", type=input_path(),
                        help="start from this LoRA checkpoint of an earlier run (e.g. SFT before GRPO); its base "
                             "model is read from the run's args.json unless --model is given")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override an ms-swift argument, e.g. --set num_train_epochs=3 --set "
                             "report_to=tensorboard; lists as YAML: --set 'target_modules=[q_proj,v_proj]'; "
                             "KEY=null drops a preset key. Checked against the installed ms-swift.")
    parser.add_argument("--env", dest="env_overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment variable for ms-swift, e.g. --env MAX_PIXELS=200704")
    parser.add_argument("--gpus", help="GPUs to use, e.g. 0,1,2,3 (sets CUDA_VISIBLE_DEVICES and, for several, "
                                       "NPROC_PER_NODE: one process per GPU)")
    add_distributed_arguments(parser)
    parser.add_argument("--output-dir", type=output_dir(), help="where ms-swift writes its versioned run folders "
                                             "(default: the preset's output_dir)")
    parser.add_argument("--large-dataset", choices=MODES, default="auto",
                        help="ms-swift's options for big training sets: 'lazy' (lazy_tokenize, dataset_num_proc, "
                             "load_from_cache_file), 'streaming' (with max_steps computed from samples and epochs), "
                             f"'off'; default 'auto': lazy from {LARGE_DATASET:,} samples on")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the exact command line and environment, paste-able into a shell; run nothing")
    parser.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="stream ms-swift's whole output here (it always goes to swift-sft.log in the run folder)")


def _run(args: argparse.Namespace) -> int:
    """Fine-tune with ms-swift (`swift sft`, or `swift rlhf` for a preset with rlhf_type) from a preset plus
    overrides.

    Every argument name and value is checked against the installed ms-swift first (3.x names such as
    train_type are translated; misspelt ones are rejected with the closest valid name). The terminal shows one
    progress bar (step/total, loss, ETA); ms-swift's whole output goes to swift-sft.log in the run folder
    (-v streams it here too). Afterwards plates_manifest.json (command, environment minus secrets, package
    versions, dataset hashes, preset) is written into the run folder, and a summary names the loss first ->
    last, the folder, the last checkpoint, the log and the wall time. The exit code is ms-swift's. A GRPO preset
    (qwen2_5_vl_7b_grpo, tiny_cpu_grpo) needs a `plates build --grpo` dataset; its summary adds the reward, total
    and per reward function, first -> last, and the manifest records the rewards and weights.

    examples:
      plates train --preset qwen2_5_vl_7b_lora --dataset data/ --gpus 0,1,2,3 --model-parallel
      plates train --preset qwen2_5_vl_7b_lora_deepspeed --dataset data/ --set deepspeed=zero3
      plates train --preset tiny_cpu --model tiny/ --dataset data/ --dry-run
      plates train --preset qwen2_5_vl_7b_grpo --dataset grpo_data/ --adapters output/v0-…/checkpoint-600
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
                      master_port=args.master_port, output_dir=args.output_dir, large_dataset=args.large_dataset,
                      adapters=args.adapters)
    import sys

    for note in plan.notes:
        print(f"plates train: note: {note}", file=sys.stderr)
    if args.dry_run:
        print(swift_cli.format_command(swift_cli.redact_argv(plan.argv), swift_cli.redact_env(plan.env)))
        return 0
    check_launchable(plan)
    result = run_plan(plan, verbose=args.verbose)
    print(result.summary())
    return result.code


COMMANDS = {"train": (_configure, _run, "fine-tune with ms-swift (swift sft, or swift rlhf for GRPO) from a preset; "
                                        "--dry-run prints it")}
