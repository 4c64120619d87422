"""`plates build`: turn parsed records (and optional teacher descriptions) into an ms-swift training set.

Output folder::

    train.jsonl        ms-swift custom format, one sample per line:
                       {"messages": [{"role": "user", "content": "<image>PROMPT"},
                                     {"role": "assistant", "content": "TARGET"}],
                        "images": ["/abs/path/to/image.jpg"]}
    val.jsonl          held-out samples in the same format (extraction task only unless --val-all-tasks), so
                       `plates infer --dataset val.jsonl` feeds `plates eval` exactly the held-out images
    val_records.jsonl  the source record of each val.jsonl line, same order
    stats.json         counts per split and task, label distribution, seed, options, label-vocabulary version,
                       source file hashes
    train_sharegpt.json, val_sharegpt.json, dataset_info.json   with --format sharegpt (LLaMA-Factory)

Tasks (one sample each):

* ``extract`` — every record: ``EXTRACTION_PROMPT`` → the canonical JSON answer,
  ``json.dumps(answer_from_labels(labels), ensure_ascii=False)``.
* ``describe`` / ``caption`` / ``fuse`` — teacher descriptions (`plates teach`): a question → the teacher's text.
  ``describe`` prompts carried the labels to the teacher, so the student's question comes from
  ``DESCRIBE_QUESTIONS`` (picked by a hash of seed and image); ``caption``/``fuse`` keep the teacher's own
  label-free question (``CAPTION_QUESTIONS`` when it has none).
* ``reason`` — chain of thought: ``REASON_PROMPT`` → ``REASONING + "\\n\\n" + JSON answer``. The JSON answer is
  always the final paragraph, on one line, so an evaluator takes the text after the last blank line
  (``split_reasoning``).

Image paths are absolute by default so ms-swift finds the images from any working directory. With
``--relative-to ROOT`` they are written relative to ROOT instead; ms-swift then resolves them against its
working directory or ``ROOT_IMAGE_DIR=ROOT`` (never the JSONL's folder), LLaMA-Factory against ``media_dir``.

The split is grouped by ``plates.records.vehicle_id`` (the seed's ``carNNNN`` track id): all images of one
vehicle land on the same side, so validation never sees a vehicle it was trained on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from plates import __version__
from plates.errors import UserError
from plates.contracts import DatasetLayout
from plates.io import (
    atomic_write, check_input_file, check_output_dir, guard_outputs, iter_jsonl, progress, replace_file_set,
    sha256_file, write_json, write_jsonl,
)
from plates.labels import (
    FIELDS, PLATE_FIELDS, PLATE_GROUP, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP, answer_from_labels, labels_dir,
)
from plates.outputs import input_path, output_dir
from plates.records import iter_records, resolve_image, vehicle_id
from plates.split import (  # noqa: F401 - NO_PLATE, stratum_of: also imported from here by older callers
    NO_PLATE, check_stratify_field, split_by_vehicle, stratum_of,
)

IMAGE_TAG = "<image>"
DESCRIPTION_MODES = ("describe", "caption", "fuse", "reason")
TASKS = ("extract",) + DESCRIPTION_MODES


def _answer_skeleton() -> str:
    vehicle = ", ".join(f'"{f}": "…"' for f in VEHICLE_FIELDS)
    plate = ", ".join(f'"{f}": "…"' for f in PLATE_FIELDS)
    return f'{{"{VEHICLE_GROUP}": {{{vehicle}}}, "{PLATE_GROUP}": {{{plate}}}}}'


_RULES = (f"无法确定的属性填“{UNKNOWN}”;图中没有车牌时{PLATE_GROUP}为[],"
          f"有多块车牌时{PLATE_GROUP}为由这些对象组成的列表。")

EXTRACTION_PROMPT = (f"请识别图片中车辆和车牌的属性,只输出一个JSON对象,格式为:{_answer_skeleton()}。" + _RULES)
REASON_PROMPT = (f"请识别图片中车辆和车牌的属性。先用一段话说明判断依据,然后空一行,"
                 f"在最后一行输出一个JSON对象,格式为:{_answer_skeleton()}。" + _RULES)
DESCRIBE_QUESTIONS = (
    "请详细描述图片中的车辆和车牌。",
    "请描述这辆车的品牌、类型、颜色和朝向,以及车牌的信息。",
    "这张图片里的车辆和车牌是什么样的?请具体说明。",
    "请介绍一下图中车辆的外观特征和车牌信息。",
)
CAPTION_QUESTIONS = (
    "请把图片中的信息转化为文字描述。",
    "用简洁的语言描述图片的主要内容。",
)

_OUTPUT_NAMES = ("train.jsonl", "val.jsonl", "val_records.jsonl", "stats.json",
                 "train_sharegpt.json", "val_sharegpt.json", "dataset_info.json")


# ---------------------------------------------------------------------------------------------- targets


def answer_text(labels: dict[str, Any]) -> str:
    """The assistant text of the extraction task: the canonical answer as one line of JSON."""
    return json.dumps(answer_from_labels(labels), ensure_ascii=False)


def cot_target(reasoning: str, answer: str) -> str:
    """Chain-of-thought target: the reasoning paragraph(s), one blank line, then the JSON answer line."""
    reasoning = reasoning.strip()
    return f"{reasoning}\n\n{answer}" if reasoning else answer


def split_reasoning(text: str) -> tuple[str, str]:
    """Inverse of ``cot_target``: ``(reasoning, answer_text)``; text without a blank line is all answer."""
    head, sep, tail = text.strip().rpartition("\n\n")
    return (head.strip(), tail.strip()) if sep else ("", text.strip())


def make_sample(prompt: str, response: str, image: str) -> dict[str, Any]:
    """One ms-swift custom-format sample with a single image placed before the prompt."""
    return {"messages": [{"role": "user", "content": IMAGE_TAG + prompt},
                         {"role": "assistant", "content": response}],
            "images": [image]}


def to_sharegpt(sample: dict[str, Any]) -> dict[str, Any]:
    """The same sample in LLaMA-Factory's sharegpt layout (``conversations`` with from/value)."""
    roles = {"user": "human", "assistant": "gpt", "system": "system"}
    return {"conversations": [{"from": roles[m["role"]], "value": m["content"]} for m in sample["messages"]],
            "images": list(sample["images"])}


