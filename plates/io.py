"""Small I/O helpers every stage uses: atomic writes, tolerant JSONL reading, progress bars."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, TextIO

from plates.errors import UserError
from plates.signals import deferred


def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[TextIO]:
    """Write to a temporary file beside ``path`` and rename it over ``path`` only on success, so a crash or
    Ctrl-C never leaves a half-written output. The file gets the mode a plain ``open`` would give it (0666
    less the umask), not ``mkstemp``'s private 0600, so teammates on a shared server can read outputs. A
    symlink at ``path`` is replaced by the file (its target is never written through); callers that must not
    touch an input check with :func:`guard_outputs` first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = fd = None
    try:
        with deferred():  # a signal here would leave a temporary file nobody knows the name of
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())
        handle = os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)
        fd = None  # the handle owns it now
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
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


# ---------------------------------------------------------------------------------------------- path guards


def _label(flag: str | None, path: str | os.PathLike) -> str:
    return f"{flag} {path}" if flag else str(path)


def _file_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a folder (so nothing can be created below it)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same real path (through symlinks), or the same inode on the same
    device (hard links, bind mounts). Paths that do not exist compare by real path only."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    ia, ib = _identity(a), _identity(b)
    return ia is not None and ia == ib


def check_input_file(path: str | os.PathLike, flag: str | None = None) -> Path:
    """``path`` as a Path when it is an existing regular file (through symlinks); otherwise a one-line
    UserError that says what it is instead: no such file, a folder ('is a folder, expected a file'), or a
    FIFO/socket/device (never opened: reading a FIFO would block forever). ``flag`` ('--descriptions')
    prefixes the message so the user sees which argument is wrong."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{_label(flag, path)}: no such file") from None
    except NotADirectoryError:
        raise UserError(f"{_label(flag, path)}: no such file ({_file_ancestor(path)} is a file)") from None
    except OSError as exc:
        raise UserError(f"{_label(flag, path)}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{_label(flag, path)}: is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{_label(flag, path)}: not a regular file (a FIFO, socket or device), expected a file")
    return path


def check_input_dir(path: str | os.PathLike, flag: str | None = None) -> Path:
    """``path`` as a Path when it is an existing folder; otherwise a one-line UserError ('no such folder',
    'is a file, expected a folder')."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise UserError(f"{_label(flag, path)}: is a file, expected a folder")
    raise UserError(f"{_label(flag, path)}: no such folder")


def check_output_file(path: str | os.PathLike, flag: str | None = "-o") -> Path:
    """``path`` as a Path when a file can be written there: not an existing folder ('--json .'), not a name
    ending in '/', not below something that is a file, and not an existing FIFO/socket/device (replacing
    /dev/null or a pipe with a regular file is never what the user meant). Otherwise a one-line UserError
    naming ``flag``. Cheap (a few stat calls), so every stage calls it before doing any work."""
    text = os.fspath(path)
    path = Path(path)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise UserError(f"{_label(flag, text)}: is a folder, expected a file path")
    parent = _file_ancestor(path)
    if parent is not None:
        raise UserError(f"{_label(flag, text)}: cannot create it, {parent} is a file, not a folder")
    if path.exists() and not path.is_file():
        raise UserError(f"{_label(flag, text)}: exists and is not a regular file; choose a file path")
    return path


