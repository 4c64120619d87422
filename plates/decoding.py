"""Schema-constrained decoding: every answer valid against ``eval/answer.schema.json`` by construction.

A production extractor must never emit invalid JSON, and a weak model must not ramble inside a string until the
token limit. Both follow from one schema (the one ``plates schema`` generates), turned into what each ms-swift
inference backend can take:

* ``transformers`` (CPU and GPU): an xgrammar grammar-constrained logits processor, one grammar matcher per
  sequence so batched generation works. It reaches ms-swift's generation through ``--external_plugins`` with
  ``plates/swift_plugin.py`` (shipped inside the package), which wraps the template hook
  ``Template.prepare_generate_kwargs`` that both of ms-swift's generation paths (full and streaming) call right
  before ``model.generate``; the schema path travels in ``PLATES_DECODING_SCHEMA``. xgrammar is the engine vLLM
  and SGLang use (lm-format-enforcer and outlines were the alternatives): it compiles our schema for the 151,936-
  token Qwen vocabulary in about half a second, and ``benchmarks/bench_decoding.py`` measures its per-token cost
  beside free decoding (1.32x per step on the tiny model, whose own forward pass costs almost nothing). Within
  ``max_new_tokens`` the processor also closes every answer in time (see :class:`SchemaLogitsProcessor`).
* ``vllm``: ms-swift forwards only ``structured_outputs_regex``, so the schema becomes a regular expression
  through outlines-core's ``build_regex_from_schema`` (the JSON-schema-to-regex translation that Outlines and
  vLLM's own outlines backend use), never a hand-written one. outlines-core ignores an integer's ``minimum`` and
  ``maximum``; the optional plate box's integers (0..99999) are given to it as ``maxDigits`` and the one
  fragment it makes of them loses its minus sign (:func:`_regex_of`), so the regex admits exactly the schema's
  integers.

Both forms constrain the same answer: json.dumps' separators (``", "`` and ``": "``, what ``plates build``
teaches), no other whitespace for xgrammar and at most one space between tokens for the regex; the open string
fields bounded by the schema's ``pattern``.

Chain-of-thought (``reason``) targets are text, a blank line, then the JSON: constraining them would force the
model to skip its reasoning, so ``--decoding schema`` refuses a dataset whose samples are not JSON extraction
samples (:func:`check_dataset`) with a one-line message that points to ``--decoding free``.

Stable API (``plates infer``, ``plates predict``, ``plates serve`` and the demo call it)::

    decoding_options(decoding, backend, schema_path=None) -> (swift options dict, environment dict)
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable

from plates.errors import UserError
from plates.grounding import BBOX_TAG
from plates.io import atomic_write, dump_json_line, iter_jsonl
from plates.schema import load_schema, schema_path as default_path
from plates.student import REASON_PROMPT

MODES = ("schema", "free")
DEFAULT_MODE = "schema"
SCHEMA_ENV = "PLATES_DECODING_SCHEMA"
SEPARATORS = (", ", ": ")
REGEX_WHITESPACE = r"[ ]?"
_BACKEND_ALIASES = {"pt": "transformers"}
SCHEMA_BACKENDS = ("transformers", "vllm")

log = logging.getLogger(__name__)


def plugin_path() -> Path:
    """The ``--external_plugins`` file that installs the constrained logits processor inside ms-swift."""
    return Path(__file__).resolve().with_name("swift_plugin.py")


def resolve_schema_path(schema_path: str | os.PathLike | None = None) -> Path:
    """The schema file to constrain to: ``schema_path``, else the committed ``eval/answer.schema.json``."""
    path = Path(schema_path).expanduser().resolve() if schema_path else default_path()
    if not path.is_file():
        raise UserError(f"{path}: no such answer schema (run `plates schema`, or pass the schema file)")
    load_schema(path)
    return path


def decoding_options(decoding: str, backend: str,
                     schema_path: str | os.PathLike | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The extra ``swift infer`` / ``swift deploy`` arguments and environment for a decoding mode.

    ``decoding``: ``"schema"`` (answers constrained to the answer schema) or ``"free"`` (unconstrained).
    ``backend``: ms-swift's ``infer_backend`` (``transformers``, its alias ``pt``, or ``vllm``).
    ``schema_path``: the JSON Schema to constrain to; default the committed ``eval/answer.schema.json``.

    Returns ``(options, env)``: ``options`` maps ms-swift argument names to values (merge them into the command's
    options; ``external_plugins`` is a list to extend if the caller has its own), ``env`` holds variables to add to
    the subprocess environment. ``free`` returns two empty dicts. Raises ``UserError`` for an unknown mode, or for
    ``schema`` with a backend that cannot take a constraint (lmdeploy, sglang).
    """
    if decoding not in MODES:
        raise UserError(f"unknown decoding {decoding!r}; choose from {', '.join(MODES)}")
    if decoding == "free":
        return {}, {}
    backend = _BACKEND_ALIASES.get(backend, backend)
    if backend not in SCHEMA_BACKENDS:
        raise UserError(f"--decoding schema works with the {' and '.join(SCHEMA_BACKENDS)} backends, not {backend}; "
                        "pass --decoding free")
    path = resolve_schema_path(schema_path)
    if backend == "vllm":
        return {"structured_outputs_regex": schema_regex(path)}, {}
    return {"external_plugins": [str(plugin_path())]}, {SCHEMA_ENV: str(path)}


