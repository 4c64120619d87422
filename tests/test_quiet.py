"""Quiet by default: ms-swift's output goes to a log file, the terminal shows plates' own progress and summary,
and a failure shows the exception ms-swift died of and where its log is."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from plates import swift_cli

# What `swift sft` 4.6 writes while training (fragments split at carriage returns, as run_streaming hands them on).
SFT_OUTPUT = [
    "[INFO:swift] The logging file will be saved in: /runs/v0-20250101-000000/logging.jsonl",
    "Train:   0%|          | 0/5 [00:00<?, ?it/s]",
    "Train:  20%|██        | 1/5 [00:00<00:02,  1.50it/s]",
    "{'loss': '16.15', 'grad_norm': '0.37', 'learning_rate': '0.009045', 'token_acc': '0.006536', 'epoch': '0.2', "
    "'global_step/max_steps': '1/5', 'elapsed_time': '1s', 'remaining_time': '3s', 'train_speed(s/it)': '0.6684'}",
    "Train:  40%|████      | 2/5 [00:01<00:01,  1.55it/s]",
    "{'loss': '16.29', 'grad_norm': '1.129', 'learning_rate': '0.006545', 'token_acc': '0', 'epoch': '0.4', "
    "'global_step/max_steps': '2/5', 'elapsed_time': '1s', 'remaining_time': '2s', 'train_speed(s/it)': '0.652'}",
    "Val:   0%|          | 0/2 [00:00<?, ?it/s]",
    "Val: 100%|██████████| 2/2 [00:00<00:00,  8.61it/s]",
    "{'eval_loss': '12.81', 'eval_runtime': '0.6672', 'epoch': '1', 'global_step/max_steps': '5/5'}",
    "Train: 100%|██████████| 5/5 [00:03<00:00,  1.45it/s]",
    "{'loss': '13.07', 'grad_norm': '12.7', 'learning_rate': '0', 'epoch': '1', 'global_step/max_steps': '5/5'}",
    "{'train_runtime': '4.871', 'train_samples_per_second': '1.848', 'train_loss': '15.12', 'epoch': '1'}",
]
# What `swift infer` writes: a dataset Map bar, then the samples bar, which has no description.
INFER_OUTPUT = [
    "Map (num_proc=1): 100%|██████████| 3/3 [00:00<?, ? examples/s]",
    "  0%|          | 0/3 [00:00<?, ?it/s]",
    " 33%|███▎      | 1/3 [00:03<00:07,  3.76s/it]",
    "100%|██████████| 3/3 [00:05<00:00,  1.34s/it]",
    "{'num_prompt_tokens': 724, 'num_generated_tokens': 96, 'num_samples': 3}",
]


def test_training_progress_follows_the_train_bar_and_the_losses():
    tracker = swift_cli.SwiftProgress(bar="Train", desc="train")
    for line in SFT_OUTPUT:
        tracker.feed(line)
    tracker.close()
    assert (tracker.step, tracker.total) == (5, 5)
    assert tracker.losses == [16.15, 16.29, 13.07]


def test_inference_progress_follows_the_samples_bar_only():
    tracker = swift_cli.SwiftProgress(bar="", desc="infer", unit="sample")
    seen = []
    for line in INFER_OUTPUT:
        tracker.feed(line)
        seen.append((tracker.step, tracker.total))
    assert seen[0] == (0, None)  # the Map bar is not ours
    assert seen[-1] == (3, 3) and tracker.losses == []


def test_failure_excerpt_is_the_exception_not_the_noise():
    lines = ["[INFO:swift] loading", *SFT_OUTPUT[:3], "Traceback (most recent call last):",
             '  File "/x/swift/cli/sft.py", line 5, in <module>', "    main()",
             '  File "/x/swift/llm/dataset.py", line 99, in load', "    raise ValueError(msg)",
             "ValueError: row 7 has no messages", "Train:  20%|██        | 1/5 [00:00<00:02,  1.50it/s]"]
    excerpt = swift_cli.failure_excerpt(lines)
    assert excerpt[0].lstrip().startswith('File "/x/swift/llm/dataset.py"')
    assert excerpt[-1] == "ValueError: row 7 has no messages"
    assert swift_cli.failure_excerpt(["a", "", "b 50%|##  | 1/2 [00:01<00:01]", "c"]) == ["a", "c"]


FAKE_SWIFT = r"""
import sys, time
print("[INFO:swift] args: " + "x=1, " * 50)
for i in range(1, 4):
    sys.stdout.write(f"\rTrain:  {i * 33}%|###   | {i}/3 [00:0{i}<00:01,  1.0it/s]")
    sys.stdout.flush()
    print(f"\r{{'loss': '{5 - i}.5', 'global_step/max_steps': '{i}/3'}}")
