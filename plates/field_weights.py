"""Per-field loss weights for ``swift sft``: train harder on the answer fields that matter most.

Every token of an answer counts the same in a plain cross-entropy loss, so the ~5 tokens that say what colour the
car is weigh as much as the ~70 tokens of JSON syntax, brand and plate number around them. A weak start (or a
field that is hard to see) then hardly moves the gradient. Measured in ``plates demo`` (figures in
swift_args/README.md): with the demo's earlier 2-head model, weighting body colour, orientation and plate colour 5x
raised held-out body colour from 45% to 52% and from 32% to 79% on two draws and lowered plate colour (the weights
move capacity between fields); with today's demo model the same weights read all three beyond the majority
baseline on each of three draws.

How it works: ms-swift's ``--loss_scale`` splits each assistant response into segments with a weight each (the
agent-training mechanism of its ``loss_scale`` registry). This module registers one more strategy,
``plates_fields``, that splits a JSON answer at the *values* of the weighted fields (``"车辆颜色": "蓝色"``: the
segment ``蓝色``); everything else keeps weight 1. The weights travel in ``PLATES_FIELD_LOSS_WEIGHTS``
(``车辆颜色=5,车牌颜色=5``; field names from ``labels/fields.yaml`` or their slugs), so a preset sets them in its
``ENV:`` block next to ``loss_scale: plates_fields``; ``plates train`` adds the ``--external_plugins`` file
(``plates/swift_plugin.py``) that registers the strategy inside ms-swift and checks the weights before launching.

The split points fall where Qwen's pre-tokenizer already splits (after ``": "`` and before the closing quote), so
the tokens ms-swift feeds the model are the same as for the whole answer (tests/test_field_weights.py checks that
on generated answers); description and chain-of-thought texts outside the JSON keep weight 1.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Mapping

from plates.errors import UserError
from plates.grounding import BBOX_TAG
from plates.labels import FIELD_TABLE, PLATE_COLOUR, VEHICLE_COLOUR

FIELD_WEIGHTS_ENV = "PLATES_FIELD_LOSS_WEIGHTS"
LOSS_SCALE_NAME = "plates_fields"
MAX_WEIGHT = 100.0


def _field_names() -> dict[str, str]:
    """Every accepted spelling (answer key or slug) -> the answer key."""
    names = {f.name: f.name for f in FIELD_TABLE}
    names.update({f.slug: f.name for f in FIELD_TABLE})
    return names


def example_weights() -> str:
    """An example value of :data:`FIELD_WEIGHTS_ENV` for messages: body and plate colour 5x."""
    return f"{VEHICLE_COLOUR}=5,{PLATE_COLOUR}=5"


def parse_field_weights(text: str | None) -> dict[str, float]:
    """``车辆颜色=5,车牌颜色=5`` (commas or spaces between items; a field by answer key or slug) -> ``{field:
    weight}``. Raises ``UserError`` with one line for an unknown field, a weight that is not a number in
    [0, 100], a repeated field, or an empty text."""
    items = [item for item in re.split(r"[,\s]+", (text or "").strip()) if item]
    if not items:
        raise UserError(f"{FIELD_WEIGHTS_ENV} is empty: give FIELD=WEIGHT items, e.g. {example_weights()}")
    names = _field_names()
    weights: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"{FIELD_WEIGHTS_ENV}: {item!r} is not FIELD=WEIGHT (e.g. "
                            f"{example_weights().partition(',')[0]})")
        field = names.get(key.strip())
        if field is None:
            raise UserError(f"{FIELD_WEIGHTS_ENV}: unknown field {key.strip()!r} (fields: "
                            + ", ".join(dict.fromkeys(names.values())) + ")")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not 0.0 <= weight <= MAX_WEIGHT:
            raise UserError(f"{FIELD_WEIGHTS_ENV}: the weight of {field} must be a number from 0 to {MAX_WEIGHT:g}, "
                            f"not {value!r}")
        if field in weights:
            raise UserError(f"{FIELD_WEIGHTS_ENV}: {field} is given twice")
        weights[field] = weight
    return weights


@functools.lru_cache(maxsize=16)
def _value_pattern(fields: tuple[str, ...]) -> re.Pattern[str]:
    """A weighted field's value: a JSON string's content, a flat array's content (the plate box, between its
    brackets: Qwen's pre-tokenizer splits there anyway), or ms-swift's ``<bbox>`` tag, which a grounding target
    writes in place of the box and ms-swift replaces with the box's text, keeping the tag's weight."""
    keys = "|".join(re.escape(json.dumps(f, ensure_ascii=False)) for f in fields)
    return re.compile(r'(' + keys + r')\s*:\s*(?:"((?:[^"\\]|\\.)*)"|\[([^\[\]"]*)\]|(' + re.escape(BBOX_TAG) + r'))')


def weighted_segments(response: str, weights: Mapping[str, float]) -> tuple[list[str], list[float]]:
    """Split ``response`` into consecutive segments and their loss weights: the value of every field in ``weights``
    (wherever it appears, in every plate; a string's content, a box's numbers or its ``<bbox>`` tag) is a segment of
    its own with that field's weight; the text between values has weight 1. ``"".join(segments) == response``
    always."""
    fields = tuple(sorted(f for f, w in weights.items() if w != 1.0))
    if not fields:
        return [response], [1.0]
    segments: list[str] = []
    scales: list[float] = []
    cursor = 0
    for match in _value_pattern(fields).finditer(response):
        group = next(g for g in (2, 3, 4) if match.group(g) is not None)
        start, end = match.span(group)
        if start == end:
            continue
        segments.append(response[cursor:start])
        scales.append(1.0)
        segments.append(response[start:end])
        scales.append(float(weights[json.loads(match.group(1))]))
        cursor = end
    segments.append(response[cursor:])
    scales.append(1.0)
    kept = [(s, w) for s, w in zip(segments, scales) if s]
    return [s for s, _ in kept], [w for _, w in kept]


def weights_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, float]:
    environ = os.environ if environ is None else environ
    return parse_field_weights(environ.get(FIELD_WEIGHTS_ENV))


def uses_field_weights(loss_scale: object) -> bool:
    """Whether an ms-swift ``loss_scale`` value (``plates_fields``, ``last_round+plates_fields``, …) names this
    module's strategy."""
    return isinstance(loss_scale, str) and LOSS_SCALE_NAME in loss_scale.split("+")


def register_loss_scale() -> None:
    """Add ``plates_fields`` to ms-swift's loss-scale registry (idempotent). Called by ``plates/swift_plugin.py``
    inside ``swift sft``; the weights are read from the environment when ms-swift builds the strategy."""
    from swift.loss_scale import LossScale
    from swift.loss_scale.mapping import loss_scale_map

    if LOSS_SCALE_NAME in loss_scale_map:
        return

    class FieldLossScale(LossScale):
        """Weights the values of the fields named in ``PLATES_FIELD_LOSS_WEIGHTS`` (see plates.field_weights)."""

        is_binary = False

        def __init__(self, base_strategy="default"):
            super().__init__(base_strategy)
            self.weights = weights_from_environment()

        def get_loss_scale(self, context, **kwargs):
            if isinstance(context, str):
                return weighted_segments(context, self.weights)
            return super().get_loss_scale(context, **kwargs)

    loss_scale_map[LOSS_SCALE_NAME] = FieldLossScale