# ---- the schema in the form the engines take ---------------------------------------------------------------------

def decoding_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The answer schema rewritten into keywords every guided-decoding engine supports, accepting the same answers.

    ``if {type: object} then A else B`` becomes ``anyOf [A, B]`` (equivalent here: A only admits objects and B
    only arrays), and a string's ``maxLength`` is dropped where its anchored ``pattern`` already bounds the length
    (xgrammar follows the pattern and outlines-core the length when both are given). Descriptions and examples go.
    """
    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {k: rewrite(v) for k, v in node.items() if k not in ("description", "examples", "title", "$comment")}
        if "if" in out and "then" in out and "else" in out and out["if"] == {"type": "object"}:
            out["anyOf"] = [out.pop("then"), out.pop("else")]
            out.pop("if")
        if "pattern" in out and "maxLength" in out:
            out.pop("maxLength")
        if out.get("type") == "integer" and out.get("minimum") == 0 and _is_digits_bound(out.get("maximum")):
            out["maxDigits"] = len(str(out["maximum"]))
        return out

    result = rewrite(copy.deepcopy(schema))
    for key in ("$schema", "$id"):
        result.pop(key, None)
    return result


def _schema_text(path: str | os.PathLike) -> str:
    return json.dumps(decoding_schema(load_schema(path)), ensure_ascii=False, sort_keys=False)


def _is_digits_bound(value: Any) -> bool:
    """Whether ``value`` is 9, 99, 999, …: a maximum that a count of digits states exactly."""
    return type(value) is int and value > 0 and set(str(value)) == {"9"}


@functools.lru_cache(maxsize=8)
def _regex_of(schema_text: str) -> str:
    """outlines-core's regex of a decoding schema; a non-negative integer bounded by ``maxDigits`` (which
    outlines-core writes as ``(-)?(0|[1-9][0-9]{0,N})``, ignoring ``minimum``) loses its optional minus sign."""
    from outlines_core.json_schema import build_regex_from_schema

    regex = build_regex_from_schema(schema_text, REGEX_WHITESPACE)
    for digits in sorted({int(d) for d in re.findall(r'"maxDigits": (\d+)', schema_text)}):
        signed = f"(-)?(0|[1-9][0-9]{{0,{digits - 1}}})"
        if signed not in regex:
            raise RuntimeError(f"outlines-core no longer writes {signed} for a bounded integer; update _regex_of")
        regex = regex.replace(signed, f"(0|[1-9][0-9]{{0,{digits - 1}}})")
    return regex


def schema_regex(schema_path: str | os.PathLike | None = None) -> str:
    """The regular expression (Python ``re`` and xgrammar syntax) whose full matches are the schema's answers with
    compact whitespace: what the vLLM backend receives as ``structured_outputs_regex``."""
    return _regex_of(_schema_text(resolve_schema_path(schema_path)))


# ---- transformers: xgrammar logits processor ----------------------------------------------------------------------

_COMPILED: dict[tuple[int, int, tuple[int, ...], str], Any] = {}
_CLOSERS = frozenset(b'"}]')


def compile_grammar(tokenizer: Any, vocab_size: int, schema_text: str,
                    stop_token_ids: Iterable[int] | None = None) -> Any:
    """xgrammar's compiled grammar of a (decoding) schema for a Hugging Face tokenizer, cached per process.

    ``vocab_size`` is the model's logits width (151,936 for Qwen2.5, more than the tokenizer's 151,665 entries);
    ``stop_token_ids`` are the ids that may end the answer (the generation config's EOS ids)."""
    return _grammar(tokenizer, vocab_size, schema_text, stop_token_ids).compiled


class _Grammar:
    """A compiled grammar plus what the closing policy needs: a priority per token (closing tokens made only of
    ``"``, ``}``, ``]`` first, then longer tokens) and the reserve, the number of tokens before the budget's end
    at which a sequence starts closing its answer."""

    def __init__(self, compiled: Any, decoded_vocab: list[bytes], vocab_size: int):
        import torch

        self.compiled = compiled
        self.vocab_size = vocab_size
        priority = [len(text) + (1000 if text and set(text) <= _CLOSERS else 0) for text in decoded_vocab]
        priority = (priority + [0] * vocab_size)[:vocab_size]
        self.priority = torch.tensor(priority, dtype=torch.int32)
        self.shifts = torch.arange(32, dtype=torch.int32)
        self.reserve = 2 * self.closing_cost() + 8

    def allowed(self, bitmask_row) -> Any:
        return ((bitmask_row.unsqueeze(-1) >> self.shifts) & 1).flatten()[: self.vocab_size].bool()

    def closing_token(self, bitmask_row) -> int:
        import torch

        return int(torch.where(self.allowed(bitmask_row), self.priority, -1).argmax())

    def closing_cost(self) -> int:
        """Tokens the closing policy takes for a whole answer, stop token included (about a shortest answer)."""
        import xgrammar as xgr

        matcher = xgr.GrammarMatcher(self.compiled)
        buffer = xgr.allocate_token_bitmask(1, self.vocab_size)
        steps = 0
        while not matcher.is_terminated() and steps < 10_000:
            matcher.fill_next_token_bitmask(buffer, 0)
            if not matcher.accept_token(self.closing_token(buffer[0])):
                break
            steps += 1
        return steps


def _grammar(tokenizer: Any, vocab_size: int, schema_text: str, stop_token_ids: Iterable[int] | None) -> _Grammar:
    import xgrammar as xgr

    stops = tuple(sorted(set(int(t) for t in stop_token_ids or ())))
    key = (id(tokenizer), int(vocab_size), stops, schema_text)
    if key not in _COMPILED:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=int(vocab_size),
                                                  stop_token_ids=list(stops) or None)
        compiled = xgr.GrammarCompiler(info).compile_json_schema(
            schema_text, any_whitespace=False, separators=SEPARATORS, strict_mode=True)
        _COMPILED[key] = _Grammar(compiled, info.decoded_vocab, int(vocab_size))
    return _COMPILED[key]


