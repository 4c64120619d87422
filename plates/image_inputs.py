"""The images `plates predict` answers: INPUT files, folders and records JSONL expanded into candidates (path +
content hash, the key of an answer line) and rejects (every file seen lands in exactly one of the two), shared
by the local engine run (:mod:`plates.engine_answers`) and the endpoint run (:mod:`plates.predict_endpoint`)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from plates.dump import IMAGE_EXTENSIONS, Rejected, display_name, file_kind, iter_files, name_problem, read_image_info
from plates.errors import UserError
from plates.io import iter_jsonl, progress, sha256_file
from plates.records import resolve_image


@dataclass(frozen=True)
class Candidate:
    """One image to answer: its absolute path and the content hash that keys it."""

    path: str
    sha256: str

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.path}\0{self.sha256}".encode("utf-8")).hexdigest()[:32]


def check_image(path: str) -> tuple[str, str] | None:
    """Why ``path`` cannot be answered, as ``(reason, code)``, or None. Uses `plates parse`'s header checks, then
    decodes the whole image: one truncated or corrupt file would otherwise stop a whole `swift infer` chunk. A
    name that is not UTF-8 is refused as parse refuses it: no answer line could name it."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        refused = name_problem(path)
        return refused.reason, refused.code
    name = os.path.basename(path)
    dot = name.rfind(".")
    extension = name[dot:].lower() if dot > 0 else ""
    if extension not in IMAGE_EXTENSIONS:
        return f"not an image file (extension {extension or 'none'!r})", "not_image"
    info = read_image_info(path)
    if isinstance(info, Rejected):
        return info.reason, info.code
    if info.warnings:
        return f"damaged image: {info.warnings[0]}", "corrupt_image"
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files; each is a reject
        return f"corrupt image: {type(exc).__name__}: {exc}", "corrupt_image"
    return None


def _records_images(path: Path) -> Iterable[tuple[str, str | None]]:
    """(absolute image path, problem) for each line of a JSONL that names images."""
    errors: list[str] = []
    for number, line in iter_jsonl(path, errors):
        if not isinstance(line, dict) or not isinstance(line.get("image"), str):
            yield f"{path}:{number}", "line has no 'image' path"
            continue
        yield str(resolve_image(line, path)), None
    for message in errors:
        yield f"{path}:{message.split(':')[0].removeprefix('line ')}", message


def collect_inputs(inputs: Iterable[str], exclude: Iterable[Path] = ()) -> tuple[list[Candidate], list[dict]]:
    """Expand INPUT… into the images to answer and the rejects (every file seen is in exactly one list).
    The same image named twice is answered once. FIFOs, sockets, devices and dangling links are rejected from
    their folder listing or ``stat`` alone, never opened (a FIFO would block the run forever)."""
    skip = {os.path.realpath(p) for p in exclude}
    paths: list[tuple[str, str | None]] = []
    special: dict[str, str] = {}
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            root = os.path.abspath(path)
            kinds: dict[str, str] = {}
            paths.extend((root + "/" + rel, None) for rel in iter_files(root, exclude=skip, special=kinds))
            special.update((root + "/" + rel, kind) for rel, kind in kinds.items())
        elif path.suffix.lower() == ".jsonl" and path.is_file():
            paths.extend(_records_images(path))
        elif path.exists():
            paths.append((os.path.abspath(path), None))
        elif os.path.islink(path):
            raise UserError(f"INPUT {item}: a {file_kind(str(path))}, not a file or folder")
        else:
            raise UserError(f"INPUT {item}: no such file or folder")
    candidates: list[Candidate] = []
    rejects: list[dict] = []
    seen: set[str] = set()
    bar = progress(total=len(paths), unit="file", desc="check")
    for path, problem in paths:
        bar.update(1)
        if os.path.realpath(path) in skip:
            continue
        if path in seen:
            continue
        seen.add(path)
        if problem is None and (path in special or not os.path.isfile(path)):
            kind = special.get(path) or (file_kind(path) if os.path.lexists(path) else None)
            if kind is None:
                problem, code = "no such file", "unreadable"
            else:
                problem, code = f"not a regular file: a {kind} (not opened)", "not_regular_file"
        else:
            code = "bad_input_line"
        if problem is None:
            found = check_image(path)
            if found is not None:
                problem, code = found
        if problem is None:
            try:
                candidates.append(Candidate(path, sha256_file(path)))
                continue
            except OSError as exc:
                problem, code = f"cannot read: {exc.strerror}", "unreadable"
        rejects.append({"image": display_name(path), "reason": problem, "code": code})
    bar.close()
    return candidates, rejects
