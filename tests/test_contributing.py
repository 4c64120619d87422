"""The recipes of CONTRIBUTING.md, followed step by step: add a field, a teacher backend and a preset. (The metric
recipe is exercised by tests/test_eval_stats.py::test_recipe_add_a_metric.)"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plates import resources
from plates.chat_client import Completion
from plates.cli import main
from plates.teaching import backends
from plates.teaching.backends import TeacherBackend, option, register_backend

REPO = Path(__file__).resolve().parent.parent

# --- Add a field -------------------------------------------------------------------------------------------------

NEW_FIELD = """\
  车辆年代:
    group: 车辆属性
    slug: vehicle_era
    kind: closed
    values:
      新款: [新, 新车型]
      旧款: [老款, 旧, 老车型]
"""

FIELD_SCRIPT = r"""
import json, sys
from pathlib import Path
from plates.cli import main
from plates.labels import FIELDS, VEHICLE_FIELDS, SLUGS, answer_from_labels, normalise
from plates.schema import build_schema
from plates.synth import make_dump

work = Path(sys.argv[1])
assert VEHICLE_FIELDS[-1] == "车辆年代" and "车辆年代" in FIELDS and SLUGS["车辆年代"] == "vehicle_era"
assert normalise("车辆年代", "老款").value == "旧款"
make_dump(work / "dump", 8, seed=2)
assert main(["parse", str(work / "dump"), "-o", str(work / "records.jsonl")]) == 0
record = json.loads((work / "records.jsonl").read_text(encoding="utf-8").splitlines()[0])
assert record["labels"]["车辆属性"]["车辆年代"] == "未知", record
answer = answer_from_labels(record["labels"])
assert list(answer["车辆属性"]) == list(VEHICLE_FIELDS)
schema = build_schema()
assert schema["$defs"]["vehicle"]["properties"]["车辆年代"]["enum"] == ["新款", "旧款", "未知"]
assert main(["schema", "-o", str(work / "answer.schema.json")]) == 0
assert main(["teach", str(work / "records.jsonl"), "-o", str(work / "teacher.jsonl"), "--mode", "describe"]) == 0
assert main(["build", str(work / "records.jsonl"), "-o", str(work / "data"), "--val-ratio", "0.25"]) == 0
sample = json.loads((work / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
assert "车辆年代" in json.dumps(sample, ensure_ascii=False)
rows = [json.loads(line) for line in (work / "data" / "val.jsonl").read_text(encoding="utf-8").splitlines()]
with open(work / "results.jsonl", "w", encoding="utf-8") as out:
    for row in rows:
        truth = row["messages"][-1]["content"]
        out.write(json.dumps({"response": truth, "labels": truth}, ensure_ascii=False) + "\n")
assert main(["eval", str(work / "results.jsonl"), "--json", str(work / "report.json")]) == 0
report = json.loads((work / "report.json").read_text(encoding="utf-8"))
assert "车辆年代" in report["fields"], sorted(report["fields"])
print("ok")
"""


def test_recipe_add_a_field(tmp_path):
    """A closed field added to a copy of labels/fields.yaml flows through parse, schema, teach, build and eval
    with no code change."""
    labels = tmp_path / "labels"
    shutil.copytree(resources.labels_dir(), labels)
    text = (labels / "fields.yaml").read_text(encoding="utf-8")
    anchor = "  车牌国家:\n"
    (labels / "fields.yaml").write_text(text.replace(anchor, NEW_FIELD + anchor), encoding="utf-8")
    env = {**os.environ, "PLATES_LABELS_DIR": str(labels)}
    done = subprocess.run([sys.executable, "-c", FIELD_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]


SLOTTED_FIELD = """\
  车辆年款:
    group: 车辆属性
    slug: vehicle_model_year
    slot: 4
    kind: open
    bounds: {chars: '0-9{cjk}', longest_word: 6, words: 1}
    values:
      2020款: ['2020']
      2021款: ['2021']
"""

SLOTTED_SCRIPT = r"""
import json, shutil, sys
from pathlib import Path
from plates.cli import main
from plates.labels import VEHICLE_FIELDS, VEHICLE_GROUP, answer_from_labels, slot_fields
from plates.schema import answer_validator, load_schema
from plates.synth import make_dump

work = Path(sys.argv[1])
assert VEHICLE_FIELDS[-1] == "车辆年款" and slot_fields(VEHICLE_GROUP)[-1] == "车辆年款"
make_dump(work / "dump", 4, seed=1)  # synth writes the table's grammar: 未知 in the new slot
image = next((work / "dump").rglob("*.jpg"))
(work / "named").mkdir()
plate = "车牌属性0:中国-云南省-云K CM158-蓝色-单层-燃油车"
names = {"车辆属性:梅赛德斯-奔驰-车头-小轿车-白色-2020_" + plate + "_00000001.jpg": "2020款",
         "车辆属性:丰田-车尾-SUV-黑色-1998款_" + plate + "_00000002.jpg": "1998款"}
for name in names:
    shutil.copy(image, work / "named" / name)
assert main(["parse", str(work / "named"), "-o", str(work / "named.jsonl")]) == 0
records = [json.loads(line) for line in (work / "named.jsonl").read_text(encoding="utf-8").splitlines()]
by_name = {Path(r["image"]).name: r for r in records}
for name, year in names.items():
    vehicle = by_name[name]["labels"][VEHICLE_GROUP]
    assert vehicle["车辆年款"] == year and vehicle["车辆颜色"] in ("白色", "黑色"), vehicle
assert by_name[next(iter(names))]["labels"][VEHICLE_GROUP]["车辆品牌"] == "奔驰"
assert "unknown_value: 车辆年款=1998款" in by_name[list(names)[1]]["warnings"]
assert main(["parse", str(work / "dump"), "-o", str(work / "records.jsonl")]) == 0
record = json.loads((work / "records.jsonl").read_text(encoding="utf-8").splitlines()[0])
assert record["labels"][VEHICLE_GROUP]["车辆年款"] == "未知", record
short = work / "short"
short.mkdir()
shutil.copy(image, short / ("车辆属性:丰田-车尾-SUV-黑色_" + plate + "_00000003.jpg"))
assert main(["parse", str(short), "-o", str(work / "short.jsonl"), "--rejects", str(work / "rejects.jsonl")]) in (0, 1)
reject = (work / "rejects.jsonl").read_text(encoding="utf-8")
assert "expected 5 (品牌-朝向-类型-颜色-年款)" in reject, reject

schema = load_schema()  # generated from this labels folder, not the shipped eval/answer.schema.json
year = schema["$defs"]["vehicle"]["properties"]["车辆年款"]
assert year["pattern"] == "^[0-9\\u3400-\\u4dbf\\u4e00-\\u9fff]{1,6}$" and year["maxLength"] == 6, year
validator = answer_validator(schema)
answers = [answer_from_labels(r["labels"]) for r in records]
for answer in answers:
    assert not list(validator.iter_errors(answer)), answer
assert list(validator.iter_errors({**answers[0], VEHICLE_GROUP: {**answers[0][VEHICLE_GROUP], "车辆年款": "x" * 7}}))
with open(work / "results.jsonl", "w", encoding="utf-8") as out:
    for answer in answers:
        text = json.dumps(answer, ensure_ascii=False)
        out.write(json.dumps({"response": text, "labels": text}, ensure_ascii=False) + "\n")
assert main(["eval", str(work / "results.jsonl"), "--json", str(work / "report.json")]) == 0
report = json.loads((work / "report.json").read_text(encoding="utf-8"))
assert report["schema_valid_rate"] == 1.0 and report["fields"]["车辆年款"]["accuracy"] == 1.0, report["fields"]
print("ok")
"""


def test_recipe_add_a_field_the_file_names_carry(tmp_path):
    """A vehicle field with a ``slot`` in a copy of labels/fields.yaml: parse reads it from the names that carry
    it (the brand before it still takes the pieces with '-'), synth writes it, and the generated schema and
    ``plates eval`` accept it, with no code change."""
    labels = tmp_path / "labels"
    shutil.copytree(resources.labels_dir(), labels)
    text = (labels / "fields.yaml").read_text(encoding="utf-8")
    anchor = "  车牌国家:\n"
    (labels / "fields.yaml").write_text(text.replace(anchor, SLOTTED_FIELD + anchor), encoding="utf-8")
    env = {**os.environ, "PLATES_LABELS_DIR": str(labels)}
    done = subprocess.run([sys.executable, "-c", SLOTTED_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]


# --- Add a teacher backend ---------------------------------------------------------------------------------------

class EchoBackend(TeacherBackend):
    """The recipe's example: answers every request with its prompt's first line."""

    name = "echo"
    help = "repeats the prompt's first line (an example backend)"
    model = "echo-1"
    counts_tokens = False

    @dataclasses.dataclass(frozen=True)
    class Options:
        echo_prefix: str = option("", help="put this before every text")

    def __init__(self, prefix: str):
        self.prefix = prefix

    @classmethod
    def from_options(cls, options, prompts):
        return cls(options.echo_prefix)

    def complete(self, request):
        return Completion(text=self.prefix + request.prompt.splitlines()[0])


@pytest.fixture
def echo_backend():
    register_backend("echo", f"{__name__}:EchoBackend")  # the registry line: imported only when needed
    yield EchoBackend
    backends.BACKENDS.pop(EchoBackend.name)


def test_recipe_add_a_teacher_backend(echo_backend, synth_dump, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["teach", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "echo: repeats the prompt's first line" in shown and "--backend echo:" in shown and "--echo-prefix" in shown
    records, out = tmp_path / "records.jsonl", tmp_path / "teacher.jsonl"
    assert main(["parse", str(synth_dump), "-o", str(records)]) == 0
    assert main(["teach", str(records), "-o", str(out), "--mode", "describe", "--backend", "echo",
                 "--echo-prefix", "ECHO "]) in (0, 1)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines and {line["backend"] for line in lines} == {"echo"} and {line["model"] for line in lines} == {"echo-1"}
    assert all(line["text"].startswith("ECHO ") for line in lines)
    capsys.readouterr()
    assert main(["teach", str(records), "-o", str(out), "--mode", "describe", "--echo-prefix", "x"]) == 2
    assert "--echo-prefix is an option of --backend echo, not used by --backend template" in capsys.readouterr().err
    with pytest.raises(ValueError):
        register_backend("echo", EchoBackend)  # names are unique


def test_backend_choices_come_from_the_registry(capsys):
    with pytest.raises(SystemExit):
        main(["teach", "x.jsonl", "-o", "y.jsonl", "--mode", "describe", "--backend", "nope"])
    err = capsys.readouterr().err
    for name in backends.BACKENDS:
        assert name in err


# --- Add a preset ------------------------------------------------------------------------------------------------

PRESET = """\
# Qwen2.5-VL-3B LoRA with a longer context (the recipe's example preset)
ENV:
  MAX_PIXELS: 200704
model: Qwen/Qwen2.5-VL-3B-Instruct
tuner_type: lora
max_length: 4096
num_train_epochs: 2
"""


def test_recipe_add_a_preset(tmp_path, monkeypatch, capsys):
    presets = tmp_path / "swift_args"
    shutil.copytree(resources.presets_dir(), presets)
    (presets / "qwen2_5_vl_3b_long.yaml").write_text(PRESET, encoding="utf-8")
    monkeypatch.setattr(resources, "presets_dir", lambda: presets)
    assert main(["train", "--list-presets"]) == 0
    listed = capsys.readouterr().out
    assert "qwen2_5_vl_3b_long" in listed and "longer context" in listed
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    assert main(["train", "--preset", "qwen2_5_vl_3b_long", "--dataset", str(data), "--dry-run"]) == 0
    command = capsys.readouterr().out
    assert "MAX_PIXELS=200704" in command and "--max_length 4096" in command
    (presets / "broken.yaml").write_text("# typo\nmax_lenght: 10\n", encoding="utf-8")
    assert main(["train", "--preset", "broken", "--dataset", str(data), "--dry-run"]) == 2
    assert "did you mean `max_length`" in capsys.readouterr().err
