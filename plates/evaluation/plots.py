"""PNG charts of a report: per-field accuracy and one confusion matrix per enumerated field."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from plates.evaluation.common import FIELD_SLUGS, MISSING
from plates.evaluation.render import pct
from plates.io import atomic_write
from plates.labels import FIELDS, PLATE_NUMBER, UNKNOWN, load_vocabularies


def _cjk_font() -> str | None:
    """Name of an installed font that can draw Chinese, or None."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    hints = ("cjk", "hei", "han sans", "wenquanyi", "yahei", "song", "ming", "kai", "fallback", "droid", "pingfang",
             "hiragino", "arial unicode")
    for entry in font_manager.fontManager.ttflist:
        if not any(h in entry.name.lower() for h in hints):
            continue
        try:
            if FT2Font(entry.fname).get_char_index(ord("车")):
                return entry.name
        except Exception:  # noqa: BLE001 - unreadable font files are skipped
            continue
    return None


def _ascii_names(field: str) -> dict[str, str]:
    """Fallback labels without a CJK font: an ASCII synonym from labels/ when there is one, else '#n'."""
    vocab = load_vocabularies()[field]
    names = {UNKNOWN: "unknown", MISSING: "missing"}
    for value in vocab.canonical:
        if value.isascii():
            names[value] = value
            continue
        synonyms = [s for s, v in vocab.lookup.items() if v == value and s.isascii() and s]
        names[value] = synonyms[0] if synonyms else None
    return names


def write_plots(report: dict[str, Any], directory: str | Path, max_classes: int = 15) -> list[Path]:
    """PNG charts: per-field accuracy and one confusion matrix per enumerated field (the ``max_classes`` most
    frequent reference values, the rest pooled). Without a CJK font, labels fall back to ASCII (field slugs,
    English synonyms from labels/, else '#n') and ``legend.txt`` maps them back, instead of empty boxes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    font = _cjk_font()
    style = {"font.sans-serif": [font, "DejaVu Sans"], "font.family": "sans-serif"} if font else {}
    legend: list[str] = []

    def field_label(f: str) -> str:
        return f if font else FIELD_SLUGS[f]

    written = []
    with plt.rc_context(style):
        fields = [f for f in FIELDS if report["fields"][f]["accuracy"] is not None]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        values = [100 * report["fields"][f]["accuracy"] for f in fields]
        bars = ax.barh([field_label(f) for f in fields][::-1], values[::-1], color="#4C72B0")
        ax.bar_label(bars, fmt="%.1f%%", padding=3, fontsize=8)
        ax.set_xlim(0, 110)
        ax.set_xlabel("accuracy (%)")
        ax.set_title(f"per-field accuracy (n={report['n']}, exact match {pct(report['exact_match'])})")
        fig.tight_layout()
        written.append(_save(fig, directory / "accuracy.png"))
        plt.close(fig)
        for f in FIELDS:
            if f == PLATE_NUMBER or not report["fields"][f].get("confusion"):
                continue
            path = directory / f"confusion_{FIELD_SLUGS[f]}.png"
            labels = _confusion_plot(plt, report["fields"][f]["confusion"], f, field_label(f), font, path,
                                     max_classes)
            written.append(path)
            if not font:
                legend.append(f"{path.name} ({f})")
                legend += [f"  {short} = {value}" for value, short in labels.items() if short != value]
    if legend:
        with atomic_write(directory / "legend.txt") as handle:
            handle.write("No CJK font was found, so the charts use ASCII labels (install e.g. fonts-noto-cjk for "
                         "Chinese labels).\n" + "\n".join(legend) + "\n")
    return written


def _save(fig: Any, path: Path) -> Path:
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    return path


def _confusion_plot(plt: Any, confusion: list[list[Any]], field: str, title: str, font: str | None, path: Path,
                    max_classes: int) -> dict[str, str]:
    """Draw one row-normalised confusion matrix; returns value -> tick label."""
    import numpy as np

    support: Counter = Counter()
    for r, _, c in confusion:
        support[r] += c
    classes = [cls for cls, _ in support.most_common(max_classes)]
    other = "其他" if font else "(other)"
    predicted: Counter = Counter()
    for _, p, c in confusion:
        predicted[p] += c
    extra = [p for p, _ in predicted.most_common() if p not in classes and p != MISSING]
    cols = classes + extra[:max(3, max_classes - len(classes))]
    if MISSING in predicted:
        cols.append(MISSING)
    rows = classes + ([other] if len(support) > len(classes) else [])
    pooled_cols = cols + [other]
    matrix = np.zeros((len(rows), len(pooled_cols)))
    for r, p, c in confusion:
        i = rows.index(r) if r in classes else len(rows) - 1
        j = cols.index(p) if p in cols else len(pooled_cols) - 1
        matrix[i, j] += c
    if matrix[:, -1].any():
        cols = pooled_cols
    else:
        matrix = matrix[:, :-1]
    names = _ascii_names(field) if not font else {}
    labels = {}
    for k, value in enumerate(dict.fromkeys([*cols, *rows])):
        if font or value == other:
            labels[value] = value
        else:
            labels[value] = names.get(value) or (value if value.isascii() else f"#{k}")

    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 + 0.45 * len(cols)), max(3.5, 1.4 + 0.4 * len(rows))))
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), [labels[c] for c in cols], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), [labels[r] for r in rows], fontsize=7)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=6,
                        color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"{title} (row-normalised)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return labels
