from plates.labels import (
    UNKNOWN, answer_from_labels, normalise, normalise_plate_number, plate_key, plate_warnings,
    plates_of_answer, unknown_value_warnings,
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
