"""`plates predict`: read new, unlabelled images with a trained model and write one JSON answer per image.

Inputs are image files, folders (searched recursively, any file names: no labels needed) or a records JSONL
(`plates parse` output, or any JSONL whose lines carry an ``image`` path). Every input file is accounted for:
it is answered (a line in ``OUT``) or rejected with a reason (a line in ``OUT.rejects.jsonl``: not an image,
unreadable, corrupt), so ``answered + rejected = files``.

Output (append-only JSONL, one line per image)::

    {"key": "…", "image": "/abs/path.jpg", "sha256": "…", "answer": {normalised answer} | null,
     "response": "raw model text", "parse_method": "json", "schema_valid": true, "violations": [],
     "confidence": {"车辆品牌": 0.93, …} | null, "settings": "…"}

Answers come from ms-swift, not a model loop of ours: pending images are answered in chunks, each chunk a
temporary dataset JSONL handed to `swift infer` (the same command `plates infer` builds, so generation options,
the adapter's max_pixels and decoding are identical). A finished chunk's lines are appended and fsynced before
the next chunk starts, keyed by image path + content hash; a re-run reads the keys present, cuts a torn last
line, and answers only what is missing. A crash, Ctrl-C or SIGKILL therefore loses at most the chunk in flight
and never duplicates an image. ``settings`` fingerprints what decides the answers (model, adapter, decoding,
token and pixel caps); a re-run with other settings into the same file is refused rather than mixed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from plates.errors import UserError
from plates.io import dump_json_line, guard_outputs, iter_jsonl, progress, sha256_file, write_jsonl

DEFAULT_CHUNK = 256
DEFAULT_MAX_NEW_TOKENS = 512
DECODINGS = ("schema", "free")


@dataclass(frozen=True)
class Candidate:
    """One image to answer: its absolute path and the content hash that keys it."""

    path: str
    sha256: str

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.path}\0{self.sha256}".encode("utf-8")).hexdigest()[:32]


def rejects_path(output: Path) -> Path:
    from plates.parse import default_rejects_path

    return default_rejects_path(output)


def check_image(path: str) -> tuple[str, str] | None:
    """Why ``path`` cannot be answered, as ``(reason, code)``, or None. Uses `plates parse`'s header checks, then
    decodes the whole image: one truncated or corrupt file would otherwise stop a whole `swift infer` chunk."""
    from plates.dump import Rejected, read_image_info
    from plates.parse import IMAGE_EXTENSIONS

    name = os.path.basename(path)
    dot = name.rfind(".")
    extension = name[dot:].lower() if dot > 0 else ""
    if extension not in IMAGE_EXTENSIONS:
        return f"not an image file (extension {extension or 'none'!r})", "not_image"
    info = read_image_info(path)
    if isinstance(info, Rejected):
        return info.reason, info.code
    if info.warnings:
        return f"damaged image: {info.warnings[0]}", "corrupt_image"
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files; each is a reject
        return f"corrupt image: {type(exc).__name__}: {exc}", "corrupt_image"
    return None


def _records_images(path: Path) -> Iterable[tuple[str, str | None]]:
    """(absolute image path, problem) for each line of a JSONL that names images."""
    from plates.records import resolve_image

    errors: list[str] = []
    for number, line in iter_jsonl(path, errors):
        if not isinstance(line, dict) or not isinstance(line.get("image"), str):
            yield f"{path}:{number}", "line has no 'image' path"
            continue
        yield str(resolve_image(line, path)), None
    for message in errors:
        yield f"{path}:{message.split(':')[0].removeprefix('line ')}", message


def collect_inputs(inputs: Iterable[str], exclude: Iterable[Path] = ()) -> tuple[list[Candidate], list[dict]]:
    """Expand INPUT… into the images to answer and the rejects (every file seen is in exactly one list).
    The same image named twice is answered once. FIFOs, sockets, devices and dangling links are rejected from
    their folder listing or ``stat`` alone, never opened (a FIFO would block the run forever)."""
    from plates.dump import file_kind, iter_files

    skip = {os.path.realpath(p) for p in exclude}
    paths: list[tuple[str, str | None]] = []
    special: dict[str, str] = {}
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            root = os.path.abspath(path)
            kinds: dict[str, str] = {}
            paths.extend((root + "/" + rel, None) for rel in iter_files(root, exclude=skip, special=kinds))
            special.update((root + "/" + rel, kind) for rel, kind in kinds.items())
        elif path.suffix.lower() == ".jsonl" and path.is_file():
            paths.extend(_records_images(path))
        elif path.exists():
            paths.append((os.path.abspath(path), None))
        elif os.path.islink(path):
            raise UserError(f"INPUT {item}: a {file_kind(str(path))}, not a file or folder")
        else:
            raise UserError(f"INPUT {item}: no such file or folder")
    candidates: list[Candidate] = []
    rejects: list[dict] = []
    seen: set[str] = set()
    bar = progress(total=len(paths), unit="file", desc="check")
    for path, problem in paths:
        bar.update(1)
        if os.path.realpath(path) in skip:
            continue
        if path in seen:
            continue
        seen.add(path)
        if problem is None and (path in special or not os.path.isfile(path)):
            kind = special.get(path) or (file_kind(path) if os.path.lexists(path) else None)
            if kind is None:
                problem, code = "no such file", "unreadable"
            else:
                problem, code = f"not a regular file: a {kind} (not opened)", "not_regular_file"
        else:
            code = "bad_input_line"
        if problem is None:
            found = check_image(path)
            if found is not None:
                problem, code = found
        if problem is None:
            try:
                candidates.append(Candidate(path, sha256_file(path)))
                continue
            except OSError as exc:
                problem, code = f"cannot read: {exc.strerror}", "unreadable"
        rejects.append({"image": path, "reason": problem, "code": code})
    bar.close()
    return candidates, rejects


# ---- answers -------------------------------------------------------------------------------------------------

def describe_answer(response: Any, validator: Any = None) -> dict[str, Any]:
    """The parsed, schema-checked and normalised form of one raw response."""
    from plates.evaluate import parse_response
    from plates.labels import PLATE_GROUP, VEHICLE_GROUP, normalise_plate, normalise_vehicle, plates_of_answer
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
        plates = [normalise_plate(p) for p in plates_of_answer(value)]
        answer = {VEHICLE_GROUP: normalise_vehicle(vehicle), PLATE_GROUP: plates[0] if len(plates) == 1 else plates}
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


def _sample(candidate: Candidate) -> dict[str, Any]:
    from plates.build import EXTRACTION_PROMPT, IMAGE_TAG

    return {"messages": [{"role": "user", "content": IMAGE_TAG + EXTRACTION_PROMPT}], "images": [candidate.path]}


def _result_image(row: dict[str, Any]) -> str:
    images = row.get("images")
    image = images[0] if isinstance(images, list) and images else row.get("image")
    if isinstance(image, dict):
        image = image.get("path")
    return image if isinstance(image, str) else ""


def answer_chunk(chunk: list[Candidate], workdir: Path, *, infer_kwargs: dict[str, Any],
                 log_tail: list[str]) -> list[dict[str, Any]]:
    """Answer one chunk with `swift infer`; the result rows in chunk order."""
    from plates import swift_cli
    from plates.infer import build_infer_command

    dataset = workdir / "chunk.jsonl"
    result = workdir / "results.jsonl"
    result.unlink(missing_ok=True)
    write_jsonl(dataset, (_sample(c) for c in chunk))
    argv, env = build_infer_command(dataset=str(dataset), result_path=result, **infer_kwargs)

    def keep(line: str) -> None:
        log_tail.append(line)
        del log_tail[:-40]

    code = swift_cli.run_streaming(argv, env, on_line=keep, echo=False)
    if code != 0:
        tail = "\n".join(log_tail[-25:])
        raise UserError(f"swift infer exited with {code}; answers so far are kept, re-run to continue.\n{tail}")
    rows = [row for _, row in iter_jsonl(result)] if result.is_file() else []
    if len(rows) != len(chunk):
        raise UserError(f"swift infer returned {len(rows)} answers for {len(chunk)} images; nothing of this chunk "
                        "was kept, re-run to retry it")
    for row, candidate in zip(rows, chunk):
        image = _result_image(row)
        if image and os.path.normpath(image) != os.path.normpath(candidate.path):
            raise UserError(f"swift infer answered {image} where {candidate.path} was expected; chunk not kept")
    return rows


def run_predict(inputs: list[str], output: str | os.PathLike, *, adapters: str | None = None, model: str | None = None,
                decoding: str = "schema", backend: str = "transformers", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                batch_size: int | None = None, max_pixels: int | None = None, template: str | None = None,
                logprobs: bool = False, chunk_size: int = DEFAULT_CHUNK, overrides: list[str] | None = None,
                rejects: str | os.PathLike | None = None, gpus: str | None = None,
                dry_run: bool = False) -> PredictSummary:
    """Answer every image in ``inputs`` into ``output`` (resumable), rejects into ``rejects``."""
    from plates.infer import build_infer_command, checkpoint_dir
    from plates.schema import answer_validator
    from plates.teach import OutputLog

    if not adapters and not model:
        raise UserError("pass --adapters CHECKPOINT (a fine-tuned run) or --model MODEL")
    if decoding not in DECODINGS:
        raise UserError(f"unknown --decoding {decoding!r}; choose {' or '.join(DECODINGS)}")
    if chunk_size < 1:
        raise UserError("--chunk-size must be at least 1")
    output = Path(output).expanduser().absolute()
    rejects = Path(rejects).expanduser().absolute() if rejects else rejects_path(output)
    file_inputs = [p for p in inputs if not Path(p).is_dir()]
    guard_outputs({"INPUT": p for p in file_inputs} if len(file_inputs) == 1 else file_inputs,
                  {"-o": output, "--rejects": rejects}, command="predict")

    notes: list[str] = []
    infer_kwargs: dict[str, Any] = dict(adapters=adapters, model=model, backend=backend, max_pixels=max_pixels,
                                        max_new_tokens=max_new_tokens, batch_size=batch_size, template=template,
                                        overrides=overrides, gpus=gpus, decoding=decoding, logprobs=logprobs)
    settings = settings_fingerprint({
        "adapters": str(checkpoint_dir(adapters)) if adapters else None, "model": model, "decoding": decoding,
        "max_new_tokens": max_new_tokens, "max_pixels": max_pixels, "template": template,
        "overrides": sorted(overrides or [])})

    start = time.monotonic()
    output.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="plates-predict-"))
    try:
        # Built once up front: bad options fail before any image is read, and notes are shown once.
        placeholder = workdir / "chunk.jsonl"
        placeholder.write_text("{}\n", encoding="utf-8")
        argv, env = build_infer_command(dataset=str(placeholder), result_path=workdir / "results.jsonl",
                                        notes=notes, **infer_kwargs)
        for note in dict.fromkeys(notes):
            print(f"plates predict: note: {note}", file=sys.stderr)
        candidates, rejected = collect_inputs(inputs, exclude=(output, rejects))
        summary = PredictSummary(out=str(output), files=len(candidates) + len(rejected), images=len(candidates),
                                 rejected=len(rejected))
        summary.reject_codes.update(r["code"] for r in rejected)
        if dry_run:
            from plates import swift_cli

            print(swift_cli.format_command(swift_cli.redact_argv(argv), swift_cli.redact_env(env)))
            print(f"plates predict: would answer {len(candidates)} images in chunks of {chunk_size} "
                  f"(the dataset above is one chunk); {len(rejected)} rejected", file=sys.stderr)
            return summary
        write_jsonl(rejects, rejected)
        log = OutputLog(output)
        try:
            recovered = log.recover()
            summary.torn_bytes = recovered.torn_bytes
            _check_settings(output, settings)
            pending = [c for c in candidates if c.key not in recovered.keys]
            summary.skipped = len(candidates) - len(pending)
            validator = answer_validator()
            log_tail: list[str] = []
            with progress(total=len(candidates), initial=summary.skipped, unit="image", desc="predict") as bar:
                for start_at in range(0, len(pending), chunk_size):
                    chunk = pending[start_at: start_at + chunk_size]
                    rows = answer_chunk(chunk, workdir, infer_kwargs=infer_kwargs, log_tail=log_tail)
                    lines = []
                    for candidate, row in zip(chunk, rows):
                        response = row.get("response")
                        described = describe_answer(response, validator)
                        lines.append({"key": candidate.key, "image": candidate.path, "sha256": candidate.sha256,
                                      **described, "response": response,
                                      "confidence": _confidences(response, row), "settings": settings})
                        summary.parsed += described["answer"] is not None
                        summary.schema_valid += described["schema_valid"]
                    _append_all(log, lines)
                    summary.answered += len(chunk)
                    summary.chunks += 1
                    bar.update(len(chunk))
        finally:
            log.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary.seconds = time.monotonic() - start
    return summary


def _append_all(log: Any, lines: list[dict[str, Any]]) -> None:
    """All of a chunk's lines in one write and one fsync (a kill mid-write leaves at most one torn line,
    which the next run cuts; whole lines before it are kept and skipped)."""
    data = "".join(dump_json_line(line) for line in lines).encode("utf-8")
    view = memoryview(data)
    while view:
        written = os.write(log.fd, view)
        view = view[written:]
    (getattr(os, "fdatasync", None) or os.fsync)(log.fd)


def _check_settings(output: Path, settings: str) -> None:
    for number, line in iter_jsonl(output):
        other = line.get("settings") if isinstance(line, dict) else None
        if other is not None and other != settings:
            raise UserError(f"{output}: line {number} was answered with other settings (model, adapter, decoding "
                            "or token/pixel caps); write to another -o, or re-run with the same options")
        return


# ---- CLI -----------------------------------------------------------------------------------------------------

def add_generation_arguments(parser: argparse.ArgumentParser, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
    """The generation options `plates predict` shares with `plates infer` (and `plates export --verify`)."""
    from plates.infer import BACKENDS

    parser.add_argument("--decoding", choices=DECODINGS, default="schema",
                        help="schema: constrain answers to eval/answer.schema.json where the backend allows "
                             "(default); free: unconstrained")
    parser.add_argument("--backend", default="transformers", choices=sorted(BACKENDS), help="inference engine")
    parser.add_argument("--max-pixels", type=int, help="image pixel cap; default: what the run trained with")
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens,
                        help=f"answer length cap in tokens (default {max_new_tokens})")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (max_batch_size)")
    parser.add_argument("--template", help="ms-swift template, e.g. qwen2_5_vl (needed for some local models)")
    parser.add_argument("--gpus", help="GPUs to use, e.g. 0 (sets CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="any other `swift infer` argument, checked against the installed ms-swift")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (searched recursively, any names) or a records JSONL")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="answers JSONL (appended to; a re-run continues where it stopped)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--adapters", help="LoRA checkpoint from `plates train` (or its run folder)")
    source.add_argument("--model", help="a model without adapters: a `plates export` folder, or a hub id")
    parser.add_argument("--rejects", metavar="PATH", help="default: OUT with .rejects.jsonl")
    add_generation_arguments(parser)
    parser.add_argument("--logprobs", action="store_true",
                        help="keep token log-probabilities and write a per-field confidence (for `plates audit`)")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK,
                        help=f"images per `swift infer` call; the unit of resumption (default {DEFAULT_CHUNK})")
    parser.add_argument("--summary", metavar="PATH", help="also write the summary as JSON")
    parser.add_argument("--dry-run", action="store_true", help="check the inputs and print the command; answer nothing")


def _run(args: argparse.Namespace) -> int:
    """Answer new, unlabelled images with a trained model: one JSON line per image (the normalised answer, the raw
    response, schema validity and violations, per-field confidence with --logprobs). Unreadable, non-image and
    corrupt files go to OUT.rejects.jsonl with a reason. Interrupted runs continue where they stopped: re-run the
    same command (each image is answered exactly once).

    examples:
      plates predict /data/new_images -o preds.jsonl --adapters output/v0-…/checkpoint-300
      plates predict records.jsonl -o preds.jsonl --adapters RUN --logprobs     # then: plates audit
    """
    summary = run_predict(args.inputs, args.output, adapters=args.adapters, model=args.model, decoding=args.decoding,
                          backend=args.backend, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                          max_pixels=args.max_pixels, template=args.template, logprobs=args.logprobs,
                          chunk_size=args.chunk_size, overrides=args.overrides, rejects=args.rejects, gpus=args.gpus,
                          dry_run=args.dry_run)
    if args.summary and not args.dry_run:
        from plates.io import write_json

        write_json(args.summary, summary.to_dict())
    if not args.dry_run:
        print(summary.format(), file=sys.stderr)
    return 0


COMMANDS = {"predict": (_configure, _run, "answer new, unlabelled images (files, folders, records) -> JSONL answers")}
