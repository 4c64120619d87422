"""`plates audit`: find file-name labels the trained model confidently disputes, for a person to review.

The labels that train the model are typed by people into file names and contain mistakes (the seed's own examples
misread 黑 as 鲁). Once a model is trained, its answers on the labelled images (`plates predict RECORDS --logprobs`)
show where it disagrees with a label *and is sure of itself*: those are the labels most worth a second look.

Review file (``-o review.jsonl``), one line per disputed field, most confident first::

    {"image": "sub/车辆属性:….jpg", "path": "/abs/…/sub/….jpg", "field": "车牌省份", "plate": 0,
     "label": "山东省", "prediction": "黑龙江省", "confidence": 0.97, "value": null}

``plate`` is the plate's index in the record (null for vehicle fields); ``confidence`` is the model's probability
of writing exactly its value (`plates predict --logprobs`; null without log-probabilities, ranked last).

Corrections file (:mod:`plates.corrections`: what `plates parse --corrections FILE` applies on the next parse),
JSONL, one line per fix::

    {"image": "sub/车辆属性:….jpg", "field": "车牌省份", "plate": 0, "value": "黑龙江省"}

``image`` is the path as the records give it (relative to the parse ROOT) or the absolute path; ``plate`` is
needed for plate fields only (default 0); ``value`` is the corrected value (normalised like a label). Lines whose
``value`` is null are skipped, so the review file itself is a corrections file: fill in ``value`` on the lines you
agree with (usually the prediction) and pass it to `plates parse --corrections`.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plates.errors import UserError
from plates.evaluation.align import align_plates
from plates.evaluation.render import table
from plates.io import atomic_write, check_input_file, guard_outputs, iter_jsonl, write_json, write_jsonl
from plates.labels import (
    FIELDS, PLATE_FIELDS, PLATE_GROUP, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP, normalise_plate,
    normalise_vehicle, plates_of_answer,
)
from plates.outputs import input_path, output_file
from plates.records import iter_records, resolve_image

DEFAULT_MIN_CONFIDENCE = 0.5
THUMBNAIL = 192


@dataclass
class Dispute:
    image: str
    path: str
    field: str
    plate: int | None
    label: str
    prediction: str
    confidence: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "path": self.path, "field": self.field, "plate": self.plate,
                "label": self.label, "prediction": self.prediction, "confidence": self.confidence, "value": None}


@dataclass
class AuditStats:
    records: int = 0
    predicted: int = 0
    without_prediction: int = 0
    unusable_predictions: int = 0
    compared: Counter = field(default_factory=Counter)
    disagree: Counter = field(default_factory=Counter)
    disputed: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "predicted": self.predicted, "without_prediction": self.without_prediction,
                "unusable_predictions": self.unusable_predictions,
                "fields": {f: {"compared": self.compared[f], "disagree": self.disagree[f],
                               "disputed": self.disputed[f]} for f in FIELDS if self.compared[f]}}

    def table(self) -> str:
        rows = [["field", "compared", "disagree", "disputed", "disputed %"]]
        for name in FIELDS:
            if self.compared[name]:
                rows.append([name, str(self.compared[name]), str(self.disagree[name]), str(self.disputed[name]),
                             f"{100 * self.disputed[name] / self.compared[name]:.1f}"])
        return table(rows, right=(1, 2, 3, 4))


def _key(path: str | os.PathLike) -> str:
    return os.path.normcase(os.path.realpath(path))


def load_predictions(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """`plates predict` lines by resolved image path (the last line wins)."""
    index: dict[str, dict[str, Any]] = {}
    for number, line in iter_jsonl(path):
        if not isinstance(line, dict) or not isinstance(line.get("image"), str):
            raise UserError(f"{path}: line {number} has no 'image' (is this a `plates predict` output?)")
        index[_key(line["image"])] = line
    return index


def _compare(label: str, prediction: str) -> bool:
    """Whether this is a disagreement worth a person's time: both known and different."""
    return label not in (UNKNOWN, "") and prediction not in (UNKNOWN, "") and label != prediction


def record_disputes(record: dict[str, Any], path: str, prediction: dict[str, Any],
                    stats: AuditStats | None = None) -> list[Dispute]:
    """Every field where the prediction's answer and the record's label are both known and differ."""
    answer = prediction.get("answer")
    confidence = prediction.get("confidence") or {}
    labels = record["labels"]
    vehicle_label = normalise_vehicle(labels.get(VEHICLE_GROUP) or {})
    vehicle_pred = normalise_vehicle(answer.get(VEHICLE_GROUP) or {}) if isinstance(answer.get(VEHICLE_GROUP), dict) \
        else dict.fromkeys(VEHICLE_FIELDS, UNKNOWN)
    pairs: list[tuple[str, int | None, str, str]] = [(f, None, vehicle_label[f], vehicle_pred[f]) for f in VEHICLE_FIELDS]
    label_plates = [normalise_plate(p) for p in labels.get(PLATE_GROUP) or []]
    pred_plates = [normalise_plate(p) for p in plates_of_answer(answer)]
    for i, j in align_plates(label_plates, pred_plates).pairs:
        pairs.extend((f, i, label_plates[i][f], pred_plates[j][f]) for f in PLATE_FIELDS)
    out = []
    for name, plate, label, predicted in pairs:
        if stats is not None and label not in (UNKNOWN, "") and predicted not in (UNKNOWN, ""):
            stats.compared[name] += 1
        if _compare(label, predicted):
            value = confidence.get(name)
            out.append(Dispute(record["image"], path, name, plate, label, predicted,
                               float(value) if isinstance(value, (int, float)) else None))
    return out


