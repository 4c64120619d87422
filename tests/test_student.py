"""The student contract (`plates.student`): the question and system text a model is trained with travel from
`plates build --prompt/--system` through stats.json and the run manifest to every command that asks the model
(infer, predict, serve, export). The slow test trains once (real `swift sft`, tiny model) and checks what each
command really sends."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from plates import swift_cli
from plates.build import BuildOptions, build_dataset
from plates.cli import main
from plates.io import read_jsonl, write_json, write_jsonl
from plates.runs import MANIFEST_NAME
from plates.student import (
    EXTRACTION_PROMPT, GROUNDING_PROMPT, IMAGE_TAG, REASON_PROMPT, StudentContract, cot_target, for_dataset, for_run,
    split_reasoning,
)
from plates.train import build_manifest, build_plan

PROMPT = "读出这辆车和它的车牌,回答一个JSON对象。"
SYSTEM = "你是车辆档案员:只写看得见的东西。"


@pytest.fixture(scope="module")
def records_file(tmp_path_factory) -> Path:
    from plates.synth import make_dump

    base = tmp_path_factory.mktemp("student") / "数据 集"
    make_dump(base / "dump", 8, seed=4)
    assert main(["parse", str(base / "dump"), "-o", str(base / "records.jsonl")]) == 0
    return base / "records.jsonl"


def _teacher_file(records_file: Path, folder: Path) -> Path:
    lines = []
    for i, record in enumerate(read_jsonl(records_file)):
        for mode, text in (("reason", "车头朝前,车牌清楚。"), ("describe", "一辆车,车牌清楚。")):
            lines.append({"key": f"k{i}{mode}", "image": record["image"], "mode": mode, "question": None,
                          "text": text, "verdict": "ok"})
    path = folder / "teach.jsonl"
    write_jsonl(path, lines)
    return path


def test_cot_format_round_trips():
    answer = json.dumps({"车辆属性": {}, "车牌属性": []}, ensure_ascii=False)
    text = cot_target("  车头朝向镜头。\n\n蓝色车牌,单层。 ", answer)
    assert text == "车头朝向镜头。\n\n蓝色车牌,单层。\n\n" + answer
    assert split_reasoning(text) == ("车头朝向镜头。\n\n蓝色车牌,单层。", answer)
    assert split_reasoning(answer) == ("", answer)
    assert cot_target("", answer) == answer


def test_build_prompt_and_system_reach_every_sample_and_stats(records_file, tmp_path):
    teach = _teacher_file(records_file, tmp_path)
    plain, custom = tmp_path / "plain", tmp_path / "custom"
    assert main(["build", str(records_file), "-o", str(plain), "--val-ratio", "0"]) == 0
    assert main(["build", str(records_file), "-o", str(custom), "--val-ratio", "0", "--descriptions", str(teach),
                 "--prompt", f"  {PROMPT}\n", "--system", SYSTEM]) == 0
    stats = json.loads((plain / "stats.json").read_text(encoding="utf-8"))
    assert stats["prompts"] == {"extract": EXTRACTION_PROMPT} and stats["system"] is None
    assert all(s["messages"][0] == {"role": "user", "content": IMAGE_TAG + EXTRACTION_PROMPT}
               for s in read_jsonl(plain / "train.jsonl"))

    stats = json.loads((custom / "stats.json").read_text(encoding="utf-8"))
    assert stats["prompts"] == {"extract": PROMPT, "reason": REASON_PROMPT} and stats["system"] == SYSTEM
    questions = {}
    for sample in read_jsonl(custom / "train.jsonl"):
        system, user, answer = sample["messages"]
        assert system == {"role": "system", "content": SYSTEM} and answer["role"] == "assistant"
        question = user["content"].removeprefix(IMAGE_TAG)
        questions[question] = questions.get(question, 0) + 1
        if question == REASON_PROMPT:
            assert json.loads(split_reasoning(answer["content"])[1])
    n = len(read_jsonl(records_file))
    assert questions.pop(PROMPT) == n and questions.pop(REASON_PROMPT) == n
    assert sum(questions.values()) == n and EXTRACTION_PROMPT not in questions  # the describe questions
    assert for_dataset(custom) == StudentContract(prompt=PROMPT, system=SYSTEM, reason_prompt=REASON_PROMPT,
                                                  source=str(custom / "stats.json"))


def test_a_prompt_replaces_the_grounding_question_too(records_file):
    records = read_jsonl(records_file)
    dataset = build_dataset(records, BuildOptions(val_ratio=0, grounding=True, prompt=PROMPT))
    assert {s["messages"][0]["content"] for s in dataset.train} == {IMAGE_TAG + PROMPT}
    assert dataset.stats["prompts"] == {"extract": PROMPT} and dataset.stats["grounding"]["prompt"] == PROMPT
    contract = StudentContract.from_stats(dataset.stats, "stats.json")
    assert contract.grounding and contract.question() == PROMPT
    assert contract.question(grounding=False) == EXTRACTION_PROMPT  # the other task: its default question
    legacy = {"prompts": {"extract": EXTRACTION_PROMPT, "reason": REASON_PROMPT},
              "grounding": {"on": True, "prompt": GROUNDING_PROMPT}}  # stats.json before --prompt existed
    assert StudentContract.from_stats(legacy, "old").question() == GROUNDING_PROMPT


@pytest.mark.parametrize("flag, text", [("--prompt", "  "), ("--prompt", "<image>读车牌"), ("--system", "")])
def test_bad_prompt_or_system_is_a_one_line_error(records_file, tmp_path, capsys, flag, text):
    assert main(["build", str(records_file), "-o", str(tmp_path / "out"), flag, text]) == 2
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_train_manifest_records_the_question_and_system_text(records_file, tmp_path):
    data = tmp_path / "data"
    assert main(["build", str(records_file), "-o", str(data), "--val-ratio", "0.3", "--prompt", PROMPT,
                 "--system", SYSTEM]) == 0
    manifest = build_manifest(build_plan("tiny_cpu", data, model="m", environ={}))
    assert manifest["student"] == {"prompt": PROMPT, "system": SYSTEM, "grounding": False, "reason_prompt": None,
                                   "source": str(data / "stats.json")}
    (data / "stats.json").unlink()  # a hand-made dataset: its samples carry their own questions
    assert build_manifest(build_plan("tiny_cpu", data, model="m", environ={}))["student"] is None


def _fake_run(folder: Path, student: dict | None = None, dataset: Path | None = None) -> Path:
    """A run folder as `plates train` leaves it, for the manifest lookups (no weights are read)."""
    checkpoint = folder / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    write_json(folder / "args.json", {"template": "qwen2_5_vl", "model": "m"})
    manifest = {"run_dir": str(folder), "last_checkpoint": str(checkpoint),
                "dataset_files": [{"path": str(dataset / "train.jsonl")}] if dataset else []}
    write_json(folder / MANIFEST_NAME, {**manifest, **({"student": student} if student else {})})
    return checkpoint


def test_for_run_reads_the_manifest_then_the_dataset_then_says_it_uses_the_default(records_file, tmp_path):
    notes: list[str] = []
    assert for_run("Qwen/Qwen2.5-VL-7B-Instruct", notes) == StudentContract() and "default prompt" in notes[0]
    checkpoint = _fake_run(tmp_path / "run", {"prompt": PROMPT, "system": SYSTEM, "grounding": False})
    for source in (checkpoint, checkpoint.parent):
        contract = for_run(source, notes)
        assert (contract.prompt, contract.system, contract.recorded) == (PROMPT, SYSTEM, True)
    data = tmp_path / "data"
    assert main(["build", str(records_file), "-o", str(data), "--prompt", PROMPT]) == 0
    older = _fake_run(tmp_path / "older run", dataset=data)  # trained before manifests had a student block
    assert for_run(older).prompt == PROMPT and len(notes) == 1


def test_export_records_the_runs_question_and_serve_asks_with_it(tmp_path, capsys):
    from plates.export import GENERATION_FILE, record_generation_settings

    checkpoint = _fake_run(tmp_path / "run", {"prompt": PROMPT, "system": SYSTEM, "grounding": False})
    merged = tmp_path / "merged"
    merged.mkdir()
    settings = record_generation_settings(merged, checkpoint)
    assert settings["prompt"] == PROMPT and settings["system"] == SYSTEM
    assert json.loads((merged / GENERATION_FILE).read_text(encoding="utf-8"))["prompt"] == PROMPT
    assert for_run(merged).prompt == PROMPT  # what `export --verify` (predict --model MERGED) asks with
    assert main(["serve", "--model", str(merged), "--print-prompt"]) == 0
    shown = capsys.readouterr()
    assert shown.out.strip() == PROMPT and SYSTEM in shown.err
    assert main(["serve", "--model", str(merged), "--dry-run"]) == 0
    words = shlex.split(capsys.readouterr().out.replace("\\\n", " "))
    assert words[words.index("--system") + 1] == SYSTEM


def test_predict_endpoint_asks_with_the_served_runs_question(tmp_path, capsys):
    from plates.synth import make_dump
    from test_teach import FakeOpenAI

    make_dump(tmp_path / "imgs", 2, seed=6)
    checkpoint = _fake_run(tmp_path / "run", {"prompt": PROMPT, "system": SYSTEM, "grounding": False})
    with FakeOpenAI() as server:
        assert main(["predict", str(tmp_path / "imgs"), "-o", str(tmp_path / "a.jsonl"), "--endpoint", server.url,
                     "--prompt-from", str(checkpoint)]) == 0
        assert main(["predict", str(tmp_path / "imgs"), "-o", str(tmp_path / "b.jsonl"), "--endpoint",
                     server.url]) == 0
        asked = [request["body"]["messages"] for request in server.chat_requests]
    assert "--prompt-from" in capsys.readouterr().err  # the second run's note
    assert len(asked) == 4
    for messages in asked[:2]:
        assert messages[0] == {"role": "system", "content": SYSTEM}
        assert messages[1]["content"][-1] == {"type": "text", "text": PROMPT}
    for messages in asked[2:]:
        assert [m["role"] for m in messages] == ["user"]
        assert messages[0]["content"][-1] == {"type": "text", "text": EXTRACTION_PROMPT}
    assert main(["predict", str(tmp_path / "imgs"), "-o", str(tmp_path / "c.jsonl"), "--model", "m",
                 "--prompt-from", str(checkpoint)]) == 2


# ---------------------------------------------------------------------------------------------- one real run


@pytest.fixture(scope="module")
def trained(records_file, tiny_model_dir, tmp_path_factory):
    """One real `swift sft` (2 steps, tiny model) on a dataset built with --prompt and --system."""
    base = tmp_path_factory.mktemp("trained")
    data = base / "data"
    assert main(["build", str(records_file), "-o", str(data), "--val-ratio", "0.4", "--prompt", PROMPT,
                 "--system", SYSTEM]) == 0
    assert main(["train", "--preset", "tiny_cpu", "--model", str(tiny_model_dir), "--dataset", str(data),
                 "--output-dir", str(base / "runs"), "--set", "max_steps=2"]) == 0
    return data, next((base / "runs").glob("v*"))


@pytest.mark.slow
def test_a_run_trained_with_build_prompt_is_answered_with_that_prompt(trained, tmp_path, capsys, monkeypatch):
    data, run_dir = trained
    manifest = json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["student"]["prompt"] == PROMPT and manifest["student"]["system"] == SYSTEM

    results = tmp_path / "infer.jsonl"  # infer: ms-swift's result rows hold the messages it was sent
    assert main(["infer", "--adapters", str(run_dir), "--dataset", str(data), "-o", str(results),
                 "--max-new-tokens", "16", "--decoding", "free"]) == 0
    rows = read_jsonl(results)
    assert len(rows) == len(read_jsonl(data / "val.jsonl")) >= 1
    for row in rows:
        assert row["messages"][0] == {"role": "system", "content": SYSTEM}
        assert row["messages"][1]["role"] == "user" and PROMPT in row["messages"][1]["content"]

    handed: list[dict] = []  # predict: the dataset it hands to `swift infer`, read as ms-swift starts
    real_run_swift = swift_cli.run_swift

    def reading_run_swift(argv, *args, **kwargs):
        handed.extend(read_jsonl(argv[argv.index("--val_dataset") + 1]))
        return real_run_swift(argv, *args, **kwargs)

    monkeypatch.setattr(swift_cli, "run_swift", reading_run_swift)
    images = sorted({sample["images"][0] for sample in read_jsonl(data / "val.jsonl")})
    predictions = tmp_path / "predict.jsonl"
    assert main(["predict", *images, "-o", str(predictions), "--adapters", str(run_dir), "--max-new-tokens", "16",
                 "--decoding", "free"]) == 0
    assert len(read_jsonl(predictions)) == len(images) == len(handed)
    assert all(s["messages"] == [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": IMAGE_TAG + PROMPT}] for s in handed), handed
    monkeypatch.undo()

    capsys.readouterr()  # serve: the prompt clients send, and the system text the server adds
    assert main(["serve", "--adapters", str(run_dir), "--print-prompt"]) == 0
    assert capsys.readouterr().out.strip() == PROMPT
    assert main(["serve", "--adapters", str(run_dir), "--dry-run"]) == 0
    words = shlex.split(capsys.readouterr().out.replace("\\\n", " "))
    assert words[words.index("--system") + 1] == SYSTEM
