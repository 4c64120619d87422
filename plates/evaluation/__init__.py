"""Evaluation of the model's JSON answers, one small module per step (in the style of lm-evaluation-harness):

- :mod:`~plates.evaluation.extract`: answer extraction, the filter step (strict JSON, fences, Python literals,
  objects inside text, json-repair);
- :mod:`~plates.evaluation.schema_check`: schema violations, classified;
- :mod:`~plates.evaluation.align` and :mod:`~plates.evaluation.scorer`: the scoring hot loop (one place);
- :mod:`~plates.evaluation.items`: reading results files into :class:`Item` s (the per-sample type);
- :mod:`~plates.evaluation.tally`, :mod:`~plates.evaluation.plate_metrics`: totals and plate metrics;
- :mod:`~plates.evaluation.grounding`: plate location by IoU (an observer, reported only when references have
  boxes); :mod:`~plates.evaluation.overlay` draws the boxes in the HTML report's gallery;
- :mod:`~plates.evaluation.metrics`: the metric registry every view iterates;
- :mod:`~plates.evaluation.samples`, :mod:`~plates.evaluation.stats`: per-answer records, bootstrap intervals,
  paired tests;
- :mod:`~plates.evaluation.report`, :mod:`~plates.evaluation.render`, :mod:`~plates.evaluation.plots`,
  :mod:`~plates.evaluation.compare`: the report, its text/Markdown views, charts and comparisons;
- :mod:`~plates.evaluation.cli`: the `plates eval` / `plates compare` subcommands (``COMMANDS``).
"""

from plates.evaluation.align import Alignment, align_plates, plate_similarity
from plates.evaluation.common import EXAMPLES_KEPT, FIELD_SLUGS, INCONSISTENCY_CODES, MISSING
from plates.evaluation.compare import compare_reports, compare_rows, delta, format_compare
from plates.evaluation.extract import (
    EXTRACT, FENCE, JSON, PARSE_METHODS, PYTHON, REPAIR, UNPARSEABLE, Parsed, parse_response,
)
from plates.evaluation.items import Item, Source, iter_items, read_results
from plates.evaluation.metrics import METRICS, SUMMARY_KEYS, SUMMARY_NAMES, Metric, register
from plates.evaluation.plate_metrics import PLATE_TYPES, plate_type
from plates.evaluation.plots import write_plots
from plates.evaluation.render import display_width, format_markdown, format_report, pct, table
from plates.evaluation.report import evaluate, evaluate_file, load_report, slice_value
from plates.evaluation.schema_check import (
    EXTRA_FIELD, MISSING_FIELD, OTHER, UNKNOWN_VALUE, VIOLATION_CLASSES, WRONG_TYPE, Violation,
)
from plates.evaluation.scorer import Outcome, Reference, Scorer
from plates.evaluation.tally import Tally, macro_f1

__all__ = [
    "Alignment", "align_plates", "plate_similarity", "EXAMPLES_KEPT", "FIELD_SLUGS", "INCONSISTENCY_CODES",
    "MISSING", "compare_reports", "compare_rows", "delta", "format_compare", "EXTRACT", "FENCE", "JSON",
    "PARSE_METHODS", "PYTHON", "REPAIR", "UNPARSEABLE", "Parsed", "parse_response", "Item", "Source", "iter_items",
    "read_results", "METRICS", "SUMMARY_KEYS", "SUMMARY_NAMES", "Metric", "register", "PLATE_TYPES", "plate_type",
    "display_width", "format_markdown", "format_report", "pct", "table", "evaluate", "evaluate_file",
    "load_report", "slice_value", "EXTRA_FIELD", "MISSING_FIELD", "OTHER", "UNKNOWN_VALUE", "VIOLATION_CLASSES",
    "WRONG_TYPE", "Violation", "Outcome", "Reference", "Scorer", "Tally", "macro_f1", "write_plots",
]
