"""Confidence and abstention: how sure the model was of each field it wrote, and what accuracy it reaches when it
answers only where it is sure.

`plates infer --logprobs` keeps ms-swift's token log-probabilities next to each response (``--logprobs true``;
one ``{"token", "logprob", …}`` entry per generated token). :func:`field_confidences` maps every field value of
the JSON answer back to the tokens that wrote it and turns their log-probabilities into one number per field.

The measure is the **product of the token probabilities of the value** (``exp`` of the summed logprobs): the
probability that the model writes exactly this value once it has written the key before it. A single doubtful
character of a plate number makes the whole number doubtful, which is what a reader of the number cares about;
the minimum token probability is kept too (:attr:`ValueConfidence.min_token_probability`) for callers that
prefer it. The tokens counted are those that write the value and its closing quote (ending the value is part of
the decision: a plate number one character short), including a token shared with the opening quote (``"云``). With several
plates a plate field gets the minimum over its plates: the answer is only as sure as its least sure plate.

Token texts are aligned to the response by walking both: byte-level tokenizers split rare characters (many
Chinese characters) into several tokens that decode to U+FFFD each, and such runs are given the characters
between their clean neighbours. Tokens missing from the text (end-of-turn markers) are skipped.

Risk–coverage (:func:`risk_coverage`) sorts the scored fields by confidence and reports the accuracy of the most
confident 100/95/90/80%, and :func:`threshold_for` the lowest confidence threshold whose answered part still
reaches a target accuracy: below it the model should answer '未知'.
"""

from __future__ import annotations

import bisect
import math
import re
from array import array
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from plates.evaluation.common import FIELD_SLUGS
from plates.evaluation.extract import object_bounds
from plates.evaluation.render import md_table, table
from plates.io import atomic_write
from plates.labels import FIELDS, PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, VEHICLE_GROUP

COVERAGES = (1.0, 0.95, 0.9, 0.8)
DEFAULT_TARGET = 0.99
MEASURE = "product of the token probabilities of the value (min over plates)"
ANSWER = "(answer)"

_REPLACEMENT = "\ufffd"
_FIELD_NAMES = "|".join(map(re.escape, FIELDS))
# "field": "value" (JSON) or 'field': 'value' (the seed's Python dicts); also bare null/true/false/numbers.
_VALUE = re.compile(
    r"""(["'])(?P<field>""" + _FIELD_NAMES + r""")\1\s*:\s*"""
    r"""(?:(?P<q>["'])(?P<text>(?:\\.|(?!(?P=q))[^\\])*)(?P=q)|(?P<bare>null|None|true|false|True|False|-?\d[\d.eE+-]*))""",
    re.S)
_PLATE_FIELDS = frozenset(PLATE_FIELDS)


@dataclass(frozen=True)
class ValueConfidence:
    """One field value as written in a response: where it is and how sure the model was of it."""

    field: str
    value: str
    start: int
    end: int
    confidence: float
    min_token_probability: float
    plate: int | None


# ---------------------------------------------------------------------------------------------------- tokens


def token_entries(logprobs: Any) -> list[tuple[str, float]]:
    """(token text, logprob) per generated token from what ms-swift / an OpenAI-compatible server returns: a
    ``{"content": [...]}`` object, the ``content`` list itself, or (token, logprob) pairs. Entries without a
    finite logprob are kept with -inf (they make a value's confidence 0, never a crash)."""
    if isinstance(logprobs, dict):
        logprobs = logprobs.get("content")
    if not isinstance(logprobs, (list, tuple)):
        return []
    out: list[tuple[str, float]] = []
    append = out.append
    for entry in logprobs:
        if type(entry) is dict:
            token, value = entry.get("token"), entry.get("logprob")
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            token, value = entry
        else:
            continue
        if type(token) is not str:
            token = "" if token is None else str(token)
        if type(value) is not float:
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = -math.inf
        append((token, value if value == value else -math.inf))
    return out


