"""`plates export`: merge (or quantise) a LoRA checkpoint with `swift export`, and prove the result answers as the
checkpoint did.

Why the proof: ms-swift users report merges that turn 87% accuracy into 45%, and vision-LoRA checkpoints that vLLM
cannot load. ``--verify N`` answers N validation images twice with greedy decoding, once with the adapter
checkpoint and once with the exported model (both as `plates predict` answers them, :mod:`plates.engine_answers`,
i.e. `swift infer`), and lists every answer that differs: a merge must give identical answers, a quantised model
shows what it changes.

The export also records the generation settings ms-swift applies at inference but does not save with a model, so
another server (vLLM, transformers, `plates serve --model`) answers like `swift infer` did:

* ``plates_generation.json``: template, the system prompt (the run's ``--system`` text, else the template's
  default), the training run's ``max_pixels``, the question the run was trained with (:func:`plates.student.for_run`),
  greedy decoding, where it came from;
* the image processor's pixel cap (``processor_config.json`` / ``preprocessor_config.json``) set to the training
  run's ``max_pixels``, which is what vLLM and transformers read;
* the training run's plates manifest, copied alongside.

Quantisation (``--quant awq|gptq|fp8|bnb --bits N``) is passed through to `swift export`; it needs a CUDA GPU and is
refused on a machine without one (``--dry-run`` still prints the command). AWQ and GPTQ calibrate on a dataset:
``--calibration`` (default: the run's training set).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from plates import swift_cli
from plates.answer_lines import PredictSummary
from plates.contracts import TINY_MARKER, dataset_file
from plates.engine_answers import answer_images, prepare_engine
from plates.errors import UserError
from plates.image_inputs import check_image, collect_inputs
from plates.inference import InferenceSettings
from plates.io import check_output_dir, iter_jsonl, read_jsonl, write_json
from plates.launch import stop_on_signals
from plates.outputs import input_path, output_dir
from plates.runs import checkpoint_dir, checkpoint_max_pixels, find_manifest
from plates.student import for_run

QUANT_METHODS = ("awq", "gptq", "fp8", "bnb")
QUANT_BITS = {"awq": (4,), "gptq": (2, 3, 4, 8), "bnb": (4, 8), "fp8": (8,)}
GENERATION_FILE = "plates_generation.json"
VERIFY_FILE = "plates_verify.json"


def _run_args(checkpoint: Path) -> dict[str, Any]:
    """ms-swift's record of the training run (``args.json`` beside or above the checkpoint)."""
    for folder in (checkpoint, checkpoint.parent):
        path = folder / "args.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return {}
    return {}


def default_system(template: str | None) -> str | None:
    """The system prompt ms-swift's template adds when a request has none."""
    if not template:
        return None
    try:
        from swift.template import TEMPLATE_MAPPING

        return TEMPLATE_MAPPING[template].default_system
    except Exception:  # noqa: BLE001 - an unknown template or another ms-swift layout: nothing to record
        return None


def has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def build_export_command(adapters: str, output_dir: str | None = None, *, quant: str | None = None,
                         bits: int | None = None, calibration: str | None = None,
                         overrides: list[str] | None = None) -> tuple[list[str], Path, Path]:
    """argv for `swift export`, the target folder and the resolved checkpoint."""
    ckpt = checkpoint_dir(adapters)
    if quant and bits is None:
        bits = 8 if quant == "fp8" else 4
    suffix = f"-{quant}{bits}" if quant else "-merged"
    target = Path(output_dir).expanduser().resolve() if output_dir else ckpt.parent / f"{ckpt.name}{suffix}"
    check_output_dir(target, "-o")
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} already exists; choose another -o or remove it")
    options: dict[str, Any] = {"adapters": [str(ckpt)], "merge_lora": True, "output_dir": str(target)}
    if bits is not None and not quant:
        raise UserError("--bits needs --quant (awq, gptq, fp8 or bnb)")
    if quant:
        if quant not in QUANT_METHODS:
            raise UserError(f"unknown --quant {quant!r}; choose from {', '.join(QUANT_METHODS)}")
        if bits not in QUANT_BITS[quant]:
            raise UserError(f"--quant {quant} takes --bits {' or '.join(map(str, QUANT_BITS[quant]))}, not {bits}")
        options["quant_method"] = quant
        if quant != "fp8":
            options["quant_bits"] = bits
        if quant in ("awq", "gptq"):
            data = calibration or next(iter(_run_args(ckpt).get("dataset") or []), None)
            if not data:
                raise UserError(f"--quant {quant} calibrates on a dataset: pass --calibration DATA_DIR/train.jsonl")
            options["dataset"] = [str(data)]
    elif calibration:
        raise UserError("--calibration is for --quant awq/gptq")
    values, raw = swift_cli.parse_overrides(overrides)
    options = swift_cli.resolve_options("export", {**options, **values}, raw)
    return [*swift_cli.swift_command(), "export", *swift_cli.options_to_argv(options)], target, ckpt