def sharegpt_dataset_info(name: str, files: dict[str, str]) -> dict[str, Any]:
    """``dataset_info.json`` entries for LLaMA-Factory, one per split file (``{name}_train``, ``{name}_val``)."""
    return {f"{name}_{split}": {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "images": "images"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    } for split, file_name in files.items()}


def _stable_hash(*parts: Any) -> int:
    data = "\0".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def pick_question(pool: tuple[str, ...], seed: int, image: str) -> str:
    """A question from ``pool`` chosen by a hash of seed and image: stable across runs and input orders."""
    return pool[_stable_hash(seed, "question", image) % len(pool)]


# ---------------------------------------------------------------------------------------------- descriptions


@dataclass
class DescriptionIndex:
    by_image: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    counts: Counter = field(default_factory=Counter)


def load_descriptions(paths: Iterable[str | Path], allow_flagged: bool = False) -> DescriptionIndex:
    """Usable teacher lines keyed by their ``image`` (as in the record). Every line not used is counted by
    reason (flagged, unknown mode, empty text, duplicate) so nothing disappears unreported."""
    index = DescriptionIndex()
    seen: set[tuple[str, str, str]] = set()
    for path in paths:
        for number, line in iter_jsonl(path):
            if not isinstance(line, dict) or not isinstance(line.get("image"), str) or "mode" not in line:
                raise UserError(f"{path}: line {number}: no 'image'/'mode' (is this a `plates teach` output?)")
            index.counts["read"] += 1
            mode = line.get("mode")
            if mode not in DESCRIPTION_MODES:
                index.counts[f"skipped_unknown_mode:{mode}"] += 1
                continue
            if line.get("verdict") != "ok" and not allow_flagged:
                index.counts["skipped_flagged"] += 1
                continue
            text = str(line.get("text") or "")
            if IMAGE_TAG in text:
                text = text.replace(IMAGE_TAG, "")
                index.counts["image_tags_removed"] += 1
            text = text.strip()
            if not text:
                index.counts["skipped_empty_text"] += 1
                continue
            key = (line["image"], mode, text)
            if key in seen:
                index.counts["skipped_duplicate"] += 1
                continue
            seen.add(key)
            question = str(line.get("question") or "").replace(IMAGE_TAG, "").strip()
            index.by_image[line["image"]].append({"mode": mode, "question": question, "text": text,
                                                  "verdict": line.get("verdict")})
    return index


