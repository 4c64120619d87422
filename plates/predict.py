"""`plates predict`: read new, unlabelled images with a trained model and write one JSON answer per image.

Inputs are image files, folders (searched recursively, any file names: no labels needed) or a records JSONL
(`plates parse` output, or any JSONL whose lines carry an ``image`` path). Every input file is accounted for:
it is answered (a line in ``OUT``) or rejected with a reason (a line in ``OUT.rejects.jsonl``: not an image,
unreadable, corrupt), so ``answered + rejected = files``.

Output (append-only JSONL, one line per image)::

    {"key": "…", "image": "/abs/path.jpg", "sha256": "…", "answer": {normalised answer} | null,
     "response": "raw model text", "parse_method": "json", "schema_valid": true, "violations": [],
     "confidence": {"车辆品牌": 0.93, …} | null, "settings": "…"}

Answers come from ms-swift, not a model loop of ours: the pending images are one temporary dataset JSONL handed
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
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plates.decoding import MODES as DECODINGS
from plates.errors import UserError
from plates.inference import InferenceSettings
from plates.io import check_output_file, dump_json_line, guard_outputs, iter_jsonl, progress, write_jsonl
from plates.image_inputs import Candidate, collect_inputs, rejects_path
from plates.journal import Journal
from plates.launch import Nodes, stop_on_signals
from plates.outputs import input_path, output_file
from plates.student import EXTRACTION_PROMPT, GROUNDING_PROMPT, StudentContract, for_run

DEFAULT_CHUNK = 256
DEFAULT_MAX_NEW_TOKENS = 512
ENGINE_RUN_IMAGES = 100_000


# ---- answers -------------------------------------------------------------------------------------------------

def describe_answer(response: Any, validator: Any = None) -> dict[str, Any]:
    """The parsed, schema-checked and normalised form of one raw response."""
    from plates.evaluate import parse_response
    from plates.grounding import is_box
    from plates.labels import PLATE_BOX, PLATE_GROUP, VEHICLE_GROUP, answer_from_labels, plates_of_answer
    from plates.schema import answer_validator

    parsed = parse_response(response)
    validator = validator or answer_validator()
    if not parsed.ok:
        return {"answer": None, "parse_method": parsed.method, "schema_valid": False,
                "violations": ["not a JSON object"]}
    value = parsed.value
    violations = sorted(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                        for e in validator.iter_errors(value))
    answer = None
    if isinstance(value, dict):
        vehicle = value.get(VEHICLE_GROUP) if isinstance(value.get(VEHICLE_GROUP), dict) else {}
        plates = plates_of_answer(value)
        answer = answer_from_labels({VEHICLE_GROUP: vehicle, PLATE_GROUP: plates},  # a well-formed box is kept
                                    boxes=[p.get(PLATE_BOX) if is_box(p.get(PLATE_BOX)) else None for p in plates])
    return {"answer": answer, "parse_method": parsed.method, "schema_valid": not violations, "violations": violations}


def _confidences(response: Any, row: dict[str, Any]) -> dict[str, float] | None:
    """Per-field confidence from the token log-probabilities (`plates infer --logprobs`), when kept."""
    logprobs = row.get("logprobs")
    if not logprobs or not isinstance(response, str):
        return None
    try:
        from plates.evaluation.confidence import field_confidences  # issue 12b
    except ImportError:
        try:
            from plates.confidence import field_confidences  # type: ignore[no-redef]
        except ImportError:
            return None
    try:
        return field_confidences(response, logprobs)
    except Exception:  # noqa: BLE001 - a confidence we cannot compute is left out, never fatal
        return None


# ---- the run -------------------------------------------------------------------------------------------------

@dataclass
class PredictSummary:
    out: str
    files: int = 0
    images: int = 0
    rejected: int = 0
    answered: int = 0
    skipped: int = 0
    schema_valid: int = 0
    parsed: int = 0
    chunks: int = 0
    torn_bytes: int = 0
    seconds: float = 0.0
    reject_codes: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in ("out", "files", "images", "rejected", "answered", "skipped",
                                              "schema_valid", "parsed", "chunks", "torn_bytes")}
        return {**data, "seconds": round(self.seconds, 3), "reject_codes": dict(self.reject_codes)}

    def format(self) -> str:
        rate = self.answered / self.seconds if self.seconds > 0 else 0.0
        lines = [f"plates predict: {self.files} files = {self.images} images + {self.rejected} rejected -> {self.out}",
                 f"  answered      {self.answered}  in {self.chunks} chunk(s), {rate:.2f} images/s",
                 f"  skipped       {self.skipped}  (already in the output)",
                 f"  parsed        {self.parsed}/{self.answered}",
                 f"  schema-valid  {self.schema_valid}/{self.answered}"]
        if self.reject_codes:
            lines.append("  rejects: " + ", ".join(f"{k} {v}" for k, v in self.reject_codes.most_common()))
        if self.torn_bytes:
            lines.append(f"  recovered     cut a torn last line ({self.torn_bytes} bytes) left by an earlier crash")
        return "\n".join(lines)


def settings_fingerprint(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def sample(candidate: Candidate, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The request for one image: the run's turns (:meth:`plates.student.StudentContract.messages`)."""
    return {"messages": messages, "images": [candidate.path]}