def audit(records_path: str | os.PathLike, predictions_path: str | os.PathLike,
          min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> tuple[list[Dispute], AuditStats]:
    """Disputes at or above ``min_confidence`` (those without a confidence are kept only when it is 0), most
    confident first; ties keep the records' order."""
    predictions = load_predictions(predictions_path)
    stats = AuditStats()
    kept: list[Dispute] = []
    for record in iter_records(records_path):
        stats.records += 1
        path = str(resolve_image(record, records_path))
        prediction = predictions.get(_key(path))
        if prediction is None:
            stats.without_prediction += 1
            continue
        if not isinstance(prediction.get("answer"), dict):
            stats.unusable_predictions += 1
            continue
        stats.predicted += 1
        for dispute in record_disputes(record, path, prediction, stats):
            stats.disagree[dispute.field] += 1
            confident = (dispute.confidence is None and min_confidence <= 0) or \
                (dispute.confidence is not None and dispute.confidence >= min_confidence)
            if confident:
                stats.disputed[dispute.field] += 1
                kept.append(dispute)
    kept.sort(key=lambda d: (d.confidence is None, -(d.confidence or 0.0)))
    return kept, stats


# ---- the review sheet ----------------------------------------------------------------------------------------

def _thumbnail(path: str) -> str | None:
    """A small JPEG of the image as a data URL (the sheet stays one file that opens anywhere)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=80)
    except Exception:  # noqa: BLE001 - a missing or broken image shows as a link only
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _confidence_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render_html(disputes: list[Dispute], stats: AuditStats, title: str = "plates audit") -> str:
    rows = []
    for rank, d in enumerate(disputes, 1):
        thumb = _thumbnail(d.path)
        image = f'<img src="{thumb}" alt="">' if thumb else "(image not readable)"
        where = d.field if d.plate is None else f"{d.field} (plate {d.plate})"
        rows.append(
            f"<tr><td>{rank}</td><td>{image}</td><td>{html.escape(where)}</td><td class=l>{html.escape(d.label)}</td>"
            f"<td class=p>{html.escape(d.prediction)}</td><td>{_confidence_text(d.confidence)}</td>"
            f'<td><a href="{html.escape(Path(d.path).as_uri())}">{html.escape(d.image)}</a></td></tr>')
    counts = ", ".join(f"{html.escape(f)} {n}" for f, n in stats.disputed.most_common()) or "none"
    return f"""<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;vertical-align:middle}}.l{{color:#a00}}.p{{color:#060;font-weight:bold}}img{{max-width:{THUMBNAIL}px}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(disputes)} disputed labels in {stats.predicted} predicted records (by field: {counts}). Most confident first.
To correct a label, set <code>"value"</code> on its line in the review JSONL and run
<code>plates parse ROOT -o records.jsonl --corrections review.jsonl</code>.</p>
<table><tr><th>#</th><th>image</th><th>field</th><th>label</th><th>model</th><th>confidence</th><th>file</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""


def render_markdown(disputes: list[Dispute], stats: AuditStats, title: str = "plates audit") -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"# {title}", "", f"{len(disputes)} disputed labels in {stats.predicted} predicted records, most "
             "confident first.", "", "| # | image | field | label | model | confidence |",
             "|---|---|---|---|---|---|"]
    for rank, d in enumerate(disputes, 1):
        where = d.field if d.plate is None else f"{d.field} (plate {d.plate})"
        lines.append(f'| {rank} | <img src="{Path(d.path).as_uri()}" width="{THUMBNAIL}"><br>{cell(d.image)} | '
                     f"{cell(where)} | {cell(d.label)} | **{cell(d.prediction)}** | {_confidence_text(d.confidence)} |")
    return "\n".join(lines) + "\n"


def default_sheet(output: Path) -> Path:
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(stem + ".html")


# ---- re-running over a review file ---------------------------------------------------------------------------

_REVIEW_KEYS = frozenset(Dispute("", "", "", None, "", "", None).to_dict())


def _review_key(line: dict[str, Any]) -> tuple[str, Any, Any]:
    return (os.path.normpath(str(line.get("path") or line.get("image"))), line.get("field"), line.get("plate"))


def merge_review(previous: str | os.PathLike, disputes: list[Dispute]) -> tuple[list[dict[str, Any]], int]:
    """The review lines to write over ``previous`` (a review file an earlier audit wrote, perhaps half reviewed):
    every dispute, carrying the ``value`` (and any keys a reviewer added) of the earlier line for the same image,
    field and plate; earlier reviewed lines that are no longer disputed are kept at the end. So a re-run (new
    predictions, more records) adds lines and never resets a person's work. Returns (lines, reviewed kept)."""
    rows = [d.to_dict() for d in disputes]
    if not os.path.isfile(previous):
        return rows, 0
    reviewed: dict[tuple[str, Any, Any], dict[str, Any]] = {}
    for _, line in iter_jsonl(previous):
        if isinstance(line, dict) and (line.get("value") is not None or set(line) - _REVIEW_KEYS):
            reviewed[_review_key(line)] = line
    kept = 0
    for row in rows:
        earlier = reviewed.pop(_review_key(row), None)
        if earlier is not None:
            row["value"] = earlier.get("value")
            row.update({k: v for k, v in earlier.items() if k not in _REVIEW_KEYS})
            kept += 1
    rows.extend(reviewed.values())
    return rows, kept + len(reviewed)


# ---- CLI -----------------------------------------------------------------------------------------------------

def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("records", metavar="RECORDS", type=input_path(),
                        help="records from `plates parse` (the labels to check)")
    parser.add_argument("--predictions", required=True, metavar="PREDS", type=input_path(),
                        help="`plates predict RECORDS --logprobs` output for the same images")
    parser.add_argument("-o", "--output", required=True, metavar="REVIEW", type=output_file("review"),
                        help="review JSONL to write; an existing one is merged (filled-in values are kept)")
    parser.add_argument("--sheet", metavar="PATH", help="review sheet with thumbnails, .html or .md "
                                                         "(default: REVIEW with .html)",
                        type=output_file("audit-sheet", derive=lambda args: default_sheet(Path(args.output))))
    parser.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                        help=f"keep disputes where the model's confidence is at least this (default "
                             f"{DEFAULT_MIN_CONFIDENCE}; 0 keeps every disagreement, also without log-probabilities)")
    parser.add_argument("--stats", action="store_true", help="print how many labels per field the model disputes")
    parser.add_argument("--json", metavar="PATH", type=output_file("audit-stats"),
                        help="also write the statistics as JSON")