def description_sample(entry: dict[str, Any], record: dict[str, Any], image: str, seed: int) -> dict[str, Any]:
    mode = entry["mode"]
    if mode == "reason":
        return make_sample(REASON_PROMPT, cot_target(entry["text"], answer_text(record["labels"])), image)
    if mode == "describe":
        question = pick_question(DESCRIBE_QUESTIONS, seed, record["image"])
    else:
        question = entry["question"] or pick_question(CAPTION_QUESTIONS, seed, record["image"])
    return make_sample(question, entry["text"], image)


def select_by_ratio(candidates: list[tuple[int, dict[str, Any]]], ratio: float, seed: int,
                    records: list[dict[str, Any]]) -> set[int]:
    """Positions (into ``candidates``) of exactly ``round(ratio * n)`` candidates, the ones with the smallest
    seeded hash: deterministic and independent of input order."""
    n = round(ratio * len(candidates))
    ranked = sorted(range(len(candidates)), key=lambda k: (
        _stable_hash(seed, candidates[k][1]["mode"], records[candidates[k][0]]["image"], candidates[k][1]["text"]),
        k))
    return set(ranked[:n])


# ---------------------------------------------------------------------------------------------- build


@dataclass
class BuildOptions:
    val_ratio: float = 0.1
    seed: int = 42
    stratify: str | None = None
    ratios: dict[str, float] = field(default_factory=lambda: {m: 1.0 for m in DESCRIPTION_MODES})
    allow_flagged: bool = False
    val_all_tasks: bool = False
    relative_to: str | None = None
    exclude_warnings: tuple[str, ...] = ()

    def validate(self) -> None:
        if not 0 <= self.val_ratio < 1:
            raise UserError(f"--val-ratio must be in [0, 1), got {self.val_ratio}")
        for mode, ratio in self.ratios.items():
            if mode not in DESCRIPTION_MODES:
                raise UserError(f"unknown description mode {mode!r}; modes: {', '.join(DESCRIPTION_MODES)}")
            if not 0 <= ratio <= 1:
                raise UserError(f"--{mode}-ratio must be in [0, 1], got {ratio}")
        if self.relative_to is not None and not Path(self.relative_to).is_dir():
            raise UserError(f"--relative-to {self.relative_to}: no such folder")


@dataclass
class Dataset:
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    val_records: list[dict[str, Any]]
    stats: dict[str, Any]


