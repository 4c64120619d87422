"""plates.build_output: the files `plates build` writes as samples arrive, and the small helpers around them.

Covered elsewhere: the sharegpt arrays of a real build equal ``json.dump(indent=1)`` and dataset_info.json is
merged with other datasets' entries (tests/test_build.py, tests/test_safety.py). Here: the writers on their own,
the file sink against the list sink, the label tally, and the helpers' refusals.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from plates.build_output import FileSink, JsonArrayWriter, LabelTally, ListSink, check_warning_codes, \
    earlier_sources, labels_version, merged_dataset_info, sharegpt_dataset_info, to_sharegpt
from plates.errors import UserError
from plates.io import read_jsonl, sha256_file
from plates.labels import PLATE_GROUP, VEHICLE_GROUP
from plates.resources import labels_dir

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                    max_leaves=10)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(JSON, max_size=4))
def test_json_array_writer_writes_what_json_dump_writes(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("array") / "rows.json"
    with path.open("w", encoding="utf-8") as handle:
        writer = JsonArrayWriter(handle)
        for row in rows:
            writer.add(row)
        writer.close()
    assert path.read_text(encoding="utf-8") == json.dumps(rows, ensure_ascii=False, indent=1) + "\n"


def _sample(text: str) -> dict:
    return {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "<image>" + text},
                         {"role": "assistant", "content": "{}"}], "images": [f"/d/车 {text}.jpg"]}


def test_the_file_sink_writes_what_the_list_sink_keeps(tmp_path):
    adds = [("train", [_sample("a"), _sample("b")], {"image": "a"}), ("val", [_sample("c"), _sample("d")],
            {"image": "c"}), ("train", [], {"image": "e"}), ("val", [_sample("f")], {"image": "f"})]
    kept = ListSink()
    names = {"train": "train_sharegpt.json", "val": "val_sharegpt.json"}
    with FileSink(tmp_path, names) as sink:
        for side, samples, record in adds:
            sink.add(side, samples, record)
            kept.add(side, samples, record)
    assert read_jsonl(tmp_path / "train.jsonl") == kept.train
    assert read_jsonl(tmp_path / "val.jsonl") == kept.val
    assert read_jsonl(tmp_path / "val_records.jsonl") == kept.val_records == [{"image": "c"}] * 2 + [{"image": "f"}]
    assert json.loads((tmp_path / "val_sharegpt.json").read_text(encoding="utf-8")) == [
        to_sharegpt(s) for s in kept.val]
    assert to_sharegpt(_sample("a"))["conversations"][1] == {"from": "human", "value": "<image>a"}


def test_a_sink_left_by_an_exception_closes_its_files_without_finishing_them(tmp_path):
    with pytest.raises(RuntimeError):
        with FileSink(tmp_path, {"train": "train_sharegpt.json"}) as sink:
            sink.add("train", [_sample("a")], {"image": "a"})
            raise RuntimeError("interrupted")
    assert all(handle.closed for handle in sink.handles)
    text = (tmp_path / "train_sharegpt.json").read_text(encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)  # a staging file that replace_file_set discards, never a valid-looking short array


def test_label_tally_counts_vehicles_plates_and_plate_counts():
    vehicle = {"车辆品牌": "东风", "车辆类型": "重型货车", "车辆颜色": "黑色", "车辆朝向": "背面"}
    plate = {"车牌国家": "中国", "车牌省份": "上海市", "车牌号码": "沪JG4011", "车牌颜色": "黄色",
             "车牌层数": "双层车牌", "车牌用途": "货车车牌"}
    tally = LabelTally()
    tally.add({"labels": {VEHICLE_GROUP: vehicle, PLATE_GROUP: [plate, {**plate, "车牌颜色": "蓝色"}]}})
    tally.add({"labels": {VEHICLE_GROUP: {**vehicle, "车辆颜色": "白色"}, PLATE_GROUP: []}})
    result = tally.result()
    assert result["车辆颜色"] == {"黑色": 1, "白色": 1} and result["车辆品牌"] == {"东风": 2}
    assert result["车牌颜色"] == {"黄色": 1, "蓝色": 1} and result["车牌省份"] == {"上海市": 2}
    assert result["plates_per_image"] == {"0": 1, "2": 1}
    assert "车牌号码" not in result, "plate numbers are not a distribution worth listing"


def test_dataset_info_and_earlier_sources(tmp_path):
    ours = sharegpt_dataset_info("plates", {"train": "train_sharegpt.json", "val": "val_sharegpt.json"})
    assert set(ours) == {"plates_train", "plates_val"} and ours["plates_val"]["file_name"] == "val_sharegpt.json"
    info = tmp_path / "dataset_info.json"
    assert merged_dataset_info(info, {}) is None
    info.write_bytes("\ufeff".encode() + json.dumps({"old_train": ours["plates_train"]}).encode())
    assert merged_dataset_info(info, {}) is None, "our own entries under an old name go"
    info.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(UserError, match="not a JSON object"):
        merged_dataset_info(info, ours)
    stats = {"sources": {"records": {"path": "/in/records.jsonl"},
                         "descriptions": [{"path": "/in/teacher.jsonl"}, {"sha256": "x"}]}}
    (tmp_path / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
    assert [str(p) for p in earlier_sources(tmp_path)] == ["/in/records.jsonl", "/in/teacher.jsonl"]
    for broken in ("{", '{"sources": []}', '{"sources": {"records": "x"}}'):
        (tmp_path / "stats.json").write_text(broken, encoding="utf-8")
        assert earlier_sources(tmp_path) == [], broken
    assert earlier_sources(tmp_path / "missing") == []


def test_warning_codes_and_label_versions(tmp_path, monkeypatch):
    check_warning_codes([], [])
    check_warning_codes(["my_code"], [{"warnings": ["my_code: found in a record"]}])
    with pytest.raises(UserError) as raised:
        check_warning_codes(["no_such_code"], [{"warnings": ["my_code: x"]}])
    message = str(raised.value)
    assert message.startswith("--exclude-warning no_such_code: no such warning code; known codes: ")
    assert "my_code" in message and "\n" not in message
    copy = tmp_path / "labels"
    shutil.copytree(labels_dir(), copy)
    fields = yaml.safe_load((copy / "fields.yaml").read_text(encoding="utf-8"))
    (copy / "fields.yaml").write_text((copy / "fields.yaml").read_text(encoding="utf-8") + "\n# edited\n",
                                      encoding="utf-8")
    monkeypatch.setenv("PLATES_LABELS_DIR", str(copy))
    versions = labels_version()
    assert versions["fields.yaml"] == {"version": fields["version"], "sha256": sha256_file(copy / "fields.yaml")}
    assert versions["plates.yaml"]["sha256"] == sha256_file(copy / "plates.yaml")
