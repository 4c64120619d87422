"""`plates infer`: run `swift infer` the way the pipeline needs it (`plates export` lives in plates.export).

`plates infer` leaves a results file that `plates eval` reads directly (one line per sample, in dataset order,
with ``response`` and ``labels``). It smooths over what ms-swift leaves to the user: ``--result_path`` appends to
an existing file (we write to a fresh temporary path and move it into place), ``max_pixels`` is not saved with a
checkpoint (we read it back from the plates run manifest), ``pt`` is now ``transformers``, and vLLM cannot apply
a LoRA that also adapted the vision tower (we say so before loading anything).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from plates import swift_cli
from plates.contracts import dataset_image_root
from plates.errors import UserError
from plates.inference import ALL_OPTIONS, BACKENDS, DEFAULT_MAX_NEW_TOKENS, InferenceSettings  # noqa: F401
from plates.outputs import input_path, output_file
from plates.runs import last_checkpoint, read_manifest
from plates.student import for_dataset, for_run
from plates.tiny_model import MARKER as TINY_MARKER
from plates.io import guard_outputs, iter_jsonl



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


def adapter_parts(checkpoint: str | os.PathLike) -> dict[str, int]:
    """How many LoRA tensors a checkpoint holds for the language model and for the vision tower."""
    from safetensors import safe_open

    path = Path(checkpoint) / "adapter_model.safetensors"
    if not path.is_file():
        raise UserError(f"{checkpoint}: no adapter_model.safetensors")
    counts = {"language_model": 0, "vision_tower": 0, "other": 0}
    with safe_open(str(path), "pt") as handle:
        for key in handle.keys():
            if "lora_" not in key:
                continue
            if re.search(r"\.visual\.|vision_tower|vision_model", key):
                counts["vision_tower"] += 1
            elif re.search(r"language_model|\.layers\.\d+\.", key):
                counts["language_model"] += 1
            else:
                counts["other"] += 1
    return counts


def checkpoint_max_pixels(checkpoint: str | os.PathLike) -> int | None:
    """The max_pixels a run trained with, from its plates manifest (ms-swift does not save it)."""
    manifest = read_manifest(checkpoint)
    return manifest.max_pixels if manifest is not None and manifest.max_pixels else None


def dataset_file(dataset: str | os.PathLike) -> Path:
    path = Path(dataset).expanduser().resolve()
    if path.is_dir():
        path = path / "val.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: no such dataset file (pass a JSONL or a `plates build` folder with val.jsonl)")
    return path


def count_samples(path: Path) -> int:
    errors: list[str] = []
    count = sum(1 for _ in iter_jsonl(path, errors))
    if errors:
        raise UserError(f"{path}: {errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return count


def exported_setting(model_dir: Path, key: str) -> Any:
    """A generation setting `plates export` recorded beside a merged model (``plates_generation.json``)."""
    try:
        return json.loads((model_dir / "plates_generation.json").read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def model_source(adapters: str | None, model: str | None, backend: str, *, max_pixels: int | None,
                 template: str | None, notes: list[str], command: str) -> tuple[dict[str, Any], int | None]:
    """The ms-swift options naming what answers (``adapters`` or ``model``, ``template``) and the pixel cap it
    was trained with, shared by `plates infer`, `predict` and `serve` so they load a checkpoint the same way:
    a LoRA checkpoint (refused for vLLM when it adapted the vision tower), a local model folder (made
    absolute; a tiny model brings its template; an export or run brings its max_pixels) or a hub id."""
    options: dict[str, Any] = {}
    if adapters:
        ckpt = checkpoint_dir(adapters)
        options["adapters"] = [str(ckpt)]
        if backend == "vllm" and adapter_parts(ckpt)["vision_tower"]:
            raise UserError(
                "vLLM applies LoRA to the language model only, and this checkpoint also adapted the vision tower "
                f"(freeze_vit false). Merge it first: `plates export --adapters {ckpt} -o MERGED`, then "
                f"`plates {command} --model MERGED --backend vllm …`")
        if max_pixels is None:
            max_pixels = checkpoint_max_pixels(ckpt)
            if max_pixels:
                notes.append(f"max_pixels {max_pixels} from the training run's manifest")
    if model:
        options["model"] = model
        model_dir = Path(model).expanduser()
        if model_dir.is_dir():
            options["model"] = str(model_dir.resolve())
            marker = model_dir / TINY_MARKER
            if template is None and marker.is_file():
                template = json.loads(marker.read_text(encoding="utf-8")).get("template")
            if max_pixels is None:
                max_pixels = exported_setting(model_dir, "max_pixels") or checkpoint_max_pixels(model_dir)
    if template:
        options["template"] = template
    return options, max_pixels


def generation_caps(max_new_tokens: int | None, batch_size: int | None, max_pixels: int | None) -> dict[str, int]:
    """ms-swift's options for the answer length, batch and image caps that `infer`, `predict` and `serve`
    share; a cap below 1 is a user error (ms-swift would fail late or silently ignore it)."""
    for flag, number in (("--max-new-tokens", max_new_tokens), ("--batch-size", batch_size),
                         ("--max-pixels", max_pixels)):
        if number is not None and number < 1:
            raise UserError(f"{flag} must be a positive number, not {number}")
    caps = {"max_new_tokens": max_new_tokens, "max_batch_size": batch_size, "max_pixels": max_pixels}
    return {key: value for key, value in caps.items() if value}


def build_infer_command(settings: InferenceSettings | None = None, *, dataset: str | None, result_path: Path,
                        notes: list[str] | None = None, extra_options: dict[str, Any] | None = None,
                        **values: Any) -> tuple[list[str], dict[str, str]]:
    """Pure-ish: argv and environment for `swift infer` (reads only the checkpoint's own files).

    ``settings`` (or the same fields as keywords) say what answers and how; ``settings.decoding`` is ``schema``
    (answers constrained to the answer schema, see :mod:`plates.decoding`) or ``free``. ``extra_options`` are
    ms-swift options the caller owns (`plates predict`'s ``write_batch_size``); `--set` may not repeat them."""
    from plates.decoding import check_dataset, decoding_options
    s = InferenceSettings.of(settings, **values)
    if not s.adapters and not s.model:
        raise UserError("pass --adapters CHECKPOINT (a fine-tuned run) or --model MODEL (the base model)")
    if s.backend not in BACKENDS:
        raise UserError(f"unknown backend {s.backend!r}; choose from {', '.join(sorted(BACKENDS))}")
    backend = s.swift_backend
    notes = notes if notes is not None else []
    options, max_pixels = model_source(s.adapters, s.model, backend, max_pixels=s.max_pixels, template=s.template,
                                       notes=notes, command="infer")
    if dataset:
        options["val_dataset"] = [str(dataset_file(dataset))]
    elif s.adapters:
        options["load_data_args"] = True
    else:
        raise UserError("--dataset is required with --model (the JSONL to answer, e.g. DATA_DIR/val.jsonl)")
    decode_options, decode_env = decoding_options(s.decoding, backend)
    if decode_options:
        for path in [dataset_file(dataset)] if dataset else _trained_val_files(options.get("adapters")):
            check_dataset(path)
    options["infer_backend"] = backend
    options["stream"] = False
    if s.logprobs:
        options["logprobs"] = True  # per generated token; `plates eval` turns them into field confidences
    options.update(generation_caps(s.max_new_tokens, s.batch_size, max_pixels))
    options.update(extra_options or {})
    options["result_path"] = str(result_path)

    values, raw = swift_cli.parse_overrides(s.overrides)
    check_infer_overrides(values, options)
    merged = {**options, **decode_options, **values}
    if "external_plugins" in decode_options and "external_plugins" in values:
        merged["external_plugins"] = swift_cli.with_plugins(values["external_plugins"],
                                                            *decode_options["external_plugins"])
    options = swift_cli.resolve_options("infer", merged, raw, notes=notes)
    env: dict[str, str] = dict(decode_env)
    if dataset and "ROOT_IMAGE_DIR" not in os.environ:
        image_root = dataset_image_root(dataset_file(dataset).parent)
        if image_root:
            env["ROOT_IMAGE_DIR"] = image_root
    if max_pixels:
        env["MAX_PIXELS"] = str(max_pixels)
    if s.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(swift_cli.parse_gpus(s.gpus))
    return [*swift_cli.swift_command(), "infer", *swift_cli.options_to_argv(options)], env


def check_infer_overrides(values: dict[str, Any], options: dict[str, Any]) -> None:
    """`--set` must not silently fight plates' own handling: result_path would bypass the results file
    plates writes (-o), and a key plates already set from a flag (model, adapters, val_dataset, …) would be
    given twice."""
    if not values:
        return
    fields = swift_cli.argument_fields("infer")
    for name in values:
        key = swift_cli.canonical_name(name, fields)[0]
        if key == "result_path":
            raise UserError("--set result_path bypasses plates' own results handling; use -o FILE")
        if key in options and key not in ("infer_backend", "stream"):
            flag = {"model": "--model", "adapters": "--adapters", "val_dataset": "--dataset",
                    "max_batch_size": "--batch-size", "max_pixels": "--max-pixels", "template": "--template",
                    "max_new_tokens": "--max-new-tokens", "load_data_args": "--adapters",
                    "write_batch_size": "--chunk-size"}.get(key, key)
            raise UserError(f"`{key}` is given twice (--set {name}=… and {flag}); give it once")


def infer_inputs(adapters: str | None = None, model: str | None = None, dataset: str | None = None,
                 **_: Any) -> list[tuple[str, Path]]:
    """What `plates infer` reads, for :func:`plates.io.guard_outputs`: the dataset file and its folder, the
    checkpoint and model folders, and (with --adapters alone) the validation set the run trained with."""
    from plates.build import _OUTPUT_NAMES

    inputs: list[tuple[str, Path]] = []
    if dataset:
        folder = Path(dataset).expanduser()
        if folder.is_dir():  # the dataset's files, not the folder: results may be written beside them
            inputs += [("--dataset", folder / name) for name in _OUTPUT_NAMES if (folder / name).is_file()]
        else:
            inputs.append(("--dataset", folder))
    for flag, folder in (("--adapters", adapters), ("--model", model)):
        if folder and Path(folder).expanduser().is_dir():
            inputs.append((flag, Path(folder).expanduser()))
    if adapters and not dataset:
        with contextlib.suppress(UserError, OSError, ValueError, AttributeError):
            args = json.loads((checkpoint_dir(adapters) / "args.json").read_text(encoding="utf-8"))
            inputs += [("the run's val_dataset", Path(p)) for p in args.get("val_dataset") or []
                       if isinstance(p, str) and Path(p).is_file()]
    return inputs


def _trained_val_files(adapters: list[str] | None) -> list[Path]:
    """The validation files a checkpoint's run trained with (ms-swift's ``args.json``), when they still exist."""
    if not adapters:
        return []
    try:
        names = json.loads((Path(adapters[0]) / "args.json").read_text(encoding="utf-8")).get("val_dataset") or []
    except (OSError, ValueError):
        return []
    return [Path(n) for n in names if isinstance(n, str) and Path(n).is_file()]


def prompt_notes(settings: InferenceSettings, dataset: str | None) -> list[str]:
    """`plates infer` answers the dataset's own messages; a note when a `plates build` dataset asks with another
    question or system text than the run was trained with (e.g. a set built with another --prompt)."""
    trained = for_run(settings.adapters or settings.model)
    asked = for_dataset(dataset_file(dataset).parent) if dataset else None
    if not trained.recorded or asked is None or (trained.prompt, trained.system) == (asked.prompt, asked.system):
        return []
    return [f"the dataset ({asked.source}) asks with another question or system text than the run was trained "
            f"with ({trained.source}); its samples are answered as written"]


def run_infer(output: str | os.PathLike, settings: InferenceSettings | None = None, *, dataset: str | None = None,
              dry_run: bool = False, verbose: bool = False, **values: Any) -> int:
    """Run `swift infer` into a temporary results path and move it to ``output`` only when it succeeded.
    The terminal shows a samples bar; ms-swift's whole output goes to ``OUTPUT-STEM.swift-infer.log`` beside
    ``output`` (``verbose`` streams it here too)."""
    settings = InferenceSettings.of(settings, **values)
    guard_outputs(infer_inputs(settings.adapters, settings.model, dataset), {"-o": output}, command="infer")
    output = Path(output).expanduser().resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        notes: list[str] = []
        argv, env = build_infer_command(settings, dataset=dataset, result_path=staging / "results.jsonl",
                                        notes=notes)
        notes += prompt_notes(settings, dataset)
        for note in notes:
            print(f"plates infer: note: {note}", file=sys.stderr)
        if dry_run:
            shown = [str(output) if a == str(staging / "results.jsonl") else a for a in argv]
            print(swift_cli.format_command(swift_cli.redact_argv(shown), swift_cli.redact_env(env)))
            return 0
        log_path = output.with_name(f"{output.stem}.swift-infer.log")
        run = swift_cli.run_swift(argv, env, log_path=log_path, verbose=verbose, who="plates infer",
                                  progress=swift_cli.SwiftProgress(bar="", desc="infer", unit="sample"))
        code = run.code
        produced = staging / "results.jsonl"
        if code != 0:
            print(f"plates infer: ms-swift exited with {code}; {output} left untouched", file=sys.stderr)
            return code
        if not produced.is_file():
            raise UserError(f"ms-swift finished but wrote no results (see {log_path})")
        answered = count_samples(produced)
        if dataset:
            expected = count_samples(dataset_file(dataset))
            if answered != expected:
                print(f"plates infer: warning: {answered} results for {expected} samples; ms-swift skipped some, "
                      "so results no longer line up with the dataset by position", file=sys.stderr)
        from plates.decoding import DEFAULT_MODE, record_decoding

        transform = box_transform(produced, dataset, argv, env, settings, answered)
        record_decoding(produced, output, settings.decoding or DEFAULT_MODE, transform=transform)
        print(f"plates infer: {answered} results -> {output} in {run.seconds:.0f} s (ms-swift log: {log_path})",
              file=sys.stderr)
        return 0
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def box_transform(produced: Path, dataset: str | None, argv: list[str], env: dict[str, str],
                  settings: InferenceSettings, answered: int) -> Any:
    """``record_decoding``'s transform when results hold plate boxes (:mod:`plates.grounding`): each answer's
    ``车牌位置`` back to original pixels (the model's text kept in ``raw_response``), ``<bbox>`` tags in the labels
    filled from the dataset's ``objects``; None (rows copied as they are) when no line has a box."""
    from plates.grounding import BBOX_TAG, mapper_for_command
    from plates.labels import PLATE_BOX

    with open(produced, encoding="utf-8", errors="replace") as handle:
        if PLATE_BOX is None or not any(PLATE_BOX in line or BBOX_TAG in line for line in handle):
            return None
    mapper = mapper_for_command(argv, env, settings.adapters, settings.model)
    source = dataset_file(dataset) if dataset else next(iter(_trained_val_files(
        [str(checkpoint_dir(settings.adapters))] if settings.adapters else None)), None)
    samples = None
    if source is not None and count_samples(source) == answered:
        samples = [row for _, row in iter_jsonl(source, [])]
    if mapper.convention is None:
        print("plates infer: warning: cannot tell the model's box convention (pass --template); boxes are left "
              "as the model wrote them", file=sys.stderr)
    else:
        print(f"plates infer: note: boxes mapped to original pixels ({mapper.convention} convention, max_pixels "
              f"{mapper.max_pixels}); the model's text is kept in raw_response", file=sys.stderr)

    def transform(row: dict[str, Any], index: int) -> dict[str, Any]:
        return mapper.row(row, samples[index] if samples is not None and index < len(samples) else None)
    return transform


# ---- CLI ------------------------------------------------------------------------------------------------------

def _configure_infer(parser: argparse.ArgumentParser) -> None:
    InferenceSettings.add_arguments(parser, command="infer", include=("source",))
    parser.add_argument("--dataset", help="JSONL to answer, or a `plates build` folder (uses val.jsonl); default "
                                          "with --adapters: the validation set the run trained with", type=input_path())
    parser.add_argument("-o", "--output", required=True, help="results JSONL to write (replaced atomically)",
                        type=output_file("results"))
    InferenceSettings.add_arguments(parser, command="infer", include=[o for o in ALL_OPTIONS if o != "source"])
    parser.add_argument("--dry-run", action="store_true", help="print the command line; run nothing")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="stream ms-swift's whole output here (it always goes to OUTPUT-STEM.swift-infer.log "
                             "beside -o)")


def _run_infer(args: argparse.Namespace) -> int:
    """Answer a dataset with `swift infer` and write a results JSONL that `plates eval` reads directly
    (one line per sample in dataset order, with `response` and `labels`).

    examples:
      plates infer --adapters output/v0-…/checkpoint-300 --dataset data/ -o results/finetuned.jsonl
      plates infer --model Qwen/Qwen2.5-VL-7B-Instruct --dataset data/val.jsonl -o results/base.jsonl
    """
    return run_infer(args.output, InferenceSettings.from_args(args), dataset=args.dataset, dry_run=args.dry_run,
                     verbose=args.verbose)


COMMANDS = {
    "infer": (_configure_infer, _run_infer, "answer a dataset with ms-swift (swift infer) -> results for plates eval"),
}
