"""Integration: drawn images -> `plates build` (SFT and --grpo layouts of the same records) -> real `swift sft`
(tiny_cpu) -> real `swift rlhf --rlhf_type grpo` (tiny_cpu_grpo) from that SFT checkpoint, on CPU, with
plates' rewards loaded into ms-swift through the plugin file.

About two minutes on 2 CPU cores (the SFT run, then four GRPO steps of two 128-token rollouts each).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest

from plates.cli import main
from plates.evaluation.rewards import AnswerScorer
from plates.grpo import REWARDS
from plates.io import read_jsonl

pytestmark = pytest.mark.slow


def _run(argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()


@pytest.fixture(scope="module")
def grpo_run(tiny_model_dir, tmp_path_factory) -> dict:
    from plates.synth import make_dump

    base = tmp_path_factory.mktemp("grpo")
    make_dump(base / "dump 图片:1", 12, seed=4)
    records = base / "records.jsonl"
    assert main(["parse", str(base / "dump 图片:1"), "-o", str(records)]) == 0
    sft_data, grpo_data = base / "sft data", base / "grpo 数据"
    for out, extra in ((sft_data, []), (grpo_data, ["--grpo"])):
        assert main(["build", str(records), "-o", str(out), "--val-ratio", "0.25", "--seed", "1", *extra]) == 0

    code, printed = _run(["train", "--preset", "tiny_cpu", "--model", str(tiny_model_dir), "--dataset",
                          str(sft_data), "--output-dir", str(base / "sft runs"), "--set", "num_train_epochs=2"])
    assert code == 0, printed[-3000:]
    sft_checkpoint = next(line.split(": ", 1)[1] for line in printed.splitlines()
                          if line.startswith("last checkpoint: "))

    out = base / "grpo runs:a"
    code, printed = _run(["train", "--preset", "tiny_cpu_grpo", "--adapters", sft_checkpoint, "--dataset",
                          str(grpo_data), "--output-dir", str(out)])
    runs = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("v")]
    assert code == 0, printed[-3000:]
    assert len(runs) == 1
    return {"printed": printed, "run_dir": runs[0], "sft_checkpoint": sft_checkpoint, "model": tiny_model_dir}


def test_grpo_runs_on_cpu_and_logs_finite_rewards(grpo_run):
    entries = [json.loads(line) for line in (grpo_run["run_dir"] / "logging.jsonl").read_text("utf-8").splitlines()]
    steps = [e for e in entries if "reward" in e]
    assert len(steps) == 4
    for entry in steps:
        assert math.isfinite(entry["reward"])
        for name in REWARDS:
            assert 0.0 <= entry[f"rewards/{name}/mean"] <= 1.0
    printed = grpo_run["printed"]
    assert "reward (weighted total): " in printed and "over 4 logged steps" in printed
    for name in REWARDS:
        assert f"  {name}: " in printed


def test_rewards_inside_ms_swift_are_the_scorer_on_each_completion(grpo_run):
    """completions.jsonl (log_completions) holds each rollout with the reward ms-swift got from the plugin: the
    same number as plates' scorer gives the same text against the same solution."""
    logged = read_jsonl(grpo_run["run_dir"] / "completions.jsonl")
    scorer = AnswerScorer()
    seen = 0
    for entry in logged:
        scores = scorer.scores(entry["completion"], entry["solution"])
        for k, expected in enumerate(scores):
            for name, key in REWARDS.items():
                assert entry[name][k] == pytest.approx(expected[key], abs=1e-6)
            seen += 1
    assert seen >= 8  # four steps of two completions (ms-swift may log a step twice)


def test_grpo_started_from_the_sft_checkpoint_and_the_manifest_says_so(grpo_run):
    run_dir = grpo_run["run_dir"]
    manifest = json.loads((run_dir / "plates_manifest.json").read_text(encoding="utf-8"))
    assert manifest["command"][1:3] == ["rlhf", "--model"] and manifest["exit_code"] == 0
    assert manifest["rlhf"]["type"] == "grpo"
    assert manifest["rlhf"]["rewards"] == {name: 1.0 for name in REWARDS}
    assert manifest["rlhf"]["adapters"] == [grpo_run["sft_checkpoint"]]
    args = json.loads((run_dir / "args.json").read_text(encoding="utf-8"))
    assert args["model"] == str(grpo_run["model"])
    assert args["adapters"] == [grpo_run["sft_checkpoint"]] and args["ref_adapters"] == [grpo_run["sft_checkpoint"]]
    checkpoint = Path(manifest["last_checkpoint"])
    assert (checkpoint / "adapter_model.safetensors").is_file()
