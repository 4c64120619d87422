"""`plates predict --endpoint URL`: answer images through OpenAI-compatible servers that are already running
(`plates serve`, `swift deploy`, vLLM), on this machine or others.

Nothing here is new machinery: requests go through :class:`plates.chat_client.ChatClient`, the caller of
`plates teach --backend openai` too (the official client with a total deadline and a size cap, images as
base64 data URLs shrunk to ``--max-pixels``, round-robin over the endpoints, retries with backoff on 429, 5xx,
timeouts, bad and oversized bodies), a few requests in flight from :func:`plates.workpool.run_pool`, and the
output is `plates predict`'s own: the same lines (key = image path + content hash), appended and fsynced one
answer at a time through the journal teach writes too (:class:`plates.journal.Journal`), so a re-run answers only what is missing and
each image is answered exactly once whichever endpoint answered it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from plates.answer_lines import (
    PredictSummary, contract_fingerprint, describe_answer, resume_output, settings_fingerprint,
)
from plates.chat_client import DEFAULT_MAX_PIXELS, ChatClient, RequestFailed
from plates.dump import default_rejects_path
from plates.errors import UserError
from plates.image_inputs import Candidate, collect_inputs
from plates.io import guard_outputs, progress, write_json
from plates.journal import Journal
from plates.outputs import input_path
from plates.schema import answer_validator
from plates.signals import deferred
from plates.student import StudentContract, for_run
from plates.workpool import run_pool

DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT = 300.0
DEFAULT_RETRIES = 5
# Local-engine options that an endpoint decides for itself: refused with --endpoint rather than ignored.
LOCAL_ONLY = {"gpus": "--gpus", "batch_size": "--batch-size", "template": "--template",
              "overrides": "--set", "logprobs": "--logprobs", "model_parallel": "--model-parallel",
              "nnodes": "--nnodes", "node_rank": "--node-rank", "master_addr": "--master-addr",
              "master_port": "--master-port"}


def add_arguments(parser: argparse.ArgumentParser, source: Any) -> None:
    """``--endpoint`` (one more choice in the --adapters/--model group ``source``) and its request options."""
    source.add_argument("--endpoint", action="append", metavar="URL",
                        help="answer through running OpenAI-compatible servers instead of a local model "
                             "(`plates serve`, `swift deploy`, vLLM), e.g. http://10.0.0.5:8000/v1; repeat to "
                             "spread images over several; each image is answered once")
    group = parser.add_argument_group("with --endpoint")
    group.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                       help=f"requests in flight over all endpoints (default {DEFAULT_CONCURRENCY})")
    group.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                       help=f"retries per image on 429, 5xx, timeouts, bad replies (default {DEFAULT_RETRIES})")
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help=f"total seconds one request may take (default {DEFAULT_TIMEOUT:g})")
    group.add_argument("--api-key-env", metavar="NAME",
                       help="environment variable holding the servers' API key (never printed or written)")
    group.add_argument("--prompt-from", metavar="CHECKPOINT", type=input_path(),
                       help="the checkpoint, run folder or merged model the servers serve: its images are asked "
                            "with the question (and system text) that run was trained with (default: plates' "
                            "default prompt, with a note)")


def shown_url(url: str) -> str:
    """An endpoint as printed: without the user:password part a URL may carry."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def endpoint_contract(args: argparse.Namespace, notes: list[str]) -> StudentContract:
    """What the servers' model was trained to be asked (``--prompt-from``; a server cannot be asked)."""
    if not getattr(args, "prompt_from", None):
        notes.append("asking with plates' default prompt; pass --prompt-from CHECKPOINT to ask with the question "
                     "the served run was trained with")
        return StudentContract()
    contract = for_run(args.prompt_from, notes)
    if contract.grounding:
        notes.append("the run trained with plate boxes; through --endpoint they are not asked for (their "
                     "coordinates cannot be mapped back here): the default extraction prompt is used")
    return contract


