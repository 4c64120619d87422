"""`plates train --large-dataset`: ms-swift's options for big training sets, shown by --dry-run."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest

from plates import swift_cli
from plates.cli import main
from plates.train import build_plan, load_preset
from plates.train_scale import LARGE_DATASET, count_samples
from helpers import argv_pairs


def _dataset(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    row = json.dumps({"messages": [{"role": "user", "content": "<image>车牌?"},
                                   {"role": "assistant", "content": "{}"}], "images": ["/d/a b.jpg"]},
                     ensure_ascii=False)
    (folder / "train.jsonl").write_text((row + "\n") * n + "\n", encoding="utf-8")
    (folder / "val.jsonl").write_text(row + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    return _dataset(tmp_path_factory.mktemp("scale") / "大 数据:集", LARGE_DATASET + 20_000)


def _dry_run(capsys, *argv: str, notes: list[str] | None = None) -> dict[str, list[str]]:
    assert main(["train", *argv, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    if notes is not None:
        notes.append(err)
    words = [w for w in shlex.split(out) if w.strip()]
    return argv_pairs(words[words.index("sft") + 1:])


def test_count_samples_skips_blank_lines(large, tmp_path):
    assert count_samples([str(large / "train.jsonl")]) == LARGE_DATASET + 20_000
    assert count_samples([str(tmp_path / "missing.jsonl")]) is None


def test_large_dataset_gets_lazy_tokenize_and_parallel_loading(large, tmp_path, capsys):
    got = _dry_run(capsys, "--preset", "qwen2_5_vl_7b_lora", "--dataset", str(large),
                   "--output-dir", str(tmp_path / "out"))
    assert got["lazy_tokenize"] == ["true"] and got["load_from_cache_file"] == ["true"]
    assert int(got["dataset_num_proc"][0]) >= 1
    assert "streaming" not in got and "max_steps" not in got
    plan = build_plan("qwen2_5_vl_7b_lora", large, environ={}, output_dir=tmp_path / "out")
    fields = swift_cli.argument_fields("sft")
    assert all(swift_cli.canonical_name(k, fields)[0] == k for k in plan.options)  # names ms-swift knows


def test_streaming_computes_max_steps_from_samples_epochs_and_world(large, tmp_path, capsys):
    notes: list[str] = []
    got = _dry_run(capsys, "--preset", "qwen2_5_vl_7b_lora", "--dataset", str(large), "--large-dataset",
                   "streaming", "--nnodes", "2", "--node-rank", "0", "--master-addr", "10.0.0.1",
                   "--output-dir", str(tmp_path / "out"), notes=notes)
    preset = load_preset("qwen2_5_vl_7b_lora").options
    global_batch = preset["per_device_train_batch_size"] * preset["gradient_accumulation_steps"] * 2
    expected = math.ceil((LARGE_DATASET + 20_000) * preset["num_train_epochs"] / global_batch)
    assert got["streaming"] == ["true"] and got["max_steps"] == [str(expected)]
    assert "lazy_tokenize" not in got
    assert "rank 0 reads" in notes[0]


def test_small_dataset_and_off_and_user_choices_are_left_alone(large, tmp_path, capsys):
    small = _dataset(tmp_path / "small", 10)
    assert "lazy_tokenize" not in _dry_run(capsys, "--preset", "tiny_cpu", "--model", "m", "--dataset",
                                           str(small), "--output-dir", str(tmp_path / "o1"))
    assert "lazy_tokenize" not in _dry_run(capsys, "--preset", "tiny_cpu", "--model", "m", "--dataset",
                                           str(large), "--large-dataset", "off", "--output-dir", str(tmp_path / "o2"))
    got = _dry_run(capsys, "--preset", "tiny_cpu", "--model", "m", "--dataset", str(large),
                   "--set", "dataset_num_proc=3", "--output-dir", str(tmp_path / "o3"))
    assert got["dataset_num_proc"] == ["3"] and got["lazy_tokenize"] == ["true"]
    assert got["dataloader_num_workers"] == ["0"]  # the preset's own value stays


def test_streaming_with_lazy_tokenize_is_a_user_error(large, tmp_path, capsys):
    assert main(["train", "--preset", "tiny_cpu", "--model", "m", "--dataset", str(large), "--large-dataset",
                 "streaming", "--set", "lazy_tokenize=true", "--output-dir", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lazy_tokenize" in err[0]


@pytest.mark.parametrize("rank", [0, 1])
def test_two_node_preset_dry_run_on_each_machine(large, tmp_path, capsys, rank):
    notes: list[str] = []
    got = _dry_run(capsys, "--preset", "qwen2_5_vl_7b_lora_2nodes", "--dataset", str(large), "--nnodes", "2",
                   "--node-rank", str(rank), "--master-addr", "10.0.0.1", "--output-dir", str(tmp_path / "o"),
                   notes=notes)
    plan = build_plan("qwen2_5_vl_7b_lora_2nodes", large, nnodes=2, node_rank=rank, master_addr="10.0.0.1",
                      environ={}, output_dir=tmp_path / "o")
    assert {k: plan.env[k] for k in ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "NPROC_PER_NODE")} == {
        "NNODES": "2", "NODE_RANK": str(rank), "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500",
        "NPROC_PER_NODE": "8"}
    assert got["deepspeed"] == ["zero2"] and got["lazy_tokenize"] == ["true"] and got["dataset_num_proc"] == ["16"]
    preset = load_preset("qwen2_5_vl_7b_lora_2nodes").options
    assert preset["per_device_train_batch_size"] * 8 * 2 * preset["gradient_accumulation_steps"] == 48
