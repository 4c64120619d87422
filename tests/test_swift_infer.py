"""The `swift infer` command plates runs (:mod:`plates.swift_infer`): what answers (a LoRA checkpoint, a model
folder, a hub id) with the template and pixel cap its run used, the generation caps, `--set` overrides that may
not fight plates' own options, and nothing secret on the command line."""

from __future__ import annotations

import json

import pytest

from plates.errors import UserError
from plates.swift_infer import adapter_parts, build_infer_command, generation_caps
from helpers import LANGUAGE_KEY, VISION_KEY, argv_pairs, lora_checkpoint as _checkpoint


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



def test_infer_logprobs_flag_reaches_swift(tiny_model_dir, tmp_path):
    from plates.swift_infer import build_infer_command

    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps({"messages": [{"role": "user", "content": "<image>?"}], "images": ["/x.jpg"]}) + "\n")
    argv, _ = build_infer_command(adapters=None, model=str(tiny_model_dir), dataset=str(val),
                                  result_path=tmp_path / "r", decoding="free", logprobs=True)
    assert argv[argv.index("--logprobs") + 1] == "true"
    argv, _ = build_infer_command(adapters=None, model=str(tiny_model_dir), dataset=str(val),
                                  result_path=tmp_path / "r", decoding="free")
    assert "--logprobs" not in argv


def test_overrides_are_passed_on_unless_they_fight_plates_own_options(tmp_path, val_file):
    """`--set` reaches ms-swift as given; the results path and an option plates already set from a flag (or the
    caller's own ``extra_options``) are refused, naming the flag to use instead."""
    common = dict(model="Qwen/Qwen2.5-VL-3B-Instruct", dataset=str(val_file), result_path=tmp_path / "r.jsonl",
                  decoding="free")
    argv, _ = build_infer_command(**common, overrides=["temperature=0", "top_k=5"])
    got = argv_pairs(argv)
    assert got["temperature"] == ["0"] and got["top_k"] == ["5"]
    refusals = [(["result_path=/tmp/x.jsonl"], {}, "--set result_path bypasses plates' own results handling"),
                (["model=other"], {}, "`model` is given twice (--set model=… and --model)"),
                (["max_new_tokens=9"], {"max_new_tokens": 8}, "(--set max_new_tokens=… and --max-new-tokens)"),
                (["write_batch_size=3"], {"extra_options": {"write_batch_size": 10}}, "and --chunk-size)")]
    for overrides, more, says in refusals:
        with pytest.raises(UserError) as refused:
            build_infer_command(**{**common, **more}, overrides=overrides)
        assert says in str(refused.value), (overrides, str(refused.value))


@pytest.mark.parametrize("flag, caps", [("--max-new-tokens", (0, None, None)), ("--batch-size", (None, -2, None)),
                                        ("--max-pixels", (None, None, 0))])
def test_a_cap_below_one_is_refused(flag, caps):
    with pytest.raises(UserError, match=f"{flag} must be a positive number, not "):
        generation_caps(*caps)
    assert generation_caps(64, None, 50176) == {"max_new_tokens": 64, "max_pixels": 50176}


def test_an_exported_model_brings_its_pixel_cap_and_no_secret_reaches_the_command(tmp_path, val_file, monkeypatch):
    """A `plates export` folder's recorded max_pixels is used like a run's; secrets in the environment (hub
    tokens, API keys) stay there: not in argv, not in the environment plates adds."""
    secrets = {"HF_TOKEN": "hf_secret_4711", "MODELSCOPE_API_TOKEN": "ms_secret_4712", "OPENAI_API_KEY": "sk-4713"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    merged = tmp_path / "合并 model"
    merged.mkdir()
    (merged / "plates_generation.json").write_text(json.dumps({"max_pixels": 100352}), encoding="utf-8")
    argv, env = build_infer_command(model=str(merged), dataset=str(val_file), result_path=tmp_path / "r.jsonl",
                                    decoding="free", gpus="0")
    got = argv_pairs(argv)
    assert got["model"] == [str(merged.resolve())] and got["max_pixels"] == ["100352"]
    assert env == {"MAX_PIXELS": "100352", "CUDA_VISIBLE_DEVICES": "0"}
    text = " ".join(argv) + " " + json.dumps(env)
    assert not [value for value in secrets.values() if value in text]
