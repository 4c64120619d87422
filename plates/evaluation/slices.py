"""Slices from where the image lives: ``--by path:N`` (a folder of the image path: camera, date, site), ``--by
ccpd:NAME`` (bins of the tilt, brightness and blur a CCPD file name carries, or its subset folder) and the CCPD
subsets, recognised from the path and printed in the layout of the CCPD paper next to its published figures.

Both are observers of the scoring loop (``add(item, outcome)`` per answer, ``finish(report)`` at the end): they
keep one :class:`~plates.evaluation.tally.Tally` per slice, so a slice reports exactly what the whole report does.
"""

from __future__ import annotations

import re
from typing import Any

from plates.errors import UserError
from plates.evaluation import report as report_module
from plates.evaluation.grounding import GroundingObserver
from plates.evaluation.render import md_table, table
from plates.evaluation.tally import Tally
from plates.labels import PLATE_NUMBER
from plates.names import CCPD_KEY, parse_ccpd_filename

NO_FOLDER = "(none)"
PATH_PREFIX = "path:"
CCPD_PREFIX = "ccpd:"
NOT_CCPD = "(not a CCPD name)"
# --by ccpd:NAME -> (what is binned, lower edges of the bins); tilt is the larger of CCPD's horizontal and
# vertical tilt in degrees; brightness and blur are CCPD's figures as the name writes them
CCPD_BINS = {"tilt": ("tilt (larger of horizontal, vertical; degrees)", (0, 10, 20, 30, 40)),
             "brightness": ("brightness", (0, 50, 100, 150, 200)),
             "blur": ("blur", (0, 10, 30, 100)),
             "subset": ("subset folder", ())}

CCPD_SUBSETS = ("ccpd_base", "ccpd_db", "ccpd_fn", "ccpd_rotate", "ccpd_tilt", "ccpd_weather", "ccpd_challenge",
                "ccpd_blur", "ccpd_np")
CCPD_COLUMNS = {"ccpd_base": "Base", "ccpd_db": "DB", "ccpd_fn": "FN", "ccpd_rotate": "Rotate", "ccpd_tilt": "Tilt",
                "ccpd_weather": "Weather", "ccpd_challenge": "Challenge", "ccpd_blur": "Blur", "ccpd_np": "NP"}
# Xu et al., "Towards End-to-End License Plate Detection and Recognition: A Large Dataset and Baseline",
# ECCV 2018, RPNet: full-plate accuracy (%) of detection + recognition on the CCPD test subsets.
CCPD_PUBLISHED = {"source": "RPNet, Xu et al. ECCV 2018 (CCPD paper)",
                  "overall": 95.5, "ccpd_base": 98.5, "ccpd_db": 96.9, "ccpd_fn": 94.3, "ccpd_rotate": 90.8,
                  "ccpd_tilt": 92.5, "ccpd_weather": 87.9, "ccpd_challenge": 85.1}
_CCPD = frozenset(CCPD_SUBSETS)


def parse_by(spec: str) -> int | None:
    """The folder index of a ``--by path:N`` argument, None for anything else (a field name). ``N`` indexes the
    folders of the image path like a Python list: 0 is the first, -1 the folder holding the image."""
    if not spec.startswith(PATH_PREFIX):
        return None
    text = spec[len(PATH_PREFIX):]
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--by {spec}: N must be an integer folder index (0 = first folder of the image path, "
                        "-1 = the folder holding the image)") from None


def ccpd_by(spec: str) -> str | None:
    """The CCPD figure of a ``--by ccpd:NAME`` argument, None for anything else."""
    if not spec.startswith(CCPD_PREFIX):
        return None
    name = spec[len(CCPD_PREFIX):]
    if name not in CCPD_BINS:
        raise UserError(f"--by {spec}: unknown CCPD slice (choose from "
                        f"{', '.join(CCPD_PREFIX + n for n in CCPD_BINS)})")
    return name


def ccpd_bin(image: str, name: str) -> tuple[int, str]:
    """(sort key, label) of the ``--by ccpd:NAME`` bin an image falls in, read from its file name ('20–29' for
    tilt 23, '≥40' past the last edge); images whose name is not CCPD's fall in :data:`NOT_CCPD`."""
    if name == "subset":
        subset = ccpd_subset(image)
        return (CCPD_SUBSETS.index(subset), subset) if subset else (len(CCPD_SUBSETS), NOT_CCPD)

    parsed = parse_ccpd_filename(image.replace("\\", "/").rpartition("/")[2])
    edges = CCPD_BINS[name][1]
    if not hasattr(parsed, "extra") or not parsed.extra:
        return len(edges), NOT_CCPD
    figures = parsed.extra[CCPD_KEY]
    value = max(figures["tilt_horizontal"], figures["tilt_vertical"]) if name == "tilt" else figures[name]
    index = sum(value >= edge for edge in edges) - 1
    label = f"≥{edges[index]}" if index == len(edges) - 1 else f"{edges[index]}–{edges[index + 1] - 1}"
    return index, label


def folders(image: str) -> list[str]:
    """The folder names of an image path as written in the results (file name, root and '.' left out)."""
    parts = re.split(r"[/\\]+", image.removeprefix("file://"))
    return [p for p in parts[:-1] if p and p != "." and not p.endswith(":")]


def folder_of(image: str, index: int) -> str:
    names = folders(image)
    try:
        return names[index]
    except IndexError:
        return NO_FOLDER


def ccpd_subset(image: str) -> str | None:
    """The CCPD subset folder an image lives in (``ccpd_base`` …, lower case; the innermost one), None when it
    is not in one."""
    for name in reversed(folders(image)):
        if name.lower() in _CCPD:
            return name.lower()
    return None