def guard_outputs(inputs: Iterable[str | os.PathLike | tuple[str, str | os.PathLike]] | Mapping[str, str | os.PathLike],
                  outputs: Mapping[str, str | os.PathLike | tuple[str | os.PathLike, str] | None], *,
                  command: str | None = None) -> None:
    """Refuse, before any work is done, a command line whose outputs would destroy data. ``outputs`` maps
    each output flag ('-o', '--json', '--markdown', …) to its path (None: not given), or to ``(path, kind)``
    with the output kind of :mod:`plates.outputs` ('records', 'teach', …); ``inputs`` are the files and
    folders the command reads (name them for the message with a mapping {'RESULTS': path} or with
    ('--inputs', path) pairs; None entries are skipped). Raises UserError when an output is one of the
    inputs - compared by real path through symlinks and by device and inode, so hard links count - when an
    output is an existing file inside an input *folder* (unless it is an earlier output of the same kind),
    when it is an image a JSONL input names, when two outputs name the same file, when an output cannot be a
    file at all (see :func:`check_output_file`), or when an existing output holds anything but its kind (a file
    plates did not write, or another stage's output: :func:`plates.outputs.check_kind`). ``command`` ('eval')
    only flavours the message. Cheap unless an output already exists."""
    from plates.outputs import check_kind, recognise

    named = list(inputs.items()) if isinstance(inputs, Mapping) else [
        item if isinstance(item, tuple) else (None, item) for item in inputs]
    named = [(name, p) for name, p in named if p is not None]
    of = f" of `plates {command}`" if command else ""
    seen: dict[tuple[int, int] | str, str] = {}
    existing: dict[str, str] = {}
    for flag, spec in outputs.items():
        out, kind = spec if isinstance(spec, tuple) else (spec, None)
        if out is None:
            continue
        check_output_file(out, flag)
        ident = _identity(out) or os.path.realpath(out)
        if ident in seen:
            raise UserError(f"{flag} {out}: same file as {seen[ident]}; give each output its own path")
        seen[ident] = flag
        exists = os.path.lexists(out)
        real_out = os.path.realpath(out)
        for name, source in named:
            what = f"{name} {source}" if name else str(source)
            if os.path.isdir(source):
                inside = os.path.commonpath([real_out, os.path.realpath(source)]) == os.path.realpath(source)
                if exists and inside and (kind is None or recognise(out) != kind):
                    raise UserError(f"{flag} {out}: would replace a file inside the input folder {what}{of}; "
                                    "choose another output path")
            elif same_file(out, source):
                raise UserError(f"{flag} {out}: is the input {what}{of} (same file); choose another output path "
                                "(refusing to overwrite an input)")
        if exists and kind is not None:
            check_kind(out, kind, flag)  # an image is never a plates output: refused here, no scan needed
        elif exists:
            existing[flag] = out
    if existing:
        _refuse_named_images(named, existing, of)


def _refuse_named_images(named: list[tuple[str | None, Any]], outputs: Mapping[str, Any], of: str) -> None:
    """Refuse an existing output that is an image named by a JSONL input (a records file, a dataset): its
    ``image``/``images`` paths, absolute, below the line's ``root`` or relative to the JSONL's folder."""
    wanted = {ident: flag for flag, out in outputs.items() if (ident := _identity(out)) is not None}
    for name, source in named:
        if not (os.path.isfile(source) and os.fspath(source).lower().endswith(".jsonl")):
            continue
        base = os.path.dirname(os.path.abspath(source))
        for _, row in iter_jsonl(source, errors=[]):
            if not isinstance(row, dict):
                continue
            images = row.get("images") if isinstance(row.get("images"), list) else [row.get("image")]
            for image in images:
                image = image.get("path") if isinstance(image, dict) else image
                if not isinstance(image, str) or not image:
                    continue
                roots = [str(row["root"])] if isinstance(row.get("root"), str) else []
                for candidate in [image] if os.path.isabs(image) else [os.path.join(r, image) for r in [*roots, base]]:
                    flag = wanted.get(_identity(candidate))
                    if flag is not None:
                        what = f"{name} {source}" if name else str(source)
                        raise UserError(f"{flag} {outputs[flag]}: is an image named by the input {what}{of}; "
                                        "choose another output path")


