"""`plates parse`: a labelled image dump -> one clean, validated record per image (see ``plates.records``).

Labels live in the file names; the two grammars understood (in :mod:`plates.names`) are

* the seed's: ``车辆属性:品牌-朝向-类型-颜色_车牌属性0:国家-省份-号码-颜色-层数-用途[_车牌属性1:…]_id_id….jpg``
  (ASCII or full-width colons, plate numbers with spaces or hyphens, brands containing '-', any number of ids);
* CCPD's (Chinese City Parking Dataset): ``area-tilt-box-vertices-plateindices-brightness-blur.jpg``, whose
  plate characters are indices into CCPD's province / alphabet / ads tables.

Every file under ROOT ends up either as a record or as a reject with a reason, so a dump is fully accounted for.
Image sizes come from the file header (no decode); only files whose header cannot be read are decoded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from plates.corrections import load_corrections
from plates.dump import (
    IMAGE_EXTENSIONS, Rejected, default_rejects_path, display_name, iter_files, name_problem, read_image_info,
)
from plates.errors import UserError
from plates.io import atomic_write, guard_outputs, progress, write_json
from plates.labels import PLATE_GROUP, VEHICLE_FIELDS, VEHICLE_GROUP
from plates.names import (
    FORMATS, GEOMETRY_KEY, PLATE_STAT_FIELDS, geometry_warnings, name_format, parse_ccpd_filename,
    parse_seed_filename,
)
from plates.outputs import input_path, output_file
from plates.signals import reset_in_child

CHUNK_FILES = 1000


def parse_file(root: str, rel: str, fmt: str = "auto") -> dict[str, Any] | Rejected:
    """The record for one file (``rel`` relative to the absolute ``root``), or why it has none."""
    if not rel.isascii():
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            return name_problem(rel)
    name = rel.rpartition("/")[2]
    dot = name.rfind(".")
    extension = name[dot:].lower() if dot > 0 else ""
    if extension not in IMAGE_EXTENSIONS:
        return Rejected(f"not an image file (extension {extension or 'none'!r})", "not_image")
    chosen = name_format(name) if fmt == "auto" else fmt
    if chosen is None:
        return Rejected("name matches neither the seed grammar (车辆属性:…_车牌属性0:…) nor CCPD's")
    parsed = parse_seed_filename(name) if chosen == "seed" else parse_ccpd_filename(name)
    if isinstance(parsed, Rejected):
        return parsed
    info = read_image_info(root + "/" + rel)
    if isinstance(info, Rejected):
        return info
    record = {"image": rel, "root": root, "format": chosen, "width": info.width, "height": info.height,
              "channels": info.channels, "labels": parsed.labels, "ids": parsed.ids,
              "warnings": parsed.warnings + list(info.warnings)}
    if parsed.extra:  # CCPD's geometry and capture figures; seed records have none and stay as they were
        warnings = record.pop("warnings")
        record.update(parsed.extra)
        record["warnings"] = warnings + geometry_warnings(parsed.extra.get(GEOMETRY_KEY), info.width, info.height)
    return record


@dataclass
class ParseSummary:
    """What a parse saw: counts that always add up (parsed + rejected = files), value and warning counts."""

    files: int = 0
    parsed: int = 0
    rejected: int = 0
    formats: Counter = field(default_factory=Counter)
    reject_codes: Counter = field(default_factory=Counter)
    warning_codes: Counter = field(default_factory=Counter)
    records_with_warnings: int = 0
    plates_per_image: Counter = field(default_factory=Counter)
    vehicles: Counter = field(default_factory=Counter)
    plates: Counter = field(default_factory=Counter)

    def add_record(self, record: dict[str, Any]) -> None:
        self.files += 1
        self.parsed += 1
        self.formats[record["format"]] += 1
        labels = record["labels"]
        self.vehicles[tuple(labels[VEHICLE_GROUP].values())] += 1
        plates = labels[PLATE_GROUP]
        self.plates_per_image[len(plates)] += 1
        for plate in plates:
            self.plates[tuple(plate[name] for name in PLATE_STAT_FIELDS)] += 1
        if record["warnings"]:
            self.records_with_warnings += 1
            for warning in record["warnings"]:
                self.warning_codes[warning.partition(":")[0]] += 1

    def add_reject(self, rejected: Rejected) -> None:
        self.files += 1
        self.rejected += 1
        self.reject_codes[rejected.code] += 1

    def merge(self, other: ParseSummary) -> None:
        self.files += other.files
        self.parsed += other.parsed
        self.rejected += other.rejected
        self.records_with_warnings += other.records_with_warnings
        for name in ("formats", "reject_codes", "warning_codes", "plates_per_image", "vehicles", "plates"):
            getattr(self, name).update(getattr(other, name))

    def field_counts(self) -> dict[str, Counter]:
        counts = {name: Counter() for name in VEHICLE_FIELDS + PLATE_STAT_FIELDS}
        for values, n in self.vehicles.items():
            for name, value in zip(VEHICLE_FIELDS, values):
                counts[name][value] += n
        for values, n in self.plates.items():
            for name, value in zip(PLATE_STAT_FIELDS, values):
                counts[name][value] += n
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "parsed": self.parsed, "rejected": self.rejected,
            "formats": dict(self.formats), "reject_codes": dict(self.reject_codes),
            "records_with_warnings": self.records_with_warnings, "warning_codes": dict(self.warning_codes),
            "plates_per_image": {str(k): v for k, v in sorted(self.plates_per_image.items())},
            "field_values": {name: dict(c.most_common()) for name, c in self.field_counts().items()},
        }

    def lines(self, top: int = 8) -> list[str]:
        out = [f"files seen {self.files} = parsed {self.parsed} + rejected {self.rejected}"]
        if self.formats:
            out.append("formats: " + ", ".join(f"{k} {v}" for k, v in self.formats.most_common()))
        if self.reject_codes:
            out.append("rejects: " + ", ".join(f"{k} {v}" for k, v in self.reject_codes.most_common()))
        plates = ", ".join(f"{k} plate{'s' if k != 1 else ''}: {v}" for k, v in sorted(self.plates_per_image.items()))
        if plates:
            out.append("images with " + plates)
        out.append(f"records with warnings: {self.records_with_warnings}"
                   + ("" if not self.warning_codes else " (" + ", ".join(
                       f"{k} {v}" for k, v in self.warning_codes.most_common()) + ")"))
        for name, counts in self.field_counts().items():
            if not counts:
                continue
            shown = ", ".join(f"{value} {n}" for value, n in counts.most_common(top))
            more = len(counts) - top
            out.append(f"  {name}: {shown}" + (f", … {more} more values" if more > 0 else ""))
        return out


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# A forked worker's file list, inherited with the fork (see _start_worker).
_INHERITED_FILES: list[str] = []


def _parse_chunk(task: tuple) -> tuple[list[str], list[str], ParseSummary]:
    """Parse a slice of the file list into ready-to-write JSON lines (so workers do the serialising).
    ``task`` is (root, rels, fmt[, special]): ``rels`` the relative paths, or a range of the inherited list;
    ``special`` maps non-regular files to their kind."""
    root, rels, fmt = task[:3]
    if rels.__class__ is range:
        rels = _INHERITED_FILES[rels.start:rels.stop]
    special = task[3] if len(task) > 3 else None
    records, rejects, summary = [], [], ParseSummary()
    for rel in rels:
        try:
            if special and rel in special:
                result = Rejected(f"not a regular file: a {special[rel]} (not opened)", "not_regular_file")
            else:
                result = parse_file(root, rel, fmt)
        except Exception as exc:  # noqa: BLE001 - one odd file must not lose the whole dump; it is reported
            result = Rejected(f"internal error while parsing: {type(exc).__name__}: {exc}", "internal_error")
        if isinstance(result, Rejected):
            summary.add_reject(result)
            rejects.append(_encode({"image": display_name(rel), "root": root, "reason": result.reason,
                                    "code": result.code}) + "\n")
        else:
            summary.add_record(result)
            records.append(_encode(result) + "\n")
    return records, rejects, summary


def _start_worker(files: list[str] | None = None) -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool (a worker dying mid-task would hang it); SIGTERM
    and SIGHUP end a worker (Pool.terminate stops workers with SIGTERM, and a signal to the whole process group
    reaches the parent too, which stops the pool). A forked worker also keeps the parent's file list (a fork's arguments are inherited, not pickled), so its tasks name
    a range of it instead of carrying the paths through the pipe."""
    global _INHERITED_FILES
    if files is not None:
        _INHERITED_FILES = files
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reset_in_child()  # SIGTERM from the parent's Pool.terminate ends the worker, without a traceback