def token_segments(response: str, tokens: Sequence[str]) -> list[tuple[int, int, int, int]]:
    """(start, end, first token, last token): which characters of ``response`` which tokens wrote, in text
    order. Walks text and tokens together: a clean token is found at the current position (whitespace-only
    tokens that are not there, and tokens absent from the rest of the text, were not printed and are skipped); a
    run of tokens that decode to U+FFFD (parts of multi-byte characters) owns the characters up to where the
    next clean token starts."""
    segments: list[tuple[int, int, int, int]] = []
    pos = 0
    pending_first = pending_last = -1
    for k, piece in enumerate(tokens):
        if not piece:
            continue
        if _REPLACEMENT in piece:
            if pending_first < 0:
                pending_first = k
            pending_last = k
            continue
        if response.startswith(piece, pos):
            at = pos
        elif pending_first < 0 and not piece.strip():
            continue
        else:
            at = response.find(piece, pos)
            if at < 0:
                continue
        if pending_first >= 0:
            if at > pos:
                segments.append((pos, at, pending_first, pending_last))
            pending_first = -1
        segments.append((at, at + len(piece), k, k))
        pos = at + len(piece)
    if pending_first >= 0 and pos < len(response):
        segments.append((pos, len(response), pending_first, pending_last))
    return segments


def char_tokens(response: str, tokens: Sequence[str]) -> list[tuple[int, int] | None]:
    """For every character of ``response`` the (first, last) index of the tokens that wrote it (see
    :func:`token_segments`), None when no token can be placed there."""
    owners: list[tuple[int, int] | None] = [None] * len(response)
    for start, end, first, last in token_segments(response, tokens):
        owners[start:end] = [(first, last)] * (end - start)
    return owners


# ---------------------------------------------------------------------------------------------------- values


def _answer_region(response: str) -> tuple[int, int]:
    """Where the answer is: the last top-level ``{…}`` naming an answer group (what the parser reads when a
    response has reasoning or drafts around it), else the whole text (e.g. truncated JSON). A response that
    names each group at most once has one answer: the whole text, without scanning."""
    if response.count(VEHICLE_GROUP) <= 1 and response.count(PLATE_GROUP) <= 1:
        return 0, len(response)
    spans = object_bounds(response)
    for start, end in reversed(spans):
        body = response[start:end]
        if VEHICLE_GROUP in body or PLATE_GROUP in body:
            return start, end
    return 0, len(response)


def value_spans(response: str) -> list[tuple[str, str, int, int, int | None, int]]:
    """(field, value text, start, end, plate index, decided by) for every field value written in the response's
    answer; the plate index counts occurrences of a plate field (None for vehicle fields); ``decided by`` is
    where the tokens that decide the value end: after the closing quote (ending the value is part of it, e.g.
    a plate number one character short)."""
    if not isinstance(response, str):
        return []
    lo, hi = _answer_region(response)
    seen: dict[str, int] = {}
    out = []
    for match in _VALUE.finditer(response, lo, hi):
        field = match.group("field")
        group = "text" if match.group("q") else "bare"
        plate = None
        if field in _PLATE_FIELDS:
            plate = seen.get(field, 0)
            seen[field] = plate + 1
        start, end = match.span(group)
        decided = end + 1 if group == "text" else end
        if start == end:  # "" : the quotes are the whole decision
            start, end = start - 1, end + 1
            decided = end
        out.append((field, match.group(group), start, end, plate, decided))
    return out


def value_confidences(response: str, logprobs: Any) -> list[ValueConfidence]:
    """Every field value of the answer with its confidence (see the module docstring); [] without logprobs."""
    entries = token_entries(logprobs)
    if not entries or not isinstance(response, str):
        return []
    spans = value_spans(response)
    if not spans:
        return []
    segments = token_segments(response, [t for t, _ in entries])
    starts = [segment[0] for segment in segments]
    out = []
    for field, text, start, end, plate, decided in spans:
        index = max(0, bisect.bisect_right(starts, start) - 1)
        covered = []
        while index < len(segments) and segments[index][0] < decided:
            if segments[index][1] > start:
                covered.append(segments[index])
            index += 1
        if not covered:
            continue
        first, last = min(c[2] for c in covered), max(c[3] for c in covered)
        values = [entries[k][1] for k in range(first, last + 1)]
        total, lowest = min(0.0, sum(values)), min(0.0, min(values))  # a logprob is never > 0
        out.append(ValueConfidence(field, text, start, end, math.exp(total) if total > -745 else 0.0,
                                   math.exp(lowest) if lowest > -745 else 0.0, plate))
    return out


