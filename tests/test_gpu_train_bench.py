"""benchmarks/gpu_train.py stays runnable without a GPU: `--small` builds the small random Qwen2.5-VL, draws a
dataset, and runs real `swift sft` steps of the shipped 7B preset and of the seed's recipe on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_train.py"


def test_the_7b_config_is_qwen2_5_vl_7b():
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_train

    text, vision = gpu_train.QWEN2_5_VL_7B_TEXT, gpu_train.QWEN2_5_VL_7B_VISION
    assert (text["hidden_size"], text["num_hidden_layers"], text["num_attention_heads"],
            text["num_key_value_heads"], text["intermediate_size"], text["vocab_size"]) == (3584, 28, 28, 4, 18944,
                                                                                          152064)
    assert (vision["depth"], vision["hidden_size"], vision["out_hidden_size"]) == (32, 1280, 3584)
    assert gpu_train.SEED_RECIPE["per_device_train_batch_size"] * gpu_train.SEED_RECIPE[
        "gradient_accumulation_steps"] == 48


@pytest.mark.slow
def test_small_run_on_cpu_prints_both_recipes(tmp_path):
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--small", "--steps", "1", "--workdir", str(tmp_path / "w"),
                             "--json", str(out)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "samples/s" in result.stdout and "tokens/s" in result.stdout and "peak GPU GiB" in result.stdout
    figures = json.loads(out.read_text())
    assert [f["recipe"] for f in figures] == ["preset", "seed"]
    for figure in figures:
        assert figure["steps"] == 1 and figure["samples_per_s"] > 0 and figure["tokens_per_s"] > figure["samples_per_s"]
        assert figure["peak_gpu_memory_gib"] is None  # CPU


@pytest.mark.slow
def test_small_run_measures_the_grpo_preset_too(tmp_path):
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--small", "--steps", "1", "--grpo", "--workdir",
                             str(tmp_path / "w"), "--json", str(out)], capture_output=True, text=True, timeout=900,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    figures = {f["recipe"]: f for f in json.loads(out.read_text())}
    assert list(figures) == ["preset", "seed", "grpo"]
    grpo = figures["grpo"]
    assert grpo["preset"] == "qwen2_5_vl_7b_grpo" and grpo["steps"] == 1 and grpo["samples_per_s"] > 0
    assert grpo["global_batch"] == 2  # two completions of one image
    assert "grpo: samples are completions" in result.stdout
