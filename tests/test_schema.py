import json

import pytest
from jsonschema import Draft202012Validator

from plates.cli import main
from plates.labels import FIELDS, OPTIONAL_PLATE_FIELDS, PLATE_BOX, UNKNOWN, answer_from_labels, load_vocabularies
from plates.schema import build_schema, load_schema, render_schema, schema_path

VEHICLE = {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"}
PLATE = {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云NEW902", "车牌颜色": "蓝色",
         "车牌层数": "单层车牌", "车牌用途": "燃油车车牌"}


def field_schemas(schema):
    defs = schema["$defs"]
    return {**defs["vehicle"]["properties"], **defs["plate"]["properties"]}


def test_committed_schema_is_generated_from_labels():
    assert schema_path().read_text(encoding="utf-8") == render_schema(build_schema()), \
        "eval/answer.schema.json is stale: run `plates schema`"
    assert load_schema() == build_schema()


def test_schema_is_draft_2020_12_with_vocabulary_enums():
    schema = build_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    vocab = load_vocabularies()
    props = field_schemas(schema)
    assert set(props) == set(FIELDS) | set(OPTIONAL_PLATE_FIELDS)
    assert schema["$defs"]["plate"]["required"] == [f for f in FIELDS if f in PLATE]
    for field in FIELDS:
        if vocab[field].free_text or vocab[field].open:
            assert "enum" not in props[field]
        else:
            assert props[field]["enum"] == [*vocab[field].canonical, UNKNOWN]
    assert props["车牌层数"]["enum"] == ["单层车牌", "双层车牌", UNKNOWN]
    assert "东风" in props["车辆品牌"]["examples"]


@pytest.mark.parametrize("plates", [[], [PLATE], [PLATE, {**PLATE, "车牌号码": "云A12345"}]])
def test_answers_for_no_one_and_several_plates_are_valid(plates):
    answer = answer_from_labels({"车辆属性": VEHICLE, "车牌属性": plates})
    validator = Draft202012Validator(load_schema())
    assert list(validator.iter_errors(answer)) == []
    assert isinstance(answer["车牌属性"], dict if len(plates) == 1 else list)


def test_seed_outputs_validate_and_synonyms_do_not():
    validator = Draft202012Validator(load_schema())
    seed_middle_east = {"车辆属性": VEHICLE, "车牌属性": {**PLATE, "车牌国家": "阿布扎比", "车牌省份": UNKNOWN,
                                                      "车牌号码": "14 11586", "车牌颜色": "白色",
                                                      "车牌用途": "私家车车牌"}}
    assert validator.is_valid(seed_middle_east)
    assert validator.is_valid({"车辆属性": {**VEHICLE, "车辆品牌": "某新品牌"}, "车牌属性": []})  # open field
    bad = {"车辆属性": VEHICLE, "车牌属性": {**PLATE, "车牌层数": "单层"}}
    assert [e.validator for e in validator.iter_errors(bad)] == ["enum"]
    assert not validator.is_valid({"车辆属性": VEHICLE, "车牌属性": "无"})
    assert not validator.is_valid({"车辆属性": VEHICLE, "车牌属性": [PLATE, "x"]})
    assert not validator.is_valid({"车辆属性": VEHICLE})
    assert not validator.is_valid({"车辆属性": VEHICLE, "车牌属性": [], "备注": ""})


def test_schema_command_writes_and_checks(tmp_path, capsys):
    out = tmp_path / "schema.json"
    assert main(["schema", "--output", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == build_schema()
    assert main(["schema", "--output", str(out), "--check"]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("双层车牌", "三层车牌"), encoding="utf-8")
    assert main(["schema", "--output", str(out), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert main(["schema", "--check"]) == 0


def test_load_schema_rejects_broken_files(tmp_path):
    from plates.errors import UserError

    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="cannot read"):
        load_schema(broken)
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"type": 12}), encoding="utf-8")
    with pytest.raises(UserError, match="not a valid JSON Schema"):
        load_schema(invalid)


def test_the_plate_box_is_optional_and_only_in_answers_that_ask_for_it():
    """车牌位置 is allowed, not required; answer_from_labels writes it only when given boxes (grounding), at its
    place in the field table (after the six attributes), for the plates that have one."""
    validator = Draft202012Validator(load_schema())
    labels = {"车辆属性": VEHICLE, "车牌属性": [PLATE, {**PLATE, "车牌号码": "云A12345"}]}
    plain = answer_from_labels(labels)
    assert PLATE_BOX == "车牌位置" and PLATE_BOX not in json.dumps(plain, ensure_ascii=False)
    boxed = answer_from_labels(labels, boxes=[[10, 20, 110, 50], None])
    assert list(boxed["车牌属性"][0]) == [*PLATE, PLATE_BOX] and boxed["车牌属性"][0][PLATE_BOX] == [10, 20, 110, 50]
    assert boxed["车牌属性"][1] == plain["车牌属性"][1]
    assert validator.is_valid(plain) and validator.is_valid(boxed)
    one = answer_from_labels({"车辆属性": VEHICLE, "车牌属性": [PLATE]}, boxes=[[0, 0, 99999, 5]])
    assert validator.is_valid(one) and one["车牌属性"][PLATE_BOX] == [0, 0, 99999, 5]
    for bad in ([1, 2, 3], [1, 2, 3, 4, 5], [-1, 2, 3, 4], [100000, 1, 2, 3], [1.5, 2, 3, 4], "1,2,3,4"):
        assert not validator.is_valid({**one, "车牌属性": {**one["车牌属性"], PLATE_BOX: bad}}), bad