def field_confidences(response: str, logprobs: Any) -> dict[str, float]:
    """Per field, the model's confidence in the value it wrote (product of the value's token probabilities;
    minimum over plates for plate fields). Fields not written are absent; no logprobs give {}. Never raises on
    model output."""
    out: dict[str, float] = {}
    for value in value_confidences(response, logprobs):
        previous = out.get(value.field)
        out[value.field] = value.confidence if previous is None else min(previous, value.confidence)
    return out


# ---------------------------------------------------------------------------------------------------- risk–coverage


def _ordered(confidences: Sequence[float], correct: Sequence[bool]):
    import numpy as np

    conf = np.asarray(confidences, dtype=float)
    right = np.asarray(correct, dtype=bool)
    order = np.argsort(-conf, kind="stable")
    return conf[order], np.cumsum(right[order])


def risk_coverage(confidences: Sequence[float], correct: Sequence[bool],
                  coverages: Iterable[float] = COVERAGES) -> list[dict[str, Any]]:
    """Accuracy when answering only the most confident share of the samples, for each coverage: ``{"coverage",
    "answered", "accuracy", "threshold"}`` (threshold: the confidence of the last answered sample)."""
    n = len(confidences)
    if n == 0:
        return [{"coverage": c, "answered": 0, "accuracy": None, "threshold": None} for c in coverages]
    conf, cumulative = _ordered(confidences, correct)
    rows = []
    for c in coverages:
        k = min(n, max(1, round(c * n)))
        rows.append({"coverage": c, "answered": k, "accuracy": float(cumulative[k - 1] / k),
                     "threshold": float(conf[k - 1])})
    return rows


def threshold_for(confidences: Sequence[float], correct: Sequence[bool], target: float) -> dict[str, Any] | None:
    """The lowest confidence threshold ``t`` such that the samples with confidence ≥ ``t`` are right at least
    ``target`` of the time (ties are answered or abstained together): ``{"threshold", "answered", "coverage",
    "accuracy"}``, or None when not even the most confident group reaches the target."""
    import numpy as np

    n = len(confidences)
    if n == 0:
        return None
    conf, cumulative = _ordered(confidences, correct)
    ends = np.flatnonzero(np.append(conf[1:] != conf[:-1], True))  # last index of each tie group
    accuracy = cumulative[ends] / (ends + 1)
    good = np.flatnonzero(accuracy >= target - 1e-12)
    if not len(good):
        return None
    end = int(ends[good[-1]])
    return {"threshold": float(conf[end]), "answered": end + 1, "coverage": (end + 1) / n,
            "accuracy": float(cumulative[end] / (end + 1))}


def curve(confidences: Sequence[float], correct: Sequence[bool], points: int = 101) -> list[list[float]]:
    """[coverage, accuracy] at up to ``points`` evenly spaced coverages (for plots; small in the JSON)."""
    n = len(confidences)
    if n == 0:
        return []
    _, cumulative = _ordered(confidences, correct)
    ks = sorted({min(n, max(1, round(n * i / (points - 1)))) for i in range(points)})
    return [[k / n, float(cumulative[k - 1] / k)] for k in ks]


def summarise(confidences: Sequence[float], correct: Sequence[bool], target: float) -> dict[str, Any]:
    """One field's risk–coverage block of the report."""
    n = len(confidences)
    return {"n": n, "accuracy": (sum(map(bool, correct)) / n) if n else None,
            "coverage": risk_coverage(confidences, correct), "target": threshold_for(confidences, correct, target),
            "curve": curve(confidences, correct)}