def record_generation_settings(target: Path, checkpoint: Path, *, quant: str | None = None,
                               bits: int | None = None) -> dict[str, Any]:
    """Write ``plates_generation.json``, the manifest copy and the processor's pixel cap into ``target``."""
    args = _run_args(checkpoint)
    template = args.get("template")
    max_pixels = checkpoint_max_pixels(checkpoint) or args.get("max_pixels")
    contract = for_run(checkpoint)
    settings = {"template": template, "system": contract.system or args.get("system") or default_system(template),
                "max_pixels": max_pixels, "prompt": contract.question(), "temperature": 0,
                "merged_from": str(checkpoint), "base_model": args.get("model"),
                "quant": {"method": quant, "bits": bits} if quant else None}
    write_json(target / GENERATION_FILE, settings)
    manifest = find_manifest(checkpoint)
    if manifest is not None:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["merged_from"] = str(checkpoint)
        write_json(target / manifest.name, data)
    if max_pixels:
        for name in ("processor_config.json", "preprocessor_config.json"):
            path = target / name
            if not path.is_file():
                continue
            config = json.loads(path.read_text(encoding="utf-8"))
            processor = config.get("image_processor", config)
            if isinstance(processor.get("size"), dict) and "longest_edge" in processor["size"]:
                processor["size"]["longest_edge"] = int(max_pixels)
            if "max_pixels" in processor:
                processor["max_pixels"] = int(max_pixels)
            write_json(path, config)
    if template:
        marker = target / TINY_MARKER
        if not marker.exists():  # `plates infer/serve --model` read the template from here
            write_json(marker, {"template": template, "exported": True})
    return settings


# ---- verification ----------------------------------------------------------------------------------------------

def verify_images(checkpoint: Path, dataset: str | None, n: int) -> list[str]:
    """The first ``n`` images of the verification set (default: the run's validation set)."""
    if dataset is None:
        candidates = _run_args(checkpoint).get("val_dataset") or []
        if not candidates:
            raise UserError("--verify needs images: pass --verify-dataset DATA_DIR/val.jsonl (the run records none)")
        dataset = candidates[0]
    path = dataset_file(dataset)
    images: list[str] = []
    root = os.environ.get("ROOT_IMAGE_DIR")
    for _, sample in iter_jsonl(path):
        for image in (sample.get("images") or []) if isinstance(sample, dict) else []:
            image = image.get("path") if isinstance(image, dict) else image
            if isinstance(image, str):
                if not os.path.isabs(image):
                    image = os.path.join(root or str(path.parent), image)
                if image not in images:
                    images.append(image)
        if len(images) >= n:
            break
    if not images:
        raise UserError(f"{path}: no images to verify with")
    return images[:n]


def check_verify_images(images: list[str], flag: str) -> None:
    """Refuse, before the merge, verification images that cannot be answered (missing, unreadable, not an image):
    found after the merge, they would leave an export the re-run then refuses to overwrite."""
    problems = []
    for image in images:
        found = check_image(image)
        if found is not None:
            problems.append(f"{image}: {found[0]}")
    if problems:
        raise UserError(f"{flag}: {len(problems)} of the {len(images)} verification images cannot be answered "
                        f"(first: {problems[0]}); fix them or pass another --verify-dataset (nothing was exported)")


def verify_export(checkpoint: Path, target: Path, images: list[str], *, max_new_tokens: int = 512,
                  decoding: str = "schema", backend: str = "transformers", max_pixels: int | None = None,
                  batch_size: int | None = None) -> dict[str, Any]:
    """Answer ``images`` with the checkpoint and with the export (greedy), and list the answers that differ."""
    template = _run_args(checkpoint).get("template")
    common = InferenceSettings(decoding=decoding, backend=backend, max_new_tokens=max_new_tokens,
                               max_pixels=max_pixels, batch_size=batch_size, overrides=["temperature=0"])
    candidates, rejected = collect_inputs(images)
    if rejected:
        raise UserError(f"--verify: {len(rejected)} verification images cannot be read")
    answers: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="plates-verify-") as scratch, stop_on_signals():
        for name, settings in (("adapter", common.replace(adapters=str(checkpoint))),
                               ("export", common.replace(model=str(target), template=template))):
            workdir = Path(scratch) / name
            workdir.mkdir()
            out = workdir / "answers.jsonl"
            print(f"plates export: verify: answering {len(images)} images with the {name}", file=sys.stderr)
            notes: list[str] = []
            engine = prepare_engine(settings, workdir, workdir / "swift-infer.log", chunk_size=max(1, len(images)),
                                    notes=notes)
            for note in dict.fromkeys(notes):
                print(f"plates export: verify: note: {note}", file=sys.stderr)
            answer_images(engine, candidates, [], workdir / "rejects.jsonl", out, PredictSummary(out=str(out)))
            answers[name] = {line["image"]: line["response"] for line in read_jsonl(out)}
    differing = [{"image": image, "adapter": answers["adapter"].get(image), "export": answers["export"].get(image)}
                 for image in answers["adapter"] if answers["adapter"].get(image) != answers["export"].get(image)]
    return {"images": len(answers["adapter"]), "differing": len(differing), "differences": differing,
            "decoding": decoding, "max_new_tokens": max_new_tokens, "temperature": 0}