class SchemaLogitsProcessor:
    """A ``transformers`` logits processor (duck-typed: ``generate`` only calls it, and importing ``transformers``
    here would slow every ``plates`` command) that masks every token the schema's grammar does not allow next.

    One instance serves one ``generate`` call: on its first call it sizes itself to the batch (one xgrammar
    matcher per sequence, so ``max_batch_size > 1`` and ``num_return_sequences`` work) and compiles the grammar for
    the logits width; from then on it feeds each sequence's last sampled token to its matcher. A finished sequence
    (matcher terminated after a stop token, or a token the grammar refused, e.g. from a stop word) is left alone:
    ``generate`` pads it from then on. Masking runs before temperature/top-k/top-p (``generate`` merges custom
    processors ahead of the sampling warpers), so sampling only ever sees allowed tokens.

    With ``max_new_tokens`` the answer also fits the budget: a grammar alone cannot stop a weak model from
    spending every token inside the answer and being cut off mid-JSON, so in the last ``reserve`` tokens (twice
    what the closing policy needs for a whole answer) each sequence is steered to its end: closing tokens
    (``"``, ``}``, ``]``) whenever the grammar allows one, else the longest allowed token, which finishes required
    keys and enum values in few steps. Answers that end earlier are never touched.
    """

    def __init__(self, tokenizer: Any, schema_text: str, stop_token_ids: Iterable[int] | None = None,
                 max_new_tokens: int | None = None):
        self.tokenizer = tokenizer
        self.schema_text = schema_text
        self.stop_token_ids = list(stop_token_ids or [])
        self.max_new_tokens = max_new_tokens
        self.matchers: list[Any] | None = None
        self.active: list[bool] = []
        self.bitmask = None
        self.grammar: _Grammar | None = None
        self.steps = 0

    def __call__(self, input_ids, scores):
        import xgrammar as xgr

        if self.matchers is None:
            self.grammar = _grammar(self.tokenizer, scores.shape[-1], self.schema_text, self.stop_token_ids)
            self.matchers = [xgr.GrammarMatcher(self.grammar.compiled) for _ in range(input_ids.shape[0])]
            self.active = [True] * len(self.matchers)
            self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), scores.shape[-1])
        else:
            last = input_ids[:, -1].tolist()
            for i, matcher in enumerate(self.matchers):
                if self.active[i] and not matcher.is_terminated() and not matcher.accept_token(int(last[i])):
                    log.warning("schema decoding: sequence %d left the grammar at token %d; unconstrained from here",
                                i, last[i])
                    self.active[i] = False
        self.steps += 1
        rows = [i for i, m in enumerate(self.matchers) if self.active[i] and not m.is_terminated()]
        if not rows:
            return scores
        for i in rows:
            self.matchers[i].fill_next_token_bitmask(self.bitmask, i)
        xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device), indices=rows)
        if self.max_new_tokens and self.max_new_tokens - self.steps < self.grammar.reserve:
            for i in rows:
                token = self.grammar.closing_token(self.bitmask[i])
                kept = scores[i, token].clone()
                scores[i] = float("-inf")
                scores[i, token] = kept if bool(kept.isfinite()) else 0.0
        return scores


