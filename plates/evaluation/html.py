"""`plates eval --html PATH`: the whole report as one self-contained HTML file.

Everything is inside the file: styles inline, charts and image thumbnails as base64 ``data:`` URLs, no script,
no font, nothing fetched: it opens from a laptop with no server and no network. Sections: summary rates with
their 95% intervals (when the report has them), plate metrics, the per-field table, slices (``--by``, CCPD),
risk–coverage (with logprobs), a confusion matrix per enumerated field (HTML tables, so Chinese labels render
in the browser's own fonts) and a gallery of the worst answers: thumbnail, then reference and prediction side
by side, field by field, with the raw response. When the references carry plate boxes, a plate-location section
shows the IoU figures and each thumbnail has the reference and predicted boxes drawn over it
(:mod:`plates.evaluation.overlay`).

The gallery is collected while scoring (:class:`Gallery`, an observer of the scoring loop): it keeps the ``k``
worst answers (most wrong fields; among equals the most confident first, since a confident mistake is the one
to fix; then file order), so memory stays flat on any number of answers. With boxes, a plate whose box was not
found (IoU ≤ 0.7) counts as one more wrong field.
"""

from __future__ import annotations

import base64
import datetime
import heapq
import html
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable

from plates.evaluation.common import BOX_FIELD, FIELD_SLUGS, MISSING, clip_value
from plates.evaluation.confidence import confidence_rows, field_confidences, plot_risk_coverage
from plates.evaluation.grounding import grounding_rows, slice_rows
from plates.evaluation.metrics import METRICS
from plates.evaluation.overlay import CSS as OVERLAY_CSS, LEGEND, box_rows, gallery_boxes, misplaced, overlay
from plates.evaluation.slices import ccpd_rows
from plates.io import atomic_write
from plates.labels import FIELDS, PLATE_NUMBER

