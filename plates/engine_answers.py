"""Images answered by a local model: the pending images of a `plates predict` output as one temporary dataset
JSONL handed to one `swift infer` (the command `plates infer` builds, :func:`plates.swift_infer.build_infer_command`,
so generation options, the adapter's max_pixels and decoding are identical; the model is loaded once per run, at
most every 100,000 images), which writes its results every ``chunk_size`` answers (``write_batch_size``). A thread
reads them as they are written, matches each to its image by path, and appends and fsyncs them through the journal
(:class:`plates.journal.Journal`), keyed by image path + content hash; a re-run reads the keys present, cuts a torn
last line, and answers only what is missing. Used by `plates predict` and `plates export --verify`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plates import swift_cli
from plates.answer_lines import (
    PredictSummary, contract_fingerprint, describe_answer, resume_output, settings_fingerprint,
)
from plates.evaluation.confidence import field_confidences
from plates.errors import UserError
from plates.grounding import mapper_for_command, trained_with_grounding
from plates.image_inputs import Candidate
from plates.inference import InferenceSettings
from plates.io import iter_jsonl, progress, write_jsonl
from plates.journal import Journal
from plates.launch import Nodes, check_gpus_present
from plates.runs import checkpoint_dir
from plates.schema import answer_validator
from plates.student import for_run
from plates.swift_infer import build_infer_command

ENGINE_RUN_IMAGES = 100_000


def _confidences(response: Any, row: dict[str, Any]) -> dict[str, float] | None:
    """Per-field confidence from the token log-probabilities (`plates infer --logprobs`), when kept."""
    logprobs = row.get("logprobs")
    if not logprobs or not isinstance(response, str):
        return None
    try:
        return field_confidences(response, logprobs)
    except Exception:  # noqa: BLE001 - a confidence we cannot compute is left out, never fatal
        return None


def sample(candidate: Candidate, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The request for one image: the run's turns (:meth:`plates.student.StudentContract.messages`)."""
    return {"messages": messages, "images": [candidate.path]}


def _result_image(row: dict[str, Any]) -> str:
    images = row.get("images")
    image = images[0] if isinstance(images, list) and images else row.get("image")
    if isinstance(image, dict):
        image = image.get("path")
    return image if isinstance(image, str) else ""


class Answers:
    """Turns ms-swift's results into output lines while `swift infer` writes them.

    `swift infer --write_batch_size N` appends every N answers to its ``result_path`` (on rank 0, gathered from
    every rank), each line naming its image. A thread polls the file; each batch of complete lines becomes one
    write and one fsync of the output. Lines are matched by image path, not position, so an answer can never be
    filed under another image whatever order the ranks' answers arrive in."""

    def __init__(self, pending: list[Candidate], result: Path, *, log: Any, summary: "PredictSummary",
                 settings: str, decoding: str, bar: Any, mapper: Any = None):
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
            self.log.append_all(lines)
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


@dataclass
class Engine:
    """One `swift infer` command ready to answer images (:func:`prepare_engine`), its dataset and results files in
    the caller's scratch folder."""

    argv: list[str]
    env: dict[str, str]
    dataset: Path
    result: Path
    log_path: Path
    settings: InferenceSettings
    settings_key: str
    messages: list[dict[str, Any]]
    mapper: Any
    worker: bool


def prepare_engine(settings: InferenceSettings, workdir: Path, log_path: Path, *, chunk_size: int,
                   nodes: Nodes | None = None, grounding: bool | None = None, dry_run: bool = False,
                   notes: list[str] | None = None) -> Engine:
    """The `swift infer` that answers images with ``settings``, writing into ``workdir`` every ``chunk_size``
    answers, its whole output to ``log_path``. Built once up front: bad options fail before any image is read,
    and ``notes`` collects what to tell the user once. ``grounding`` asks for plate boxes and maps them to
    original pixels (:mod:`plates.grounding`); None: when the adapter's run trained on a `plates build
    --grounding` set. Each image is asked with the run's question and system text
    (:func:`plates.student.for_run`)."""
    nodes = nodes or Nodes()
    notes = notes if notes is not None else []
    adapters, model, decoding = settings.adapters, settings.model, settings.decoding
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
    dataset, result = workdir / "pending.jsonl", workdir / "results.jsonl"
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
    return Engine(argv, env, dataset, result, log_path, settings, settings_key, messages, mapper, worker)


def answer_images(engine: Engine, candidates: list[Candidate], rejected: list[dict], rejects: Path, output: Path,
                  summary: PredictSummary, verbose: bool = False) -> None:
    """Answer ``candidates`` into ``output`` (resumable: images answered there already are skipped) and write
    ``rejected`` to ``rejects``; on a machine of node rank > 0, its share of each chunk only (rank 0 writes)."""
    if engine.worker:
        pending = [c for c in candidates if c.key not in _read_keys(output)]
        summary.skipped = len(candidates) - len(pending)
        _answer_as_worker(engine, pending, summary, verbose)
    else:
        _answer(engine, candidates, rejected, rejects, output, summary, verbose)


def _answer(engine: Engine, candidates: list[Candidate], rejected: list[dict], rejects: Path, output: Path,
            summary: PredictSummary, verbose: bool) -> None:
    """The master's run: pending images through one `swift infer` per segment, answers appended as written."""
    log_path = engine.log_path
    log = Journal(output, "predict")
    try:
        pending = resume_output(log, output, engine.settings_key, rejects, rejected, candidates, summary)
        with progress(total=len(candidates), initial=summary.skipped, unit="image", desc="predict") as bar:
            for segment in engine_segments(pending, engine.settings.logprobs):
                write_jsonl(engine.dataset, (sample(c, engine.messages) for c in segment))
                engine.result.unlink(missing_ok=True)
                answers = Answers(segment, engine.result, log=log, summary=summary, settings=engine.settings_key,
                                  decoding=engine.settings.decoding, bar=bar, mapper=engine.mapper)
                with answers:
                    run = _run_engine(engine, verbose)
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


def _answer_as_worker(engine: Engine, pending: list[Candidate], summary: PredictSummary, verbose: bool) -> None:
    """A machine of node rank > 0: it answers its share of each chunk; rank 0 gathers and writes every answer."""
    for segment in engine_segments(pending, engine.settings.logprobs):
        write_jsonl(engine.dataset, (sample(c, engine.messages) for c in segment))
        run = _run_engine(engine, verbose)
        if run.code != 0:
            raise UserError(f"swift infer exited with {run.code} (ms-swift log: {engine.log_path})")
    print(f"plates predict: this machine answered its share of {len(pending)} images; node 0 wrote them to "
          f"{summary.out}", file=sys.stderr)


def _run_engine(engine: Engine, verbose: bool) -> Any:
    return swift_cli.run_swift(engine.argv, engine.env, log_path=engine.log_path, verbose=verbose,
                               who="plates predict")