def contract_fingerprint(contract: StudentContract, grounding: bool) -> dict[str, Any]:
    """What the run's question adds to the settings fingerprint: nothing for the default question, so outputs
    written before runs recorded their question resume as before."""
    question = contract.question(grounding)
    default = GROUNDING_PROMPT if grounding else EXTRACTION_PROMPT
    return {**({"prompt": question} if question != default else {}),
            **({"system": contract.system} if contract.system else {})}


def _result_image(row: dict[str, Any]) -> str:
    images = row.get("images")
    image = images[0] if isinstance(images, list) and images else row.get("image")
    if isinstance(image, dict):
        image = image.get("path")
    return image if isinstance(image, str) else ""


class PredictInterrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during a run: the engine was stopped, what was answered is kept."""

    def __init__(self, signum: int, summary: "PredictSummary"):
        super().__init__(signum)
        self.signum, self.summary = signum, summary


class Answers:
    """Turns ms-swift's results into output lines while `swift infer` writes them.

    `swift infer --write_batch_size N` appends every N answers to its ``result_path`` (on rank 0, gathered from
    every rank), each line naming its image. A thread polls the file; each batch of complete lines becomes one
    write and one fsync of the output. Lines are matched by image path, not position, so an answer can never be
    filed under another image whatever order the ranks' answers arrive in."""

    def __init__(self, pending: list[Candidate], result: Path, *, log: Any, summary: "PredictSummary",
                 settings: str, decoding: str, bar: Any, mapper: Any = None):
        from plates.schema import answer_validator

        self.pending, self.result, self.log, self.summary = pending, result, log, summary
        self.settings, self.decoding, self.bar, self.mapper = settings, decoding, bar, mapper
        self.validator = answer_validator()
        self.index = {os.path.normpath(c.path): i for i, c in enumerate(pending)}
        self.answered: set[int] = set()
        self.offset = 0
        self.partial = b""
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def drain(self) -> None:
        with self.lock:
            if self.error is not None:
                return
            try:
                self._drain()
            except Exception as exc:  # noqa: BLE001 - reported by the main thread once ms-swift stopped
                self.error = exc

    def _drain(self) -> None:
        try:
            with open(self.result, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        lines = []
        for raw in complete:
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                raise UserError("swift infer wrote a result line that is not JSON; answers from there on were "
                                "not kept") from None
            image = os.path.normpath(_result_image(row) or ".")
            number = self.index.get(image)
            if number is None or number in self.answered:
                raise UserError(f"swift infer answered {image}, which was not asked or was answered already; "
                                "answers from there on were not kept")
            self.answered.add(number)
            candidate = self.pending[number]
            response = row.get("response")
            boxes = self.mapper.prediction(response, candidate.path) if self.mapper else {}
            described = describe_answer(boxes.get("response", response), self.validator)
            lines.append({"key": candidate.key, "image": candidate.path, "sha256": candidate.sha256, **described,
                          "response": response, **boxes, "confidence": _confidences(response, row),
                          "decoding": self.decoding, "settings": self.settings})
            self.summary.parsed += described["answer"] is not None
            self.summary.schema_valid += described["schema_valid"]
        if lines:
            _append_all(self.log, lines)
            self.summary.answered += len(lines)
            self.summary.chunks += 1
            self.bar.update(len(lines))

    def _follow(self) -> None:
        while not self._stop.wait(0.25):
            self.drain()

    def __enter__(self) -> "Answers":
        self._thread = threading.Thread(target=self._follow, name="plates-predict-results", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.drain()  # whatever ms-swift wrote before it stopped, a Ctrl-C included, is kept


def _read_keys(output: Path) -> set[str]:
    """The keys already answered, read only (a worker machine of a multi-machine run never writes the output)."""
    if not output.is_file():
        return set()
    return {line["key"] for _, line in iter_jsonl(output, []) if isinstance(line, dict)
            and isinstance(line.get("key"), str)}


def engine_segments(pending: list[Candidate], logprobs: bool) -> list[list[Candidate]]:
    """The pending images split into runs of one `swift infer` each. ms-swift keeps every answer of a run in
    memory until it ends (its ``result_list``), so a run is capped at :data:`ENGINE_RUN_IMAGES` images (a fifth
    of that with token log-probabilities, which are large): one model load per 100,000 images."""
    size = ENGINE_RUN_IMAGES // 5 if logprobs else ENGINE_RUN_IMAGES
    return [pending[i: i + size] for i in range(0, len(pending), size)]


def run_predict(inputs: list[str], output: str | os.PathLike, settings: InferenceSettings | None = None, *,
                chunk_size: int = DEFAULT_CHUNK, rejects: str | os.PathLike | None = None, dry_run: bool = False,
                nodes: Nodes | None = None, verbose: bool = False, grounding: bool | None = None,
                **values: Any) -> PredictSummary:
    """Answer every image in ``inputs`` into ``output`` (resumable), rejects into ``rejects``. ``settings`` (or
    its fields as keywords; predict's answer cap defaults to 512 tokens) say what answers and how, ``nodes``
    how the run spreads over GPUs and machines. ``grounding`` asks for plate boxes and maps them to original
    pixels (:mod:`plates.grounding`); None: when the adapter's run trained on a `plates build --grounding` set.
    Each image is asked with the run's question and system text (:func:`plates.student.for_run`)."""
    from plates import swift_cli
    from plates.infer import build_infer_command, checkpoint_dir
    from plates.launch import check_gpus_present

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
    rejects = Path(rejects).expanduser().absolute() if rejects else rejects_path(output)
    guard_outputs([("INPUT", p) for p in inputs],
                  {"-o": (output, "predict"), "--rejects": (rejects, "predict-rejects")}, command="predict")
    log_path = output.with_name(f"{output.stem}.swift-infer.log")
    check_output_file(log_path, "the ms-swift log")

    notes: list[str] = []
    from plates.grounding import mapper_for_command, trained_with_grounding

    contract = for_run(adapters or model, notes)
    if grounding is None:
        grounding = contract.grounding if contract.recorded else trained_with_grounding(adapters)
    messages = contract.messages(grounding)
    settings_key = settings_fingerprint({**({"grounding": True} if grounding else {}),
        **contract_fingerprint(contract, grounding),
        "adapters": str(checkpoint_dir(adapters)) if adapters else None, "model": model, "decoding": decoding,
        "max_new_tokens": settings.max_new_tokens, "max_pixels": settings.max_pixels, "template": settings.template,
        "overrides": sorted(settings.overrides or [])})
    vllm = settings.swift_backend == "vllm"
    # Under torchrun every vLLM rank holds one GPU (ms-swift's external launcher), tensor parallel or not.
    launch_env = dataclasses.replace(nodes, model_parallel=False).env(settings.gpus) if (
        vllm and nodes.several_machines) else nodes.env(settings.gpus)
    extra: dict[str, Any] = {"write_batch_size": chunk_size}
    if nodes.model_parallel and settings.gpus and vllm:
        extra["vllm_tensor_parallel_size"] = len(swift_cli.parse_gpus(settings.gpus))
    if not dry_run:
        check_gpus_present(settings.gpus)
    worker = (nodes.node_rank or 0) > 0

    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="plates-predict-"))
    summary = PredictSummary(out=str(output))
    try:
        dataset, result = workdir / "pending.jsonl", workdir / "results.jsonl"
        # Built once up front: bad options fail before any image is read, and notes are shown once.
        dataset.write_text("{}\n", encoding="utf-8")
        argv, env = build_infer_command(settings, dataset=str(dataset), result_path=result, notes=notes,
                                        extra_options=extra)
        env.update(launch_env)
        mapper = mapper_for_command(argv, env, adapters, model) if grounding else None
        if mapper is not None:
            notes.append(f"plate boxes asked for and mapped to original pixels ({mapper.convention} convention)")
        if launch_env.get("NPROC_PER_NODE") or nodes.several_machines:
            notes.append(f"{launch_env.get('NPROC_PER_NODE', '1')} process(es) per machine on {nodes.nnodes or 1} "
                         "machine(s): ms-swift shards each chunk over the ranks and rank 0 writes every answer")
        if nodes.several_machines:
            notes.append("every machine must see the same INPUT paths and the same -o file (a shared file system) "
                         "and run this same command with its own --node-rank")
        for note in dict.fromkeys(notes):
            print(f"plates predict: note: {note}", file=sys.stderr)
        candidates, rejected = collect_inputs(inputs, exclude=(output, rejects, log_path))
        summary = PredictSummary(out=str(output), files=len(candidates) + len(rejected), images=len(candidates),
                                 rejected=len(rejected))
        summary.reject_codes.update(r["code"] for r in rejected)
        if dry_run:
            print(swift_cli.format_command(swift_cli.redact_argv(argv), swift_cli.redact_env(env)))
            print(f"plates predict: would answer {len(candidates)} images with one `swift infer` (the model loaded "
                  f"once), appending and fsyncing answers every {chunk_size} images; {len(rejected)} rejected",
                  file=sys.stderr)
            return summary
        with stop_on_signals():
            try:
                if worker:
                    pending = [c for c in candidates if c.key not in _read_keys(output)]
                    summary.skipped = len(candidates) - len(pending)
                    _answer_as_worker(pending, dataset, argv, env, log_path, verbose, summary, settings.logprobs,
                                      messages)
                else:
                    _answer(candidates, rejected, rejects, output, dataset, result, argv, env, log_path, verbose,
                            summary, settings_key, settings, Journal, mapper, messages=messages)
            except KeyboardInterrupt as exc:
                signum = getattr(exc, "signum", None)
                raise PredictInterrupted(signum if isinstance(signum, int) else signal.SIGINT, summary) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        summary.seconds = time.monotonic() - start
    return summary


