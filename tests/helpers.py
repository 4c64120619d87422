"""Small helpers shared by several test modules."""

from __future__ import annotations


def argv_pairs(argv: list[str]) -> dict[str, list[str]]:
    """``--key v1 v2 --flag v`` -> {"key": ["v1", "v2"], "flag": ["v"]}: an ms-swift argv read back as options."""
    out: dict[str, list[str]] = {}
    key = None
    for item in argv:
        if item.startswith("--"):
            key = item[2:]
            out[key] = []
        elif key is not None:
            out[key].append(item)
    return out