def _label_distribution(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = {f: Counter() for f in FIELDS}
    plates_per_image: Counter = Counter()
    for record in records:
        answer = answer_from_labels(record["labels"])
        for f in VEHICLE_FIELDS:
            counts[f][answer[VEHICLE_GROUP][f]] += 1
        plates = record["labels"].get(PLATE_GROUP) or []
        plates_per_image[str(len(plates))] += 1
        for plate in (answer[PLATE_GROUP] if isinstance(answer[PLATE_GROUP], list) else [answer[PLATE_GROUP]]):
            for f in PLATE_FIELDS:
                if f != "车牌号码":
                    counts[f][plate[f]] += 1
    out = {f: dict(c.most_common()) for f, c in counts.items() if f != "车牌号码"}
    out["plates_per_image"] = dict(sorted(plates_per_image.items()))
    return out


def image_path_for(record: dict[str, Any], records_file: str | Path | None, relative_to: str | None) -> str:
    """The path written into the dataset: normalised absolute, or relative to ``relative_to``."""
    absolute = os.path.normpath(os.path.abspath(resolve_image(record, records_file)))
    if relative_to is None:
        return absolute
    return os.path.relpath(absolute, os.path.abspath(relative_to))


def build_dataset(records: list[dict[str, Any]], options: BuildOptions, records_file: str | Path | None = None,
                  descriptions: DescriptionIndex | None = None) -> Dataset:
    """Pure core of `plates build`: dedupe and check records, split by vehicle, make the task samples."""
    options.validate()
    counts: Counter = Counter(read=len(records))
    problems: dict[str, list[str]] = defaultdict(list)
    kept: list[dict[str, Any]] = []
    paths: list[str] = []
    answers_by_path: dict[str, str] = {}
    excluded = set(options.exclude_warnings)
    for record in progress(records, desc="records", unit="rec"):
        codes = {str(w).split(":", 1)[0].strip() for w in record.get("warnings") or []}
        if excluded & codes:
            counts["excluded_by_warning"] += 1
            problems["excluded_by_warning"].append(record["image"])
            continue
        absolute = os.path.normpath(os.path.abspath(resolve_image(record, records_file)))
        if not os.path.isfile(absolute):
            counts["missing_image"] += 1
            problems["missing_image"].append(absolute)
            continue
        answer = answer_text(record["labels"])
        if absolute in answers_by_path:
            counts["duplicate_image"] += 1
            problems["duplicate_image"].append(absolute)
            if answers_by_path[absolute] != answer:
                counts["conflicting_duplicate"] += 1
                problems["conflicting_duplicate"].append(absolute)
            continue
        answers_by_path[absolute] = answer
        kept.append(record)
        paths.append(image_path_for(record, records_file, options.relative_to))
    counts["used"] = len(kept)
    if not kept:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k not in ("read", "used"))
        raise UserError(f"no usable records ({counts['read']} read{'; ' + detail if detail else ''})")
    if options.stratify:
        check_stratify_field(options.stratify, kept)

    is_val = split_by_vehicle(kept, options.val_ratio, options.seed, options.stratify)
    if all(is_val):
        raise UserError("every record landed in validation; lower --val-ratio")

    per_record: dict[int, list[dict[str, Any]]] = defaultdict(list)
    desc_counts: Counter = Counter(descriptions.counts if descriptions else {})
    if descriptions is not None:
        by_path = {os.path.normpath(os.path.abspath(resolve_image(r, records_file))): i for i, r in enumerate(kept)}
        by_image: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(kept):
            by_image[r["image"]].append(i)
        candidates: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for image, entries in descriptions.by_image.items():
            targets = by_image.get(image)
            if targets is None and os.path.isabs(image):
                hit = by_path.get(os.path.normpath(image))
                targets = [hit] if hit is not None else None
            if not targets:
                desc_counts["skipped_no_record"] += len(entries)
                continue
            if len(targets) > 1:
                desc_counts["skipped_ambiguous_image"] += len(entries)
                continue
            i = targets[0]
            side = "val" if is_val[i] else "train"
            for entry in entries:
                if side == "val" and not options.val_all_tasks:
                    desc_counts["not_used_val_side"] += 1
                    continue
                candidates[(side, entry["mode"])].append((i, entry))
        for (side, mode), items in sorted(candidates.items()):
            chosen = select_by_ratio(items, options.ratios.get(mode, 1.0), options.seed, kept)
            desc_counts[f"not_selected_by_ratio:{mode}"] += len(items) - len(chosen)
            for k, (i, entry) in enumerate(items):
                if k in chosen:
                    per_record[i].append(entry)
        for entries in per_record.values():
            entries.sort(key=lambda e: (DESCRIPTION_MODES.index(e["mode"]), e["text"]))
        desc_counts = Counter({k: v for k, v in desc_counts.items() if v})

    train: list[dict[str, Any]] = []
    val: list[dict[str, Any]] = []
    val_records: list[dict[str, Any]] = []
    task_counts = {"train": Counter(), "val": Counter()}
    for i, record in enumerate(kept):
        side = "val" if is_val[i] else "train"
        samples = [make_sample(EXTRACTION_PROMPT, answer_text(record["labels"]), paths[i])]
        task_counts[side]["extract"] += 1
        for entry in per_record.get(i, []):
            samples.append(description_sample(entry, record, paths[i], options.seed))
            task_counts[side][entry["mode"]] += 1
        if side == "val":
            val.extend(samples)
            val_records.extend([record] * len(samples))
        else:
            train.extend(samples)

    def split_stats(side: str) -> dict[str, Any]:
        chosen = [r for r, v in zip(kept, is_val) if v == (side == "val")]
        return {"records": len(chosen), "vehicles": len({vehicle_id(r) for r in chosen}),
                "samples": sum(task_counts[side].values()),
                "tasks": {t: task_counts[side][t] for t in TASKS if task_counts[side][t]},
                "labels": _label_distribution(chosen)}

    stats = {
        "plates_version": __version__,
        "seed": options.seed,
        "options": {"val_ratio": options.val_ratio, "stratify": options.stratify, "ratios": options.ratios,
                    "allow_flagged": options.allow_flagged, "val_all_tasks": options.val_all_tasks,
                    "relative_to": os.path.abspath(options.relative_to) if options.relative_to else None,
                    "exclude_warnings": list(options.exclude_warnings)},
        "labels": labels_version(),
        "image_paths": ({"relative_to": os.path.abspath(options.relative_to),
                         "resolve_with": f"ROOT_IMAGE_DIR={os.path.abspath(options.relative_to)}"}
                        if options.relative_to else "absolute"),
        "answer_format": "json.dumps(answer_from_labels(labels), ensure_ascii=False)",
        "cot_format": "REASONING + '\\n\\n' + JSON answer (one line, last paragraph)",
        "prompts": {"extract": EXTRACTION_PROMPT, "reason": REASON_PROMPT},
        "records": dict(sorted(counts.items())),
        "record_problems": {k: v[:20] for k, v in problems.items()},
        "descriptions": dict(sorted(desc_counts.items())) if descriptions is not None else None,
        "splits": {"train": split_stats("train"), "val": split_stats("val")},
    }
    return Dataset(train=train, val=val, val_records=val_records, stats=stats)


