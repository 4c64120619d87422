"""What `plates eval` adds around the core report: ``--by path:N`` slices, the CCPD table, confidences and
risk–coverage (from logprobs), and the ``--html`` report. One object holds the observers of the scoring loop and
the steps that print or write their results, so the CLI needs only a few calls."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from plates.errors import UserError
from plates.evaluation.confidence import DEFAULT_TARGET, ConfidenceObserver, format_confidence, plot_risk_coverage
from plates.evaluation.grounding import GroundingObserver, format_grounding
from plates.evaluation.html import DEFAULT_GALLERY, Gallery, write_html
from plates.evaluation.slices import CcpdBins, CcpdSlices, PathSlices, ccpd_by, format_ccpd, parse_by
from plates.io import iter_jsonl
from plates.outputs import output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The eval options this module serves."""
    parser.add_argument("--html", metavar="PATH", help="write the whole report as one self-contained HTML file "
                                                        "(intervals, confusion matrices, risk–coverage, a gallery "
                                                        "of the worst answers with their images)",
                        type=output_file("eval-html"))
    parser.add_argument("--gallery", type=int, default=DEFAULT_GALLERY, metavar="K",
                        help=f"answers in the HTML error gallery (default {DEFAULT_GALLERY})")
    parser.add_argument("--target-accuracy", type=float, default=DEFAULT_TARGET, metavar="A",
                        help="with logprobs (`plates infer --logprobs`): report the confidence threshold above "
                             f"which each field reaches accuracy A (default {DEFAULT_TARGET})")


class EvalExtras:
    """Observers and outputs for one `plates eval` run."""

    def __init__(self, args: argparse.Namespace):
        if not 0 < args.target_accuracy <= 1:
            raise UserError("--target-accuracy must be in (0, 1], e.g. 0.99")
        if args.gallery < 0:
            raise UserError("--gallery must be >= 0")
        self.args = args
        self.field_slices: list[str] = []
        self.observers: list[Any] = []
        for name in args.by:
            index = parse_by(name)
            ccpd = ccpd_by(name)
            if ccpd is not None:
                self.observers.append(CcpdBins(ccpd))
            elif index is None:
                self.field_slices.append(name)
            else:
                self.observers.append(PathSlices(index))
        self.ccpd = CcpdSlices()
        self.confidence = ConfidenceObserver(args.target_accuracy)
        self.grounding = GroundingObserver(args.bootstrap, args.seed)
        self.gallery = Gallery(args.gallery) if args.html else None
        self.observers += [self.ccpd, self.grounding, self.confidence] + ([self.gallery] if self.gallery else [])

    def print(self, report: dict[str, Any]) -> None:
        for text in (format_grounding(report), format_ccpd(report), format_confidence(report)):
            if text:
                print("\n" + text)
        if not report.get("confidence") and self.args.target_accuracy != DEFAULT_TARGET:
            print("plates eval: note: --target-accuracy needs results with logprobs (`plates infer --logprobs`)",
                  file=sys.stderr)

    @staticmethod
    def markdown(report: dict[str, Any]) -> str:
        return "".join("\n" + text for text in (format_grounding(report, markdown=True),
                                                format_ccpd(report, markdown=True),
                                                format_confidence(report, markdown=True)) if text)

    @staticmethod
    def plots(report: dict[str, Any], directory: str | os.PathLike) -> list[Path]:
        if not report.get("confidence"):
            return []
        return [plot_risk_coverage(report, Path(directory) / "risk_coverage.png")]

    def image_folders(self) -> list[str]:
        """Where relative image paths may live: the results' folder, ROOT_IMAGE_DIR, the records' roots."""
        folders = [str(Path(self.args.results).resolve().parent)]
        if os.environ.get("ROOT_IMAGE_DIR"):
            folders.append(os.environ["ROOT_IMAGE_DIR"])
        if self.args.records:
            roots = {row.get("root") for _, row in iter_jsonl(self.args.records, []) if isinstance(row, dict)}
            folders += sorted(r for r in roots if isinstance(r, str) and r)
        return folders

    def write_html(self, report: dict[str, Any]) -> None:
        if not self.args.html:
            return
        write_html(self.args.html, report, self.gallery, self.image_folders())
        print(f"wrote {self.args.html}")
