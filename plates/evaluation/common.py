"""Names every evaluation module shares: placeholder values, field slugs, answer-level constants."""

from __future__ import annotations

from plates.labels import PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, SLUGS, VEHICLE_GROUP

MISSING = "(missing)"
NO_PLATE = "无车牌"

INCONSISTENCY_CODES = ("province_mismatch", "colour_usage")

FIELD_SLUGS = SLUGS  # field -> ASCII slug, from the field table in labels/fields.yaml
EXAMPLES_KEPT = 5

TOP_KEYS = frozenset((VEHICLE_GROUP, PLATE_GROUP))
OTHER_PLATE_FIELDS = tuple(f for f in PLATE_FIELDS if f != PLATE_NUMBER)
