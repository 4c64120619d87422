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
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from plates import swift_cli
from plates.contracts import DATASET_FILES, dataset_file
from plates.decoding import DEFAULT_MODE, record_decoding
from plates.errors import UserError
from plates.grounding import BBOX_TAG, mapper_for_command
from plates.inference import ALL_OPTIONS, InferenceSettings
from plates.io import guard_outputs, iter_jsonl
from plates.labels import PLATE_BOX
from plates.outputs import input_path, output_file
from plates.runs import checkpoint_dir
from plates.student import for_dataset, for_run
from plates.swift_infer import build_infer_command, trained_val_files


def count_samples(path: Path) -> int:
    errors: list[str] = []
    count = sum(1 for _ in iter_jsonl(path, errors))
    if errors:
        raise UserError(f"{path}: {errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return count


def infer_inputs(adapters: str | None = None, model: str | None = None, dataset: str | None = None,
                 **_: Any) -> list[tuple[str, Path]]:
    """What `plates infer` reads, for :func:`plates.io.guard_outputs`: the dataset file and its folder, the
    checkpoint and model folders, and (with --adapters alone) the validation set the run trained with."""
    inputs: list[tuple[str, Path]] = []
    if dataset:
        folder = Path(dataset).expanduser()
        if folder.is_dir():  # the dataset's files, not the folder: results may be written beside them
            inputs += [("--dataset", folder / name) for name in DATASET_FILES if (folder / name).is_file()]
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
    with open(produced, encoding="utf-8", errors="replace") as handle:
        if PLATE_BOX is None or not any(PLATE_BOX in line or BBOX_TAG in line for line in handle):
            return None
    mapper = mapper_for_command(argv, env, settings.adapters, settings.model)
    source = dataset_file(dataset) if dataset else next(iter(trained_val_files(
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
