"""`plates infer` / `plates export`: the `swift infer` / `swift export` command lines and their guard rails."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from plates import swift_cli
from plates.cli import main
from plates.errors import UserError
from plates.export import build_export_command
from plates.infer import run_infer
from plates.runs import checkpoint_dir
from plates.swift_infer import adapter_parts, build_infer_command
from helpers import argv_pairs

LANGUAGE_KEY = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"
VISION_KEY = "base_model.model.model.visual.blocks.0.attn.qkv.lora_A.weight"




def _checkpoint(run: Path, keys: list[str], step: int = 10) -> Path:
    """A LoRA checkpoint folder as ms-swift writes it (adapter config + safetensors with these tensor names)."""
    import torch
    from safetensors.torch import save_file

    ckpt = run / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file({k: torch.zeros(2, 2) for k in keys}, str(ckpt / "adapter_model.safetensors"))
    return ckpt


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "输出 runs:1" / "v0-20250101-000000"


@pytest.fixture
def val_file(tmp_path) -> Path:
    path = tmp_path / "数据 集：val.jsonl"
    row = {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": "{}"}],
           "images": ["/x.jpg"]}
    path.write_text((json.dumps(row) + "\n") * 3, encoding="utf-8")
    return path


def test_adapter_parts_counts_language_and_vision_lora(run_dir):
    ckpt = _checkpoint(run_dir, [LANGUAGE_KEY, LANGUAGE_KEY.replace("lora_A", "lora_B"), VISION_KEY])
    assert adapter_parts(ckpt) == {"language_model": 2, "vision_tower": 1, "other": 0}


def test_infer_command_with_adapters(run_dir, val_file, tmp_path):
    ckpt = _checkpoint(run_dir, [LANGUAGE_KEY, VISION_KEY])
    (run_dir / "plates_manifest.json").write_text(json.dumps({"max_pixels": 200704}))
    notes: list[str] = []
    argv, env = build_infer_command(adapters=str(run_dir), model=None, dataset=str(val_file),
                                    result_path=tmp_path / "r.jsonl", backend="pt", notes=notes)
    got = argv_pairs(argv[argv.index("infer") + 1:])
    assert got["adapters"] == [str(ckpt)], "a run folder resolves to its last checkpoint"
    assert got["val_dataset"] == [str(val_file)]
    assert got["infer_backend"] == ["transformers"], "pt is transformers in ms-swift 4"
    assert got["max_pixels"] == ["200704"] and env["MAX_PIXELS"] == "200704", "re-passed from the manifest"
    assert got["result_path"] == [str(tmp_path / "r.jsonl")]
    assert got["stream"] == ["false"]
    assert any("manifest" in n for n in notes)


def test_explicit_max_pixels_wins_and_no_dataset_uses_the_training_val_set(run_dir, tmp_path):
    _checkpoint(run_dir, [LANGUAGE_KEY])
    (run_dir / "plates_manifest.json").write_text(json.dumps({"max_pixels": 200704}))
    argv, env = build_infer_command(adapters=str(run_dir), model=None, dataset=None, max_pixels=50176,
                                    result_path=tmp_path / "r.jsonl", gpus="1", decoding="free")
    got = argv_pairs(argv)
    assert got["max_pixels"] == ["50176"] and env == {"MAX_PIXELS": "50176", "CUDA_VISIBLE_DEVICES": "1"}
    assert got["load_data_args"] == ["true"] and "val_dataset" not in got


def test_vllm_refuses_a_vision_tower_lora_and_says_what_to_do(run_dir, tmp_path, val_file):
    ckpt = _checkpoint(run_dir, [LANGUAGE_KEY, VISION_KEY])
    with pytest.raises(UserError, match=r"plates export --adapters .*checkpoint-10") as info:
        build_infer_command(adapters=str(ckpt), model=None, dataset=str(val_file), result_path=tmp_path / "r",
                            backend="vllm")
    assert "vision tower" in str(info.value)


def test_vllm_accepts_a_language_only_lora(tmp_path, val_file):
    ckpt = _checkpoint(tmp_path / "run", [LANGUAGE_KEY])
    argv, _ = build_infer_command(adapters=str(ckpt), model=None, dataset=str(val_file),
                                  result_path=tmp_path / "r", backend="vllm")
    assert argv_pairs(argv)["infer_backend"] == ["vllm"]


def test_base_model_inference_needs_a_dataset_and_reads_the_tiny_template(tiny_model_dir, val_file, tmp_path):
    with pytest.raises(UserError, match="--dataset is required"):
        build_infer_command(adapters=None, model=str(tiny_model_dir), dataset=None, result_path=tmp_path / "r")
    argv, _ = build_infer_command(adapters=None, model=str(tiny_model_dir), dataset=str(val_file),
                                  result_path=tmp_path / "r", max_new_tokens=8)
    got = argv_pairs(argv)
    assert got["model"] == [str(tiny_model_dir)] and got["template"] == ["qwen2_5_vl"]
    assert got["max_new_tokens"] == ["8"] and "adapters" not in got


def test_bad_inputs_are_user_errors(tmp_path, val_file):
    with pytest.raises(UserError, match="--adapters"):
        build_infer_command(adapters=None, model=None, dataset=None, result_path=tmp_path / "r")
    with pytest.raises(UserError, match="not a LoRA checkpoint"):
        checkpoint_dir(tmp_path)
    with pytest.raises(UserError, match="no such"):
        checkpoint_dir(tmp_path / "missing")
    with pytest.raises(UserError, match="does not know the argument `temprature`; did you mean `temperature`"):
        build_infer_command(adapters=None, model="m", dataset=str(val_file), result_path=tmp_path / "r",
                            overrides=["temprature=0"])
    with pytest.raises(UserError, match="is a folder"):
        run_infer(tmp_path, model="m", dataset=str(val_file))


def test_dry_run_shows_the_real_output_path_and_writes_nothing(tmp_path, val_file, capsys):
    out = tmp_path / "结果 dir:1" / "results.jsonl"
    code = main(["infer", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--dataset", str(val_file), "-o", str(out),
                 "--backend", "pt", "--max-pixels", "1003520", "--dry-run", "--set", "temperature=0"])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert list(out.parent.iterdir()) == [], "no staging folder is left behind"
    words = shlex.split(text.replace("\\\n", " "))
    assert "MAX_PIXELS=1003520" in words
    got = argv_pairs(words)
    assert got["result_path"] == [str(out)] and got["temperature"] == ["0"]
    assert got["val_dataset"] == [str(val_file)]


def test_export_command(run_dir):
    ckpt = _checkpoint(run_dir, [LANGUAGE_KEY, VISION_KEY], step=300)
    words, target, _ = build_export_command(str(ckpt))
    got = argv_pairs(words)
    assert target == run_dir / "checkpoint-300-merged"
    assert words[len(swift_cli.swift_command())] == "export"
    assert got["adapters"] == [str(ckpt)] and got["merge_lora"] == ["true"]
    assert got["output_dir"] == [str(run_dir / "checkpoint-300-merged")]
    (run_dir / "taken").mkdir()
    (run_dir / "taken" / "f").write_text("x")
    with pytest.raises(UserError, match="taken.*(already exists|did not write)"):
        build_export_command(str(ckpt), str(run_dir / "taken"))


@pytest.mark.slow
def test_results_move_into_place_only_on_success(tmp_path, val_file, capsys):
    """A failing ms-swift run leaves an existing results file untouched (and no staging folder behind)."""
    out = tmp_path / "results.jsonl"
    out.write_text("previous\n")
    code = run_infer(out, adapters=None, model=str(tmp_path / "no such model"), dataset=str(val_file),
                     max_new_tokens=4)
    assert code != 0
    assert out.read_text() == "previous\n"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["results.jsonl", "results.swift-infer.log", val_file.name]), "only ms-swift's log is added"
    assert "Traceback" in (tmp_path / "results.swift-infer.log").read_text(encoding="utf-8")
    assert "results.swift-infer.log" in capsys.readouterr().err, "the failure points to the log"