def _run(args: argparse.Namespace) -> int:
    """List the labels a trained model confidently disputes, field by field, most confident first, with a review
    sheet (thumbnails) for a person to go through. Fill in "value" on the review lines you agree with and pass the
    file to `plates parse --corrections` on the next parse.

    example:
      plates predict records.jsonl -o preds.jsonl --adapters RUN --logprobs
      plates audit records.jsonl --predictions preds.jsonl -o review.jsonl --stats
    """
    if not 0 <= args.min_confidence <= 1:
        raise UserError("--min-confidence is a probability between 0 and 1")
    output = Path(args.output)
    sheet = Path(args.sheet) if args.sheet else default_sheet(output)
    if sheet.suffix.lower() not in (".html", ".htm", ".md"):
        raise UserError(f"--sheet {sheet}: name it .html or .md")
    check_input_file(args.records, "RECORDS")
    check_input_file(args.predictions, "--predictions")
    guard_outputs({"RECORDS": args.records, "--predictions": args.predictions},
                  {"-o": output, "--sheet": sheet, "--json": args.json}, command="audit")
    disputes, stats = audit(args.records, args.predictions, args.min_confidence)
    rows, kept = merge_review(output, disputes)
    write_jsonl(output, rows)
    text = render_markdown(disputes, stats) if sheet.suffix.lower() == ".md" else render_html(disputes, stats)
    with atomic_write(sheet) as handle:
        handle.write(text)
    if args.json:
        write_json(args.json, stats.to_dict())
    print(f"plates audit: {len(disputes)} disputed labels in {stats.predicted} of {stats.records} records "
          f"-> {output}, sheet {sheet}")
    if kept:
        print(f"  kept {kept} reviewed lines of the existing {output} (their values are not reset)")
    if stats.without_prediction or stats.unusable_predictions:
        print(f"  {stats.without_prediction} records without a prediction, {stats.unusable_predictions} with an "
              "unparseable answer (not audited)")
    if disputes and all(d.confidence is None for d in disputes):
        print("  note: the predictions carry no confidence; run `plates predict --logprobs` to rank them")
    for d in disputes[:5]:
        where = d.field if d.plate is None else f"{d.field}[{d.plate}]"
        print(f"  {_confidence_text(d.confidence)}  {where}: label {d.label} -> model {d.prediction}  {d.image}")
    if args.stats:
        print(stats.table())
    return 0


COMMANDS = {"audit": (_configure, _run, "find file-name labels the model confidently disputes -> review sheet")}