def _dry_run(args: argparse.Namespace, output: Path, rejects: Path, max_pixels: int) -> int:
    """The plan of an endpoint run, checked as far as it can be without contacting a server."""
    candidates, rejected = collect_inputs(args.inputs, exclude=(output, rejects))
    key = f", API key from ${args.api_key_env}" if args.api_key_env else ""
    print(f"plates predict: would answer {len(candidates)} images through {len(args.endpoint)} endpoint(s) "
          f"({', '.join(map(shown_url, args.endpoint))}), round-robin, {args.concurrency} requests in flight, "
          f"{args.timeout:g} s per request, {args.retries} retries, images shrunk to {max_pixels} pixels, answers "
          f"up to {args.max_new_tokens} tokens{key}; appending to {output}; {len(rejected)} rejected. "
          "No server was contacted.", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """`plates predict --endpoint …`; the exit status is 1 when some images failed for good (re-run)."""

    given = [flag for name, flag in LOCAL_ONLY.items() if getattr(args, name, None)]
    given += ["--backend"] if getattr(args, "backend", "transformers") != "transformers" else []
    if given:
        raise UserError(f"{', '.join(given)}: not used with --endpoint (the server decides; set it there)")
    if args.concurrency < 1 or args.retries < 0 or args.timeout <= 0:
        raise UserError("--concurrency must be at least 1, --retries at least 0, --timeout above 0")
    output = Path(args.output).expanduser().absolute()
    rejects = Path(args.rejects).expanduser().absolute() if args.rejects else default_rejects_path(output)
    guard_outputs([("INPUT", p) for p in args.inputs],
                  {"-o": (output, "predict"), "--rejects": (rejects, "predict-rejects"),
                   "--summary": (args.summary, "predict-summary") if args.summary else None}, command="predict")
    api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
    max_pixels = args.max_pixels or predict_max_pixels()
    notes: list[str] = []
    contract = endpoint_contract(args, notes)
    for note in notes:
        print(f"plates predict: note: {note}", file=sys.stderr)
    if args.dry_run:
        return _dry_run(args, output, rejects, max_pixels)
    client = ChatClient(args.endpoint, "auto", api_key or "EMPTY", timeout=args.timeout, retries=args.retries,
                        max_pixels=max_pixels, max_tokens=args.max_new_tokens, temperature=0.0,
                        max_tokens_flag="--max-new-tokens")
    served = client.check_servers()
    if len(set(served)) > 1:
        raise UserError("the endpoints serve different models (" + ", ".join(
            f"{url}: {name}" for url, name in zip(args.endpoint, served)) + "); give endpoints of one model")
    client.model = served[0]
    settings = settings_fingerprint({"endpoint_model": client.model, "decoding": "server",
                                     "max_new_tokens": args.max_new_tokens, "max_pixels": max_pixels,
                                     **contract_fingerprint(contract, False)})
    start = time.monotonic()
    candidates, rejected = collect_inputs(args.inputs, exclude=(output, rejects))
    summary = PredictSummary(out=str(output), files=len(candidates) + len(rejected), images=len(candidates),
                             rejected=len(rejected))
    summary.reject_codes.update(r["code"] for r in rejected)
    failed: Counter = Counter()
    stop = threading.Event()
    validator = answer_validator()

    def ask(candidate: Candidate) -> tuple[Candidate, Any]:
        if stop.is_set():
            return candidate, None
        try:
            data = Path(candidate.path).read_bytes()
            return candidate, client.complete(contract.system or "", contract.question(False), data)
        except OSError as exc:
            return candidate, RequestFailed(f"image unreadable ({exc.strerror})")
        except RequestFailed as exc:
            return candidate, exc

    log = Journal(output, "predict")
    try:
        pending = resume_output(log, output, settings, rejects, rejected, candidates, summary)
        with progress(total=len(candidates), initial=summary.skipped, unit="image", desc="predict") as bar:
            for candidate, result in run_pool(ask, pending, args.concurrency, stop):
                if result is None:
                    continue
                if isinstance(result, RequestFailed):
                    failed[result.reason] += 1
                    if result.fatal:
                        stop.set()
                    continue
                described = describe_answer(result.text, validator)
                with deferred():  # the summary counts exactly the lines written
                    log.append({"key": candidate.key, "image": candidate.path, "sha256": candidate.sha256,
                                **described, "response": result.text, "confidence": None, "settings": settings,
                                "decoding": "server", "model": client.model})
                    summary.answered += 1
                    summary.parsed += described["answer"] is not None
                    summary.schema_valid += described["schema_valid"]
                bar.update(1)
    finally:
        log.close()
        summary.seconds = time.monotonic() - start
    if args.summary:
        write_json(args.summary, {**summary.to_dict(), "failed": dict(failed)})
    print(summary.format(f"through {len(args.endpoint)} endpoint(s)"), file=sys.stderr)
    for reason, count in failed.most_common():
        print(f"  failed        {count}  {reason}", file=sys.stderr)
    if failed:
        print("plates predict: some images failed; re-run the same command to retry only them", file=sys.stderr)
    return 1 if failed else 0


def predict_max_pixels() -> int:
    """The pixel budget images are shrunk to before they are sent (the teacher's default)."""
    return DEFAULT_MAX_PIXELS
