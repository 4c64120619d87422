"""Small I/O helpers every stage uses: atomic writes, tolerant JSONL reading, progress bars."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from plates.errors import UserError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[TextIO]:
    """Write to a temporary file beside ``path`` and rename it over ``path`` only on success,
    so a crash or Ctrl-C never leaves a half-written output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dump_json_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Atomically write rows as JSONL; returns the count."""
    n = 0
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(dump_json_line(row))
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


def iter_jsonl(path: str | os.PathLike, errors: list[str] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)``. Blank lines are skipped; a line that is not JSON is appended to
    ``errors`` as 'line N: reason' (or raises UserError when ``errors`` is None)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                message = f"line {number}: not JSON ({exc.msg})"
                if errors is None:
                    raise UserError(f"{path}: {message}") from None
                errors.append(message)


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    return [obj for _, obj in iter_jsonl(path)]


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm progress bar on a terminal, silent otherwise (logs and CI stay clean)."""
    from tqdm import tqdm

    kwargs.setdefault("disable", not sys.stderr.isatty())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def repo_root() -> Path:
    """The checkout this package runs from (presets, labels and eval assets live there)."""
    return Path(__file__).resolve().parent.parent