def check_output_dir(path: str | os.PathLike, flag: str | None = "-o", *, owned: Iterable[str] = (),
                     keep: Iterable[str | os.PathLike] = (), contents: bool = True) -> Path:
    """``path`` as a Path when a command may write its set of files into that folder: it is a folder or does
    not exist yet (nothing above it is a file), and every entry already in it is either one of ``owned``
    (file names this command writes, e.g. 'train.jsonl'), plates' own staging/journal leftovers
    ('.plates-*'), or one of ``keep`` (the command's own inputs, which may live there and survive). Anything
    else means the folder holds someone's data, and it is refused with a one-line UserError listing a few
    such names, rather than mixed with or clobbered by our outputs. ``contents=False`` checks only the kind
    (a folder, or creatable), for callers with their own rule about what may be inside."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{_label(flag, path)}: is a file, expected a folder")
    parent = _file_ancestor(path)
    if parent is not None:
        raise UserError(f"{_label(flag, path)}: cannot create it, {parent} is a file, not a folder")
    if not path.is_dir() or not contents:
        return path
    owned = set(owned)
    kept = {i for i in map(_identity, keep) if i is not None}
    foreign = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.name in owned or entry.name.startswith(".plates-"):
            continue
        if _identity(entry.path) in kept:
            continue
        foreign.append(entry.name + ("/" if entry.is_dir() else ""))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(f"{_label(flag, path)}: holds files plates did not write ({shown}); "
                        "give a new or empty folder")
    return path


# ---------------------------------------------------------------------------------------------- file sets

_JOURNAL = ".plates-commit.json"
_STAGING = ".plates-staging-"


def recover_file_set(folder: str | os.PathLike) -> None:
    """Finish or discard what an interrupted :func:`replace_file_set` left in ``folder``: a commit journal
    means the new set was complete, so its moves are rolled forward; staging folders without a journal are
    the unfinished new set and are removed (the old set is still in place). Called by replace_file_set
    itself; readers that must never see a half-committed set may call it first."""
    folder = Path(folder)
    journal = folder / _JOURNAL
    if journal.is_file():
        try:
            plan = json.loads(journal.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            plan = None
        if isinstance(plan, dict):
            staging = folder / str(plan.get("staging", ""))
            for name in plan.get("move", []):
                if (staging / name).exists():
                    os.replace(staging / name, folder / name)
            for name in plan.get("remove", []):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / name)
        journal.unlink()
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(_STAGING) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


def _signals_blocked():
    """Hold Ctrl-C, SIGTERM and SIGHUP for the few renames of a commit (see :func:`plates.signals.deferred`)."""
    return deferred()


@contextlib.contextmanager
def replace_file_set(folder: str | os.PathLike, *, remove: Iterable[str] = ()) -> Iterator[Path]:
    """Replace a set of files in ``folder`` as one unit: yields an empty staging folder inside ``folder``;
    write every new file there under its final name (plain writes are fine). When the block ends normally,
    the files are fsynced, a commit journal is written atomically, and the files are renamed into
    ``folder`` (and the names in ``remove`` - stale outputs of an earlier run that this one does not make -
    are deleted) with Ctrl-C held back, then the journal goes. An exception or Ctrl-C inside the block, or
    a crash before the journal exists, leaves the old set untouched; a crash after it is rolled forward by
    the next call (:func:`recover_file_set`). So readers find the old set or the new set, never a mix.
    Files in ``folder`` not named by the new set or ``remove`` are left alone."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recover_file_set(folder)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=folder))
    try:
        yield staging
        names = sorted(p.name for p in staging.iterdir())
        for name in names:
            fd = os.open(staging / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        removed = sorted(set(remove) - set(names))
        plan = {"staging": staging.name, "move": names, "remove": removed}
        with _signals_blocked():
            with atomic_write(folder / _JOURNAL) as handle:
                json.dump(plan, handle)
            for name in names:
                os.replace(staging / name, folder / name)
            for name in removed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / name)
            os.unlink(folder / _JOURNAL)
            with contextlib.suppress(OSError):
                dir_fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
    finally:
        if not (folder / _JOURNAL).exists():
            shutil.rmtree(staging, ignore_errors=True)


def iter_jsonl(path: str | os.PathLike, errors: list[str] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` from a JSON-lines file as editors and other tools write them: a UTF-8
    byte-order mark on the first line and CRLF line ends are read, blank lines skipped. A line that is not
    UTF-8 ('not UTF-8', so a GBK or UTF-16 file is named for what it is rather than mistaken for some other
    program's output) or not JSON is appended to ``errors`` as 'line N: reason', or raises UserError when
    ``errors`` is None. A missing path, a folder and an unreadable file are one-line UserErrors too."""
    path = check_input_file(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                message = (f"line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}; "
                           "save the file as UTF-8)")
                if errors is None:
                    raise UserError(f"{path}: {message}") from None
                errors.append(message)
                continue
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                message = f"line {number}: not JSON ({getattr(exc, 'msg', 'nested too deeply')})"
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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (the one file hash every stage records)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def repo_root() -> Path:
    """The checkout's root (tests and tools only): installed packages have none, so data folders are found
    through :mod:`plates.resources`, never through this."""
    return Path(__file__).resolve().parent.parent
