"""`plates predict`: read new, unlabelled images with a trained model and write one JSON answer per image.

Inputs are image files, folders (searched recursively, any file names: no labels needed) or a records JSONL
(`plates parse` output, or any JSONL whose lines carry an ``image`` path). Every input file is accounted for:
it is answered (a line in ``OUT``) or rejected with a reason (a line in ``OUT.rejects.jsonl``: not an image,
unreadable, corrupt), so ``answered + rejected = files``.

Output (append-only JSONL, one line per image)::

    {"key": "…", "image": "/abs/path.jpg", "sha256": "…", "answer": {normalised answer} | null,
     "response": "raw model text", "parse_method": "json", "schema_valid": true, "violations": [],
     "confidence": {"车辆品牌": 0.93, …} | null, "settings": "…"}

Answers come from ms-swift (:mod:`plates.engine_answers`), not a model loop of ours: the pending images are one temporary dataset JSONL handed
to one `swift infer` (the command `plates infer` builds, so generation options, the adapter's max_pixels and
decoding are identical; the model is loaded once per run, at most every 100,000 images), which writes its results
every ``--chunk-size`` answers (``write_batch_size``). A thread reads them as they are written, matches each to
its image by path, and appends and fsyncs them, keyed by image path + content hash; a re-run reads the keys
present, cuts a torn last line, and answers only what is missing. A crash, Ctrl-C, SIGTERM or SIGKILL therefore
loses at most one chunk and never duplicates an image. ``settings`` fingerprints what decides the answers (model, adapter, decoding,
token and pixel caps); a re-run with other settings into the same file is refused rather than mixed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from plates import predict_endpoint, swift_cli
from plates.answer_lines import PredictSummary
from plates.decoding import MODES as DECODINGS
from plates.dump import default_rejects_path
from plates.engine_answers import answer_images, prepare_engine
from plates.errors import UserError
from plates.image_inputs import collect_inputs
from plates.inference import InferenceSettings
from plates.io import check_output_file, guard_outputs, write_json
from plates.launch import Nodes, add_distributed_arguments, stop_on_signals
from plates.outputs import input_path, output_file

DEFAULT_CHUNK = 256
DEFAULT_MAX_NEW_TOKENS = 512


# ---- the run -------------------------------------------------------------------------------------------------

class PredictInterrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during a run: the engine was stopped, what was answered is kept."""

    def __init__(self, signum: int, summary: "PredictSummary"):
        super().__init__(signum)
        self.signum, self.summary = signum, summary


def run_predict(inputs: list[str], output: str | os.PathLike, settings: InferenceSettings | None = None, *,
                chunk_size: int = DEFAULT_CHUNK, rejects: str | os.PathLike | None = None, dry_run: bool = False,
                nodes: Nodes | None = None, verbose: bool = False, grounding: bool | None = None,
                **values: Any) -> PredictSummary:
    """Answer every image in ``inputs`` into ``output`` (resumable), rejects into ``rejects``. ``settings`` (or
    its fields as keywords; predict's answer cap defaults to 512 tokens) say what answers and how, ``nodes``
    how the run spreads over GPUs and machines. ``grounding`` asks for plate boxes and maps them to original
    pixels (:mod:`plates.grounding`); None: when the adapter's run trained on a `plates build --grounding` set.
    Each image is asked with the run's question and system text (:func:`plates.student.for_run`)."""
    settings = InferenceSettings.of(settings or InferenceSettings(max_new_tokens=DEFAULT_MAX_NEW_TOKENS), **values)
    nodes = nodes or Nodes()
    adapters, model, decoding = settings.adapters, settings.model, settings.decoding
    if not adapters and not model:
        raise UserError("pass --adapters CHECKPOINT (a fine-tuned run) or --model MODEL")
    if decoding not in DECODINGS:
        raise UserError(f"unknown --decoding {decoding!r}; choose {' or '.join(DECODINGS)}")
    if chunk_size < 1:
        raise UserError("--chunk-size must be at least 1")
    output = Path(output).expanduser().absolute()
    rejects = Path(rejects).expanduser().absolute() if rejects else default_rejects_path(output)
    guard_outputs([("INPUT", p) for p in inputs],
                  {"-o": (output, "predict"), "--rejects": (rejects, "predict-rejects")}, command="predict")
    log_path = output.with_name(f"{output.stem}.swift-infer.log")
    check_output_file(log_path, "the ms-swift log")

    notes: list[str] = []
    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="plates-predict-"))
    summary = PredictSummary(out=str(output))
    try:
        engine = prepare_engine(settings, workdir, log_path, chunk_size=chunk_size, nodes=nodes, grounding=grounding,
                                dry_run=dry_run, notes=notes)
        for note in dict.fromkeys(notes):
            print(f"plates predict: note: {note}", file=sys.stderr)
        candidates, rejected = collect_inputs(inputs, exclude=(output, rejects, log_path))
        summary = PredictSummary(out=str(output), files=len(candidates) + len(rejected), images=len(candidates),
                                 rejected=len(rejected))
        summary.reject_codes.update(r["code"] for r in rejected)
        if dry_run:
            print(swift_cli.format_command(swift_cli.redact_argv(engine.argv), swift_cli.redact_env(engine.env)))
            print(f"plates predict: would answer {len(candidates)} images with one `swift infer` (the model loaded "
                  f"once), appending and fsyncing answers every {chunk_size} images; {len(rejected)} rejected",
                  file=sys.stderr)
            return summary
        with stop_on_signals():
            try:
                answer_images(engine, candidates, rejected, rejects, output, summary, verbose)
            except KeyboardInterrupt as exc:
                signum = getattr(exc, "signum", None)
                raise PredictInterrupted(signum if isinstance(signum, int) else signal.SIGINT, summary) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        summary.seconds = time.monotonic() - start
    return summary


