"""The `swift infer` command plates runs, shared by `plates infer`, `predict`, `serve` and `export`'s check: what
answers (a LoRA checkpoint, a local model folder or a hub id, with the template and pixel cap its run used), the
generation caps, and the whole argv and environment of `swift infer` (:func:`build_infer_command`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from plates import swift_cli
from plates.contracts import TINY_MARKER, dataset_file, dataset_image_root
from plates.decoding import check_dataset, decoding_options
from plates.errors import UserError
from plates.inference import BACKENDS, InferenceSettings
from plates.runs import checkpoint_dir, checkpoint_max_pixels


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
        for path in [dataset_file(dataset)] if dataset else trained_val_files(options.get("adapters")):
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


def trained_val_files(adapters: list[str] | None) -> list[Path]:
    """The validation files a checkpoint's run trained with (ms-swift's ``args.json``), when they still exist."""
    if not adapters:
        return []
    try:
        names = json.loads((Path(adapters[0]) / "args.json").read_text(encoding="utf-8")).get("val_dataset") or []
    except (OSError, ValueError):
        return []
    return [Path(n) for n in names if isinstance(n, str) and Path(n).is_file()]
