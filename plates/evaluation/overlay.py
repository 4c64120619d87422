"""Plate boxes in the HTML error gallery: the reference box and the predicted one drawn over the thumbnail.

The overlay is an inline SVG laid exactly over the ``<img>``, whose ``viewBox`` is the original image's size:
boxes keep their original-pixel coordinates and the browser scales them to whatever size the thumbnail is shown
at (no script, nothing fetched). Plates are paired as the ``grounding`` figures pair them
(:func:`plates.evaluation.grounding.match_plates`), so the IoU shown on a card is the one the report counted.
"""

from __future__ import annotations

import html
from typing import Any

from plates.evaluation.grounding import iou, match_plates, parse_box, predicted_plates

LOCATED = 0.7  # CCPD's detection criterion: IoU above it counts as found
CSS = """
.frame{position:relative;flex:none;align-self:flex-start;line-height:0}.frame img{display:block}
svg.boxes{position:absolute;left:0;top:0;width:100%;height:100%;overflow:visible;pointer-events:none}
svg.boxes rect{fill:none;stroke-width:2px;vector-effect:non-scaling-stroke}
svg.boxes .truth,.key.truth{stroke:#10a050;border-color:#10a050}
svg.boxes .pred,.key.pred{stroke:#e0108a;stroke-dasharray:6 3;border-color:#e0108a}
.key{display:inline-block;width:18px;height:9px;border:2px solid;vertical-align:middle}.key.pred{border-style:dashed}
"""
LEGEND = ('<span class="key truth"></span> reference box · <span class="key pred"></span> predicted box '
          "(dashed)")


def gallery_boxes(item: Any, outcome: Any) -> dict[str, Any] | None:
    """``{"plates": [{"reference", "predicted", "iou"}], "extra": [box]}`` for an answer whose reference has
    boxes: each reference plate with a usable box, the predicted box matched to it (None: none) and their IoU,
    then the predicted boxes matched to no reference plate. None when the reference has no box."""
    boxes = getattr(item.reference, "boxes", None)
    if not boxes:
        return None
    references = [parse_box(box) for box in boxes]
    if not any(box is not None for box in references):
        return None
    predicted = [box for _, box in predicted_plates(outcome.value)]
    pairs = match_plates(references, predicted)
    plates = []
    for i, box in enumerate(references):
        if box is not None:
            guess = predicted[pairs[i]] if i in pairs else None
            plates.append({"reference": box, "predicted": guess, "iou": iou(box, guess)})
    used = set(pairs.values())
    extra = [box for j, box in enumerate(predicted) if box is not None and j not in used]
    return {"plates": plates, "extra": extra}


def misplaced(boxes: dict[str, Any] | None) -> int:
    """Reference plates whose box was not found (IoU ≤ 0.7)."""
    return sum(plate["iou"] <= LOCATED for plate in boxes["plates"]) if boxes else 0


def box_text(box: tuple[float, ...] | None) -> str:
    return "(missing)" if box is None else "[" + ", ".join(f"{v:g}" for v in box) + "]"


def box_rows(boxes: dict[str, Any] | None) -> list[tuple[str, str, bool]]:
    """(reference, prediction, located) text of each reference plate's box, for the card's field table."""
    if not boxes:
        return []
    return [(box_text(p["reference"]), box_text(p["predicted"]) + (f" · IoU {p['iou']:.2f}" if p["predicted"]
                                                                    else ""), p["iou"] > LOCATED)
            for p in boxes["plates"]]


def _rect(box: tuple[float, ...], kind: str, title: str) -> str:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (f'<rect class="{kind}" x="{x1:g}" y="{y1:g}" width="{x2 - x1:g}" height="{y2 - y1:g}">'
            f"<title>{html.escape(title)}</title></rect>")


def overlay(size: tuple[int, int], boxes: dict[str, Any] | None) -> str:
    """The SVG drawn over a thumbnail of an image of ``size`` (original width, height); '' without boxes."""
    if not boxes:
        return ""
    shapes = []
    for plate in boxes["plates"]:
        shapes.append(_rect(plate["reference"], "truth", f"reference {box_text(plate['reference'])}"))
        if plate["predicted"] is not None:
            shapes.append(_rect(plate["predicted"], "pred",
                                f"predicted {box_text(plate['predicted'])}, IoU {plate['iou']:.2f}"))
    shapes += [_rect(box, "pred", f"predicted {box_text(box)}, matched to no reference plate")
               for box in boxes["extra"]]
    width, height = size
    return (f'<svg class="boxes" viewBox="0 0 {int(width)} {int(height)}" preserveAspectRatio="none" '
            f'aria-hidden="true">{"".join(shapes)}</svg>')
