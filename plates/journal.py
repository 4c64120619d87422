"""The resumable JSONL journal shared by `plates teach` and `plates predict`: every line carries a ``key``; one
writer at a time (an exclusive lock); each line is made durable before the next; a re-run reads the keys
already written and repairs only what a crash of ours can leave (a last line cut off mid-write)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from plates.errors import UserError
from plates.io import dump_json_line


@dataclass
class Recovered:
    keys: set[str] = field(default_factory=set)
    lines: int = 0
    torn_bytes: int = 0
    duplicates: int = 0


class Journal:
    """An append-only JSONL output of keyed lines: an exclusive lock, crash recovery, one durable line at a time."""

    def __init__(self, path: Path, command: str = "teach"):
        self.command = command
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        except OSError:
            os.close(self.fd)
            raise UserError(f"{self.path}: another `plates {command}` is writing this file") from None
        if created:
            _fsync_dir(self.path.parent)

    def recover(self, on_line: Callable[[dict[str, Any]], None] | None = None) -> Recovered:
        """Read the keys already written and repair only what a crash of ours can leave: a last line cut off
        mid-write (no newline, not JSON, the start of one of our lines) is cut; a complete, valid last line that
        merely lacks its newline is kept and the newline added. Anything else (a damaged line elsewhere, a
        line that is not a teacher line, a file that is not teacher output at all) is not ours to repair and
        is a user error, with the file left untouched."""
        result = Recovered()
        cut_at: int | None = None
        bad_line = 0
        newline_missing = False
        not_ours = f"is not a `plates {self.command}` output"
        with open(self.path, "rb") as handle:
            offset = 0
            for number, raw in enumerate(handle, 1):
                start, offset = offset, offset + len(raw)
                if raw.strip() == b"" and raw.endswith(b"\n"):
                    continue
                if cut_at is not None:
                    raise UserError(f"{self.path}: line {bad_line} is damaged (not JSON) but is not the last line; "
                                    "fix or remove it and re-run")
                try:
                    line = json.loads(raw)
                except ValueError:
                    line = None
                complete = raw.endswith(b"\n")
                if line is None:
                    if not _torn(raw):
                        if result.lines == 0:
                            raise UserError(f"{self.path}: {not_ours} (line {number} is not one of its lines); "
                                            "choose another -o")
                        raise UserError(f"{self.path}: line {number} is damaged (not JSON) and is not a line cut off "
                                        "by a crash; fix or remove it and re-run")
                    cut_at, bad_line = start, number
                    continue
                if not isinstance(line, dict) or not isinstance(line.get("key"), str):
                    raise UserError(f"{self.path}: line {number} has no 'key' ({not_ours}; choose another -o)")
                newline_missing = not complete
                result.lines += 1
                if line["key"] in result.keys:
                    result.duplicates += 1
                result.keys.add(line["key"])
                if on_line is not None:
                    on_line(line)
        if cut_at is not None:
            size = self.path.stat().st_size
            os.ftruncate(self.fd, cut_at)
            os.fsync(self.fd)
            result.torn_bytes = size - cut_at
        elif newline_missing:
            os.write(self.fd, b"\n")
            os.fsync(self.fd)
        return result

    def append(self, line: dict[str, Any]) -> None:
        self.append_all([line])

    def append_all(self, lines: list[dict[str, Any]]) -> None:
        """Several lines in one write and one fsync (a kill mid-write leaves at most one torn line, which the next
        :meth:`recover` cuts; the whole lines before it are kept)."""
        data = "".join(dump_json_line(line) for line in lines).encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        (getattr(os, "fdatasync", None) or os.fsync)(self.fd)

    def close(self) -> None:
        os.close(self.fd)


_LINE_START = b'{"key":"'


def _torn(raw: bytes) -> bool:
    """Whether an unparsable ``raw`` line is what a crash during :meth:`Journal.append` leaves: the start of
    one of our lines without its newline, or the zero bytes a power cut leaves where a line was going."""
    body = raw.rstrip(b"\0")
    if not body.strip(b"\0\n"):
        return True
    return not body.endswith(b"\n") and (body.startswith(_LINE_START) or _LINE_START.startswith(body))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - directories cannot be opened on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
