"""Walking a dump: every entry under a root accounted for, and image sizes read from file headers.

`plates parse` and `plates predict` both need the same two things from a folder of camera images: a sorted,
deterministic listing that also names what is not a regular file (FIFOs, sockets, devices: listed, never
opened) and what has a name that is not UTF-8, and each image's size without decoding it (JPEG/PNG/BMP
headers; only files whose header cannot be read are decoded, with OpenCV).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, NamedTuple

from plates.errors import UserError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


class Rejected(NamedTuple):
    """Why a file cannot become a record; ``code`` groups reasons in the summary."""

    reason: str
    code: str = "unparseable_name"



# ---------------------------------------------------------------------------------------------- image headers


class ImageInfo(NamedTuple):
    width: int
    height: int
    channels: int
    warnings: tuple[str, ...] = ()


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
_HEAD_BYTES = 32768  # whole small images in one read: no second read for the end marker


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_S_ISREG = __import__("stat").S_ISREG


def read_image_info(path: str) -> ImageInfo | Rejected:
    """Width, height and channels (as stored: 1 grey, 3 colour, 4 with alpha or CMYK) from the file header;
    files whose header cannot be read are decoded with OpenCV, and rejected only if that fails too."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        return Rejected(f"cannot open: {exc.strerror}", "unreadable")
    try:
        if not _S_ISREG(os.fstat(fd).st_mode):  # replaced by a FIFO or device since the listing
            return Rejected("not a regular file (not read)", "not_regular_file")
        head = os.read(fd, _HEAD_BYTES)
        if not head:
            return Rejected("empty file", "empty_file")
        info = None
        if head[:2] == b"\xff\xd8":
            info = _jpeg_info(fd, head)
        elif head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 26 and head[12:16] == b"IHDR":
            info = _png_info(head)
        elif head[:2] == b"BM" and len(head) >= 30:
            info = _bmp_info(head)
    except OSError as exc:
        return Rejected(f"cannot read: {exc.strerror}", "unreadable")
    finally:
        os.close(fd)
    return info if info is not None else _decoded_info(path)


def _jpeg_info(fd: int, data: bytes) -> ImageInfo | None:
    offset = 2
    while True:
        while offset + 9 >= len(data):
            more = os.pread(fd, max(_HEAD_BYTES, offset + 10 - len(data)), len(data))
            if not more:
                return None
            data += more
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:
            offset += 1
            continue
        if marker == 0xD8 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        if marker == 0xD9 or marker == 0xDA:
            return None
        if marker in _SOF:
            height = int.from_bytes(data[offset + 5: offset + 7], "big")
            width = int.from_bytes(data[offset + 7: offset + 9], "big")
            if not width or not height:
                return None
            return ImageInfo(width, height, data[offset + 9], _jpeg_end_warnings(fd, data))
        offset += 2 + int.from_bytes(data[offset + 2: offset + 4], "big")


def _jpeg_end_warnings(fd: int, data: bytes) -> tuple[str, ...]:
    """A JPEG cut short (interrupted copy or download) lacks its end marker; it still decodes, partly grey."""
    size = os.fstat(fd).st_size
    tail = data[-64:] if size <= len(data) else os.pread(fd, 64, max(0, size - 64))
    return () if b"\xff\xd9" in tail else ("image_truncated: JPEG has no end marker (cut-off file?)",)


def _png_info(head: bytes) -> ImageInfo | None:
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    channels = _PNG_CHANNELS.get(head[25])
    return ImageInfo(width, height, channels) if width and height and channels else None


def _bmp_info(head: bytes) -> ImageInfo | None:
    if int.from_bytes(head[14:18], "little") < 40:
        return None
    width = int.from_bytes(head[18:22], "little", signed=True)
    height = abs(int.from_bytes(head[22:26], "little", signed=True))
    bits = int.from_bytes(head[28:30], "little")
    return ImageInfo(width, height, 4 if bits == 32 else 3) if width > 0 and height else None


def _decoded_info(path: str) -> ImageInfo | Rejected:
    import cv2
    import numpy as np

    try:
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error) as exc:
        return Rejected(f"cannot decode: {exc}", "corrupt_image")
    if image is None:
        return Rejected("corrupt image: no readable header and OpenCV cannot decode it", "corrupt_image")
    return ImageInfo(image.shape[1], image.shape[0], 1 if image.ndim == 2 else image.shape[2])


# ---------------------------------------------------------------------------------------------- dumps


def iter_files(root: str | Path, exclude: Iterable[str | Path] = (),
               special: dict[str, str] | None = None) -> list[str]:
    """Every file under ``root`` as a '/'-separated relative path, sorted (deterministic across machines).
    Symlinked folders are not followed (no cycles); ``exclude`` names absolute paths to skip (our own outputs).
    Entries that are not regular files (FIFOs, sockets, devices, dangling links) are listed too, so they are
    accounted for, and when ``special`` is a dict they are entered there with their kind, from the folder
    listing alone (never opened: a FIFO would block a reader forever, a device may act on open).
    Names that are not valid UTF-8 come back with their bytes as surrogates (``os.fsdecode``)."""
    root = os.path.abspath(root)
    skip = {os.path.abspath(p) for p in exclude}
    found: list[str] = []
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError as exc:
            if not prefix:
                raise UserError(f"ROOT {root}: cannot list it ({exc.strerror})") from None
            found.append(prefix[:-1])
            if special is not None:
                special[prefix[:-1]] = f"folder that cannot be listed ({exc.strerror})"
            continue
        with entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", entry.path))
                elif entry.path not in skip:
                    found.append(rel)
                    if special is not None and not _is_regular(entry):
                        special[rel] = file_kind(entry.path)
    found.sort()
    return found


def _is_regular(entry: os.DirEntry) -> bool:
    """``entry.is_file()`` that answers False instead of raising for a link it cannot resolve (a symbolic link
    loop raises ELOOP, where a dangling link answers False)."""
    try:
        return entry.is_file()
    except OSError:
        return False


def file_kind(path: str) -> str:
    """What a path that is not a regular file is, for a reject's reason; never raises."""
    import errno
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if not os.path.islink(path):
            return "file that cannot be read"
        return "symbolic link loop" if exc.errno == errno.ELOOP else "dangling symbolic link"
    for test, kind in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "folder")):
        if test(mode):
            return kind
    return "special file"


def name_problem(rel: str) -> Rejected | None:
    """Why a path whose bytes are not UTF-8 (GBK/GB18030 names from Chinese Windows shares are common)
    cannot become a record: its labels may be readable, but no later stage could write the path to a UTF-8
    dataset file. The reason shows the name decoded as GB18030 where that works, and the fix."""
    raw = os.fsencode(rel)
    try:
        decoded = raw.decode("gb18030")
        hint = f"reads as GB18030: {decoded!r}; "
    except UnicodeDecodeError:
        hint = ""
    return Rejected(f"file name is not UTF-8 ({hint}rename it, e.g. convmv -f GB18030 -t UTF-8 -r --notest ROOT)",
                    "name_encoding")


def display_name(rel: str) -> str:
    """``rel`` as text that can be written to a UTF-8 file: undecodable bytes become \\xNN escapes."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return os.fsencode(rel).decode("utf-8", "backslashreplace")


def default_rejects_path(output: Path) -> Path:
    """``out.jsonl`` -> ``out.rejects.jsonl``."""
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(stem + ".rejects.jsonl")
