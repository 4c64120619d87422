"""GRPO: plates' rewards are `plates eval`'s per-answer scores, `plates build --grpo` rows, the rlhf presets'
`swift rlhf` command lines and checks. The real CPU run is in test_grpo_swift.py (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plates.cli import main
from plates.errors import UserError
from plates.evaluation.extract import JSON, UNPARSEABLE
from plates.grpo import REWARDS, checkpoint_model, grpo_row, plugin_path, reward_classes
from plates.io import read_jsonl
from plates.train import build_manifest, build_plan
from helpers import argv_pairs

REFERENCE = {"车辆属性": {"车辆品牌": "东风", "车辆类型": "重型货车", "车辆颜色": "黑色", "车辆朝向": "背面"},
             "车牌属性": {"车牌国家": "中国", "车牌省份": "上海市", "车牌号码": "沪JG4011", "车牌颜色": "黄色",
                      "车牌层数": "双层车牌", "车牌用途": "货车车牌"}}
SOLUTION = json.dumps(REFERENCE, ensure_ascii=False)


def _variant(**changes) -> dict:
    answer = json.loads(SOLUTION)
    for key, value in changes.items():
        group = "车辆属性" if key in answer["车辆属性"] else "车牌属性"
        answer[group][key] = value
    return answer


def _dumps(answer) -> str:
    return json.dumps(answer, ensure_ascii=False)


# name -> (completion, expected (schema, fields, plate_chars)); 10 known reference fields, a 7-character plate
COMPLETIONS = {
    "right": (SOLUTION, (1.0, 1.0, 1.0)),
    "one field wrong": (_dumps(_variant(车辆颜色="白色")), (1.0, 0.9, 1.0)),
    "plate off by one character": (_dumps(_variant(车牌号码="沪JG4017")), (1.0, 0.9, 1 - 1 / 7)),
    "not JSON": ("车牌是沪JG4011,黑色东风重型货车", (0.0, 0.0, 0.0)),
    "schema-invalid (extra key)": (_dumps({**REFERENCE, "备注": "无"}), (0.0, 1.0, 1.0)),
    "right but in a code fence": (f"```json\n{SOLUTION}\n```", (0.5, 1.0, 1.0)),
    "truncated JSON": (SOLUTION[:60], None),
}


@pytest.fixture(scope="module")
def eval_details(tmp_path_factory) -> list[dict]:
    """`plates eval --details` on the crafted answers, one results line each."""
    folder = tmp_path_factory.mktemp("eval")
    results = folder / "results.jsonl"
    results.write_text("".join(json.dumps({"response": completion, "labels": SOLUTION}, ensure_ascii=False) + "\n"
                               for completion, _ in COMPLETIONS.values()), encoding="utf-8")
    details = folder / "details.jsonl"
    assert main(["eval", str(results), "--details", str(details)]) == 0
    rows = read_jsonl(details)
    assert len(rows) == len(COMPLETIONS)
    return rows


@pytest.fixture(scope="module")
def swift_orms() -> dict:
    """ms-swift's reward registry after it imported plates' plugin file, as `--external_plugins` does."""
    from swift.rewards import orms
    from swift.utils import import_external_file

    import_external_file(str(plugin_path()))
    return orms


def test_rewards_equal_what_plates_eval_details_says(eval_details, swift_orms):
    completions = [completion for completion, _ in COMPLETIONS.values()]
    # as ms-swift's trainer calls a reward: the completions, then every dataset column by name
    rewards = {name: swift_orms[name]()(completions, solution=[SOLUTION] * len(completions),
                                        images=[["a.jpg"]] * len(completions))
               for name in REWARDS}
    for k, (case, (_, expected)) in enumerate(COMPLETIONS.items()):
        scores = eval_details[k]["scores"]
        got = {REWARDS[name]: rewards[name][k] for name in REWARDS}
        assert got == scores, case
        if expected is not None:
            assert (got["schema"], got["fields"]) == expected[:2], case
            assert got["plate_chars"] == pytest.approx(expected[2]), case


def test_details_scores_follow_the_parse_and_schema_verdicts(eval_details):
    by_case = dict(zip(COMPLETIONS, eval_details))
    assert by_case["not JSON"]["parse"] == UNPARSEABLE
    assert by_case["schema-invalid (extra key)"]["schema_valid"] is False
    assert by_case["right but in a code fence"]["parse"] != JSON
    assert by_case["right but in a code fence"]["schema_valid"] is True
    truncated = by_case["truncated JSON"]
    assert truncated["schema_valid"] is False and truncated["scores"]["schema"] == 0.0


def test_a_reward_without_a_solution_column_says_how_to_get_one():
    cls = reward_classes()["plates_fields"]
    with pytest.raises(ValueError, match="plates build --grpo"):
        cls()(["{}"])


def test_grpo_row_moves_the_answer_to_solution():
    sample = {"messages": [{"role": "user", "content": "<image>车牌?"}, {"role": "assistant", "content": SOLUTION}],
              "images": ["/data/a b.jpg"]}
    row = grpo_row(sample)
    assert row == {"messages": [{"role": "user", "content": "<image>车牌?"}], "images": ["/data/a b.jpg"],
                   "solution": SOLUTION}
    assert sample["messages"][-1]["role"] == "assistant", "the input sample is left as it was"
    with pytest.raises(ValueError):
        grpo_row({"messages": [{"role": "user", "content": "<image>?"}], "images": []})


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    from plates.synth import make_dump

    base = tmp_path_factory.mktemp("grpo build")
    make_dump(base / "dump 图:1", 8, seed=5)
    out = base / "records.jsonl"
    assert main(["parse", str(base / "dump 图:1"), "-o", str(out)]) == 0
    return out


def test_build_grpo_writes_prompt_rows_with_the_reference_answer(records, tmp_path):
    plain, grpo = tmp_path / "sft", tmp_path / "grpo"
    assert main(["build", str(records), "-o", str(plain), "--val-ratio", "0.25"]) == 0
    assert main(["build", str(records), "-o", str(grpo), "--val-ratio", "0.25", "--grpo"]) == 0
    for split in ("train", "val"):
        sft_rows, grpo_rows = read_jsonl(plain / f"{split}.jsonl"), read_jsonl(grpo / f"{split}.jsonl")
        assert len(grpo_rows) == len(sft_rows) > 0
        for sft, row in zip(sft_rows, grpo_rows):
            assert [m["role"] for m in row["messages"]] == ["user"]
            assert row["messages"][0]["content"].startswith("<image>")
            assert row["images"] == sft["images"] and Path(row["images"][0]).is_file()
            assert row["solution"] == sft["messages"][-1]["content"]
    assert read_jsonl(grpo / "val_records.jsonl") == read_jsonl(plain / "val_records.jsonl")
    assert json.loads((grpo / "stats.json").read_text(encoding="utf-8"))["layout"].startswith("grpo")


def test_build_grpo_refuses_unverifiable_tasks(records, tmp_path, capsys):
    teach = tmp_path / "teach.jsonl"
    teach.write_text("", encoding="utf-8")
    assert main(["build", str(records), "-o", str(tmp_path / "o"), "--grpo", "--descriptions", str(teach)]) == 2
    assert "--grpo" in capsys.readouterr().err
    assert not (tmp_path / "o" / "train.jsonl").exists()


# ---- plates train with the GRPO presets ------------------------------------------------------------------------


@pytest.fixture
def grpo_dataset(tmp_path) -> Path:
    folder = tmp_path / "数据 grpo:1"
    folder.mkdir()
    row = {"messages": [{"role": "user", "content": "<image>车牌?"}], "images": [str(folder / "a b.jpg")],
           "solution": SOLUTION}
    for name in ("train.jsonl", "val.jsonl"):
        (folder / name).write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("preset", ["tiny_cpu_grpo", "qwen2_5_vl_7b_grpo"])
def test_grpo_presets_print_a_swift_rlhf_command(preset, grpo_dataset):
    plan = build_plan(preset, grpo_dataset, model="some/model", environ={})
    assert plan.command == "rlhf" and plan.argv[plan.argv.index("rlhf") - 1].endswith(("swift", "swift.cli.main"))
    got = argv_pairs(plan.argv[plan.argv.index("rlhf") + 1:])
    assert got["rlhf_type"] == ["grpo"]
    assert got["reward_funcs"] == list(REWARDS)
    assert len(got["reward_weights"]) == len(REWARDS)
    assert any(p.endswith("grpo_plugin.py") and Path(p).is_file() for p in got["external_plugins"])
    assert got["dataset"] == [str(grpo_dataset / "train.jsonl")]
    assert got["tuner_type"] == ["lora"] and got["freeze_vit"] == ["false"]
    assert int(got["num_generations"][0]) >= 2
    if preset == "qwen2_5_vl_7b_grpo":
        assert got["use_vllm"] == ["true"] and got["vllm_mode"] == ["colocate"]
    else:
        assert got["use_vllm"] == ["false"] and plan.env["CUDA_VISIBLE_DEVICES"] == ""


def test_cli_dry_run_prints_the_rlhf_command(grpo_dataset, capsys):
    assert main(["train", "--preset", "qwen2_5_vl_7b_grpo", "--dataset", str(grpo_dataset), "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "swift rlhf" in out.out and "--rlhf_type grpo" in out.out
    assert "plates_plate_chars x1" in out.err


@pytest.mark.parametrize("override, message", [
    ("num_generation=4", "num_generations"),
    ("reward_weights=[1,2]", "3 rewards"),
    ("reward_funcs=[plates_schema,plates_plate_char]", "plates_plate_chars"),
    ("beta=abc", "number"),
    ("reward_funcs=[plates_schema,acuracy,plates_plate_chars]", "did you mean 'accuracy'"),
])
def test_grpo_typos_and_mismatches_fail_before_launch(override, message, grpo_dataset):
    with pytest.raises(UserError, match=message):
        build_plan("tiny_cpu_grpo", grpo_dataset, model="m", overrides=[override], environ={})


def test_a_sft_dataset_is_refused_with_the_build_flag_to_use(grpo_dataset):
    row = {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": SOLUTION}],
           "images": ["x.jpg"]}
    (grpo_dataset / "train.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="plates build --grpo"):
        build_plan("tiny_cpu_grpo", grpo_dataset, model="m", environ={})


def test_starting_from_an_sft_checkpoint(grpo_dataset, tmp_path):
    checkpoint = tmp_path / "v0-1 run" / "checkpoint-6"
    checkpoint.mkdir(parents=True)
    (checkpoint.parent / "args.json").write_text(json.dumps({"model": "/models/tiny 模型"}), encoding="utf-8")
    assert checkpoint_model(checkpoint) == "/models/tiny 模型"
    plan = build_plan("tiny_cpu_grpo", grpo_dataset, adapters=str(checkpoint), environ={})
    got = argv_pairs(plan.argv[plan.argv.index("rlhf") + 1:])
    assert got["model"] == ["/models/tiny 模型"]
    assert got["adapters"] == [str(checkpoint)] and got["ref_adapters"] == [str(checkpoint)]
    with pytest.raises(UserError, match="twice"):
        build_plan("tiny_cpu_grpo", grpo_dataset, adapters=str(checkpoint), overrides=[f"adapters={checkpoint}"],
                   environ={})


def test_manifest_records_rewards_and_weights(grpo_dataset):
    plan = build_plan("tiny_cpu_grpo", grpo_dataset, model="m", overrides=["reward_weights=[0.5,1,2]"], environ={})
    manifest = build_manifest(plan, environ={})
    assert manifest["rlhf"]["type"] == "grpo"
    assert manifest["rlhf"]["rewards"] == {"plates_schema": 0.5, "plates_fields": 1.0, "plates_plate_chars": 2.0}
    sft = build_manifest(build_plan("tiny_cpu", grpo_dataset, model="m", environ={}), environ={})
    assert "rlhf" not in sft


def test_vllm_rollouts_need_vllm_where_the_run_starts(grpo_dataset):
    import importlib.util

    from plates.train import check_launchable

    plan = build_plan("qwen2_5_vl_7b_grpo", grpo_dataset, environ={})
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(UserError, match="use_vllm=false"):
            check_launchable(plan)
    else:
        check_launchable(plan)
    plan = build_plan("qwen2_5_vl_7b_grpo", grpo_dataset, overrides=["use_vllm=false"], environ={})
    check_launchable(plan)
    assert "vllm_mode" not in plan.options, "ms-swift refuses vllm_mode without use_vllm"
