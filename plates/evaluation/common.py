"""Names every evaluation module shares: placeholder values, field slugs, answer-level constants."""

from __future__ import annotations

from plates.io import atomic_write
from plates.labels import PLATE_BOX, PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, SLUGS, VEHICLE_GROUP

MISSING = "(missing)"
# an answer plate's optional box [x1, y1, x2, y2], original-image pixels (grounding): 车牌位置 in the shipped table
BOX_FIELD = PLATE_BOX or "车牌位置"

INCONSISTENCY_CODES = ("province_mismatch", "colour_usage")

FIELD_SLUGS = SLUGS  # field -> ASCII slug, from the field table in labels/fields.yaml
EXAMPLES_KEPT = 5

TOP_KEYS = frozenset((VEHICLE_GROUP, PLATE_GROUP))
OTHER_PLATE_FIELDS = tuple(f for f in PLATE_FIELDS if f != PLATE_NUMBER)

VALUE_KEPT = 200  # characters of one label or answer value shown in a report (confusions, gallery, examples)


def clip_value(value: str, limit: int = VALUE_KEPT) -> str:
    """``value`` as a report shows it: whole when short, else its start, its length and a short digest (so two
    long values that differ stay different in a confusion table). The full value stays in ``--details``."""
    if len(value) <= limit:
        return value
    import hashlib

    digest = hashlib.sha1(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{value[:limit]}…[{len(value)} chars, sha1 {digest}]"


def strict_json(value):
    """``value`` with every float that JSON cannot hold (NaN, ±Infinity, numpy's too) replaced by None, so a
    report is strict JSON (``json.dump(..., allow_nan=False)`` succeeds and other tools can read it)."""
    if isinstance(value, float):
        return value if value - value == 0 else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return strict_json(value.item())
    return value


def write_report_json(path, report) -> None:
    """Write a report atomically as strict JSON: undefined figures are null, never NaN."""
    import json

    with atomic_write(path) as handle:
        json.dump(strict_json(report), handle, ensure_ascii=False, indent=2, allow_nan=False)
        handle.write("\n")