def _answer(candidates: list[Candidate], rejected: list[dict], rejects: Path, output: Path, dataset: Path,
            result: Path, argv: list[str], env: dict[str, str], log_path: Path, verbose: bool,
            summary: PredictSummary, settings_key: str, settings: InferenceSettings, output_log: Any,
            mapper: Any = None, *, messages: list[dict[str, Any]]) -> None:
    """The master's run: pending images through one `swift infer` per segment, answers appended as written."""
    log = output_log(output, "predict")
    try:
        recovered = log.recover()
        summary.torn_bytes = recovered.torn_bytes
        check_settings(output, settings_key)
        write_jsonl(rejects, rejected)  # only once every refusal is behind us: a refused run keeps the old one
        pending = [c for c in candidates if c.key not in recovered.keys]
        summary.skipped = len(candidates) - len(pending)
        with progress(total=len(candidates), initial=summary.skipped, unit="image", desc="predict") as bar:
            for segment in engine_segments(pending, settings.logprobs):
                write_jsonl(dataset, (sample(c, messages) for c in segment))
                result.unlink(missing_ok=True)
                answers = Answers(segment, result, log=log, summary=summary, settings=settings_key,
                                  decoding=settings.decoding, bar=bar, mapper=mapper)
                with answers:
                    run = _run_engine(argv, env, log_path, verbose)
                if answers.error is not None:
                    raise answers.error
                if run.code != 0:
                    raise UserError(f"swift infer exited with {run.code}; {summary.answered} answers are kept in "
                                    f"{output}, re-run to continue (ms-swift log: {log_path})")
                got = len(answers.answered)
                if got != len(segment):
                    raise UserError(f"swift infer returned {got} answers for {len(segment)} images; they are kept, "
                                    f"re-run to answer the rest (ms-swift log: {log_path})")
    finally:
        log.close()