class ConfidenceObserver:
    """Collects (confidence, correct) per scored field while `plates eval` scores, and adds ``confidence`` to the
    report. A field the answer does not contain has confidence 0 (abstained on first). The answer as a whole
    (``(answer)``) has the minimum of its field confidences and is right when it is an exact match."""

    def __init__(self, target: float = DEFAULT_TARGET):
        self.target = target
        # compact columns (8 + 1 bytes per scored field), not lists of Python objects: a million answers fit
        self.units: dict[str, tuple[array, array]] = {f: (array("d"), array("b")) for f in (*FIELDS, ANSWER)}
        self.with_logprobs = 0
        self.without = 0

    def add(self, item: Any, outcome: Any) -> None:
        logprobs = item.logprobs
        if not logprobs:
            self.without += 1
            return
        self.with_logprobs += 1
        confidences = field_confidences(item.response, logprobs)
        for field, ref, pred in outcome.pairs:
            conf, right = self.units[field]
            conf.append(confidences.get(field, 0.0))
            right.append(ref == pred)
        conf, right = self.units[PLATE_NUMBER]
        for ref, pred in outcome.numbers:
            conf.append(confidences.get(PLATE_NUMBER, 0.0))
            right.append(ref == pred)
        conf, right = self.units[ANSWER]
        conf.append(min(confidences.values()) if confidences else 0.0)
        right.append(bool(outcome.exact))

    def finish(self, report: dict[str, Any]) -> None:
        if not self.with_logprobs:
            return
        report["confidence"] = {
            "measure": MEASURE, "target_accuracy": self.target,
            "answers_with_logprobs": self.with_logprobs, "answers_without_logprobs": self.without,
            "fields": {f: summarise(*self.units[f], self.target) for f in (*FIELDS, ANSWER) if self.units[f][0]},
        }


# ---------------------------------------------------------------------------------------------------- rendering


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def confidence_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per field: n, accuracy at each coverage, the threshold for the target and its coverage."""
    block = report.get("confidence") or {}
    target = block.get("target_accuracy", DEFAULT_TARGET)
    rows = [["field", "n", *(f"top {round(100 * c)}%" for c in COVERAGES),
             f"threshold for {_pct(target)}", "answers then"]]
    for field, stats in (block.get("fields") or {}).items():
        reach = stats.get("target")
        rows.append([field, str(stats["n"]), *(_pct(r["accuracy"]) for r in stats["coverage"]),
                     "—" if reach is None else f"{reach['threshold']:.3g}",
                     "none reach it" if reach is None else _pct(reach["coverage"])])
    return rows


def format_confidence(report: dict[str, Any], markdown: bool = False) -> str:
    """The risk–coverage table (terminal or Markdown); '' when the report has no confidences."""
    block = report.get("confidence")
    if not block:
        return ""

    rows = confidence_rows(report)
    head = (f"risk–coverage: accuracy when answering only the most confident share ({block['measure']}; "
            f"{block['answers_with_logprobs']} answers with logprobs"
            + (f", {block['answers_without_logprobs']} without" if block["answers_without_logprobs"] else "") + ")")
    if markdown:
        return f"## Confidence\n\n{head}\n\n{md_table(rows)}\n"
    return head + "\n" + table(rows, right=range(1, len(rows[0])))


def plot_risk_coverage(report: dict[str, Any], path: Any) -> Any:
    """PNG of the accuracy-vs-coverage curve per field (ASCII field names: no CJK font needed); returns the path
    (a file path or a binary file object), None without confidences."""
    block = report.get("confidence")
    if not block:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for field, stats in block["fields"].items():
        points = stats["curve"]
        if not points:
            continue
        label = "answer (exact match)" if field == ANSWER else FIELD_SLUGS.get(field, field)
        ax.plot([100 * c for c, _ in points], [100 * a for _, a in points], label=label,
                linewidth=2.4 if field == ANSWER else 1.3, color="black" if field == ANSWER else None)
    ax.axhline(100 * block["target_accuracy"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(100, 0)
    ax.set_xlabel("coverage: share answered, most confident first (%)")
    ax.set_ylabel("accuracy of the answered (%)")
    ax.set_title(f"risk–coverage (target {_pct(block['target_accuracy'])}, dotted)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    if hasattr(path, "write"):
        fig.savefig(path, format="png", dpi=100)
    else:
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return path