def parse_dump(root: str | Path, fmt: str = "auto", jobs: int = 1, files: list[str] | None = None,
               show_progress: bool = True, special: dict[str, str] | None = None,
               ) -> Iterator[tuple[list[str], list[str], ParseSummary]]:
    """Parse ``files`` (default: every file under ``root``, see :func:`iter_files`) in order, yielding
    ``(record lines, reject lines, summary)`` per chunk; with ``jobs`` > 1 chunks are parsed in worker
    processes (order is kept)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    root = os.path.abspath(root)
    if files is None:
        special = {}
        files = iter_files(root, special=special)
    starts = range(0, len(files), CHUNK_FILES)
    bar = progress(total=len(files), unit="file", desc="parse", **({} if show_progress else {"disable": True}))
    try:
        if jobs > 1 and len(starts) > 1:
            import multiprocessing

            fork = "fork" in multiprocessing.get_all_start_methods()
            tasks = [(root, range(i, min(i + CHUNK_FILES, len(files))) if fork else files[i: i + CHUNK_FILES], fmt,
                      special) for i in starts]
            context = multiprocessing.get_context("fork" if fork else None)
            with context.Pool(min(jobs, len(tasks)), initializer=_start_worker,
                              initargs=(files if fork else None,)) as pool:
                for result in pool.imap(_parse_chunk, tasks):
                    bar.update(result[2].files)
                    yield result
        else:
            for i in starts:
                result = _parse_chunk((root, files[i: i + CHUNK_FILES], fmt, special))
                bar.update(result[2].files)
                yield result
    finally:
        bar.close()


def parse_to_files(root: str | Path, output: str | Path, rejects: str | Path | None = None, fmt: str = "auto",
                   jobs: int = 1, show_progress: bool = True, corrections: Any = None) -> ParseSummary:
    """Write the records and rejects files atomically (both appear only when the whole dump is done).
    ``corrections`` (:func:`plates.corrections.load_corrections`) fixes labels by image path as records are written."""
    output = Path(output)
    rejects = Path(rejects) if rejects else default_rejects_path(output)
    check_parse_outputs(root, {"-o": output, "--rejects": rejects})
    special: dict[str, str] = {}
    files = iter_files(root, exclude=(output, rejects), special=special)  # before our temporary outputs appear
    summary = ParseSummary()
    with atomic_write(output) as records_out, atomic_write(rejects) as rejects_out:
        for records, rejected, chunk_summary in parse_dump(root, fmt, jobs, files, show_progress, special):
            records_out.writelines(corrections.apply_lines(records) if corrections else records)
            rejects_out.writelines(rejected)
            summary.merge(chunk_summary)
    return summary


def check_parse_outputs(root: str | Path, outputs: dict[str, str | Path | None]) -> None:
    """Before any work: ROOT is a folder, each output can be a file and names its own path, and an output
    inside the dump never replaces one of the dump's files (an image, or anything that is not an earlier
    plates JSON/JSONL output) - new files there are fine, the walk skips them."""
    root_path = Path(root)
    if not root_path.exists():
        raise UserError(f"ROOT {root}: no such folder")
    if not root_path.is_dir():
        raise UserError(f"ROOT {root}: is a file, expected a folder (give the folder that holds the images)")
    guard_outputs([], outputs, command="parse")
    real_root = os.path.realpath(root)
    for flag, path in outputs.items():
        if path is None or not os.path.lexists(path):
            continue
        real = os.path.realpath(path)
        if os.path.commonpath([real, real_root]) == real_root:
            if not str(path).lower().endswith((".jsonl", ".json")) or Path(path).suffix.lower() in IMAGE_EXTENSIONS:
                raise UserError(f"{flag} {path}: would replace a file of the dump ROOT {root}; "
                                "choose a new path (outputs are .jsonl/.json files)")


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="ROOT", help="folder of labelled images (searched recursively)",
                        type=input_path())
    parser.add_argument("-o", "--output", metavar="OUT", required=True, help="records file to write (JSONL)",
                        type=output_file("records"))
    parser.add_argument("--rejects", metavar="PATH", type=output_file(
                            "parse-rejects", derive=lambda args: default_rejects_path(Path(args.output))),
                        help="where files that cannot become records go, with a reason (default: OUT with .rejects.jsonl)")
    parser.add_argument("--format", choices=FORMATS, default="auto", dest="fmt",
                        help="file-name grammar: seed (车辆属性:…), ccpd, or auto (decide per file; default)")
    parser.add_argument("-j", "--jobs", type=int, default=default_jobs(),
                        help="worker processes (default: CPU count, at most 8; 1 = no workers)")
    parser.add_argument("--summary", metavar="PATH", help="also write the summary as JSON",
                        type=output_file("parse-summary"))
    parser.add_argument("--corrections", metavar="FILE", type=input_path(),
                        help="label fixes by image path (JSONL; `plates audit`'s review file with 'value' filled in)")


def run(args: argparse.Namespace) -> int:
    """Parse a labelled image dump into clean records, one JSON line per image.

    Labels come from the file names (the seed's 车辆属性:…_车牌属性0:… grammar, or CCPD names); values are
    normalised to the canonical vocabulary in labels/, rule violations become warnings on the record.
    Every file ends up parsed or rejected (with a reason, in the rejects file); the summary shows the counts.
    Image sizes are read from file headers without decoding.

    example: plates parse /data/dump -o records.jsonl
    """
    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    output = Path(args.output)
    rejects = Path(args.rejects) if args.rejects else default_rejects_path(output)
    check_parse_outputs(args.root, {"-o": output, "--rejects": rejects, "--summary": args.summary})
    corrections = None
    if getattr(args, "corrections", None):
        corrections = load_corrections(args.corrections)
    summary = parse_to_files(args.root, output, rejects, args.fmt, args.jobs, corrections=corrections)
    if corrections is not None:
        unmatched = corrections.unmatched()
        print(f"plates parse: {corrections.applied} label corrections applied from {args.corrections}"
              + (f"; {len(unmatched)} name no parsed image, e.g. {unmatched[0]}" if unmatched else "")
              + "".join(f"; {note}" for note in corrections.notes()))
    if args.summary:
        write_json(args.summary, summary.to_dict())
    print(f"plates parse: {args.root} -> {output} ({summary.parsed} records), {rejects} ({summary.rejected} rejects)")
    for line in summary.lines():
        print(line)
    if summary.files == 0:
        print(f"plates parse: note: no files under {args.root}")
    return 0


COMMANDS = {"parse": (configure, run, "labelled image dump -> JSONL records (one per image, every file accounted for)")}
