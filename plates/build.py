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
* ``--grounding``: the extraction target also gives each plate's box, ``"车牌位置": <bbox>`` (ms-swift's tag), with
  the box in original pixels in the sample's ``objects`` (``{"ref": [], "bbox": [[x1, y1, x2, y2], …],
  "bbox_type": "real"}``), under ``GROUNDING_PROMPT``; ms-swift writes it in the model's convention
  (:mod:`plates.grounding`). Off by default: without it no target carries a box, and the summary and stats.json
  (``boxes_not_trained``) say how many records had boxes to train.
* ``reason`` — chain of thought: ``REASON_PROMPT`` → ``REASONING + "\\n\\n" + JSON answer``. The JSON answer is
  always the final paragraph, on one line, so an evaluator takes the text after the last blank line
  (``plates.student.split_reasoning``).
* ``--prompt TEXT`` / ``--system TEXT``: the extraction samples (grounding ones too) ask TEXT instead of the
  default question; every sample starts with a system turn. The questions and texts of the student contract live
  in :mod:`plates.student`; stats.json records the ones used (``prompts``, ``system``).

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
from typing import Any, Callable, Iterable, Mapping

from plates import __version__
from plates.errors import UserError
from plates.contracts import DATASET_FILES, DatasetLayout
from plates.grounding import BBOX_FORMAT_ENV, BBOX_TAG
from plates.grpo import grpo_row
from plates.io import check_input_file, check_output_dir, guard_outputs, iter_jsonl, replace_file_set, write_json
from plates.labels import PLATE_BOX, answer_from_labels
from plates.outputs import input_path, output_dir
from plates.records import iter_records, plate_boxes, resolve_image
from plates.student import (
    EXTRACTION_PROMPT, GROUNDING_PROMPT, IMAGE_TAG, REASON_PROMPT, answer_text, check_text, cot_target, make_sample,
)
from plates.build_output import (
    Dataset, FileSink, LabelTally, ListSink, check_warning_codes, earlier_sources, file_sha256, labels_version,
    merged_dataset_info, sharegpt_dataset_info,
)
from plates.build_scan import BuildPlan, RecordSource, scan_records, walk_plan

DESCRIPTION_MODES = ("describe", "caption", "fuse", "reason")
TASKS = ("extract",) + DESCRIPTION_MODES
SPLIT_METHOD = ("whole vehicles; vehicles walked in the order of blake2b(seed, vehicle id), each taken into val "
                "while that brings its stratum closer to val_ratio of its records")

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

# ---------------------------------------------------------------------------------------------- targets


def trainable_boxes(record: dict[str, Any]) -> list[list[int] | None]:
    """Each labelled plate's box as a grounding target would train it (None: that plate has none usable)."""
    return [box if isinstance(box, list) and len(box) == 4 else None for box in plate_boxes(record) or []]


