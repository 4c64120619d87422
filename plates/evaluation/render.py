"""Text and Markdown views of a report."""

from __future__ import annotations

import unicodedata
from typing import Any, Iterable

from plates.evaluation.common import clip_value
from plates.evaluation.metrics import METRICS, Metric, summary_metrics
from plates.labels import FIELDS, PLATE_NUMBER


def display_width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if right else text + gap


def table(rows: list[list[str]], right: Iterable[int] = ()) -> str:
    """Align rows of cells (first row = header) by display width."""
    right = set(right)
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [_pad(cell, widths[i], i in right) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def fmt(metric: Metric, value: float | None) -> str:
    """A metric's value as the reports print it: a percentage, or a plain number for non-rates."""
    if not metric.percent:
        return "—" if value is None else f"{value:.3f}"
    return pct(value)


def fmt_ci(metric: Metric, interval: list[float] | None) -> str:
    """A 95% interval as '[low, high]' in the metric's unit; '' when there is none."""
    if not interval:
        return ""
    if not metric.percent:
        return f"[{interval[0]:.3f}, {interval[1]:.3f}]"
    return f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def _with_ci(metric: Metric, report: dict[str, Any]) -> str:
    ci = fmt_ci(metric, metric.ci(report))
    return fmt(metric, metric.value(report)) + (f" {ci}" if ci else "")


def _confusion_text(stats: dict[str, Any], limit: int) -> str:
    return ", ".join(f"{r}→{p} ×{c}" for r, p, c in stats["confusions"][:limit])


def _totals_lines(report: dict[str, Any]) -> list[str]:
    lines = [" · ".join(f"{m.display} {_with_ci(m, report)}" for m in summary_metrics())]
    if report.get("ci95"):
        boot = report.get("bootstrap") or {}
        lines.append(f"[low, high]: 95% intervals, {boot.get('replicates', '?')} bootstrap replicates resampling "
                     f"{boot.get('clusters', '?')} vehicles")
    methods = report["parse_methods"]
    lines.append("parsed by: " + (" · ".join(f"{m} {c}" for m, c in methods.items()) or "—"))
    violations = report["violations"]
    if violations:
        lines.append("schema violations: " + " · ".join(
            f"{k} {v['count']} in {v['answers']} answers" for k, v in violations.items()))
    codes = report["inconsistencies"]
    lines.append(f"inconsistent answers: {report['inconsistent_answers']} ("
                 + " · ".join(f"{c} {n}" for c, n in codes.items()) + ")")
    plates = report["plates"]
    lines.append(f"plates: reference {plates['reference']} · predicted {plates['predicted']} · "
                 f"missing {plates['missing']} · extra {plates['extra']} · count right {pct(plates['count_accuracy'])}")
    added = [m for m in METRICS.values() if not m.builtin and not m.summary and m.value(report) is not None]
    if added:
        lines.append("more: " + " · ".join(f"{m.display} {_with_ci(m, report)}" for m in added))
    if report.get("plate", {}).get("n"):
        lines.append("plate numbers: " + " · ".join(
            f"{m.display.removeprefix('plate ')} {_with_ci(m, report)}" for m in _plate_metrics()))
    return lines


def _plate_metrics() -> list[Metric]:
    return [m for m in METRICS.values() if m.path[0] == "plate"]


def _plate_rows(report: dict[str, Any]) -> list[list[str]]:
    """Plate numbers overall and per plate type: n, full plate, characters, length, edit distance, and accuracy
    per character position (the province character first)."""
    plate = report["plate"]
    rows = [["plate type", "n", "full plate", "chars", "length", "edit distance", "by position"]]
    for name, s in [("all", plate), *plate.get("by_type", {}).items()]:
        rows.append([name, str(s["n"]), pct(s["full_plate_accuracy"]), pct(s["char_accuracy"]),
                     pct(s["length_accuracy"]),
                     "—" if s["mean_edit_distance"] is None else f"{s['mean_edit_distance']:.3f}",
                     " ".join(f"{100 * a:.0f}" for a in s["by_position"])])
    return rows


def _field_rows(report: dict[str, Any], confusions: int) -> list[list[str]]:
    with_ci = any(s.get("ci95") for s in report["fields"].values())
    rows = [["field", "support", "correct", "accuracy", *(["95% CI"] if with_ci else []), "macro-F1",
             "most frequent confusions"]]
    for f, s in report["fields"].items():
        note = _confusion_text(s, confusions)
        if f == PLATE_NUMBER:
            note = f"chars {pct(s.get('char_accuracy'))}" + (f"; {note}" if note else "")
        ci = s.get("ci95")
        interval = [f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}" if ci else "—"] if with_ci else []
        rows.append([f, str(s["support"]), str(s["correct"]), pct(s["accuracy"]), *interval,
                     pct(s.get("macro_f1")), note])
    return rows


def format_report(report: dict[str, Any], confusions: int = 3) -> str:
    """The terminal view: totals, then one row per field."""
    head = f"{report['n']} answers"
    if report.get("skipped_lines"):
        head += f" ({report['skipped_lines']} malformed lines skipped)"
    if report.get("duplicates"):
        head += f"; {report['duplicates']} duplicate samples scored once"
    if report.get("records_without_prediction"):
        head += f"; {report['records_without_prediction']} records had no prediction"
    if report.get("decoding"):
        head += f"; decoding: {report['decoding']}"
    rows = _field_rows(report, confusions)
    out = [head, *_totals_lines(report), "", table(rows, right=range(1, len(rows[0]) - 1))]
    if report.get("plate", {}).get("by_type"):
        out += ["", table(_plate_rows(report), right=range(1, 6))]
    for f, groups in report.get("by", {}).items():
        out += ["", f"by {f}:", table(_slice_rows(groups), right=range(1, 3 + len(FIELDS)))]
    return "\n".join(out)


def _slice_rows(groups: dict[str, Any]) -> list[list[str]]:
    rows = [["slice", "n", "exact", *FIELDS]]
    for key, s in groups.items():
        rows.append([key, str(s["n"]), pct(s["exact_match"]), *(pct(s["fields"][f]["accuracy"]) for f in FIELDS)])
    return rows


def md_escape(text: str) -> str:
    """``text`` (a label, an answer, an image path: anything a model or a dump wrote) as inert Markdown on one
    line: HTML as entities (Markdown renders raw HTML, so ``<script>`` or ``<img onerror>`` would run where the
    report is viewed), no link or image (``](``), no code span, no table cell break."""
    text = (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\\", "\\\\")
            .replace("`", "\\`").replace("](", "]\\(").replace("|", "\\|"))
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def md_table(rows: list[list[str]]) -> str:
    """A Markdown table; every cell goes through :func:`md_escape`."""
    lines = ["| " + " | ".join(md_escape(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """A self-contained Markdown report."""
    out = [f"# plates eval: {md_escape(str(report.get('source', '')))}", ""]
    out.append(f"{report['n']} answers scored; {report.get('skipped_lines', 0)} malformed lines skipped."
               + (f" {report['duplicates']} duplicate samples (lines repeating an earlier image, prompt and "
                  "reference) scored once." if report.get("duplicates") else "")
               + (f" {report['records_without_prediction']} records had no prediction."
                  if report.get("records_without_prediction") else "")
               + (f" Decoding: {md_escape(str(report['decoding']))}." if report.get("decoding") else ""))
    boot = report.get("bootstrap")
    if boot and report.get("ci95"):
        out.append(f"95% intervals: {boot['replicates']} bootstrap replicates resampling whole vehicles "
                   f"({boot['clusters']} of them), seed {boot['seed']}.")
    metrics = [m for m in METRICS.values() if m.field is None]
    out += ["", md_table([["metric", "value", "95% CI"],
                           *([m.display, fmt(m, m.value(report)), fmt_ci(m, m.ci(report)) or "—"]
                             for m in metrics)])]
    out += ["", "## Fields", "", md_table(_field_rows(report, 5))]
    if report.get("plate", {}).get("n"):
        out += ["", "## Plate numbers", "", md_table(_plate_rows(report))]
    out += ["", "## Parsing", "", md_table([["method", "answers"],
                                             *([m, str(c)] for m, c in report["parse_methods"].items())])]
    if report["violations"]:
        rows = [["violation", "count", "answers", "fields"]]
        for k, v in report["violations"].items():
            fields = ", ".join(f"{f} {c}" for f, c in report["violation_fields"][k].items())
            rows.append([k, str(v["count"]), str(v["answers"]), fields])
        out += ["", "## Schema violations", "", md_table(rows)]
    out += ["", "## Inconsistent answers", "",
            md_table([["check", "plates"], *([c, str(n)] for c, n in report["inconsistencies"].items())])]
    plates = report["plates"]
    out += ["", "## Plates", "", md_table([["reference", "predicted", "missing", "extra", "count right"],
                                            [str(plates["reference"]), str(plates["predicted"]),
                                             str(plates["missing"]), str(plates["extra"]),
                                             pct(plates["count_accuracy"])]])]
    for f, groups in report.get("by", {}).items():
        out += ["", f"## By {md_escape(f)}", "", md_table(_slice_rows(groups))]
    for kind, examples in report.get("examples", {}).items():
        if examples:
            rows = [["line", "image", "detail", "response"]]
            rows += [[str(e["line"]), str(e["image"]), e["detail"], e["response"]] for e in examples]
            out += ["", f"## Examples: {kind.replace('_', ' ')}", "", md_table(rows)]
    if report.get("skipped"):
        out += ["", "## Skipped lines", ""] + [f"- {md_escape(clip_value(s, 1000))}" for s in report["skipped"]]
    return "\n".join(out) + "\n"