# ---- CLI -------------------------------------------------------------------------------------------------------

def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapters", required=True, help="LoRA checkpoint from `plates train` (or its run folder)",
                        type=input_path())
    parser.add_argument("-o", "--output-dir", help="folder for the exported model (default: CHECKPOINT-merged)",
                        type=output_dir())
    parser.add_argument("--quant", choices=QUANT_METHODS, help="also quantise (GPU only): awq, gptq, fp8 or bnb")
    parser.add_argument("--bits", type=int, help="quantisation bits (awq 4; gptq 2/3/4/8; bnb 4/8; fp8 8)")
    parser.add_argument("--calibration", metavar="DATASET", type=input_path(),
                        help="calibration data for awq/gptq (default: the run's training set)")
    parser.add_argument("--verify", type=int, default=0, metavar="N",
                        help="answer N validation images with the checkpoint and the export and report differences")
    parser.add_argument("--verify-dataset", metavar="DATASET", type=input_path(),
                        help="dataset JSONL whose images --verify uses (default: the run's validation set)")
    InferenceSettings.add_arguments(parser, max_new_tokens=512, include=("max_new_tokens", "decoding"),
                                    purpose=" (for --verify)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="any other `swift export` argument, checked against the installed ms-swift")
    parser.add_argument("--dry-run", action="store_true", help="print the command line; run nothing")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="stream ms-swift's whole output here (it always goes to EXPORT.swift-export.log beside "
                             "the exported folder)")


def _run(args: argparse.Namespace) -> int:
    """Merge a LoRA checkpoint into its base model (`swift export --merge_lora true`), optionally quantise it, record
    the generation settings beside it, and with --verify N prove it answers N validation images exactly as the
    checkpoint did (greedy decoding; any differing answer is listed, and fails a plain merge with exit 1).

    examples:
      plates export --adapters output/v0-…/checkpoint-300 --verify 20
      plates export --adapters RUN --quant awq --bits 4 --verify 50      # GPU only
    """
    if args.verify < 0:
        raise UserError("--verify takes a number of images (0: no verification)")
    argv, target, ckpt = build_export_command(args.adapters, args.output_dir, quant=args.quant, bits=args.bits,
                                              calibration=args.calibration, overrides=args.overrides)
    images = verify_images(ckpt, args.verify_dataset, args.verify) if args.verify else []
    check_verify_images(images, f"--verify-dataset {args.verify_dataset}" if args.verify_dataset else "--verify")
    if args.dry_run:
        print(swift_cli.format_command(swift_cli.redact_argv(argv)))
        if args.quant and not has_cuda():
            print(f"plates export: note: --quant {args.quant} needs a CUDA GPU; this machine has none",
                  file=sys.stderr)
        return 0
    if args.quant and not has_cuda():
        raise UserError(f"--quant {args.quant} runs on a CUDA GPU only and this machine has none (torch sees no "
                        "CUDA device); merge here without --quant, or run it on a GPU machine (--dry-run shows "
                        "the command)")
    log_path = target.parent / f"{target.name}.swift-export.log"
    code = swift_cli.run_swift(argv, log_path=log_path, verbose=args.verbose, who="plates export").code
    if code != 0:
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() and not any(target.iterdir()) else None
        return code
    settings = record_generation_settings(target, ckpt, quant=args.quant, bits=args.bits)
    print(f"exported model: {target}  (ms-swift log: {log_path})")
    print(f"  generation settings: template {settings['template']}, max_pixels {settings['max_pixels']}, "
          f"system {settings['system']!r} -> {target / GENERATION_FILE}")
    if not images:
        return 0
    report = verify_export(ckpt, target, images, max_new_tokens=args.max_new_tokens, decoding=args.decoding)
    write_json(target / VERIFY_FILE, report)
    print(f"verify: {report['images']} images answered by the checkpoint and the export, "
          f"{report['differing']} differing answers -> {target / VERIFY_FILE}")
    for diff in report["differences"][:5]:
        print(f"  {diff['image']}\n    adapter: {diff['adapter']!r:.200}\n    export:  {diff['export']!r:.200}")
    if report["differing"] and not args.quant:
        print("verify: a merge should not change any greedy answer; do not deploy this export", file=sys.stderr)
        return 1
    return 0


COMMANDS = {"export": (_configure, _run, "merge (or quantise) a LoRA checkpoint, record its settings, --verify it")}