def labels_version() -> dict[str, Any]:
    """Vocabulary versions and file hashes, so a dataset can be tied to the labels it was built with."""
    import yaml

    out: dict[str, Any] = {}
    for name in ("fields.yaml", "plates.yaml"):
        path = labels_dir() / name
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[name] = {"version": data.get("version"), "sha256": file_sha256(path)}
    return out


file_sha256 = sha256_file  # the name build used before plates.io had the one helper


def earlier_sources(out: Path) -> list[Path]:
    """The inputs an earlier build into ``out`` recorded in its stats.json: files that may stay in the folder
    (a re-run without --descriptions must not call the teacher file it once read someone else's)."""
    try:
        sources = json.loads((out / "stats.json").read_text(encoding="utf-8")).get("sources") or {}
        paths = [sources.get("records", {}).get("path")] + [d.get("path") for d in sources.get("descriptions", [])]
    except (OSError, ValueError, AttributeError, TypeError):
        return []
    return [Path(p) for p in paths if isinstance(p, str)]


def check_warning_codes(codes: Iterable[str], records: Iterable[dict[str, Any]]) -> None:
    """``--exclude-warning CODE`` with a code that no record can carry would silently exclude nothing: an
    error naming the known codes (those `plates parse` writes, plus any found in these records)."""
    from plates.parse import WARNING_CODES

    codes = set(codes)
    if not codes - set(WARNING_CODES):
        return
    known = set(WARNING_CODES)
    for record in records:
        known.update(str(w).split(":", 1)[0].strip() for w in record.get("warnings") or [])
    unknown = sorted(codes - known)
    if unknown:
        raise UserError(f"--exclude-warning {', '.join(unknown)}: no such warning code; "
                        f"known codes: {', '.join(sorted(known))}")


def merged_dataset_info(existing: Path, ours: dict[str, Any]) -> dict[str, Any] | None:
    """LLaMA-Factory's ``dataset_info.json`` is shared by every dataset in its folder: keep each entry that is
    not ours (ours point at our sharegpt files), then add ``ours``. None when nothing is left to write.
    A file that is not a JSON object is someone else's and is refused rather than replaced."""
    entries: dict[str, Any] = {}
    if existing.is_file():
        try:
            entries = json.loads(existing.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{existing}: not a JSON file; LLaMA-Factory's dataset_info.json is merged, "
                            "not replaced: fix or move it") from None
        if not isinstance(entries, dict):
            raise UserError(f"{existing}: not a JSON object (is this LLaMA-Factory's dataset_info.json?)")
    mine = {"train_sharegpt.json", "val_sharegpt.json"}
    kept = {k: v for k, v in entries.items() if not (isinstance(v, dict) and v.get("file_name") in mine)}
    kept.update(ours)
    return kept or None