def _answer_as_worker(pending: list[Candidate], dataset: Path, argv: list[str], env: dict[str, str],
                      log_path: Path, verbose: bool, summary: PredictSummary, logprobs: bool,
                      messages: list[dict[str, Any]]) -> None:
    """A machine of node rank > 0: it answers its share of each chunk; rank 0 gathers and writes every answer."""
    for segment in engine_segments(pending, logprobs):
        write_jsonl(dataset, (sample(c, messages) for c in segment))
        run = _run_engine(argv, env, log_path, verbose)
        if run.code != 0:
            raise UserError(f"swift infer exited with {run.code} (ms-swift log: {log_path})")
    print(f"plates predict: this machine answered its share of {len(pending)} images; node 0 wrote them to "
          f"{summary.out}", file=sys.stderr)


def _run_engine(argv: list[str], env: dict[str, str], log_path: Path, verbose: bool) -> Any:
    from plates import swift_cli

    return swift_cli.run_swift(argv, env, log_path=log_path, verbose=verbose, who="plates predict")


def _append_all(log: Any, lines: list[dict[str, Any]]) -> None:
    """All of a chunk's lines in one write and one fsync (a kill mid-write leaves at most one torn line,
    which the next run cuts; whole lines before it are kept and skipped)."""
    data = "".join(dump_json_line(line) for line in lines).encode("utf-8")
    view = memoryview(data)
    while view:
        written = os.write(log.fd, view)
        view = view[written:]
    (getattr(os, "fdatasync", None) or os.fsync)(log.fd)


