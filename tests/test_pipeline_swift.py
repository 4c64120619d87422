"""Integration: drawn images -> `plates parse` -> `plates build` -> real `swift sft` (LoRA, vision tower unfrozen)
on the tiny Qwen2.5-VL -> real `swift infer` with the adapter and on the base model -> `plates eval`.

One training run is shared by every test in this module (about half a minute on 2 CPU cores).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from plates.cli import main
from plates.swift_infer import adapter_parts
from plates.io import read_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    from plates.synth import make_dump

    base = tmp_path_factory.mktemp("pipeline")
    dump = base / "dump 图片:1"
    make_dump(dump, 24, seed=3)
    records = base / "records.jsonl"
    assert main(["parse", str(dump), "-o", str(records)]) == 0
    data = base / "数据 集：v1"
    assert main(["build", str(records), "-o", str(data), "--val-ratio", "0.25", "--seed", "1"]) == 0
    assert (data / "train.jsonl").is_file() and (data / "val.jsonl").is_file()
    return data


@pytest.fixture(scope="module")
def trained(tiny_model_dir, dataset_dir, tmp_path_factory) -> dict:
    """One real `plates train --preset tiny_cpu` run; its exit code, printed summary and run folder."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("runs") / "输出 runs:a"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["train", "--preset", "tiny_cpu", "--model", str(tiny_model_dir), "--dataset",
                     str(dataset_dir), "--output-dir", str(out), "--set", "num_train_epochs=4"])
    printed = buffer.getvalue()
    runs = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("v")]
    assert code == 0, printed[-3000:]
    assert len(runs) == 1
    return {"code": code, "printed": printed, "run_dir": runs[0], "output_dir": out}


def test_train_prints_folder_and_checkpoint_and_writes_a_complete_manifest(trained, dataset_dir, tiny_model_dir):
    run_dir = trained["run_dir"]
    manifest = json.loads((run_dir / "plates_manifest.json").read_text(encoding="utf-8"))
    checkpoint = Path(manifest["last_checkpoint"])
    assert checkpoint.parent == run_dir and (checkpoint / "adapter_model.safetensors").is_file()
    assert f"output folder: {run_dir}" in trained["printed"]
    assert f"last checkpoint: {checkpoint}" in trained["printed"]

    assert manifest["exit_code"] == 0 and manifest["run_dir"] == str(run_dir)
    assert manifest["command"][1:3] == ["sft", "--model"] and str(tiny_model_dir) in manifest["command"]
    assert manifest["env"]["MAX_PIXELS"] == "50176" and manifest["max_pixels"] == 50176
    import importlib.metadata

    assert manifest["packages"]["ms-swift"] == importlib.metadata.version("ms-swift")
    assert manifest["packages"]["torch"] and manifest["packages"]["peft"]
    hashes = {Path(f["path"]).name: f["sha256"] for f in manifest["dataset_files"]}
    for name in ("train.jsonl", "val.jsonl"):
        assert hashes[name] == hashlib.sha256((dataset_dir / name).read_bytes()).hexdigest()
    assert manifest["preset"]["name"] == "tiny_cpu" and "tuner_type: lora" in manifest["preset"]["content"]
    assert manifest["duration_s"] > 0 and manifest["started"] and manifest["finished"]
    # ms-swift's own record of the run agrees with what plates asked for.
    args = json.loads((run_dir / "args.json").read_text(encoding="utf-8"))
    assert args["tuner_type"] == "lora" and args["freeze_vit"] is False
    assert args["dataset"] == [str(dataset_dir / "train.jsonl")]


def test_adapter_holds_lora_in_language_model_and_vision_tower(trained):
    checkpoint = Path(json.loads((trained["run_dir"] / "plates_manifest.json").read_text())["last_checkpoint"])
    parts = adapter_parts(checkpoint)
    assert parts["language_model"] > 0, parts
    assert parts["vision_tower"] > 0, parts
    from safetensors import safe_open

    with safe_open(str(checkpoint / "adapter_model.safetensors"), "pt") as handle:
        vision_b = [k for k in handle.keys() if ".visual." in k and "lora_B" in k]
        assert any(handle.get_tensor(k).abs().sum() > 0 for k in vision_b), "the vision LoRA was trained"


def test_training_loss_falls_by_a_clear_margin(trained):
    logs = [row for row in read_jsonl(trained["run_dir"] / "logging.jsonl") if "loss" in row]
    losses = [float(row["loss"]) for row in logs]
    assert len(losses) >= 10, losses
    first = sum(losses[:3]) / 3
    last = sum(losses[-3:]) / 3
    assert all(math.isfinite(x) for x in losses)
    assert last < first - 2.0, f"loss went {first:.2f} -> {last:.2f}"
    assert last < 0.8 * first, losses


@pytest.fixture(scope="module")
def finetuned_results(trained, dataset_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results") / "微调 results:1.jsonl"
    assert main(["infer", "--adapters", str(trained["run_dir"]), "--dataset", str(dataset_dir), "-o", str(out),
                 "--max-new-tokens", "16", "--batch-size", "4"]) == 0
    return out


def test_infer_with_adapter_writes_results_in_dataset_order(finetuned_results, dataset_dir):
    results = read_jsonl(finetuned_results)
    val = read_jsonl(dataset_dir / "val.jsonl")
    assert len(results) == len(val) > 0
    for result, sample in zip(results, val):
        assert isinstance(result["response"], str)
        assert result["labels"] == sample["messages"][-1]["content"]
    leftovers = [p for p in finetuned_results.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], "no staging files left behind"


def test_plates_eval_reads_the_results(finetuned_results, dataset_dir, tmp_path):
    report = tmp_path / "report.json"
    assert main(["eval", str(finetuned_results), "--json", str(report)]) == 0
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["n"] == len(read_jsonl(dataset_dir / "val.jsonl"))
    assert data["skipped_lines"] == 0
    assert set(data["fields"]) >= {"车辆品牌", "车牌号码"}
    for field in data["fields"].values():
        assert field["correct"] <= field["support"]
        assert field["accuracy"] is None if field["support"] == 0 else 0 <= field["accuracy"] <= 1


def test_base_model_inference_for_the_before_after_comparison(tiny_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "base.jsonl"
    assert main(["infer", "--model", str(tiny_model_dir), "--dataset", str(dataset_dir / "val.jsonl"),
                 "-o", str(out), "--max-new-tokens", "8", "--max-pixels", "50176", "--batch-size", "4"]) == 0
    results = read_jsonl(out)
    assert len(results) == len(read_jsonl(dataset_dir / "val.jsonl"))
    assert all("response" in r and "labels" in r for r in results)
