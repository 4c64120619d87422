"""Per-answer scores: what one answer earns on the three axes GRPO rewards (``plates.grpo``) and that
`plates eval --details` reports under ``"scores"``, computed from the :class:`~plates.evaluation.scorer.Outcome`
the scorer already produced and from the per-answer contributions of the metric registry, so a reward and the
evaluation can never disagree about the same answer.

* ``schema``: 1 for strict JSON that the answer schema accepts; 0.5 for a schema-valid answer that needed
  lenient parsing (code fence, text around it, Python literal, repair); 0 otherwise.
* ``fields``: the share of the reference's known fields (every enumerated field and the plate number) the
  answer got exactly right, the ``*_accuracy`` metrics of one answer pooled.
* ``plate_chars``: plate characters, 1 − normalised edit distance per known reference plate number, averaged
  (``plate_char_accuracy`` of one answer).

When the reference knows no field (or no plate number) there is nothing to compare: ``fields`` is then 1 for an
exact answer and ``plate_chars`` 1 for a parsed answer with the reference's plate count, else 0.
"""

from __future__ import annotations

from typing import Any, Iterable

from plates.evaluation.common import FIELD_SLUGS
from plates.evaluation.extract import UNPARSEABLE, parse_response
from plates.evaluation.metrics import METRICS
from plates.evaluation.scorer import Outcome, Reference, Scorer
from plates.labels import FIELDS

SCORES = ("schema", "fields", "plate_chars")
LENIENT_SCHEMA_SCORE = 0.5


def answer_scores(outcome: Outcome) -> dict[str, float]:
    """The three scores of one scored answer (see the module docstring); each in [0, 1]."""
    strict, _ = METRICS["json_valid_rate"].per_answer(outcome)
    valid, _ = METRICS["schema_valid_rate"].per_answer(outcome)
    schema = (1.0 if strict else LENIENT_SCHEMA_SCORE) if valid else 0.0

    right = known = 0.0
    for f in FIELDS:
        num, den = METRICS[f"{FIELD_SLUGS[f]}_accuracy"].per_answer(outcome)
        right, known = right + num, known + den
    fields = right / known if known else float(bool(outcome.exact))

    chars, numbers = METRICS["plate_char_accuracy"].per_answer(outcome)
    if numbers:
        plate_chars = chars / numbers
    else:
        count_right, _ = METRICS["plate_count_accuracy"].per_answer(outcome)
        plate_chars = float(outcome.method != UNPARSEABLE and bool(count_right))
    return {"schema": schema, "fields": fields, "plate_chars": plate_chars}


class AnswerScorer:
    """Scores completions against reference answers given as text (the ``solution`` column of a GRPO dataset):
    one :class:`Scorer`, references parsed once per distinct text."""

    def __init__(self, scorer: Scorer | None = None):
        self.scorer = scorer or Scorer()
        self._references: dict[str, Reference] = {}

    def reference(self, solution: Any) -> Reference:
        """The normalised reference of a solution (JSON text or an already decoded answer). Raises ValueError
        when it is not an answer: the dataset, not the model, is wrong then."""
        if not isinstance(solution, str):
            return self.scorer.reference(solution)
        hit = self._references.get(solution)
        if hit is None:
            parsed = parse_response(solution)
            if not parsed.ok:
                raise ValueError(f"solution is not a JSON answer: {solution[:80]!r}")
            if len(self._references) > 100_000:
                self._references.clear()
            hit = self._references[solution] = self.scorer.reference(parsed.value)
        return hit

    def scores(self, completions: Iterable[Any], solutions: Iterable[Any]) -> list[dict[str, float]]:
        """:func:`answer_scores` of each completion against its solution."""
        return [answer_scores(self.scorer.score(completion, self.reference(solution)))
                for completion, solution in zip(completions, solutions, strict=True)]