def install_swift_hook(schema_path: str | os.PathLike) -> None:
    """Make every ms-swift generation in this process constrained to the schema at ``schema_path``.

    Wraps ``swift.template.base.Template.prepare_generate_kwargs``, the hook ms-swift's transformers engine calls
    with the final ``generate`` kwargs for both its full and streaming paths, and prepends a fresh
    :class:`SchemaLogitsProcessor` to ``logits_processor`` (keeping any ms-swift put there, e.g. for logprobs).
    Idempotent. Called by ``plates/swift_plugin.py`` when ``swift infer/deploy`` loads it."""
    from swift.template.base import Template
    from transformers import LogitsProcessorList

    original = Template.prepare_generate_kwargs
    if getattr(original, "_plates_schema_hook", False):
        return
    schema_text = _schema_text(schema_path)
    compile_notice = [False]

    def prepare_generate_kwargs(self, generate_kwargs: dict[str, Any], *, model=None) -> dict[str, Any]:
        generate_kwargs = original(self, generate_kwargs, model=model)
        config = generate_kwargs.get("generation_config")
        eos = getattr(config, "eos_token_id", None)
        stops = [eos] if isinstance(eos, int) else list(eos or [])
        if not stops and getattr(self.tokenizer, "eos_token_id", None) is not None:
            stops = [self.tokenizer.eos_token_id]
        if not compile_notice[0]:
            compile_notice[0] = True
            log.info("plates: schema-constrained decoding (%s)", schema_path)
        processor = SchemaLogitsProcessor(self.tokenizer, schema_text, stops,
                                          max_new_tokens=getattr(config, "max_new_tokens", None))
        existing = list(generate_kwargs.get("logits_processor") or [])
        generate_kwargs["logits_processor"] = LogitsProcessorList([processor, *existing])
        return generate_kwargs

    prepare_generate_kwargs._plates_schema_hook = True
    Template.prepare_generate_kwargs = prepare_generate_kwargs


def record_decoding(source: str | os.PathLike, target: str | os.PathLike, decoding: str,
                    transform: Any = None) -> int:
    """Copy a results JSONL to ``target`` (atomically) with ``"decoding": MODE`` added to every line, so that
    ``plates eval`` can report how the answers were decoded; returns the line count. A line that is not a JSON
    object is copied unchanged (``plates eval`` reports it). ``transform(row, index)`` (e.g. plate boxes back to
    original pixels, :mod:`plates.grounding`) returns each object line's new form first."""
    count = 0
    with open(source, encoding="utf-8") as handle, atomic_write(target) as out:
        for line in handle:
            if not line.strip():
                continue
            count += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict):
                if transform is not None:
                    row = transform(row, count - 1)
                row["decoding"] = decoding
                out.write(dump_json_line(row))
            else:
                out.write(line if line.endswith("\n") else line + "\n")
    return count


# ---- datasets the schema cannot constrain -----------------------------------------------------------------------

def is_extraction_sample(sample: Any) -> bool:
    """Whether a dataset sample asks for the bare JSON answer: no chain-of-thought prompt and, when it carries a
    reference answer, one that is a JSON object (a ``reason`` target is text, a blank line, then the JSON; a
    grounding target is JSON with ``<bbox>`` tags)."""
    messages = sample.get("messages") if isinstance(sample, dict) else None
    if not isinstance(messages, list) or not messages:
        return True
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if users and isinstance(users[-1], str) and REASON_PROMPT in users[-1]:
        return False
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") == "assistant" and isinstance(last.get("content"), str):
        try:  # a grounding target holds ms-swift's <bbox> tags where its boxes go
            return isinstance(json.loads(last["content"].replace(BBOX_TAG, "[0, 0, 0, 0]")), dict)
        except json.JSONDecodeError:
            return False
    return True


def check_dataset(path: str | os.PathLike) -> None:
    """Refuse ``--decoding schema`` for a dataset holding samples that are not JSON extraction samples."""
    total = other = 0
    for _, sample in iter_jsonl(path, []):
        total += 1
        other += not is_extraction_sample(sample)
    if other:
        raise UserError(f"{path}: {other} of {total} samples are not JSON extraction samples (chain-of-thought "
                        "'reason' prompts or descriptions answer with text); --decoding schema would force JSON onto "
                        "them: pass --decoding free")