DEFAULT_GALLERY = 24
THUMBNAIL = 320
RESPONSE_KEPT = 1500
CONFUSION_CLASSES = 10

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;
color:#1d2330;background:#fff;line-height:1.4;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dde;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}.meta{color:#667;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border:1px solid #dde;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ci{color:#667;font-size:12px}.bad{background:#fde8e8}.ok{background:#eaf6ea}.muted{color:#889}
.matrices{display:flex;flex-wrap:wrap;gap:18px}.matrix td{text-align:center;min-width:26px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.card{border:1px solid #dde;border-radius:6px;padding:10px;display:flex;gap:12px;font-size:13px}
.card img{max-width:320px;max-height:320px;border-radius:4px;align-self:flex-start}
.noimg{width:160px;height:100px;background:#f3f5f9;color:#889;font-size:12px;display:flex;align-items:center;
justify-content:center;text-align:center}
.card .side{flex:1;min-width:0}.card pre{white-space:pre-wrap;word-break:break-all;font-size:11px;background:#f7f8fa;
padding:6px;max-height:180px;overflow:auto}.path{font-size:11px;color:#667;word-break:break-all}
img.chart{max-width:100%;border:1px solid #eee}
""" + OVERLAY_CSS


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _ci(interval: Any) -> str:
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and all(
            isinstance(x, (int, float)) for x in interval):
        return f' <span class="ci">[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]</span>'
    return ""


def _table(header: list[str], rows: Iterable[list[str]], numeric: Iterable[int] = (), raw: bool = False,
           row_class: Iterable[str] | None = None, css: str = "") -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are trusted HTML built here)."""
    numeric = set(numeric)
    out = [f'<table class="{css}">' if css else "<table>",
           "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    classes = list(row_class) if row_class is not None else None
    for index, row in enumerate(rows):
        klass = f' class="{classes[index]}"' if classes and classes[index] else ""
        cells = "".join(f'<td{" class=num" if i in numeric else ""}>{c if raw else _e(c)}</td>'
                        for i, c in enumerate(row))
        out.append(f"<tr{klass}>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------- gallery


def _thumbnail(path: Path, size: int = THUMBNAIL) -> tuple[str, tuple[int, int]] | None:
    """A JPEG ``data:`` URL of the image shrunk to fit ``size`` pixels (OpenCV, area interpolation) and the
    image's original (width, height), which the box overlay is drawn in; None when it cannot be read."""
    try:
        import cv2
        import numpy as np

        data = np.fromfile(str(path), dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            return None
        height, width = image.shape[:2]
        scale = min(1.0, size / max(height, width))
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 82])
    except (OSError, ValueError, ImportError):
        return None
    if not ok:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii"), (width, height)


def resolve_image(image: str, search: Iterable[str | os.PathLike]) -> Path | None:
    """The file an image path of a results line names: as written, then below each folder of ``search`` (the
    results file's folder, ``ROOT_IMAGE_DIR``, the records' roots)."""
    if not image:
        return None
    image = image.removeprefix("file://")
    candidate = Path(image).expanduser()
    if candidate.is_file():
        return candidate
    if not candidate.is_absolute():
        for folder in search:
            if folder and (Path(folder) / image).is_file():
                return Path(folder) / image
    return None


class Gallery:
    """Keeps the ``k`` worst answers while `plates eval` scores (see the module docstring)."""

    def __init__(self, k: int = DEFAULT_GALLERY):
        self.k = k
        self.heap: list[tuple[tuple, int, dict[str, Any]]] = []
        self.wrong_answers = 0
        self.with_boxes = False

    def add(self, item: Any, outcome: Any) -> None:
        if self.k <= 0:
            return
        boxes = gallery_boxes(item, outcome)
        missed = misplaced(boxes)
        if outcome.exact and not missed:
            return
        self.wrong_answers += 1
        self.with_boxes = self.with_boxes or boxes is not None
        wrong = (sum(1 for f, r, p in outcome.pairs if r != p) + sum(1 for r, p in outcome.numbers if r != p)
                 + missed)
        confidences = None
        if getattr(item, "logprobs", None):
            confidences = field_confidences(item.response, item.logprobs)
        sure = min(confidences.values()) if confidences else 0.0
        key = (wrong, sure, -item.line)
        if len(self.heap) >= self.k and key <= self.heap[0][0]:
            return
        entry = {"line": item.line, "image": item.image, "parse": outcome.method, "wrong": wrong,
                 "violations": [f"{v.kind} {v.path}" for v in outcome.violations][:6],
                 "rows": _rows(outcome), "confidence": confidences, "boxes": boxes,
                 "response": item.response if isinstance(item.response, str)
                 else json.dumps(item.response, ensure_ascii=False, default=str)}
        if len(entry["response"]) > RESPONSE_KEPT:
            entry["response"] = entry["response"][:RESPONSE_KEPT] + "…"
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, (key, item.line, entry))
        else:
            heapq.heapreplace(self.heap, (key, item.line, entry))

    def finish(self, report: dict[str, Any]) -> None:
        """The gallery is not part of the JSON report (it lives in the HTML)."""

    def entries(self) -> list[dict[str, Any]]:
        return [entry for _, _, entry in sorted(self.heap, key=lambda x: x[0], reverse=True)]


def _rows(outcome: Any) -> list[tuple[str, str, str]]:
    """(field, reference, prediction) of every scored field, in answer order (plate numbers with their plate)."""
    order = {f: i for i, f in enumerate(FIELDS)}
    rows = list(outcome.pairs) + [(PLATE_NUMBER, r, p) for r, p in outcome.numbers]
    rows = [(f, clip_value(r), clip_value(p)) for f, r, p in rows]
    return sorted(rows, key=lambda row: order.get(row[0], len(order)))


def _gallery_html(entries: list[dict[str, Any]], search: list[str], wrong_answers: int,
                  with_boxes: bool = False) -> str:
    if not entries:
        return "<p>No wrong answers.</p>"
    cards = []
    for entry in entries:
        path = resolve_image(entry["image"], search)
        thumbnail = _thumbnail(path) if path is not None else None
        picture = (f'<div class="noimg">image not found<br>{_e(os.path.basename(entry["image"]) or "(no path)")}</div>'
                   if thumbnail is None else f'<img src="{thumbnail[0]}" alt="line {entry["line"]}">')
        if thumbnail is not None and entry.get("boxes"):
            picture = f'<div class="frame">{picture}{overlay(thumbnail[1], entry["boxes"])}</div>'
        confidences = entry.get("confidence") or {}
        body = []
        for field, ref, pred in entry["rows"]:
            conf = confidences.get(field)
            body.append([_e(field), _e(ref), _e(pred if pred != MISSING else "(missing)"),
                         "" if conf is None else (f"{conf:.2f}" if conf >= 0.01 else f"{conf:.1e}")])
        classes = ["ok" if r == p else "bad" for _, r, p in entry["rows"]]
        for ref, pred, located in box_rows(entry.get("boxes")):
            body.append([_e(BOX_FIELD), _e(ref), _e(pred), ""])
            classes.append("ok" if located else "bad")
        header = ["field", "reference", "prediction"] + (["confidence"] if confidences else [])
        if not confidences:
            body = [row[:3] for row in body]
        violations = ("<div class=muted>schema: " + _e("; ".join(entry["violations"])) + "</div>"
                      if entry["violations"] else "")
        cards.append(
            f'<div class="card">{picture}<div class="side">'
            f'<div><b>line {entry["line"]}</b> · {entry["wrong"]} wrong · parsed by {_e(entry["parse"])}</div>'
            f'<div class="path">{_e(entry["image"])}</div>{violations}'
            + _table(header, body, raw=True, row_class=classes, numeric=(3,))
            + f'<details><summary>raw response</summary><pre>{_e(entry["response"])}</pre></details></div></div>')
    boxes = (f" or whose plate box was not found (IoU ≤ 0.7, a wrong {_e(BOX_FIELD)} row)" if with_boxes else "")
    legend = f'<p class="meta">{LEGEND}</p>' if with_boxes else ""
    return (f'<p class="meta">The {len(entries)} worst of {wrong_answers} answers that were not an exact match'
            f"{boxes} (most wrong fields first; among equals the most confident).</p>{legend}"
            f'<div class="gallery">{"".join(cards)}</div>')


# ---------------------------------------------------------------------------------------------------- sections


def _metrics_html(report: dict[str, Any]) -> str:
    """Every non-field metric of the registry with its interval; the plain summary keys if there is none."""
    try:
        metrics = [m for m in METRICS.values() if m.field is None]
    except ImportError:  # pragma: no cover - older layout
        metrics = []
    rows = []
    if metrics:
        for m in metrics:
            value = m.value(report)
            if value is None and m.path[0] not in report:
                continue
            text = (_pct(value) if m.percent else ("—" if value is None else f"{value:.3f}"))
            interval = m.ci(report)
            ci = ""
            if interval:
                ci = _ci(interval) if m.percent else f' <span class="ci">[{interval[0]:.3f}, {interval[1]:.3f}]</span>'
            rows.append([_e(m.display), text + ci])
    else:
        for key in ("json_valid_rate", "parsed_rate", "schema_valid_rate", "exact_match", "plate_char_accuracy"):
            if key in report:
                rows.append([_e(key), _pct(report[key]) + _ci((report.get("ci95") or {}).get(key))])
    note = ""
    if report.get("bootstrap"):
        b = report["bootstrap"]
        note = (f'<p class="meta">95% intervals: {b.get("replicates")} bootstrap replicates resampling whole '
                f'{_e(b.get("resampled", "answers"))} ({b.get("clusters")} clusters), seed {b.get("seed")}.</p>')
    elif not report.get("ci95"):
        note = '<p class="meta">No intervals in this report (run with --bootstrap N).</p>'
    return _table(["metric", "value [95% interval]"], rows, raw=True, numeric=(1,)) + note


def _plate_html(report: dict[str, Any]) -> str:
    plate = report.get("plate")
    if not isinstance(plate, dict):
        return ""
    keys = ("full_plate_accuracy", "char_accuracy", "length_accuracy", "mean_edit_distance")
    header = ["plate type", "n", "full plate", "characters", "length", "mean edit distance"]

    def row(name: str, stats: dict[str, Any]) -> list[str]:
        cells = []
        for k in keys:
            v = stats.get(k)
            cells.append("—" if v is None else (f"{v:.3f}" if k == "mean_edit_distance" else _pct(v)))
        n = stats.get("n", stats.get("support", ""))
        return [_e(name), _e(n), *cells]

    rows = [row("all", plate)] + [row(t, s) for t, s in (plate.get("by_type") or {}).items() if isinstance(s, dict)]
    out = "<h2>Plates</h2>" + _table(header, rows, raw=True, numeric=range(1, len(header)))
    positions = plate.get("by_position")
    if isinstance(positions, list) and positions:
        cells = [_pct(p) if isinstance(p, (int, float)) else "—" for p in positions]
        out += "<h3>Accuracy per character position (1 = province character)</h3>" + _table(
            [str(i + 1) for i in range(len(cells))], [cells], raw=True, numeric=range(len(cells)))
    return out


def _grounding_html(report: dict[str, Any]) -> str:
    """The plate-location figures with their intervals, and per slice of each ``--by`` that has them."""
    rows = grounding_rows(report)
    if not rows:
        return ""
    block = report["grounding"]
    out = ["<h2>Plate location</h2>", _table(rows[0], rows[1:], numeric=(1, 2)),
           f'<p class="meta">{_e(block.get("plates"))} plates with a box in {_e(block.get("answers"))} answers, '
           f'{_e(block.get("predicted_boxes"))} predicted boxes; IoU of each reference box with the answer\'s '
           f"{_e(BOX_FIELD)} (a missing or unparseable box counts 0).</p>"]
    for name, groups in (report.get("by") or {}).items():
        sliced = slice_rows(groups) if isinstance(groups, dict) else []
        if sliced:
            out.append(f"<h3>plate location by {_e(name)}</h3>"
                       + _table(sliced[0], sliced[1:], numeric=range(1, len(sliced[0]))))
    return "".join(out)


def _fields_html(report: dict[str, Any]) -> str:
    rows = []
    for field, s in report["fields"].items():
        note = ", ".join(f"{r}→{p} ×{c}" for r, p, c in (s.get("confusions") or [])[:3])
        if field == PLATE_NUMBER and s.get("char_accuracy") is not None:
            note = f"chars {_pct(s['char_accuracy'])}" + (f"; {note}" if note else "")
        rows.append([_e(field), _e(s.get("support")), _e(s.get("correct")),
                     _pct(s.get("accuracy")) + _ci(s.get("ci95")), _pct(s.get("macro_f1")), _e(note)])
    return _table(["field", "support", "correct", "accuracy [95%]", "macro-F1", "most frequent confusions"], rows,
                  raw=True, numeric=(1, 2, 3, 4))


def _slices_html(report: dict[str, Any]) -> str:
    out = []
    for name, groups in (report.get("by") or {}).items():
        rows = []
        for key, s in groups.items():
            rows.append([_e(key), _e(s.get("n")), _pct(s.get("exact_match")),
                         *(_pct(((s.get("fields") or {}).get(f) or {}).get("accuracy")) for f in FIELDS)])
        out.append(f"<h3>by {_e(name)}</h3>" + _table(["slice", "n", "exact", *FIELDS], rows, raw=True,
                                                      numeric=range(1, 3 + len(FIELDS))))

    ccpd = ccpd_rows(report)
    if ccpd:
        out.append("<h3>CCPD subsets</h3>" + _table(ccpd[0], ccpd[1:], numeric=range(1, len(ccpd[0])))
                   + '<p class="meta">Published figures are detection + recognition on the CCPD test split; these '
                     "read the plate from the whole image (where answers give a box, plate location is scored apart, "
                     "above), so compare on the same images only.</p>")
    return ("<h2>Slices</h2>" + "".join(out)) if out else ""


def _confidence_html(report: dict[str, Any]) -> str:
    block = report.get("confidence")
    if not block:
        return ""

    rows = confidence_rows(report)
    buffer = io.BytesIO()
    plot_risk_coverage(report, buffer)
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return ("<h2>Confidence and abstention</h2>"
            f'<p class="meta">Accuracy when answering only the most confident share of the samples; confidence = '
            f'{_e(block["measure"])}. The threshold is the lowest confidence whose answered part still reaches '
            f'{_pct(block["target_accuracy"])}; below it the model should answer 未知.</p>'
            + _table(rows[0], rows[1:], numeric=range(1, len(rows[0])))
            + f'<img class="chart" src="{url}" alt="risk-coverage curves">')


def _confusion_html(report: dict[str, Any], classes: int = CONFUSION_CLASSES) -> str:
    out = []
    for field, s in report["fields"].items():
        confusion = s.get("confusion")
        if field == PLATE_NUMBER or not confusion:
            continue
        support: dict[str, int] = {}
        predicted: dict[str, int] = {}
        for r, p, c in confusion:
            support[r] = support.get(r, 0) + c
            predicted[p] = predicted.get(p, 0) + c
        rows_kept = sorted(support, key=lambda v: -support[v])[:classes]
        cols = rows_kept + [p for p in sorted(predicted, key=lambda v: -predicted[v])
                            if p not in rows_kept][:max(2, classes - len(rows_kept))]
        other = "(other)"
        matrix: dict[tuple[str, str], int] = {}
        for r, p, c in confusion:
            row = r if r in rows_kept else other
            col = p if p in cols else other
            matrix[row, col] = matrix.get((row, col), 0) + c
        row_names = rows_kept + ([other] if any(k[0] == other for k in matrix) else [])
        col_names = cols + ([other] if any(k[1] == other for k in matrix) else [])
        body = []
        for row in row_names:
            total = sum(matrix.get((row, col), 0) for col in col_names) or 1
            cells = [f"<th>{_e(row)}</th>"]
            for col in col_names:
                count = matrix.get((row, col), 0)
                share = count / total
                colour = f"rgba(40,90,180,{share:.2f})" if row != col else f"rgba(40,150,60,{share:.2f})"
                text_colour = "#fff" if share > 0.55 else "#1d2330"
                cells.append(f'<td style="background:{colour};color:{text_colour}" title="{_e(row)} → {_e(col)}: '
                             f'{count}">{count or ""}</td>')
            body.append("<tr>" + "".join(cells) + "</tr>")
        head = "<tr><th>reference \\ prediction</th>" + "".join(f"<th>{_e(c)}</th>" for c in col_names) + "</tr>"
        out.append(f'<div><h3>{_e(field)} <span class="muted">({_e(FIELD_SLUGS.get(field, ""))})</span></h3>'
                   f'<table class="matrix">{head}{"".join(body)}</table></div>')
    if not out:
        return ""
    return ("<h2>Confusion matrices</h2><p class=meta>Counts; shading is the share of the reference row (green on "
            f"the diagonal). The {classes} most frequent reference values, the rest pooled.</p>"
            f'<div class="matrices">{"".join(out)}</div>')


def _totals_html(report: dict[str, Any]) -> str:
    methods = " · ".join(f"{_e(m)} {c}" for m, c in (report.get("parse_methods") or {}).items()) or "—"
    violations = " · ".join(f"{_e(k)} {v.get('count')} in {v.get('answers')} answers"
                            for k, v in (report.get("violations") or {}).items()) or "none"
    plates = report.get("plates") or {}
    return (f'<p>parsed by: {methods}<br>schema violations: {violations}<br>'
            f'plates: reference {_e(plates.get("reference"))} · predicted {_e(plates.get("predicted"))} · missing '
            f'{_e(plates.get("missing"))} · extra {_e(plates.get("extra"))} · count right '
            f'{_pct(plates.get("count_accuracy"))}</p>')


def render_html(report: dict[str, Any], gallery: Gallery | None = None, search: Iterable[str] = (),
                title: str | None = None) -> str:
    """The report as one self-contained HTML page (see the module docstring)."""
    source = report.get("source", "")
    title = title or f"plates eval: {os.path.basename(str(source)) or 'report'}"
    meta = [f"{report['n']} answers", f"source {source}"]
    if report.get("skipped_lines"):
        meta.append(f"{report['skipped_lines']} malformed lines skipped")
    if report.get("duplicates"):
        meta.append(f"{report['duplicates']} duplicate samples scored once")
    if report.get("records_without_prediction"):
        meta.append(f"{report['records_without_prediction']} records without prediction")
    if report.get("labels_version") is not None:
        meta.append(f"labels v{report['labels_version']}")
    meta.append(datetime.datetime.now(datetime.timezone.utc).strftime("written %Y-%m-%d %H:%M UTC"))
    parts = [
        "<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1><div class=meta>{_e(' · '.join(meta))}</div>",
        "<h2>Summary</h2>", _metrics_html(report), _totals_html(report),
        _plate_html(report), _grounding_html(report),
        "<h2>Fields</h2>", _fields_html(report),
        _slices_html(report), _confidence_html(report), _confusion_html(report),
        "<h2>Error gallery</h2>",
        _gallery_html(gallery.entries(), list(search), gallery.wrong_answers, gallery.with_boxes)
        if gallery is not None
        else "<p>No gallery (written from a saved report).</p>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write_html(path: str | os.PathLike, report: dict[str, Any], gallery: Gallery | None = None,
               search: Iterable[str] = ()) -> Path:
    """Write :func:`render_html` atomically."""
    with atomic_write(path) as handle:
        handle.write(render_html(report, gallery, search))
    return Path(path)
