"""`plates export`: merge/quantise command lines, GPU-only quantisation refused on CPU, the generation settings
recorded in the export, and (slow) a real tiny LoRA run merged and verified answer for answer."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from plates import swift_cli
from plates.cli import main
from plates.errors import UserError
from plates.export import build_export_command, record_generation_settings, verify_images
from helpers import argv_pairs

LANGUAGE_KEY = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"


def _checkpoint(run: Path, *, dataset: str = "/data/train.jsonl", val: str | None = None) -> Path:
    import torch
    from safetensors.torch import save_file

    ckpt = run / "checkpoint-7"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file({LANGUAGE_KEY: torch.zeros(2, 2)}, str(ckpt / "adapter_model.safetensors"))
    args = {"template": "qwen2_5_vl", "model": "Qwen/Qwen2.5-VL-7B-Instruct", "dataset": [dataset],
            "val_dataset": [val] if val else []}
    (ckpt / "args.json").write_text(json.dumps(args))
    (run / "plates_manifest.json").write_text(json.dumps({"max_pixels": 50176}))
    return ckpt


def test_merge_and_quant_command_lines(tmp_path):
    ckpt = _checkpoint(tmp_path / "run")
    argv, target, _ = build_export_command(str(ckpt))
    got = argv_pairs(argv[len(swift_cli.swift_command()) + 1:])
    assert got["merge_lora"] == ["true"] and got["output_dir"] == [str(tmp_path / "run" / "checkpoint-7-merged")]
    assert "quant_method" not in got
    argv, target, _ = build_export_command(str(ckpt), quant="awq")
    got = argv_pairs(argv)
    assert got["quant_method"] == ["awq"] and got["quant_bits"] == ["4"] and got["dataset"] == ["/data/train.jsonl"]
    assert target.name == "checkpoint-7-awq4"
    argv, _, _ = build_export_command(str(ckpt), quant="gptq", bits=8, calibration="/c.jsonl")
    assert argv_pairs(argv)["quant_bits"] == ["8"] and argv_pairs(argv)["dataset"] == ["/c.jsonl"]
    assert "quant_bits" not in argv_pairs(build_export_command(str(ckpt), quant="fp8")[0])
    with pytest.raises(UserError, match="takes --bits 4"):
        build_export_command(str(ckpt), quant="awq", bits=3)
    with pytest.raises(UserError, match="--bits needs --quant"):
        build_export_command(str(ckpt), bits=4)


def test_quantisation_is_gpu_only_and_dry_run_shows_it(tmp_path, capsys, monkeypatch):
    import plates.export

    ckpt = _checkpoint(tmp_path / "run")
    monkeypatch.setattr(plates.export, "has_cuda", lambda: False)  # what this CPU machine reports anyway
    assert main(["export", "--adapters", str(ckpt), "--quant", "gptq", "--bits", "4", "--dry-run"]) == 0
    captured = capsys.readouterr()
    words = shlex.split(captured.out.replace("\\\n", " "))
    assert argv_pairs(words)["quant_method"] == ["gptq"] and "needs a CUDA GPU" in captured.err
    assert main(["export", "--adapters", str(ckpt), "--quant", "gptq", "--bits", "4"]) == 2
    assert "runs on a CUDA GPU only" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint-7-gptq4").exists()


def test_generation_settings_are_recorded_where_servers_read_them(tmp_path):
    ckpt = _checkpoint(tmp_path / "run")
    target = tmp_path / "merged"
    target.mkdir()
    (target / "processor_config.json").write_text(json.dumps(
        {"image_processor": {"size": {"longest_edge": 12845056, "shortest_edge": 3136}}}))
    (target / "preprocessor_config.json").write_text(json.dumps({"max_pixels": 12845056, "min_pixels": 3136}))
    settings = record_generation_settings(target, ckpt)
    assert settings["max_pixels"] == 50176 and settings["template"] == "qwen2_5_vl"
    assert settings["system"] == "You are a helpful assistant." and settings["temperature"] == 0
    saved = json.loads((target / "plates_generation.json").read_text(encoding="utf-8"))
    assert saved == settings and "JSON" in saved["prompt"]
    processor = json.loads((target / "processor_config.json").read_text())
    assert processor["image_processor"]["size"] == {"longest_edge": 50176, "shortest_edge": 3136}
    assert json.loads((target / "preprocessor_config.json").read_text())["max_pixels"] == 50176
    assert json.loads((target / "plates_manifest.json").read_text())["merged_from"] == str(ckpt)
    from plates.serve import build_serve_command

    argv, env = build_serve_command(adapters=None, model=str(target))
    assert argv_pairs(argv)["max_pixels"] == ["50176"] and argv_pairs(argv)["template"] == ["qwen2_5_vl"]


def test_verify_images_come_from_the_run_validation_set(tmp_path):
    val = tmp_path / "val.jsonl"
    rows = [{"messages": [], "images": [f"/imgs/{i}.jpg"]} for i in range(5)]
    val.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ckpt = _checkpoint(tmp_path / "run", val=str(val))
    assert verify_images(ckpt, None, 3) == ["/imgs/0.jpg", "/imgs/1.jpg", "/imgs/2.jpg"]
    with pytest.raises(UserError, match="--verify-dataset"):
        verify_images(_checkpoint(tmp_path / "run2"), None, 3)


@pytest.mark.slow
def test_merged_tiny_checkpoint_answers_exactly_like_the_adapter(tiny_model_dir, tmp_path, capsys):
    """A real (short) LoRA run on the tiny model, vision tower included; `plates export --verify` merges it and
    answers validation images with both: 0 differing answers, and the export carries its settings."""
    from plates.synth import make_dump

    dump = tmp_path / "dump"
    make_dump(dump, 8, seed=6)
    assert main(["parse", str(dump), "-o", str(tmp_path / "records.jsonl"), "-j", "1"]) == 0
    data = tmp_path / "data"
    assert main(["build", str(tmp_path / "records.jsonl"), "-o", str(data), "--val-ratio", "0.3", "--seed", "1"]) == 0
    runs = tmp_path / "runs"
    assert main(["train", "--preset", "tiny_cpu", "--model", str(tiny_model_dir), "--dataset", str(data),
                 "--output-dir", str(runs), "--set", "num_train_epochs=1"]) == 0
    run_dir = next(p for p in runs.iterdir() if p.is_dir())
    merged = tmp_path / "merged model"
    capsys.readouterr()
    code = main(["export", "--adapters", str(run_dir), "-o", str(merged), "--verify", "2",
                 "--max-new-tokens", "150"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    report = json.loads((merged / "plates_verify.json").read_text(encoding="utf-8"))
    assert report["images"] == 2 and report["differing"] == 0 and report["differences"] == []
    assert "2 images answered by the checkpoint and the export, 0 differing answers" in out
    settings = json.loads((merged / "plates_generation.json").read_text(encoding="utf-8"))
    assert settings["max_pixels"] == 50176 and settings["template"] == "qwen2_5_vl"
    processor = json.loads((merged / "processor_config.json").read_text())
    assert processor["image_processor"]["size"]["longest_edge"] == 50176


def test_unanswerable_verify_images_are_refused_before_the_merge(tmp_path, capsys):
    """A missing verification image used to be found after `swift export` had written the target, and the re-run
    was then refused because the target existed; now nothing runs and nothing is written."""
    from plates.synth import make_dump
    from plates.dump import iter_files

    dump = tmp_path / "dump"
    make_dump(dump, 2, seed=1)
    present = [str(dump / rel) for rel in iter_files(dump)[:2]]
    val = tmp_path / "val.jsonl"
    rows = [{"messages": [], "images": [path]} for path in (*present, str(tmp_path / "gone.jpg"))]
    val.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ckpt = _checkpoint(tmp_path / "run")
    target = tmp_path / "run" / "checkpoint-7-merged"
    for extra in (["--dry-run"], []):
        assert main(["export", "--adapters", str(ckpt), "--verify", "3", "--verify-dataset", str(val), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "1 of the 3 verification images cannot be answered" in err[0]
        assert f"{tmp_path / 'gone.jpg'}: cannot open" in err[0]
        assert not target.exists() and not list((tmp_path / "run").glob("*.swift-export.log"))
    assert main(["export", "--adapters", str(ckpt), "--verify", "2", "--verify-dataset", str(val),
                 "--dry-run"]) == 0
