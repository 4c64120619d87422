"""`plates train`: argv/env building against the installed ms-swift, dry-run, manifest, streaming runner."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from plates import swift_cli
from plates.cli import main
from plates.errors import UserError
from plates.launch import distributed_env
from plates.runs import find_manifest, last_checkpoint
from plates.train import available_presets, build_manifest, build_plan, load_preset, presets_dir
from helpers import argv_pairs

# The seed's command (000, section 2), verbatim but for --dataset/--output_dir, which plates supplies.
SEED_COMMAND = """
swift sft --model Qwen/Qwen2.5-VL-7B-Instruct --train_type lora --freeze_vit false --torch_dtype bfloat16
--num_train_epochs 2 --per_device_train_batch_size 3 --per_device_eval_batch_size 1 --learning_rate 1e-4
--lora_rank 8 --lora_alpha 32 --target_modules all-linear --gradient_accumulation_steps 16 --eval_steps 50
--save_steps 300 --save_total_limit 5 --logging_steps 5 --max_length 2048 --warmup_ratio 0.05
--dataloader_num_workers 4 --model_author swift --model_name swift-robot --max_pixels 1003520
"""




@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    """A `plates build`-shaped folder under a name with a space, colons (ASCII and full-width) and CJK."""
    folder = tmp_path / "数据 集:v1：最终"
    folder.mkdir()
    row = {"messages": [{"role": "user", "content": "<image>车牌?"}, {"role": "assistant", "content": "{}"}],
           "images": [str(folder / "a b:c.jpg")]}
    (folder / "train.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n" * 2, encoding="utf-8")
    (folder / "val.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def test_seed_preset_is_the_seed_recipe(dataset_dir):
    plan = build_plan("qwen2_5_vl_7b_lora", dataset_dir, environ={})
    got = argv_pairs(plan.argv[plan.argv.index("sft") + 1:])
    seed = argv_pairs(shlex.split(SEED_COMMAND)[2:])
    seed["tuner_type"] = seed.pop("train_type")
    for key, values in seed.items():
        assert key in got, key
        if key == "learning_rate":
            assert float(got[key][0]) == float(values[0])
        else:
            assert got[key] == values, key
    assert plan.env["MAX_PIXELS"] == "1003520"
    assert got["dataset"] == [str(dataset_dir / "train.jsonl")]
    assert got["val_dataset"] == [str(dataset_dir / "val.jsonl")]


@pytest.mark.parametrize("name", available_presets())
def test_every_shipped_preset_is_valid_for_the_installed_ms_swift(name, dataset_dir):
    if "rlhf_type" in load_preset(name).options:  # GRPO presets read `plates build --grpo` rows (test_grpo.py)
        from plates.grpo import grpo_row

        for split in ("train.jsonl", "val.jsonl"):
            rows = [grpo_row(json.loads(line)) for line in (dataset_dir / split).read_text("utf-8").splitlines()
                    if line.strip()]
            (dataset_dir / split).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    plan = build_plan(name, dataset_dir, model="some/model", environ={})
    assert plan.argv[plan.argv.index(plan.command) - 1].endswith(("swift", "swift.cli.main"))
    assert "--tuner_type" in plan.argv and "--train_type" not in plan.argv
    text = (presets_dir() / f"{name}.yaml").read_text(encoding="utf-8")
    assert text.startswith("#"), "presets start with a one-line summary comment"


def test_presets_cover_the_issue():
    assert {"qwen2_5_vl_7b_lora", "qwen2_5_vl_3b_lora", "qwen2_vl_2b_lora", "qwen2_5_vl_7b_lora_deepspeed",
            "tiny_cpu"} <= set(available_presets())
    assert load_preset("qwen2_5_vl_7b_lora_deepspeed").options["deepspeed"] in ("zero2", "zero3")
    assert load_preset("qwen2_vl_2b_lora").options["model"] == "Qwen/Qwen2-VL-2B-Instruct"
    tiny = load_preset("tiny_cpu")
    assert tiny.env["CUDA_VISIBLE_DEVICES"] == "" and tiny.options["freeze_vit"] is False


def test_renamed_3x_flag_is_translated(dataset_dir):
    plan = build_plan("tiny_cpu", dataset_dir, model="m", overrides=["train_type=full"], environ={})
    got = argv_pairs(plan.argv)
    assert got["tuner_type"] == ["full"] and "train_type" not in got
    assert any("train_type" in note and "tuner_type" in note for note in plan.notes)


def test_renamed_value_pt_is_transformers():
    assert swift_cli.resolve_options("infer", {"infer_backend": "pt"}) == {"infer_backend": "transformers"}


@pytest.mark.parametrize("override, suggestion", [
    ("lora_rnak=4", "lora_rank"), ("learnig_rate=1e-3", "learning_rate"), ("freeze_vitt=false", "freeze_vit"),
    ("num_train_epoch=3", "num_train_epochs"),
])
def test_unknown_key_is_rejected_with_the_closest_name(dataset_dir, override, suggestion):
    with pytest.raises(UserError, match=f"did you mean `{suggestion}`"):
        build_plan("tiny_cpu", dataset_dir, model="m", overrides=[override], environ={})


def test_unknown_key_in_a_preset_file_is_rejected(dataset_dir, tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("ENV:\n  MAX_PIXELS: 100\nmodel: m\ntuner_type: lora\nlora_alfa: 16\n", encoding="utf-8")
    with pytest.raises(UserError, match="lora_alpha"):
        build_plan(str(preset), dataset_dir, environ={})


def test_no_suggestion_for_nonsense(dataset_dir):
    with pytest.raises(UserError, match="does not know the argument `zzqqxx`") as info:
        build_plan("tiny_cpu", dataset_dir, model="m", overrides=["zzqqxx=1"], environ={})
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("override, message", [
    ("lora_rank=abc", "integer"), ("lora_rank=2.5", "integer"), ("learning_rate=fast", "number"),
    ("freeze_vit=maybe", "true or false"), ("torch_dtype=bfloat17", "bfloat16"), ("target_modules=[]", "at least"),
    ("nonsense", "key=value"),
])
def test_bad_values_are_rejected_before_launch(dataset_dir, override, message):
    with pytest.raises(UserError, match=message):
        build_plan("tiny_cpu", dataset_dir, model="m", overrides=[override], environ={})


def test_overrides_are_coerced_and_win_over_the_preset(dataset_dir):
    plan = build_plan("qwen2_5_vl_7b_lora", dataset_dir, environ={}, model="/models/本地 模型:v2", overrides=[
        "learning_rate=2e-4", "lora_rank=16", "freeze_vit=yes", "target_modules=[q_proj, v_proj]",
        "model_name=1.10", "report_to=tensorboard", "num_train_epochs=3", "max_pixels=null",
        "--deepspeed=zero3", "eval_steps=0.1"])
    got = argv_pairs(plan.argv)
    assert got["learning_rate"] == ["0.0002"] and got["lora_rank"] == ["16"] and got["freeze_vit"] == ["true"]
    assert got["target_modules"] == ["q_proj", "v_proj"]
    assert got["model_name"] == ["1.10"], "string fields keep the text as typed"
    assert got["report_to"] == ["tensorboard"] and got["num_train_epochs"] == ["3"]
    assert "max_pixels" not in got, "null drops a preset key"
    assert got["deepspeed"] == ["zero3"] and got["eval_steps"] == ["0.1"]
    assert got["model"] == ["/models/本地 模型:v2"]
    assert plan.argv.index("--model") < plan.argv.index("--tuner_type")


def test_paths_with_spaces_colons_and_cjk_stay_single_argv_items(dataset_dir, tmp_path):
    out = tmp_path / "输出 目录:a：b"
    plan = build_plan("tiny_cpu", dataset_dir, model=str(tmp_path / "tiny 模型:1"), output_dir=out, environ={})
    got = argv_pairs(plan.argv)
    assert got["dataset"] == [str(dataset_dir / "train.jsonl")]
    assert got["output_dir"] == [str(out)]
    assert got["model"] == [str(tmp_path / "tiny 模型:1")]
    assert plan.output_dir == out


def test_dry_run_output_round_trips_through_shlex(dataset_dir):
    plan = build_plan("tiny_cpu", dataset_dir, model="tiny 模型", gpus="0", environ={},
                      env_overrides=["ROOT_IMAGE_DIR=/data/图 片:x"])
    text = swift_cli.format_command(plan.argv, plan.env)
    words = shlex.split(text.replace("\\\n", " "))
    env_words = [f"{k}={v}" for k, v in plan.env.items()]
    assert words == env_words + plan.argv
    assert "CUDA_VISIBLE_DEVICES=0" in env_words and "ROOT_IMAGE_DIR=/data/图 片:x" in env_words


def test_dry_run_text_is_paste_able_into_a_real_shell(dataset_dir, tmp_path):
    """Run the printed command through bash with a program that reports its argv and environment."""
    reporter = tmp_path / "report argv.py"
    reporter.write_text("import json, os, sys\nprint(json.dumps({'argv': sys.argv[1:], 'env': {k: os.environ.get(k)"
                        " for k in ('MAX_PIXELS', 'CUDA_VISIBLE_DEVICES', 'ROOT_IMAGE_DIR')}}))\n")
    plan = build_plan("tiny_cpu", dataset_dir, model="tiny 模型:'quoted'", environ={},
                      env_overrides=["ROOT_IMAGE_DIR=/data/图 片:$HOME"])
    argv = [sys.executable, str(reporter), *plan.argv[plan.argv.index("sft"):]]
    text = swift_cli.format_command(argv, plan.env)
    done = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert report["argv"] == argv[2:]
    assert report["env"] == {"MAX_PIXELS": "50176", "CUDA_VISIBLE_DEVICES": "",
                             "ROOT_IMAGE_DIR": "/data/图 片:$HOME"}


def test_cli_dry_run_prints_and_launches_nothing(dataset_dir, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["train", "--preset", "tiny_cpu", "--model", "m", "--dataset", str(dataset_dir),
                 "--output-dir", str(out), "--dry-run", "--set", "train_type=lora"])
    captured = capsys.readouterr()
    assert code == 0
    assert "sft" in captured.out and "--tuner_type lora" in captured.out
    assert "tuner_type" in captured.err, "the rename is reported"
    assert not out.exists()


def test_cli_reports_user_errors_in_one_line(dataset_dir, capsys):
    assert main(["train", "--preset", "tiny_cpu", "--model", "m", "--dataset", str(dataset_dir),
                 "--set", "lora_rnak=4", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lora_rank" in err[0]
    assert main(["train", "--preset", "tiny_cpuu", "--dataset", str(dataset_dir)]) == 2
    assert "tiny_cpu" in capsys.readouterr().err
    assert main(["train", "--list-presets"]) == 0
    assert "qwen2_5_vl_7b_lora" in capsys.readouterr().out


def test_dataset_and_model_are_required(tmp_path, dataset_dir):
    with pytest.raises(UserError, match="no train.jsonl"):
        build_plan("tiny_cpu", tmp_path, model="m", environ={})
    with pytest.raises(UserError, match="names no model"):
        build_plan("tiny_cpu", dataset_dir, environ={})
    with pytest.raises(UserError, match="no dataset"):
        build_plan("tiny_cpu", None, model="m", environ={})


def test_missing_val_file_trains_without_validation(dataset_dir):
    (dataset_dir / "val.jsonl").unlink()
    got = argv_pairs(build_plan("tiny_cpu", dataset_dir, model="m", environ={}).argv)
    assert "val_dataset" not in got and got["dataset"] == [str(dataset_dir / "train.jsonl")]


def test_multi_gpu_and_multi_node_environment(dataset_dir):
    assert distributed_env("0,1,2,3") == {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "NPROC_PER_NODE": "4"}
    assert distributed_env("0,1,2,3", model_parallel=True) == {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    assert distributed_env("1") == {"CUDA_VISIBLE_DEVICES": "1"}
    assert distributed_env("0,1", nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29500) == {
        "CUDA_VISIBLE_DEVICES": "0,1", "NPROC_PER_NODE": "2", "NNODES": "2", "NODE_RANK": "1",
        "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    for kwargs, message in [({"gpus": "0,,x"}, "GPU indices"), ({"gpus": "0,0"}, "twice"),
                            ({"nnodes": 2, "node_rank": 0}, "master-addr"),
                            ({"nnodes": 2, "master_addr": "h"}, "node-rank"),
                            ({"nnodes": 2, "node_rank": 2, "master_addr": "h"}, "between"),
                            ({"master_port": 70000}, "port")]:
        with pytest.raises(UserError, match=message):
            distributed_env(**kwargs)
    # The DeepSpeed preset's 4 processes follow --gpus.
    plan = build_plan("qwen2_5_vl_7b_lora_deepspeed", dataset_dir, gpus="0,1", environ={})
    assert plan.env["NPROC_PER_NODE"] == "2" and plan.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    plan = build_plan("qwen2_5_vl_7b_lora_deepspeed", dataset_dir, gpus="3", environ={})
    assert "NPROC_PER_NODE" not in plan.env and plan.env["CUDA_VISIBLE_DEVICES"] == "3"


def test_preset_env_yields_to_the_callers_environment(dataset_dir):
    plan = build_plan("tiny_cpu", dataset_dir, model="m", environ={"MAX_PIXELS": "1234"})
    assert "MAX_PIXELS" not in plan.env, "an exported variable wins, as with `swift sft preset.yaml`"
    assert any("MAX_PIXELS" in note for note in plan.notes)
    plan = build_plan("tiny_cpu", dataset_dir, model="m", environ={"MAX_PIXELS": "1234"},
                      env_overrides=["MAX_PIXELS=999"])
    assert plan.env["MAX_PIXELS"] == "999", "an explicit --env wins over both"


def test_report_to_passes_through(dataset_dir):
    got = argv_pairs(build_plan("tiny_cpu", dataset_dir, model="m", overrides=["report_to=[tensorboard]"],
                            environ={}).argv)
    assert got["report_to"] == ["tensorboard"]


def test_manifest_is_complete_and_redacts_secrets(dataset_dir):
    plan = build_plan("tiny_cpu", dataset_dir, model="m", environ={},
                      env_overrides=["SWANLAB_API_KEY=sk-live-123", "HF_TOKEN=hf_abc"],
                      overrides=["hub_token=tok-456", "max_new_tokens=64"])
    manifest = build_manifest(plan, exit_code=0, started=1.0, finished=3.5,
                              environ={"OPENAI_API_KEY": "sk-env-789", "CUDA_VISIBLE_DEVICES": "0",
                                       "TOKENIZERS_PARALLELISM": "false", "HOME": "/root"})
    text = json.dumps(manifest, ensure_ascii=False)
    for secret in ("sk-live-123", "hf_abc", "tok-456", "sk-env-789"):
        assert secret not in text
    assert manifest["env"]["SWANLAB_API_KEY"] == swift_cli.REDACTED
    assert manifest["inherited_env"] == {"CUDA_VISIBLE_DEVICES": "0", "OPENAI_API_KEY": swift_cli.REDACTED,
                                         "TOKENIZERS_PARALLELISM": "false"}
    assert manifest["command"][manifest["command"].index("--hub_token") + 1] == swift_cli.REDACTED
    assert manifest["command"][manifest["command"].index("--max_new_tokens") + 1] == "64"
    assert manifest["packages"]["ms-swift"] and manifest["packages"]["transformers"]
    assert manifest["preset"]["content"] == (presets_dir() / "tiny_cpu.yaml").read_text(encoding="utf-8")
    files = {Path(f["path"]).name: f for f in manifest["dataset_files"]}
    assert files["train.jsonl"]["sha256"] == hashlib.sha256((dataset_dir / "train.jsonl").read_bytes()).hexdigest()
    assert files["train.jsonl"]["lines"] == 1 and files["val.jsonl"]["lines"] == 1
    assert manifest["max_pixels"] == 50176 and manifest["exit_code"] == 0 and manifest["duration_s"] == 2.5
    assert manifest["overrides"][0] == "hub_token=" + swift_cli.REDACTED


def test_secret_names():
    for name in ("SWANLAB_API_KEY", "HF_TOKEN", "hub_token", "--swanlab_token", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY",
                 "swanlab_secret", "APIKEY"):
        assert swift_cli.is_secret(name), name
    for name in ("TOKENIZERS_PARALLELISM", "max_new_tokens", "--max_new_tokens", "MAX_PIXELS", "MONKEYPATCH"):
        assert not swift_cli.is_secret(name), name


def test_run_streaming_passes_output_lines_and_exit_code(tmp_path, capfd):
    lines: list[str] = []
    script = "import sys; print('first 第一'); sys.stdout.write('50%\\r100%\\n'); sys.stdout.flush(); sys.exit(3)"
    code = swift_cli.run_streaming([sys.executable, "-c", script], {"PLATES_TEST_VAR": "x"}, on_line=lines.append)
    assert code == 3
    assert lines == ["first 第一", "50%", "100%"]
    assert "first 第一" in capfd.readouterr().out
    with pytest.raises(UserError, match="not found"):
        swift_cli.run_streaming([str(tmp_path / "no such program")])


def test_run_streaming_never_uses_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    code = swift_cli.run_streaming([sys.executable, "-c", "import sys; print(sys.argv[1])", f"x; touch {marker}"],
                                   echo=False)
    assert code == 0 and not marker.exists()


def test_last_checkpoint_and_manifest_lookup(tmp_path):
    run = tmp_path / "v0-20250101-000000"
    for step in (5, 40, 300):
        (run / f"checkpoint-{step}").mkdir(parents=True)
    assert last_checkpoint(run) == run / "checkpoint-300"
    (run / "last-checkpoint").symlink_to("checkpoint-40")
    assert last_checkpoint(run) == (run / "checkpoint-40").resolve()
    assert find_manifest(run / "checkpoint-40") is None
    (run / "plates_manifest.json").write_text("{}")
    assert find_manifest(run / "checkpoint-40") == run / "plates_manifest.json"


def test_swift_executable_is_found():
    command = swift_cli.swift_command()
    assert Path(command[0]).exists() or command[0] == sys.executable
    assert os.access(command[0], os.X_OK)


def test_relative_image_paths_get_their_root(dataset_dir, tmp_path):
    root = tmp_path / "图片 根:1"
    (dataset_dir / "stats.json").write_text(json.dumps({"image_paths": {"relative_to": str(root)}}))
    plan = build_plan("tiny_cpu", dataset_dir, model="m", environ={})
    assert plan.env["ROOT_IMAGE_DIR"] == str(root)
    plan = build_plan("tiny_cpu", dataset_dir, model="m", environ={"ROOT_IMAGE_DIR": "/elsewhere"})
    assert "ROOT_IMAGE_DIR" not in plan.env, "the caller's own setting is kept"
    (dataset_dir / "stats.json").write_text(json.dumps({"image_paths": "absolute"}))
    assert "ROOT_IMAGE_DIR" not in build_plan("tiny_cpu", dataset_dir, model="m", environ={}).env