def _directory(image: str) -> str:
    return image[:max(image.rfind("/"), image.rfind("\\"), 0)]


def _slice_summary(tally: Any) -> dict[str, Any]:
    return report_module._slice_summary(tally)


class PathSlices:
    """``--by path:N``: a per-slice summary keyed by the N-th folder, written to ``report["by"]["path:N"]`` (the
    terminal, Markdown and HTML tables show it with the field slices)."""

    def __init__(self, index: int):
        self.index = index
        self.name = f"{PATH_PREFIX}{index}"
        self.tallies: dict[str, Any] = {}
        self._cache: dict[str, str] = {}

    def add(self, item: Any, outcome: Any) -> None:
        image = item.image or ""
        directory = _directory(image)
        key = self._cache.get(directory)
        if key is None:
            key = self._cache[directory] = folder_of(image, self.index)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally()
        tally.add(outcome)

    def finish(self, report: dict[str, Any]) -> None:
        groups = sorted(self.tallies.items(), key=lambda kv: (-kv[1].n, kv[0]))
        report.setdefault("by", {})[self.name] = {key: _slice_summary(t) for key, t in groups}


class CcpdBins:
    """``--by ccpd:NAME``: a per-bin summary written to ``report["by"]["ccpd:NAME"]`` in bin order, each with the
    bin's plate-location figures (``grounding``, see :mod:`plates.evaluation.grounding`) when its references
    carry boxes."""

    def __init__(self, name: str):
        self.figure = name
        self.name = f"{CCPD_PREFIX}{name}"
        self.tallies: dict[tuple[int, str], Any] = {}
        self.grounding: dict[tuple[int, str], Any] = {}

    def add(self, item: Any, outcome: Any) -> None:
        key = ccpd_bin(item.image or "", self.figure)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally()
            self.grounding[key] = GroundingObserver()
        tally.add(outcome)
        self.grounding[key].add(item, outcome)

    def finish(self, report: dict[str, Any]) -> None:
        groups = {}
        for key in sorted(self.tallies):
            summary = groups[key[1]] = _slice_summary(self.tallies[key])
            block = self.grounding[key].block()
            if block is not None:
                summary["grounding"] = block
        report.setdefault("by", {})[self.name] = groups


class CcpdSlices:
    """Recognises CCPD subset folders in image paths; when any answer comes from one, adds ``report["ccpd"]``:
    per subset and overall the full-plate accuracy (plate number entirely right), character accuracy and plate
    count accuracy (the only figure for ``ccpd_np``, whose images have no plate), with the published figures."""

    def __init__(self) -> None:
        self.tallies: dict[str, Any] = {}
        self.overall = Tally()
        self._cache: dict[str, str | None] = {}

    def add(self, item: Any, outcome: Any) -> None:
        image = item.image
        if not image or "ccpd_" not in image.lower():
            return
        directory = _directory(image)
        if directory in self._cache:
            subset = self._cache[directory]
        else:
            subset = self._cache[directory] = ccpd_subset(image)
        if subset is None:
            return
        tally = self.tallies.get(subset)
        if tally is None:
            tally = self.tallies[subset] = Tally()
        tally.add(outcome)
        self.overall.add(outcome)

    def finish(self, report: dict[str, Any]) -> None:
        if not self.tallies:
            return
        subsets = {name: _ccpd_stats(self.tallies[name]) for name in CCPD_SUBSETS if name in self.tallies}
        report["ccpd"] = {"metric": "full-plate accuracy: the whole plate number right",
                          "overall": _ccpd_stats(self.overall), "subsets": subsets,
                          "published": dict(CCPD_PUBLISHED)}


def _ccpd_stats(tally: Any) -> dict[str, Any]:
    stats = tally.field_stats(PLATE_NUMBER)
    count = tally.plates["count_correct"]
    return {"n": tally.n, "plates": stats["support"], "full_plate_accuracy": stats["accuracy"],
            "char_accuracy": stats["char_accuracy"], "plate_count_accuracy": count / tally.n if tally.n else None}


def ccpd_rows(report: dict[str, Any]) -> list[list[str]]:
    """The CCPD paper's layout: one column per subset (overall first), rows for this model, the published
    figure and the counts."""
    block = report.get("ccpd")
    if not block:
        return []
    names = ["overall", *block["subsets"]]
    published = block.get("published") or {}

    def stats(name: str) -> dict[str, Any]:
        return block["overall"] if name == "overall" else block["subsets"][name]

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}"

    rows = [["CCPD full-plate acc. (%)", *(CCPD_COLUMNS.get(n, n) if n != "overall" else "Overall" for n in names)]]
    rows.append(["this model", *(pct(stats(n)["full_plate_accuracy"]) for n in names)])
    rows.append([published.get("source", "published"),
                 *("—" if published.get(n) is None else f"{published[n]:.1f}" for n in names)])
    rows.append(["character acc. (%)", *(pct(stats(n)["char_accuracy"]) for n in names)])
    rows.append(["plate count right (%)", *(pct(stats(n)["plate_count_accuracy"]) for n in names)])
    rows.append(["images", *(str(stats(n)["n"]) for n in names)])
    return rows


def format_ccpd(report: dict[str, Any], markdown: bool = False) -> str:
    """The CCPD table (terminal or Markdown), '' when no image came from a CCPD subset."""
    rows = ccpd_rows(report)
    if not rows:
        return ""

    note = ("published figures are detection + recognition on the CCPD test split; ours read the plate from the "
            "whole image (where answers give a box, plate location is scored apart, by IoU), so compare on the same "
            "images only")
    if markdown:
        return f"## CCPD subsets\n\n{md_table(rows)}\n\n{note}\n"
    return "CCPD subsets (" + note + "):\n" + table(rows, right=range(1, len(rows[0])))
