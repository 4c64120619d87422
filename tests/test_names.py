"""The file-name grammars (:mod:`plates.names`): the seed's ``车辆属性:…_车牌属性0:…_ids.jpg`` names and CCPD's
``area-tilt-box-vertices-indices-brightness-blur.jpg`` names, parsed into canonical labels, ids and warnings, or
rejected with a reason; never a crash, whatever the name."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plates.dump import Rejected
from plates.labels import normalise, plate_checks, plate_key
from plates.names import (
    ParsedName, clear_caches, name_format, parse_ccpd_filename, parse_filename, plate_number, strip_extension,
)
from plates.synth import random_labels, seed_filename
from helpers import NAME_ALPHABET as _NAME_ALPHABET

SEED_NAMES = {
    "车辆属性:东风-车头-轻微型货车-蓝色_车牌属性0:中国-云南省-云K CM158-蓝色-单层-燃油车_00032804_car10062_00336842.jpg":
        ({"车辆品牌": "东风", "车辆类型": "轻微型货车", "车辆颜色": "蓝色", "车辆朝向": "正面"},
         {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云KCM158", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
          "车牌用途": "燃油车车牌"},
         ["00032804", "car10062", "00336842"]),
    "车辆属性:东风-车头-重型货车-棕色_车牌属性0:中国-云南省-云F 92639-黄色-单层-货车_00005229_car9450_00324509.jpg":
        ({"车辆品牌": "东风", "车辆类型": "重型货车", "车辆颜色": "棕色", "车辆朝向": "正面"},
         {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云F92639", "车牌颜色": "黄色", "车牌层数": "单层车牌",
          "车牌用途": "货车车牌"},
         ["00005229", "car9450", "00324509"]),
}
SEED_EXAMPLE = next(iter(SEED_NAMES))
CCPD_SAMPLE = Path(__file__).resolve().parent / "data" / "ccpd_names_sample.txt"
README = Path(__file__).resolve().parent.parent / "README.md"
# An image path as the seed's annotation export lists it: the dump's folders are Chinese too.
SEED_IMAGE_PATH = ("/home/jovyan/pvc-jiaotong/wqg_data/LLM_data/LLM_Vehicle_ATT/磨憨整理_20241210/已整理/"
                   "车辆属性:东风-车头-重型货车-棕色_车牌属性0:中国-云南省-云F 92639-黄色-单层-货车_00005229_car9450_00324509.jpg")


def parsed(name, fmt="auto") -> ParsedName:
    result = parse_filename(name, fmt)
    assert isinstance(result, ParsedName), result
    return result


def codes(warnings):
    return sorted(w.split(":")[0] for w in warnings)


# --------------------------------------------------------------------------------------------- seed names


@pytest.mark.parametrize("name", list(SEED_NAMES))
def test_seed_examples(name):
    vehicle, plate, ids = SEED_NAMES[name]
    result = parsed(name)
    assert result.labels == {"车辆属性": vehicle, "车牌属性": [plate]}
    assert result.ids == ids and result.warnings == []
    assert name_format(name) == "seed"


def test_real_dump_variations_parse_the_same():
    expected = parsed(SEED_EXAMPLE).labels
    variants = [
        SEED_EXAMPLE.replace(":", "："),                                       # full-width colons
        SEED_EXAMPLE.replace(".jpg", ".JPG"),                                  # upper-case extension
        SEED_EXAMPLE.replace(".jpg", ".jpeg"),
        SEED_EXAMPLE.replace("云K CM158", "云K-CM158"),                        # hyphen inside the number
        SEED_EXAMPLE.replace("云K CM158", "云KCM158"),
        SEED_EXAMPLE.replace("云K CM158", "云Ｋ ＣＭ１５８"),                    # full-width letters and digits
        SEED_EXAMPLE.replace("车辆属性:东风", "车辆属性 : 东风汽车"),            # synonym, spaces round the colon
        "/some/deep/dir with space/" + SEED_EXAMPLE,                          # folders are ignored
    ]
    for name in variants:
        result = parsed(name)
        assert result.labels == expected, name
        assert result.warnings == [], name


def test_brand_with_hyphen_and_extra_ids():
    name = "0007_车辆属性:梅赛德斯-奔驰-车尾-SUV-黑色_车牌属性0:中国-北京市-京A 12345-蓝色-单层-燃油车_1_car2_3_extra.png"
    result = parsed(name)
    assert result.labels["车辆属性"] == {"车辆品牌": "奔驰", "车辆类型": "SUV", "车辆颜色": "黑色", "车辆朝向": "背面"}
    assert result.ids == ["0007", "1", "car2", "3", "extra"]
    unknown_brand = parsed(name.replace("梅赛德斯-奔驰", "Rolls-Royce-Phantom"))
    assert unknown_brand.labels["车辆属性"]["车辆品牌"] == "Rolls-Royce-Phantom"
    assert unknown_brand.warnings == ["unknown_value: 车辆品牌=Rolls-Royce-Phantom"]


def test_multi_plate():
    name = ("车辆属性:解放-车尾-挂车-白色_车牌属性0:中国-云南省-云A 3K821-黄色-单层-货车"
            "_车牌属性1:中国-云南省-云A 1234挂-黄色-双层-挂车_1_car2_3.jpg")
    result = parsed(name)
    plates = result.labels["车牌属性"]
    assert [p["车牌号码"] for p in plates] == ["云A3K821", "云A1234挂"]
    assert plates[1]["车牌层数"] == "双层车牌" and plates[1]["车牌用途"] == "挂车车牌"
    assert result.warnings == [] and result.ids == ["1", "car2", "3"]
    skipped = parsed(name.replace("车牌属性1", "车牌属性2"))
    assert codes(skipped.warnings) == ["plate_index"]


def test_no_plate():
    for name in ("车辆属性:丰田-车头-小轿车-白色_00000001_car7_00000002.jpg",
                 "车辆属性:丰田-车头-小轿车-白色_车牌属性0:无_00000001_car7_00000002.jpg"):
        result = parsed(name)
        assert result.labels["车牌属性"] == []
        assert result.ids == ["00000001", "car7", "00000002"] and result.warnings == []


def test_new_energy():
    name = "车辆属性:比亚迪-车头-小轿车-白色_车牌属性0:中国-云南省-云A D12345-绿色-单层-新能源_1_car2_3.jpg"
    result = parsed(name)
    plate = result.labels["车牌属性"][0]
    assert (plate["车牌号码"], plate["车牌颜色"], plate["车牌用途"]) == ("云AD12345", "绿色", "新能源车牌")
    assert result.warnings == []
    truck = parsed(name.replace("云A D12345-绿色", "云A 12345D-黄绿").replace("小轿车", "重型货车"))
    assert truck.labels["车牌属性"][0]["车牌颜色"] == "黄绿色" and truck.warnings == []
    as_fuel = parsed(name.replace("-新能源", "-燃油车").replace("-绿色", "-蓝色"))
    assert codes(as_fuel.warnings) == ["plate_length"]
    short = parsed(name.replace("云A D12345", "云A D1234"))
    assert codes(short.warnings) == ["plate_length"]


def test_foreign_plate_abu_dhabi():
    name = "车辆属性:丰田-车头-小轿车-白色_车牌属性0:阿布扎比-未知-14 11586-白色-单层-私家车_1_car2_3.jpg"
    result = parsed(name)
    assert result.labels["车牌属性"] == [{"车牌国家": "阿布扎比", "车牌省份": "未知", "车牌号码": "14 11586",
                                        "车牌颜色": "白色", "车牌层数": "单层车牌", "车牌用途": "私家车车牌"}]
    assert result.warnings == []
    no_province = parsed(name.replace("-未知-", "-"))
    assert no_province.labels == result.labels
    assert codes(no_province.warnings) == ["missing_field"]
    vietnam = parsed(name.replace("阿布扎比-未知-14 11586", "越南-未知-29A-123.45"))
    assert vietnam.labels["车牌属性"][0]["车牌号码"] == "29A-123.45"


def test_rule_violations_are_warnings_not_rejects():
    result = parsed(SEED_EXAMPLE.replace("云K CM158", "川K CM158").replace("-蓝色-单层", "-黄色-单层"))
    assert codes(result.warnings) == ["colour_usage", "province_mismatch"]
    assert parsed(SEED_EXAMPLE.replace("CM158", "CMI58")).warnings[0].startswith("plate_pattern:")
    strange = parsed(SEED_EXAMPLE.replace("-轻微型货车-", "-飞行汽车-"))
    assert strange.labels["车辆属性"]["车辆类型"] == "飞行汽车"
    assert strange.warnings == ["unknown_value: 车辆类型=飞行汽车"]


@pytest.mark.parametrize("name, fragment", [
    ("IMG_0001.jpg", "neither"),
    ("车辆属性:丰田-车头_0001.jpg", "has 2 fields, expected 4"),
    ("车辆属性:丰田-车头-小轿车-白色_车牌属性0:中国-云南省_01.jpg", "has 2 fields, expected 6"),
    ("车辆属性:丰田-车头-小轿车-白色_车辆属性:丰田-车头-小轿车-白色_01.jpg", "twice"),
])
def test_unparseable_names_are_rejected_with_a_reason(name, fragment):
    result = parse_filename(name)
    assert isinstance(result, Rejected) and fragment in result.reason


def test_synthetic_names_round_trip():
    rng = random.Random(11)
    for index in range(500):
        labels = random_labels(rng)
        name = seed_filename(labels, [f"{index:08d}", "car1"])
        result = parsed(name)
        assert result.labels == labels, name
        assert result.ids == [f"{index:08d}", "car1"]


def test_fast_paths_agree_with_the_general_grammar():
    """The usual layout skips the marker regex and the NFKC pass; spelled unusually, names take the general path."""
    rng = random.Random(12)
    for index in range(300):
        clear_caches()
        name = seed_filename(random_labels(rng, faults=0.3), [f"{index:08d}", "car1"])
        usual = parse_filename(name)
        assert parse_filename(name.replace("车辆属性:", "车辆属性 :")) == usual, name  # marker regex
        assert parse_filename(name.replace(":", "：").replace("car1", "ｃａｒ1")) == usual, name  # NFKC
        assert parse_filename(name.replace("car1", " _car1")) == usual, name  # blank id


@given(st.text(alphabet="云京粤ABCDEFGHJKLMNPQRSTUVWXYZ0123456789 学挂警港", min_size=1, max_size=12))
def test_plate_number_fast_path_agrees_with_labels(raw):
    assert plate_number(raw.strip()) == normalise("车牌号码", raw.strip()).value


@given(st.text(alphabet="云京粤ABCDEFGHJKLMNPQRSTUVWXYZ0123456789 学挂", min_size=1, max_size=11),
       st.sampled_from([("中国", "云南省", "蓝色", "燃油车车牌"), ("中国", "北京市", "绿色", "新能源车牌"),
                        ("未知", "未知", "黄色", "挂车车牌"), ("中国", "香港特别行政区", "黑色", "港澳车牌"),
                        ("阿布扎比", "未知", "白色", "私家车车牌")]))
def test_plain_plate_numbers_get_the_general_warnings(raw, fields):
    checks = plate_checks(*fields)
    plain = checks.plain_number(raw.strip())
    if plain is not None:
        number = plate_number(raw.strip())
        assert plain == (number, checks.warnings(number, plate_key(number)))


def test_full_width_underscore_after_the_last_marker_moves_the_ids():
    """NFKC turns '＿' into '_': the ids then start there, as when the whole name is normalised."""
    name = "车辆属性:东风-车头-轻微型货车-蓝色_车牌属性0:中国-云南省-云K CM158-蓝色-单层-燃油车＿x1_00032804.jpg"
    parsed = parse_filename(name)
    assert parsed.ids == ["x1", "00032804"]
    assert parsed.labels["车牌属性"][0]["车牌号码"] == "云KCM158"


def test_the_readme_record_is_what_its_name_says():
    """README's `plates parse` example: the record's labels, ids and warnings are what the name parses to."""
    text = README.read_text(encoding="utf-8")
    start = text.index('{"image": "cam1/车辆属性')
    record = json.loads(text[start:text.index("```", start)])
    result = parsed(record["image"])
    assert (result.labels, result.ids, result.warnings) == (record["labels"], record["ids"], record["warnings"])
    assert name_format(record["image"]) == record["format"] == "seed"


def test_the_seeds_image_path_parses_like_its_bare_name():
    bare = SEED_IMAGE_PATH.rpartition("/")[2]
    assert parse_filename(SEED_IMAGE_PATH) == parse_filename(bare) == parse_filename(bare, "seed")
    vehicle, plate, ids = SEED_NAMES[bare]
    assert parsed(SEED_IMAGE_PATH).labels == {"车辆属性": vehicle, "车牌属性": [plate]}


@pytest.mark.parametrize("name, stem", [
    ("a.b.JPG", "a.b"), ("车辆属性:x.jpeg", "车辆属性:x"), ("no_extension", "no_extension"), (".hidden", ".hidden"),
    ("a.1234567", "a.1234567"), ("照片.图片", "照片.图片"),
])
def test_only_a_short_alphanumeric_suffix_is_an_extension(name, stem):
    assert strip_extension(name) == stem


def test_an_unknown_format_is_a_programming_error_not_a_reject():
    with pytest.raises(ValueError, match="unknown format 'yolo'"):
        parse_filename(SEED_EXAMPLE, "yolo")


# --------------------------------------------------------------------------------------------- CCPD names


def test_ccpd_sample_names():
    names = CCPD_SAMPLE.read_text(encoding="utf-8").split()
    assert len(names) == 5000
    for name in names:
        assert name_format(name) == "ccpd"
        result = parse_filename(name)
        assert isinstance(result, ParsedName), (name, result)
        plate = result.labels["车牌属性"][0]
        assert len(plate["车牌号码"]) == 7 and plate["车牌颜色"] == "蓝色"
        assert set(result.labels["车辆属性"].values()) == {"未知"}
        assert isinstance(parse_filename(name, "seed"), Rejected)
    first = parse_ccpd_filename(
        "ccpd_blur/0359-5_21-151&285_417&398-417&398_179&377_151&285_389&306-0_0_4_33_32_25_12-59-4.jpg")
    assert first.labels["车牌属性"] == [{"车牌国家": "中国", "车牌省份": "安徽省", "车牌号码": "皖AE981N",
                                       "车牌颜色": "蓝色", "车牌层数": "单层车牌", "车牌用途": "燃油车车牌"}]
    assert first.warnings == []


def test_ccpd_green_plate_and_bad_index():
    green = "025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_3_24_30_32_25_33-146-21.jpg"
    result = parsed(green, "ccpd")
    plate = result.labels["车牌属性"][0]
    assert (plate["车牌号码"], plate["车牌颜色"], plate["车牌用途"]) == ("皖AD06819", "绿色", "新能源车牌")
    assert result.warnings == []
    bad = parse_filename(green.replace("-0_0_3_", "-0_40_3_"), "ccpd")
    assert isinstance(bad, Rejected) and "index 40" in bad.reason
    assert isinstance(parse_filename(SEED_EXAMPLE, "ccpd"), Rejected)


def test_ccpd_geometry_and_capture_figures_go_to_extra():
    name = "ccpd_blur/0359-5_21-151&285_417&398-417&398_179&377_151&285_389&306-0_0_4_33_32_25_12-59-4.jpg"
    assert parse_ccpd_filename(name).extra == {
        "plate_geometry": [{"box": [151, 285, 417, 398], "vertices": [[417, 398], [179, 377], [151, 285], [389, 306]]}],
        "ccpd": {"area": 359, "tilt_horizontal": 5, "tilt_vertical": 21, "brightness": 59, "blur": 4}}
    empty_box = parsed(name.replace("151&285_417&398-", "417&398_151&285-"), "ccpd")
    assert codes(empty_box.warnings) == ["plate_geometry"] and "is empty" in empty_box.warnings[0]
    assert parsed(SEED_EXAMPLE).extra is None, "seed names carry no geometry"


# --------------------------------------------------------------------------------------------- properties


def _mutate(name: str, data) -> str:
    chars = list(name)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
        at = data.draw(st.integers(0, max(len(chars) - 1, 0)))
        if op == "insert" or not chars:
            chars.insert(at, data.draw(st.sampled_from(_NAME_ALPHABET)))
        elif op == "delete":
            del chars[at]
        elif op == "replace":
            chars[at] = data.draw(st.sampled_from(_NAME_ALPHABET))
        else:
            chars[at:at + 2] = chars[at:at + 2][::-1]
    return "".join(chars)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_random_names_never_crash(name):
    for fmt in ("auto", "seed", "ccpd"):
        assert isinstance(parse_filename(name, fmt), (ParsedName, Rejected))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_names_never_crash(data):
    base = data.draw(st.sampled_from([SEED_EXAMPLE, *SEED_NAMES,
                                      "0359-5_21-151&285_417&398-417&398_179&377_151&285_389&306-0_0_4_33_32_25_12-59-4.jpg",
                                      seed_filename(random_labels(random.Random(data.draw(st.integers(0, 50)))), ["1"])]))
    name = _mutate(base, data)
    for fmt in ("auto", "seed", "ccpd"):
        result = parse_filename(name, fmt)
        assert isinstance(result, (ParsedName, Rejected))
        if isinstance(result, ParsedName):
            json.dumps(result.labels, ensure_ascii=False)
            assert isinstance(result.labels["车牌属性"], list)