for i in range(200):
    print(f"[INFO:swift] model line {i}")
if sys.argv[1] == "fail":
    def load(row):
        raise ValueError(f"row {row} has no messages")
    load(7)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_quiet_run_keeps_the_output_in_the_log(tmp_path, capfd, verbose):
    log = tmp_path / "run" / "swift.log"
    run = swift_cli.run_swift([sys.executable, "-c", FAKE_SWIFT, "ok"], {"HF_TOKEN": "hf_secret"}, log_path=log,
                              verbose=verbose, progress=swift_cli.SwiftProgress(bar="Train", desc="train"))
    out, err = capfd.readouterr()
    text = log.read_text(encoding="utf-8")
    assert run.code == 0 and run.losses == [4.5, 3.5, 2.5] and (run.steps, run.total) == (3, 3)
    assert "model line 199" in text and text.startswith("$ HF_TOKEN='<redacted>' ")
    assert "hf_secret" not in text
    if verbose:
        assert "model line 199" in out
    else:
        assert out == "" and len(err.splitlines()) == 1 and str(log) in err


def test_failed_quiet_run_shows_the_exception_and_the_log(tmp_path, capfd):
    log = tmp_path / "swift.log"
    run = swift_cli.run_swift([sys.executable, "-c", FAKE_SWIFT, "fail"], log_path=log, who="plates train")
    out, err = capfd.readouterr()
    assert run.code == 1 and out == ""
    assert "ValueError: row 7 has no messages" in err and "in load" in err
    assert f"plates train: full log: {log}" in err
    assert "model line" not in err and len(err.splitlines()) <= 16


@pytest.mark.slow
def test_real_tiny_train_is_quiet_and_logs_beside_its_checkpoints(tiny_model_dir, tmp_path):
    """About a minute: a real `plates train` on the tiny model prints a handful of lines, not ~800."""
    from plates.cli import main
    from plates.synth import make_dump

    make_dump(tmp_path / "dump", 8, seed=5)
    assert main(["parse", str(tmp_path / "dump"), "-o", str(tmp_path / "records.jsonl")]) == 0
    assert main(["build", str(tmp_path / "records.jsonl"), "-o", str(tmp_path / "data"), "--val-ratio", "0.25"]) == 0
    done = subprocess.run([sys.executable, "-m", "plates.cli", "train", "--preset", "tiny_cpu", "--model",
                           str(tiny_model_dir), "--dataset", str(tmp_path / "data"), "--output-dir",
                           str(tmp_path / "runs"), "--set", "num_train_epochs=1"],
                          capture_output=True, text=True, timeout=600)
    terminal = done.stdout + done.stderr
    lines = [line for line in re.split(r"\r\n|\n|\r", terminal) if line.strip()]
    assert done.returncode == 0, terminal[-3000:]
    assert len(lines) <= 60, terminal
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    log = run_dir / "swift-sft.log"
    text = log.read_text(encoding="utf-8")
    assert "last_model_checkpoint" in text and "lora_rank=8" in text  # ms-swift's whole output is there
    manifest = json.loads((run_dir / "plates_manifest.json").read_text(encoding="utf-8"))
    assert f"last checkpoint: {manifest['last_checkpoint']}" in terminal
    assert f"ms-swift log: {log}" in terminal
    assert re.search(r"training loss: [\d.]+ → [\d.]+ over \d+ logged steps", terminal)