def write_dataset(dataset: Dataset, out_dir: str | Path, sharegpt: bool = False,
                  dataset_name: str = "plates") -> dict[str, Path]:
    """Write the output set as one unit (``plates.io.replace_file_set``: Ctrl-C or a crash leaves the old set
    or the new one, never new train/val beside old stats); stale outputs of an earlier build that this one
    does not make are removed in the same step. ``dataset_info.json`` is merged, keeping other entries."""
    out = check_output_dir(out_dir, "-o", contents=False)
    files = DatasetLayout.of(out).files()
    names = {"train": "train_sharegpt.json", "val": "val_sharegpt.json"}
    if sharegpt:
        for split in ("train", "val"):
            files[f"{split}_sharegpt"] = out / names[split]
    info = merged_dataset_info(out / "dataset_info.json",
                               sharegpt_dataset_info(dataset_name, names) if sharegpt else {})
    if info is not None:
        files["dataset_info"] = out / "dataset_info.json"
    dataset.stats["files"] = {k: p.name for k, p in files.items()}
    written = {p.name for p in files.values()}
    with replace_file_set(out, remove=[n for n in _OUTPUT_NAMES if n not in written]) as staging:
        write_jsonl(staging / "train.jsonl", dataset.train)
        write_jsonl(staging / "val.jsonl", dataset.val)
        write_jsonl(staging / "val_records.jsonl", dataset.val_records)
        if sharegpt:
            for split, rows in (("train", dataset.train), ("val", dataset.val)):
                with atomic_write(staging / names[split]) as handle:
                    json.dump([to_sharegpt(r) for r in rows], handle, ensure_ascii=False, indent=1)
                    handle.write("\n")
        if info is not None:
            write_json(staging / "dataset_info.json", info)
        write_json(staging / "stats.json", dataset.stats)
    return files


# ---------------------------------------------------------------------------------------------- CLI


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("records", type=input_path(), help="records JSONL written by `plates parse`")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created)",
                        type=output_dir())
    parser.add_argument("--descriptions", action="append", default=[], metavar="FILE", type=input_path(),
                        help="teacher output of `plates teach` (repeatable); adds the description tasks")
    parser.add_argument("--val-ratio", type=float, default=0.1, metavar="R",
                        help="share of records held out for validation, whole vehicles at a time (default 0.1)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and task sampling (default 42)")
    parser.add_argument("--stratify", metavar="FIELD",
                        help="keep FIELD's value mix alike on both sides (a label field such as 车辆类型, "
                             "'plates' for the plate count, or a record key such as 'format')")
    for mode, what in (("describe", "detailed descriptions"), ("caption", "short captions"),
                       ("fuse", "fused descriptions"), ("reason", "chain-of-thought (reasoning, then the JSON)")):
        parser.add_argument(f"--{mode}-ratio", type=float, default=1.0, metavar="R",
                            help=f"share of usable '{mode}' teacher lines ({what}) turned into samples (default 1)")
    parser.add_argument("--allow-flagged", action="store_true",
                        help="also use teacher lines whose verdict is 'flagged' (default: only 'ok')")
    parser.add_argument("--val-all-tasks", action="store_true",
                        help="put description tasks in val.jsonl too (default: extraction only, for `plates eval`)")
    parser.add_argument("--relative-to", metavar="ROOT", type=input_path(),
                        help="write image paths relative to ROOT; ms-swift then needs ROOT_IMAGE_DIR=ROOT "
                             "(or its CWD at ROOT), LLaMA-Factory media_dir=ROOT. Default: absolute paths")
    parser.add_argument("--exclude-warning", action="append", default=[], metavar="CODE",
                        help="leave out records carrying this warning code, e.g. plate_pattern (repeatable)")
    parser.add_argument("--format", choices=("swift", "sharegpt"), default="swift",
                        help="'sharegpt' also writes LLaMA-Factory files and dataset_info.json (default: swift)")
    parser.add_argument("--dataset-name", default="plates",
                        help="prefix of the dataset_info.json entries: NAME_train, NAME_val (default plates)")