# ---- CLI -----------------------------------------------------------------------------------------------------

def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", type=input_path(),
                        help="image files, folders (searched recursively, any names) or a records JSONL")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", type=output_file("predict"),
                        help="answers JSONL (appended to; a re-run continues where it stopped)")
    source = InferenceSettings.add_arguments(parser, command="infer", max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
                                             unit="images", helps={"gpus": (
                                                 "GPUs to use, e.g. 0,1,2,3: one ms-swift process per GPU, each "
                                                 "answering its share (data parallel; sets CUDA_VISIBLE_DEVICES and "
                                                 "NPROC_PER_NODE)")})
    predict_endpoint.add_arguments(parser, source)
    parser.add_argument("--rejects", metavar="PATH", help="default: OUT with .rejects.jsonl",
                        type=output_file("predict-rejects", derive=lambda args: default_rejects_path(Path(args.output))))
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK,
                        help=f"answers are appended and fsynced every N images, so a kill loses at most N "
                             f"(ms-swift's write_batch_size; default {DEFAULT_CHUNK}); the model is loaded once "
                             "per run whatever N")
    add_distributed_arguments(parser, model_parallel_help="with several --gpus: one process spreading the model over "
                                                          "them (transformers) or vLLM tensor parallel, for a model "
                                                          "too large for one GPU")
    parser.add_argument("--grounding", choices=("auto", "on", "off"), default="auto",
                        help="ask for plate boxes (车牌位置) and map them to original pixels; auto: when the "
                             "adapter's run trained on a `plates build --grounding` set (default)")
    parser.add_argument("--summary", metavar="PATH", help="also write the summary as JSON",
                        type=output_file("predict-summary"))
    parser.add_argument("--dry-run", action="store_true", help="check the inputs and print the launch; answer nothing")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="stream ms-swift's whole output here (it always goes to OUT-STEM.swift-infer.log "
                             "beside -o)")


def _run(args: argparse.Namespace) -> int:
    """Answer new, unlabelled images with a trained model: one JSON line per image (the normalised answer, the raw
    response, schema validity and violations, per-field confidence with --logprobs). Unreadable, non-image and
    corrupt files go to OUT.rejects.jsonl with a reason. One `swift infer` answers every pending image (the model
    is loaded once); answers are appended every --chunk-size images. Interrupted runs (Ctrl-C, SIGTERM, a kill)
    continue where they stopped: re-run the same command (each image is answered exactly once).

    examples:
      plates predict /data/new_images -o preds.jsonl --adapters output/v0-…/checkpoint-300
      plates predict records.jsonl -o preds.jsonl --adapters RUN --logprobs     # then: plates audit
      plates predict /data/new_images -o preds.jsonl --endpoint http://gpu1:8000/v1 --endpoint http://gpu2:8000/v1
      plates predict /data/new_images -o preds.jsonl --model MERGED --gpus 0,1,2,3
      plates predict /shared/images -o /shared/preds.jsonl --model MERGED --gpus 0,1,2,3 \\
          --nnodes 2 --node-rank 0 --master-addr 10.0.0.1      # and --node-rank 1 on the second machine
    """
    if args.endpoint:
        if args.grounding == "on":
            raise UserError("--grounding on works with --adapters/--model (ms-swift answers here), not --endpoint")

        return predict_endpoint.run(args)
    if getattr(args, "prompt_from", None):
        raise UserError("--prompt-from is for --endpoint; with --adapters/--model the question comes from that run")
    try:
        summary = run_predict(args.inputs, args.output, InferenceSettings.from_args(args), chunk_size=args.chunk_size,
                              rejects=args.rejects, dry_run=args.dry_run, nodes=Nodes.from_args(args),
                              verbose=args.verbose, grounding={"on": True, "off": False}.get(args.grounding))
    except PredictInterrupted as stop:
        name = signal.Signals(stop.signum).name if stop.signum in set(signal.Signals) else str(stop.signum)
        print(f"plates predict: stopped by {name}; {stop.summary.answered} new answers kept in {stop.summary.out} "
              "(re-run the same command to answer the rest)", file=sys.stderr)
        return 128 + int(stop.signum)
    if args.summary and not args.dry_run:
        write_json(args.summary, summary.to_dict())
    if not args.dry_run:
        print(summary.format(), file=sys.stderr)
    return 0


COMMANDS = {"predict": (_configure, _run, "answer new, unlabelled images (files, folders, records) -> JSONL answers")}
