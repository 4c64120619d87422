"""`plates teach`: pseudo-label descriptions from a teacher model, checked against the labels.

The seed's data stage (000 sections 1.2-1.4, 003's reasons): a large vision-language model writes texts that
become extra training targets. Four modes:

* ``describe`` — the prompt carries the known labels; the teacher writes a fluent description consistent with them.
* ``caption``  — a question from a pool, no labels; the teacher describes what it sees.
* ``fuse``     — text only: merges a record's ``describe`` and ``caption`` outputs into one description, kept paired
  with the caption's question.
* ``reason``   — a short justification of the labelled answer, a chain-of-thought target for `plates build`.

Output (append-only JSONL, one line per record and mode)::

    {"key": "…", "image": "<as in the record>", "mode": "describe", "question": "…", "text": "…",
     "verdict": "ok" | "flagged", "reasons": ["plate_misread: …"], "backend": "openai", "model": "gpt-4o",
     "prompt_version": "v1", "usage": {"prompt_tokens": …, "completion_tokens": …} | null,
     "image_sha256": "…", "inputs": {"describe": key, "caption": key}   # fuse only

``key`` hashes the image content, the record's image path and labels, the mode, the prompt version and text,
and the model (for fuse also the keys of the two texts merged). Every line is written with one ``write`` and
made durable with ``fsync`` before the next; a re-run reads the keys already present, cuts a torn last line,
and teaches only what is missing, so a crash, Ctrl-C or SIGKILL at any point loses nothing and duplicates
nothing. An exclusive lock stops two runs writing the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from plates.chat_client import RequestFailed
from plates.contracts import TeacherLine
from plates.errors import UserError
from plates.io import (
    check_input_file, guard_outputs, iter_jsonl, progress, same_file, write_json,
)
from plates.journal import Journal
from plates.outputs import input_path, output_file
from plates.records import load_records, resolve_image
from plates.signals import deferred
from plates.teaching import backends, gate
from plates.teaching.backends import TeacherBackend, make_backend, positive_int
from plates.teaching.prompts import MODES, Prompts, build_request, digest, load_prompts
from plates.workpool import run_pool

FUSE_SOURCES = ("describe", "caption")
# Stop when this many records fail for one reason before any succeeds (a wrong model name, a moved dump).
FAIL_FAST = 20


def output_key(image_sha256: str, image: str, labels: dict[str, Any], mode: str, prompts: Prompts,
               model_fingerprint: str, inputs: dict[str, str] | None = None) -> str:
    """The resume key of one (record, mode) output."""
    return digest([image_sha256, image, digest(labels), mode, prompts.version, prompts.digest(mode),
                   model_fingerprint, inputs or {}], 32)


# --- the output file ----------------------------------------------------------------------------------------

def _index_source(sources: dict[str, dict[str, dict[str, Any]]], line: dict[str, Any]) -> None:
    """Remember the latest usable describe (verdict ok) and caption line per image, for fuse."""
    mode = line.get("mode")
    if mode not in FUSE_SOURCES or not isinstance(line.get("image"), str) or not isinstance(line.get("text"), str):
        return
    if mode == "describe" and line.get("verdict") != "ok":
        return
    sources.setdefault(line["image"], {})[mode] = {k: line.get(k) for k in ("key", "text", "question", "verdict")}


def load_fuse_sources(paths: Iterable[Path]) -> tuple[dict[str, dict[str, dict[str, Any]]], int]:
    """describe/caption lines from other teacher outputs; returns the index and the number of unreadable lines."""
    sources: dict[str, dict[str, dict[str, Any]]] = {}
    errors: list[str] = []
    for path in paths:
        for _, line in iter_jsonl(path, errors):
            if isinstance(line, dict):
                _index_source(sources, line)
    return sources, len(errors)


# --- the run ------------------------------------------------------------------------------------------------

@dataclass
class Summary:
    mode: str
    backend: str
    model: str
    prompt_version: str
    out: str
    records: int = 0
    done: int = 0
    ok: int = 0
    flagged: int = 0
    skipped: int = 0
    duplicates: int = 0
    not_started: int = 0
    failed: Counter = field(default_factory=Counter)
    failed_examples: dict[str, list[str]] = field(default_factory=dict)
    flagged_reasons: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    torn_bytes: int = 0
    seconds: float = 0.0
    stopped: str | None = None
    counts_tokens: bool = True  # the backend reports token usage (the template backend does not)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "backend": self.backend, "model": self.model, "prompt_version": self.prompt_version,
            "out": self.out, "records": self.records, "done": self.done, "ok": self.ok, "flagged": self.flagged,
            "skipped": self.skipped, "duplicates": self.duplicates, "not_started": self.not_started,
            "failed": self.failed_total,
            "failed_reasons": dict(self.failed), "failed_examples": self.failed_examples,
            "flagged_reasons": dict(self.flagged_reasons), "retries": dict(self.retries),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "torn_bytes": self.torn_bytes, "seconds": round(self.seconds, 3), "stopped": self.stopped,
        }

    def format(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"plates teach: {self.mode} via {self.backend}/{self.model}, prompts {self.prompt_version} -> {self.out}",
            f"  records    {self.records}",
            f"  done       {self.done}  (ok {self.ok}, flagged {self.flagged})",
            f"  skipped    {self.skipped}  (already in the output)",
        ]
        if self.duplicates:
            lines.append(f"  duplicate  {self.duplicates}  (same record twice in the input; taught once)")
        retry_hint = "  (re-run the same command to retry them)" if self.failed else ""
        lines.append(f"  failed     {self.failed_total}{retry_hint}")
        for reason, count in self.failed.most_common():
            examples = ", ".join(self.failed_examples.get(reason, [])[:3])
            lines.append(f"    {count:>5}  {reason}" + (f"  e.g. {examples}" if examples else ""))
        if self.flagged_reasons:
            lines.append("  flagged by reason: " + ", ".join(f"{r} {n}" for r, n in self.flagged_reasons.most_common()))
        if self.retries:
            lines.append("  retries: " + ", ".join(f"{r} {n}" for r, n in self.retries.most_common()))
        if self.counts_tokens:
            total = self.prompt_tokens + self.completion_tokens
            lines.append(f"  tokens     {self.prompt_tokens} prompt + {self.completion_tokens} completion = {total}")
        if self.torn_bytes:
            lines.append(f"  recovered  cut a torn last line ({self.torn_bytes} bytes) left by an earlier crash")
        lines.append(f"  time       {self.seconds:.1f} s ({rate:.2f} outputs/s)")
        if self.not_started:
            lines.append(f"  not started {self.not_started}  (the run stopped before reaching them)")
        if self.stopped:
            lines.append(f"  stopped    {self.stopped}")
        return "\n".join(lines)


@dataclass
class _Outcome:
    kind: str  # done | skipped | failed | cancelled
    image: str
    key: str | None = None
    line: dict[str, Any] | None = None
    reason: str | None = None
    fatal: bool = False
    usage: dict[str, int] | None = None
    retried: dict[str, int] = field(default_factory=dict)


class _Job:
    """What one worker needs to turn a record into an output line."""

    def __init__(self, records_path: Path, mode: str, backend: TeacherBackend, prompts: Prompts,
                 done_keys: set[str], sources: dict[str, dict[str, dict[str, Any]]], stop: threading.Event):
        self.records_path = records_path
        self.mode = mode
        self.backend = backend
        self.prompts = prompts
        self.done_keys = done_keys
        self.sources = sources
        self.stop = stop
        self.fingerprint = backend.fingerprint

    def __call__(self, record: dict[str, Any]) -> _Outcome:
        image = record["image"]
        if self.stop.is_set():
            return _Outcome("cancelled", image)
        path = resolve_image(record, self.records_path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return _Outcome("failed", image, reason="image file not found")
        except OSError as exc:
            return _Outcome("failed", image, reason=f"image file unreadable ({exc.strerror})")
        sha = hashlib.sha256(data).hexdigest()
        labels = record["labels"]
        inputs: dict[str, str] = {}
        texts: dict[str, str] = {}
        question = self.prompts.question_for(self.mode, f"{sha}:{image}")
        if self.mode == "fuse":
            found = self.sources.get(image, {})
            missing = [m for m in FUSE_SOURCES if m not in found]
            if missing:
                what = " and ".join(f"an ok {m}" if m == "describe" else f"a {m}" for m in missing)
                reason = f"fuse needs {what} output for the image (run those modes first)"
                return _Outcome("failed", image, reason=reason)
            inputs = {m: found[m]["key"] for m in FUSE_SOURCES}
            texts = {m: found[m]["text"] for m in FUSE_SOURCES}
            question = found["caption"].get("question")
        key = output_key(sha, image, labels, self.mode, self.prompts, self.fingerprint, inputs)
        if key in self.done_keys:
            return _Outcome("skipped", image, key=key)
        request = build_request(self.prompts, self.mode, key, labels, question=question, image=data, inputs=texts)
        try:
            completion = self.backend.complete(request)
        except RequestFailed as exc:
            return _Outcome("failed", image, key=key, reason=exc.reason, fatal=exc.fatal, retried=exc.retried)
        text = completion.text
        if self.mode == "reason":  # one paragraph: `plates build` separates reasoning from the answer by a blank line
            text = re.sub(r"\n\s*\n+", "\n", text)
        verdict = gate.check(text, labels)
        line = TeacherLine(key=key, image=image, mode=self.mode, question=question, text=text,
                           verdict=verdict.verdict, reasons=verdict.reasons, backend=self.backend.name,
                           model=self.backend.model, prompt_version=self.prompts.version, usage=completion.usage,
                           image_sha256=sha, inputs=inputs or None).to_json()
        return _Outcome("done", image, key=key, line=line, usage=completion.usage, retried=completion.retried)


def run_teach(records_path: str | Path, out_path: str | Path, mode: str, backend: TeacherBackend,
              prompts: Prompts, *, concurrency: int = 4, inputs: list[Path] | None = None, limit: int | None = None,
              show_progress: bool = True, report: Callable[[Summary], None] | None = None) -> Summary:
    """Teach every record not yet in ``out_path``; returns the summary, and hands it to ``report`` even when
    interrupted (Ctrl-C still shows what was done).

    Workers (threads: the work is network-bound) prepare and send requests; only this thread writes, so the
    output's order follows completion and each key is written at most once."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    records_path, out_path = Path(records_path), Path(out_path)
    records = load_records(records_path)
    if limit is not None:
        records = records[:limit]
    model = backend.resolve_model()
    summary = Summary(mode, backend.name, model, prompts.version, str(out_path), records=len(records),
                      counts_tokens=backend.counts_tokens)
    start = time.monotonic()
    log = Journal(out_path)
    try:
        sources: dict[str, dict[str, dict[str, Any]]] = {}
        fuse_from_out = mode == "fuse" and (not inputs or any(_same_file(p, out_path) for p in inputs))
        recovered = log.recover(on_line=(lambda line: _index_source(sources, line)) if fuse_from_out else None)
        summary.torn_bytes = recovered.torn_bytes
        if mode == "fuse":
            extra, _ = load_fuse_sources([p for p in inputs or [] if not _same_file(p, out_path)])
            for image, found in extra.items():
                sources.setdefault(image, {}).update(found)
        written = set(recovered.keys)
        stop = threading.Event()
        job = _Job(records_path, mode, backend, prompts, written, sources, stop)
        bar = progress(total=len(records), desc=f"teach {mode}", unit="rec") if show_progress else None
        fatal: str | None = None
        try:
            for outcome in run_pool(job, records, max(1, concurrency), stop):
                if outcome.kind == "cancelled":
                    continue
                summary.retries.update(outcome.retried)
                if outcome.kind == "skipped":
                    summary.skipped += 1
                elif outcome.kind == "failed":
                    summary.failed[outcome.reason] += 1
                    examples = summary.failed_examples.setdefault(outcome.reason, [])
                    if len(examples) < 5:
                        examples.append(outcome.image)
                    if outcome.fatal and fatal is None:
                        fatal = outcome.reason
                        stop.set()
                    elif (fatal is None and summary.done == 0 and len(summary.failed) == 1
                          and summary.failed_total >= FAIL_FAST):
                        fatal = f"the first {FAIL_FAST} records all failed the same way: {outcome.reason}"
                        stop.set()
                elif outcome.key in written:
                    summary.duplicates += 1
                else:
                    with deferred():  # a signal never falls between the line and its count in the summary
                        log.append(outcome.line)
                        written.add(outcome.key)
                        summary.done += 1
                        if outcome.line["verdict"] == "ok":
                            summary.ok += 1
                        else:
                            summary.flagged += 1
                            summary.flagged_reasons.update(r.split(":", 1)[0] for r in outcome.line["reasons"])
                        if outcome.usage:
                            summary.prompt_tokens += outcome.usage.get("prompt_tokens", 0)
                            summary.completion_tokens += outcome.usage.get("completion_tokens", 0)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(ok=summary.ok, flagged=summary.flagged, failed=summary.failed_total, refresh=False)
        except KeyboardInterrupt:
            stop.set()
            summary.stopped = "interrupted; re-run the same command to continue"
            raise
        finally:
            if bar is not None:
                bar.close()
            summary.seconds = time.monotonic() - start
            summary.not_started = summary.records - (summary.done + summary.skipped + summary.duplicates
                                                     + summary.failed_total)
            if fatal:
                summary.stopped = f"stopped early: {fatal}"
            if report is not None:
                report(summary)
    finally:
        log.close()
    return summary