def run(args: argparse.Namespace) -> int:
    """Turn `plates parse` records (and `plates teach` descriptions) into ms-swift train/val JSONL.

Writes DIR/train.jsonl, DIR/val.jsonl (ms-swift custom format: messages with <image> + images),
DIR/val_records.jsonl, DIR/stats.json; with --format sharegpt also LLaMA-Factory's files and dataset_info.json.
The split keeps every vehicle (carNNNN track id) on one side. Image paths are absolute unless --relative-to.
Chain-of-thought targets ('reason' mode) are: reasoning, a blank line, then the JSON answer on the last line."""
    records_file = check_input_file(args.records, "RECORDS")
    for path in args.descriptions:
        check_input_file(path, "--descriptions")
    inputs = [("RECORDS", records_file), *(("--descriptions", p) for p in args.descriptions)]
    out = check_output_dir(args.output, "-o", owned=_OUTPUT_NAMES,
                           keep=[p for _, p in inputs] + earlier_sources(Path(args.output)))
    guard_outputs(inputs, {f"-o (its {name})": out / name for name in _OUTPUT_NAMES}, command="build")
    options = BuildOptions(
        val_ratio=args.val_ratio, seed=args.seed, stratify=args.stratify,
        ratios={m: getattr(args, f"{m}_ratio") for m in DESCRIPTION_MODES},
        allow_flagged=args.allow_flagged, val_all_tasks=args.val_all_tasks, relative_to=args.relative_to,
        exclude_warnings=tuple(args.exclude_warning))
    options.validate()
    records = list(iter_records(records_file))
    if not records:
        raise UserError(f"{records_file}: no records")
    check_warning_codes(args.exclude_warning, records)
    descriptions = load_descriptions(args.descriptions, args.allow_flagged) if args.descriptions else None
    dataset = build_dataset(records, options, records_file, descriptions)
    dataset.stats["sources"] = {
        "records": {"path": str(records_file.resolve()), "sha256": file_sha256(records_file)},
        "descriptions": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in args.descriptions],
    }
    files = write_dataset(dataset, args.output, sharegpt=args.format == "sharegpt",
                          dataset_name=args.dataset_name)
    print(summary(dataset.stats, files))
    return 0


def summary(stats: dict[str, Any], files: dict[str, Path]) -> str:
    lines = []
    rec = stats["records"]
    skipped = ", ".join(f"{k} {v}" for k, v in rec.items() if k not in ("read", "used"))
    lines.append(f"records: {rec['read']} read, {rec['used']} used" + (f" (skipped: {skipped})" if skipped else ""))
    for side in ("train", "val"):
        s = stats["splits"][side]
        tasks = ", ".join(f"{t} {n}" for t, n in s["tasks"].items())
        lines.append(f"{side}: {s['samples']} samples from {s['records']} records / {s['vehicles']} vehicles"
                     + (f" ({tasks})" if tasks else ""))
    if stats.get("descriptions"):
        desc = stats["descriptions"]
        lines.append(f"descriptions: {desc.get('read', 0)} read" + "".join(
            f", {k} {v}" for k, v in desc.items() if k != "read"))
    for key, examples in stats.get("record_problems", {}).items():
        lines.append(f"  {key}, e.g. {examples[0]}")
    if stats["splits"]["val"]["records"] == 0:
        lines.append("warning: validation split is empty (one vehicle only, or --val-ratio 0)")
    if isinstance(stats["image_paths"], dict):
        lines.append(f"image paths are relative: run ms-swift with {stats['image_paths']['resolve_with']}")
    lines.append("wrote " + ", ".join(str(p) for p in files.values()))
    return "\n".join(lines)


COMMANDS = {"build": (configure, run, "records (+ teacher descriptions) -> ms-swift train/val JSONL")}
