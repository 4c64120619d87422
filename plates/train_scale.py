"""`plates train` on large datasets: the ms-swift options that keep data preparation from taking hours.

ms-swift prepares a dataset in two steps: loading maps every row into its messages format (a `datasets.map`,
one process unless ``dataset_num_proc``), then the template encodes each sample (tokens plus image patches).
On millions of samples the single-process map alone runs for hours (ms-swift issues #7866, #4076), and an
eager encode of every image before the first step is worse. Two layouts avoid it (swift_args/README.md says
why each option):

* ``lazy`` (what ``auto`` picks from ``LARGE_DATASET`` samples on): ``lazy_tokenize true`` (encode in the
  dataloader workers while the GPUs train), ``dataset_num_proc`` processes for the loading map,
  ``load_from_cache_file true`` so that a re-run reuses the mapped dataset, ``dataloader_num_workers``.
* ``streaming``: read and encode on the fly, nothing prepared up front; ms-swift then needs ``max_steps`` (a
  stream has no length), computed here from the sample count, epochs and the global batch. Only rank 0 reads,
  so it can starve many GPUs (#6758): meant for one machine.

Options the preset or ``--set`` already give are never changed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from plates.errors import UserError

LARGE_DATASET = 100_000
MODES = ("auto", "off", "lazy", "streaming")


def count_samples(paths: list[str]) -> int | None:
    """Lines of the local JSONL training files (one sample each), or None when one is not a local file."""
    total = 0
    for text in paths:
        path = Path(text)
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            total += sum(1 for line in handle if line.strip())
    return total


def world_size(env: dict[str, str]) -> int:
    return max(1, int(env.get("NPROC_PER_NODE") or 1)) * max(1, int(env.get("NNODES") or 1))


def steps_for(samples: int, options: dict[str, Any], env: dict[str, str]) -> int:
    """Optimizer steps of ``num_train_epochs`` over ``samples``, as ms-swift counts a global batch:
    per-device batch x gradient accumulation (ms-swift's default: ceil(16 / batch / world size)) x world size."""
    batch = int(options.get("per_device_train_batch_size") or 1)
    world = world_size(env)
    accumulation = options.get("gradient_accumulation_steps")
    accumulation = int(accumulation) if accumulation else max(1, math.ceil(16 / batch / world))
    epochs = float(options.get("num_train_epochs") or 3)
    return max(1, math.ceil(samples * epochs / (batch * accumulation * world)))


def scale_options(mode: str, options: dict[str, Any], env: dict[str, str],
                  samples: int | None, cpus: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """(options to add, notes) for ``mode`` on a training set of ``samples`` samples."""
    if mode not in MODES:
        raise UserError(f"--large-dataset must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off" or (mode == "auto" and (samples is None or samples < LARGE_DATASET)):
        return {}, []
    cpus = cpus or os.cpu_count() or 1
    per_node = max(1, int(env.get("NPROC_PER_NODE") or 1))
    procs = max(1, min(32, cpus // per_node))
    size = f"{samples:,} training samples" if samples is not None else "a training set of unknown size"
    if mode == "streaming":
        if samples is None and not options.get("max_steps"):
            raise UserError("--large-dataset streaming needs the number of samples for max_steps: give local "
                            "JSONL files, or --set max_steps=N")
        if options.get("lazy_tokenize") or options.get("packing"):
            raise UserError("--large-dataset streaming: ms-swift cannot stream with lazy_tokenize or packing; "
                            "drop them (--set lazy_tokenize=null)")
        wanted: dict[str, Any] = {"streaming": True, "dataset_num_proc": procs, "shuffle_buffer_size": 10_000}
        if samples is not None:
            wanted["max_steps"] = steps_for(samples, options, env)
        notes = [f"{size}: streaming (max_steps = samples x epochs / global batch); only rank 0 reads the "
                 "stream, so prefer --large-dataset lazy across machines"]
        if int(env.get("NNODES") or 1) > 1:
            notes.append("streaming on several machines: rank 0 reads for all of them (ms-swift #6758)")
    else:
        if options.get("streaming"):
            return {}, []
        wanted = {"lazy_tokenize": True, "dataset_num_proc": procs, "load_from_cache_file": True,
                  "dataloader_num_workers": max(1, min(8, cpus // per_node))}
        notes = [f"{size}: lazy_tokenize (encode while training), dataset_num_proc {procs} (the loading map), "
                 "load_from_cache_file (re-runs reuse it); --large-dataset off turns this off"]
    return {k: v for k, v in wanted.items() if k not in options}, notes