def _same_file(a: Path, b: Path) -> bool:
    return same_file(a, b)


# --- command line -------------------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("records", type=input_path(convert=Path), help="records JSONL from `plates parse`")
    parser.add_argument("-o", "--out", type=output_file("teach", convert=Path), required=True,
                        help="teacher output JSONL; appended to, and re-running resumes where it stopped")
    parser.add_argument("--mode", choices=MODES, required=True,
                        help="describe (labels in the prompt), caption (a pooled question, no labels), "
                             "fuse (merge describe + caption, text only), reason (justify the labelled answer)")
    backends.add_arguments(parser)
    parser.add_argument("--concurrency", type=positive_int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--prompts", type=input_path(convert=Path), metavar="DIR",
                        help="prompts folder with prompts.yaml and template.yaml "
                             "(default: the shipped prompts/v1)")
    parser.add_argument("--inputs", type=input_path(convert=Path), action="append", metavar="FILE",
                        help="fuse: teacher outputs holding the describe and caption lines "
                             "(default: OUT itself); repeatable")
    parser.add_argument("--limit", type=positive_int, help="teach only the first N records (a trial run)")
    parser.add_argument("--summary", metavar="FILE", help="also write the summary as JSON",
                        type=output_file("teach-summary", convert=Path))


def run(args: argparse.Namespace) -> int:
    """Write teacher texts for each record (describe / caption / fuse / reason), check each against the record's
    labels (verdict ok or flagged with reasons), and append them to OUT.

    Resumable: re-run the same command after a crash or Ctrl-C and only missing outputs are produced.
    Exit status 0 when every record has its output, 1 when some failed (re-run to retry them).

    examples:
      plates teach records.jsonl -o teacher.jsonl --mode describe
      plates teach records.jsonl -o teacher.jsonl --mode caption --backend openai \\
          --base-url http://127.0.0.1:8000/v1 --model auto --concurrency 8
      OPENAI_API_KEY=… plates teach records.jsonl -o teacher.jsonl --mode describe --backend openai \\
          --base-url https://api.openai.com/v1 --model gpt-4o --rpm 500
      plates teach records.jsonl -o teacher.jsonl --mode fuse      # after describe and caption
    """
    check_input_file(args.records, "RECORDS")
    for path in args.inputs or []:
        check_input_file(path, "--inputs")
    inputs = [("RECORDS", args.records), *(("--inputs", p) for p in args.inputs or [] if not same_file(p, args.out))]
    guard_outputs(inputs, {"-o": args.out, "--summary": args.summary}, command="teach")
    if args.inputs and args.mode != "fuse":
        raise UserError("--inputs is only used with --mode fuse")
    prompts = load_prompts(args.prompts)
    backend = make_backend(args, prompts)

    def report(summary: Summary) -> None:
        print(summary.format(), file=sys.stderr)
        if args.summary:
            write_json(args.summary, summary.to_dict())

    summary = run_teach(args.records, args.out, args.mode, backend, prompts, concurrency=args.concurrency,
                        inputs=args.inputs, limit=args.limit, report=report)
    if summary.stopped:
        raise UserError(summary.stopped)
    return 1 if summary.failed else 0


COMMANDS = {"teach": (configure, run, "pseudo-label descriptions from a teacher model, checked against the labels")}