def grounding_target(record: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(assistant text, ms-swift ``objects`` or None) of a grounding extraction sample: each plate with a box gets
    ``"车牌位置": <bbox>``, its box (original pixels) goes to ``objects.bbox`` in the same order."""
    boxes = trainable_boxes(record)
    if not any(box is not None for box in boxes):
        return answer_text(record["labels"]), None
    tagged = json.dumps(answer_from_labels(record["labels"], boxes=[BBOX_TAG if b else None for b in boxes]),
                        ensure_ascii=False)
    text = tagged.replace(f'"{PLATE_BOX}": "{BBOX_TAG}"', f'"{PLATE_BOX}": {BBOX_TAG}')
    return text, {"ref": [], "bbox": [[int(v) for v in b] for b in boxes if b is not None], "bbox_type": "real"}


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


def description_sample(entry: dict[str, Any], record: dict[str, Any], image: str, seed: int,
                       system: str | None = None) -> dict[str, Any]:
    mode = entry["mode"]
    if mode == "reason":
        return make_sample(REASON_PROMPT, cot_target(entry["text"], answer_text(record["labels"])), image, system)
    if mode == "describe":
        question = pick_question(DESCRIBE_QUESTIONS, seed, record["image"])
    else:
        question = entry["question"] or pick_question(CAPTION_QUESTIONS, seed, record["image"])
    return make_sample(question, entry["text"], image, system)


def select_by_ratio(candidates: list[tuple[int, dict[str, Any]]], ratio: float, seed: int,
                    images: Mapping[int, str]) -> set[int]:
    """Positions (into ``candidates``) of exactly ``round(ratio * n)`` candidates, the ones with the smallest
    seeded hash: deterministic and independent of input order."""
    n = round(ratio * len(candidates))
    ranked = sorted(range(len(candidates)), key=lambda k: (
        _stable_hash(seed, candidates[k][1]["mode"], images[candidates[k][0]], candidates[k][1]["text"]),
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
    grpo: bool = False
    grounding: bool = False
    prompt: str | None = None  # the extraction question (None: EXTRACTION_PROMPT, GROUNDING_PROMPT with grounding)
    system: str | None = None  # a system turn before every sample (None: none, the chat template's default)

    @property
    def extraction_prompt(self) -> str:
        return self.prompt or (GROUNDING_PROMPT if self.grounding else EXTRACTION_PROMPT)

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


def image_path_for(record: dict[str, Any], records_file: str | Path | None, relative_to: str | None) -> str:
    """The path written into the dataset: normalised absolute, or relative to ``relative_to``."""
    absolute = os.path.normpath(os.path.abspath(resolve_image(record, records_file)))
    if relative_to is None:
        return absolute
    return os.path.relpath(absolute, os.path.abspath(relative_to))


def record_samples(record: dict[str, Any], image: str, entries: Iterable[dict[str, Any]],
                   seed: int, grpo: bool = False, grounding: bool = False, prompt: str | None = None,
                   system: str | None = None) -> list[dict[str, Any]]:
    """Every sample one record gives, in the order they are written: extraction, then its chosen descriptions.
    The single place where samples are made, one record at a time (a per-sample transformation goes here).
    ``grpo``: the extraction sample as a GRPO row (``plates.grpo.grpo_row``: the answer in ``solution``).
    ``grounding``: the extraction sample asks for and gives the plate boxes (:func:`grounding_target`).
    ``prompt``: the extraction question (default :data:`EXTRACTION_PROMPT` / :data:`GROUNDING_PROMPT`);
    ``system``: a system turn on every sample."""
    if grounding:
        text, objects = grounding_target(record)
        samples = [make_sample(prompt or GROUNDING_PROMPT, text, image, system)]
        if objects is not None:
            samples[0]["objects"] = objects
    else:
        samples = [make_sample(prompt or EXTRACTION_PROMPT, answer_text(record["labels"]), image, system)]
    if grpo:
        return [grpo_row(samples[0])]
    for entry in entries:
        samples.append(description_sample(entry, record, image, seed, system))
    return samples


def choose_descriptions(plan: BuildPlan, options: BuildOptions, descriptions: DescriptionIndex | None
                        ) -> tuple[dict[int, list[dict[str, Any]]], Counter | None]:
    """Teacher lines joined to the kept records (by the record's ``image``, or an absolute path), filtered by
    side and sampled by ratio: ``{candidate: entries}`` and the description counts for stats.json."""
    if descriptions is None:
        return {}, None
    desc_counts: Counter = Counter(descriptions.counts)
    candidates: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    images: dict[int, str] = {}
    for image, entries in descriptions.by_image.items():
        targets = plan.description_hits.get(image)
        if targets is None and os.path.isabs(image):
            targets = plan.absolute_hits.get(os.path.normpath(image))
        if not targets:
            desc_counts["skipped_no_record"] += len(entries)
            continue
        if len(targets) > 1:
            desc_counts["skipped_ambiguous_image"] += len(entries)
            continue
        candidate, record_image = targets[0]
        images[candidate] = record_image
        side = "val" if plan.is_val[candidate] else "train"
        for entry in entries:
            if side == "val" and not options.val_all_tasks:
                desc_counts["not_used_val_side"] += 1
                continue
            candidates[(side, entry["mode"])].append((candidate, entry))
    per_record: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for (side, mode), items in sorted(candidates.items()):
        chosen = select_by_ratio(items, options.ratios.get(mode, 1.0), options.seed, images)
        desc_counts[f"not_selected_by_ratio:{mode}"] += len(items) - len(chosen)
        for k, (candidate, entry) in enumerate(items):
            if k in chosen:
                per_record[candidate].append(entry)
    for entries in per_record.values():
        entries.sort(key=lambda e: (DESCRIPTION_MODES.index(e["mode"]), e["text"]))
    return per_record, Counter({k: v for k, v in desc_counts.items() if v})


def plan_build(records: RecordSource, options: BuildOptions, records_file: str | Path | None = None,
               descriptions: DescriptionIndex | None = None, source: str | None = None) -> BuildPlan:
    """Pass one (``plates.build_scan``): dedupe and check the records, split by vehicle."""
    options.validate()
    return scan_records(records, seed=options.seed, val_ratio=options.val_ratio, stratify=options.stratify,
                        exclude_warnings=options.exclude_warnings, records_file=records_file,
                        description_images=descriptions.by_image if descriptions else (), source=source)


def write_samples(plan: BuildPlan, records: RecordSource, options: BuildOptions, sink: Any,
                  records_file: str | Path | None = None,
                  descriptions: DescriptionIndex | None = None) -> dict[str, Any]:
    """Pass two: read the records again and hand each kept record's samples to ``sink.add(side, samples,
    record)`` as they are made; returns stats.json's content (without ``sources``/``files``)."""
    per_record, desc_counts = choose_descriptions(plan, options, descriptions)
    task_counts = {"train": Counter(), "val": Counter()}
    records_per_side = Counter()
    tallies = {"train": LabelTally(), "val": LabelTally()}
    grounded, grounded_records = Counter(), Counter()
    unused_boxes = 0  # records whose plate boxes a build without --grounding leaves out: said, not silently dropped
    for candidate, record, val in walk_plan(plan, records, records_file):
        side = "val" if val else "train"
        entries = per_record.pop(candidate, ())
        samples = record_samples(record, image_path_for(record, records_file, options.relative_to), entries,
                                 options.seed, grpo=options.grpo, grounding=options.grounding,
                                 prompt=options.prompt, system=options.system)
        if options.grounding:
            boxed = len(samples[0].get("objects", {}).get("bbox", ()))
            grounded[side] += boxed
            grounded_records[side] += boxed > 0
        else:
            unused_boxes += any(box is not None for box in trainable_boxes(record))
        task_counts[side]["extract"] += 1
        for entry in entries:
            task_counts[side][entry["mode"]] += 1
        sink.add(side, samples, record)
        records_per_side[side] += 1
        tallies[side].add(record)

    def split_stats(side: str) -> dict[str, Any]:
        return {"records": records_per_side[side], "vehicles": plan.vehicles[side],
                "samples": sum(task_counts[side].values()),
                "tasks": {t: task_counts[side][t] for t in TASKS if task_counts[side][t]},
                "labels": tallies[side].result()}

    return {
        "plates_version": __version__,
        "seed": options.seed,
        "options": {"val_ratio": options.val_ratio, "stratify": options.stratify, "ratios": options.ratios,
                    "allow_flagged": options.allow_flagged, "val_all_tasks": options.val_all_tasks,
                    "relative_to": os.path.abspath(options.relative_to) if options.relative_to else None,
                    "exclude_warnings": list(options.exclude_warnings)},
        "split": SPLIT_METHOD,
        "labels": labels_version(),
        "image_paths": ({"relative_to": os.path.abspath(options.relative_to),
                         "resolve_with": f"ROOT_IMAGE_DIR={os.path.abspath(options.relative_to)}"}
                        if options.relative_to else "absolute"),
        "answer_format": "json.dumps(answer_from_labels(labels), ensure_ascii=False)",
        "cot_format": "REASONING + '\\n\\n' + JSON answer (one line, last paragraph)",
        "prompts": {"extract": options.extraction_prompt,
                    **({"reason": REASON_PROMPT} if task_counts["train"]["reason"] + task_counts["val"]["reason"]
                       else {})},
        "system": options.system,
        **({"layout": "grpo: messages (user turn) + images + solution (the reference answer)"}
           if options.grpo else {}),
        **({"grounding": grounding_stats(grounded, grounded_records, options.extraction_prompt)}
           if options.grounding else {}),
        **({"boxes_not_trained": {"records": unused_boxes, "how": "plates build --grounding"}}
           if unused_boxes else {}),
        "records": dict(sorted(plan.problems.counts.items())),
        "record_problems": plan.problems.ordered_examples(),
        "descriptions": dict(sorted(desc_counts.items())) if desc_counts is not None else None,
        "splits": {"train": split_stats("train"), "val": split_stats("val")},
    }


def grounding_stats(plates: Counter, records: Counter, prompt: str = GROUNDING_PROMPT) -> dict[str, Any]:
    """stats.json's ``grounding`` block (only in grounding builds): what the targets hold and how ms-swift turns
    it into the model's coordinates; `plates train` reads ``env``."""
    return {"on": True, "field": PLATE_BOX, "prompt": prompt,
            "target": f'"{PLATE_BOX}": {BBOX_TAG} in the JSON answer; objects.bbox in original-image pixels, '
                      'bbox_type real',
            "convention": "ms-swift's template norm_bbox: Qwen2.5-VL 'none' (pixels of the image after ms-swift's "
                          "max_pixels rescale and smart_resize), Qwen2-VL and Qwen3-VL 'norm1000' (0-1000)",
            "env": dict(BBOX_FORMAT_ENV),
            "plates_with_box": {"train": plates["train"], "val": plates["val"]},
            "records_with_box": {"train": records["train"], "val": records["val"]}}


def build_dataset(records: list[dict[str, Any]], options: BuildOptions, records_file: str | Path | None = None,
                  descriptions: DescriptionIndex | None = None) -> Dataset:
    """`plates build` on records in memory, samples kept in memory: the same two passes as the CLI."""
    plan = plan_build(lambda: records, options, records_file, descriptions)
    sink = ListSink()
    stats = write_samples(plan, lambda: records, options, sink, records_file, descriptions)
    return Dataset(train=sink.train, val=sink.val, val_records=sink.val_records, stats=stats)


def write_build(out_dir: str | Path, fill: Callable[[FileSink], dict[str, Any]], sharegpt: bool = False,
                dataset_name: str = "plates") -> tuple[dict[str, Any], dict[str, Path]]:
    """Write the output set as one unit (``plates.io.replace_file_set``: Ctrl-C or a crash leaves the old set
    or the new one, never new train/val beside old stats); stale outputs of an earlier build that this one
    does not make are removed in the same step. ``fill(sink)`` streams the samples into the staging folder
    and returns the stats. ``dataset_info.json`` is merged, keeping other entries."""
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
    written = {p.name for p in files.values()}
    with replace_file_set(out, remove=[n for n in DATASET_FILES if n not in written]) as staging:
        with FileSink(staging, names if sharegpt else None) as sink:
            stats = fill(sink)
        stats["files"] = {k: p.name for k, p in files.items()}
        if info is not None:
            write_json(staging / "dataset_info.json", info)
        write_json(staging / "stats.json", stats)
    return stats, files


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
    parser.add_argument("--grpo", action="store_true",
                        help="rows for GRPO (`plates train --preset qwen2_5_vl_7b_grpo`): the user turn with the "
                             "image and the reference answer in a 'solution' column (plates.grpo); extraction only")
    parser.add_argument("--grounding", action="store_true",
                        help=f"train plate location: extraction targets add each plate's box ({PLATE_BOX}, from "
                             "the records' plate_geometry, e.g. CCPD) through ms-swift's grounding support, in the "
                             "model's own coordinates (plates.grounding); default off")
    parser.add_argument("--prompt", metavar="TEXT",
                        help="train with your own question: the extraction samples ask TEXT instead of plates' "
                             "prompt (with --grounding, instead of the grounding prompt); chain-of-thought and "
                             "description samples keep theirs. Recorded in stats.json and the run manifest, so "
                             "infer, predict, serve and export ask the trained model with it")
    parser.add_argument("--system", metavar="TEXT",
                        help="a system message before every sample (default: none, the chat template's own); "
                             "recorded like --prompt and sent at inference")
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
    out = check_output_dir(args.output, "-o", owned=DATASET_FILES,
                           keep=[p for _, p in inputs] + earlier_sources(Path(args.output)))
    guard_outputs(inputs, {f"-o (its {name})": out / name for name in DATASET_FILES}, command="build")
    options = BuildOptions(
        val_ratio=args.val_ratio, seed=args.seed, stratify=args.stratify,
        ratios={m: getattr(args, f"{m}_ratio") for m in DESCRIPTION_MODES},
        allow_flagged=args.allow_flagged, val_all_tasks=args.val_all_tasks, relative_to=args.relative_to,
        exclude_warnings=tuple(args.exclude_warning), grpo=args.grpo, grounding=args.grounding,
        prompt=check_text(args.prompt, "--prompt") if args.prompt is not None else None,
        system=check_text(args.system, "--system") if args.system is not None else None)
    options.validate()
    if args.grounding and args.grpo:
        raise UserError("--grounding and --grpo: GRPO rows do not carry boxes yet; leave out one of them")
    if args.grounding and args.format != "swift":
        raise UserError("--grounding writes ms-swift grounding samples (<bbox> tags and objects), which the "
                        "sharegpt files cannot carry: leave out --format sharegpt")
    if args.grpo and (args.descriptions or args.format != "swift"):
        raise UserError("--grpo writes ms-swift rows of the extraction task only (its answers are verifiable): "
                        "leave out --descriptions and --format sharegpt")
    check_warning_codes(args.exclude_warning, iter_records(records_file))
    descriptions = load_descriptions(args.descriptions, args.allow_flagged) if args.descriptions else None
    records = lambda: iter_records(records_file)  # noqa: E731 - read twice: plan, then samples
    plan = plan_build(records, options, records_file, descriptions, source=str(records_file))
    sources = {
        "records": {"path": str(records_file.resolve()), "sha256": file_sha256(records_file)},
        "descriptions": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in args.descriptions],
    }

    def fill(sink: FileSink) -> dict[str, Any]:
        stats = write_samples(plan, records, options, sink, records_file, descriptions)
        stats["sources"] = sources
        return stats

    stats, files = write_build(args.output, fill, sharegpt=args.format == "sharegpt",
                               dataset_name=args.dataset_name)
    print(summary(stats, files))
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
    if stats.get("grounding"):
        g = stats["grounding"]
        lines.append(f"grounding: {g['plates_with_box']['train']} train / {g['plates_with_box']['val']} val plates "
                     f"with a box ({g['records_with_box']['train']} / {g['records_with_box']['val']} records)")
    if stats.get("boxes_not_trained"):
        lines.append(f"note: {stats['boxes_not_trained']['records']} records carry plate boxes (plate_geometry) "
                     f"that this build does not train; --grounding trains plate location ({PLATE_BOX})")
    if isinstance(stats["image_paths"], dict):
        lines.append(f"image paths are relative: run ms-swift with {stats['image_paths']['resolve_with']}")
    lines.append("wrote " + ", ".join(str(p) for p in files.values()))
    return "\n".join(lines)


COMMANDS = {"build": (configure, run, "records (+ teacher descriptions) -> ms-swift train/val JSONL")}
