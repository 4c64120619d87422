import os
import shutil
import subprocess
import sys

import pytest

from plates import resources
from plates.labels import (
    FIELD_ROLES, PLATE_BOX, PLATE_COLOUR, PLATE_GROUP, PLATE_NUMBER, ROLES, UNKNOWN, VEHICLE_GROUP, FieldTableError,
    StringBounds, answer_from_labels, field_for_role, field_spec, normalise, normalise_plate_number, plate_key,
    plate_warnings, plates_of_answer, read_field_table, slot_fields, slot_rest, unknown_value_warnings,
)


def plate(**kw):
    base = {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云KCM158", "车牌颜色": "蓝色",
            "车牌层数": "单层车牌", "车牌用途": "燃油车车牌"}
    base.update(kw)
    return base


def test_synonyms_map_to_answer_forms():
    assert normalise("车辆朝向", "车头").value == "正面"
    assert normalise("车辆朝向", "车尾").value == "背面"
    assert normalise("车牌层数", "单层").value == "单层车牌"
    assert normalise("车牌用途", "燃油车").value == "燃油车车牌"
    assert normalise("车牌颜色", "蓝").value == "蓝色"
    assert normalise("车牌省份", "云").value == "云南省"
    assert normalise("车辆类型", "ｓｕｖ").value == "SUV"  # full width
    assert normalise("车辆品牌", "  东风 ").value == "东风"