def check_settings(output: Path, settings: str) -> None:
    """Refuse to append to an output answered with other settings (read from its first line)."""
    for number, line in iter_jsonl(output):
        other = line.get("settings") if isinstance(line, dict) else None
        if other is not None and other != settings:
            raise UserError(f"{output}: line {number} was answered with other settings (model, adapter, decoding "
                            "or token/pixel caps); write to another -o, or re-run with the same options")
        return


# ---- CLI -----------------------------------------------------------------------------------------------------

def _configure(parser: argparse.ArgumentParser) -> None:
    from plates.launch import add_distributed_arguments

    parser.add_argument("inputs", nargs="+", metavar="INPUT", type=input_path(),
                        help="image files, folders (searched recursively, any names) or a records JSONL")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", type=output_file("predict"),
                        help="answers JSONL (appended to; a re-run continues where it stopped)")
    source = InferenceSettings.add_arguments(parser, command="infer", max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
                                             unit="images", helps={"gpus": (
                                                 "GPUs to use, e.g. 0,1,2,3: one ms-swift process per GPU, each "
                                                 "answering its share (data parallel; sets CUDA_VISIBLE_DEVICES and "
                                                 "NPROC_PER_NODE)")})
    from plates import predict_endpoint

    predict_endpoint.add_arguments(parser, source)
    parser.add_argument("--rejects", metavar="PATH", help="default: OUT with .rejects.jsonl",
                        type=output_file("predict-rejects", derive=lambda args: rejects_path(Path(args.output))))
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
        from plates import predict_endpoint

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
        from plates.io import write_json

        write_json(args.summary, summary.to_dict())
    if not args.dry_run:
        print(summary.format(), file=sys.stderr)
    return 0


COMMANDS = {"predict": (_configure, _run, "answer new, unlabelled images (files, folders, records) -> JSONL answers")}