def test_unknown_kept_and_flagged():
    result = normalise("车辆品牌", "某新品牌")
    assert result == type(result)("某新品牌", False)
    assert normalise("车辆颜色", "未知").value == UNKNOWN
    assert normalise("车辆颜色", None).value == UNKNOWN
    labels = {"车辆属性": {"车辆品牌": "某新品牌", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"},
              "车牌属性": []}
    assert unknown_value_warnings(labels) == ["unknown_value: 车辆品牌=某新品牌"]


def test_plate_numbers():
    assert normalise_plate_number("云K CM158") == "云KCM158"
    assert normalise_plate_number("云Ｋ-cm158") == "云KCM158"
    assert normalise_plate_number("14  11586") == "14 11586"
    assert plate_key("14 11586") == "1411586"


def test_plate_rules():
    assert plate_warnings(plate()) == []
    assert plate_warnings(plate(车牌号码="云AD12345", 车牌颜色="绿色", 车牌用途="新能源车牌")) == []
    assert plate_warnings(plate(车牌号码="云A1234学", 车牌颜色="黄色", 车牌用途="教练车车牌")) == []
    codes = [w.split(":")[0] for w in plate_warnings(plate(车牌号码="鲁GCY987"))]
    assert codes == ["province_mismatch"]
    codes = [w.split(":")[0] for w in plate_warnings(plate(车牌颜色="黄色"))]
    assert codes == ["colour_usage"]
    codes = [w.split(":")[0] for w in plate_warnings(plate(车牌号码="云KCMI58"))]
    assert codes == ["plate_pattern"]
    foreign = plate(车牌国家="阿布扎比", 车牌省份=UNKNOWN, 车牌号码="14 11586", 车牌颜色="白色", 车牌用途="私家车车牌")
    assert plate_warnings(foreign) == []


def test_answer_shapes():
    vehicle = {"车辆品牌": "东风", "车辆类型": "轻微型货车", "车辆颜色": "蓝色", "车辆朝向": "车头"}
    one = answer_from_labels({"车辆属性": vehicle, "车牌属性": [plate(车牌层数="单层")]})
    assert one["车辆属性"]["车辆朝向"] == "正面"
    assert one["车牌属性"]["车牌层数"] == "单层车牌"
    assert answer_from_labels({"车辆属性": vehicle, "车牌属性": []})["车牌属性"] == []
    two = answer_from_labels({"车辆属性": vehicle, "车牌属性": [plate(), plate()]})
    assert len(plates_of_answer(two)) == 2 and len(plates_of_answer(one)) == 1


# --- the field table: roles, slots, bounds ------------------------------------------------------------------------

def test_roles_name_the_fields_code_looks_up():
    assert field_for_role("plate_colour") == PLATE_COLOUR == "车牌颜色"
    assert field_for_role("plate_number") == PLATE_NUMBER == "车牌号码"
    assert field_for_role("plate_box") == PLATE_BOX == "车牌位置"
    assert set(FIELD_ROLES) == set(ROLES)
    assert slot_fields(VEHICLE_GROUP) == ("车辆品牌", "车辆朝向", "车辆类型", "车辆颜色")
    assert slot_fields(PLATE_GROUP) == ("车牌国家", "车牌省份", "车牌号码", "车牌颜色", "车牌层数", "车牌用途")
    assert slot_rest(VEHICLE_GROUP) == 0 and slot_rest(PLATE_GROUP) == 2
    assert field_spec("车辆品牌").bounds.words == 2 and field_spec("车辆颜色").bounds is None
    with pytest.raises(KeyError, match="unknown role 'plate_colur'"):
        field_for_role("plate_colur")


def _table_with(tmp_path, edit):
    labels = tmp_path / "labels"
    shutil.copytree(resources.labels_dir(), labels)
    path = labels / "fields.yaml"
    text = path.read_text(encoding="utf-8")
    for old, new in edit:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return labels


@pytest.mark.parametrize("edit, message", [
    ([("role: plate_colour", "role: plate_hue")], "field 车牌颜色 has role 'plate_hue', not one of"),
    ([("role: plate_layers", "role: plate_colour")], "role plate_colour is given to both 车牌颜色 and 车牌层数"),
    ([("    role: plate_usage\n", "")], "no field has role plate_usage"),
    ([("    role: plate_colour\n", ""), ("role: vehicle_colour", "role: plate_colour")],
     "field 车辆颜色 has role plate_colour, which needs a 车牌属性 field"),
    ([("slot: 5", "slot: 6")], "车牌属性 slots must be 0, 1, … once each without gaps; they are "
                               "车牌国家=0, 车牌省份=1, 车牌号码=2, 车牌颜色=3, 车牌层数=4, 车牌用途=6"),
    ([("slot: 4", "slot: 3")], "车牌属性 slots must be 0, 1, … once each without gaps"),
    ([("slot: 3\n", "slot: first\n")], "has slot 'first'; a slot is a whole number"),
    ([("    role: plate_layers\n", "    role: plate_layers\n    slot_rest: true\n")],
     "only one 车牌属性 field may have slot_rest; 车牌号码, 车牌层数 do"),
    ([("    role: plate_layers\n", "    role: plate_layers\n    bounds: {chars: 'A-Z', longest_word: 2, words: 1}\n")],
     "field 车牌层数 has bounds, but only open and free_text fields take them"),
    ([("longest_word: 10, words: 2", "longest_word: 0, words: 2")], "field 车辆品牌 has bounds"),
    ([("    role: plate_box\n", "    role: plate_box\n    slot: 6\n")], "optional fields have none"),
    ([("    role: plate_box\n", "    role: plate_box\n    slott: 6\n")], "field 车牌位置 has unknown keys slott"),
])
def test_the_field_table_is_checked_at_load(tmp_path, edit, message):
    labels = _table_with(tmp_path, edit)
    with pytest.raises(FieldTableError) as caught:
        read_field_table(labels)
    assert message in str(caught.value) and str(labels / "fields.yaml") in str(caught.value)


def test_a_bad_table_stops_every_command_at_import_with_its_message(tmp_path):
    labels = _table_with(tmp_path, [("role: plate_layers", "role: plate_colour")])
    done = subprocess.run([sys.executable, "-c", "import plates.labels"], capture_output=True, text=True,
                          env={**os.environ, "PLATES_LABELS_DIR": str(labels)}, timeout=120)
    assert done.returncode != 0 and "FieldTableError" in done.stderr
    assert "role plate_colour is given to both 车牌颜色 and 车牌层数" in done.stderr


def test_a_bad_table_is_one_line_from_the_command_line(tmp_path):
    """A user's edit of labels/ that breaks a rule: `plates` says so in one line and exits 2, no traceback."""
    labels = _table_with(tmp_path, [("role: plate_layers", "role: plate_colour")])
    done = subprocess.run([sys.executable, "-m", "plates.cli", "parse", "--help"], capture_output=True, text=True,
                          env={**os.environ, "PLATES_LABELS_DIR": str(labels)}, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"plates: error: {labels / 'fields.yaml'}: role plate_colour is given to both 车牌颜色 and 车牌层数"]


def test_unknown_character_classes_in_bounds_are_named():
    from plates.schema import string_bounds

    assert string_bounds("车辆品牌", StringBounds("A-Z{cjk}", 3, 1)) == {
        "pattern": "^[A-Z\\u3400-\\u4dbf\\u4e00-\\u9fff]{1,3}$", "maxLength": 3}
    with pytest.raises(FieldTableError, match=r"character class \{greek\}; known: \{cjk\}, \{scripts\}"):
        string_bounds("车辆品牌", StringBounds("A-Z{greek}", 10, 2))


def test_the_tokenizer_corpus_leaves_out_the_table_structure():
    from plates.tiny_model import _training_corpus

    corpus = _training_corpus()
    assert "  车牌颜色:" in corpus and not any(line.lstrip().startswith(("role:", "slot:", "bounds:"))
                                              for line in corpus)
