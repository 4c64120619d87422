"""The consistency gate against the seed's own descriptions (000 sections 1.2-1.4), good and bad."""

import random

import pytest

from plates.teaching.gate import FLAGGED, OK, check, reason_code

# The seed's two labelled images (file names of section 1.2), as canonical labels.
CM158 = {"车辆属性": {"车辆品牌": "东风", "车辆类型": "轻微型货车", "车辆颜色": "蓝色", "车辆朝向": "正面"},
         "车牌属性": [{"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云KCM158", "车牌颜色": "蓝色",
                   "车牌层数": "单层车牌", "车牌用途": "燃油车车牌"}]}
F92639 = {"车辆属性": {"车辆品牌": "东风", "车辆类型": "重型货车", "车辆颜色": "棕色", "车辆朝向": "正面"},
          "车牌属性": [{"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云F92639", "车牌颜色": "黄色",
                    "车牌层数": "单层车牌", "车牌用途": "货车车牌"}]}

SEED_DESCRIBE_CM158 = (
    "这辆蓝色的东风轻微型货车正迎面而来,车身线条流畅,显得十分稳重。阳光洒在车身上,反射出耀眼的光芒,使得蓝色更加鲜艳夺目。"
    "东风品牌的标志清晰可见,彰显着其卓越的品质与实力。\n\n车牌上显示的是中国云南省的车牌,号码为云K CM158。车牌的颜色为蓝色,"
    "与车身相得益彰,给人一种清新自然的感觉。车牌的层数为单层,用途为燃油车车牌,表明这是一辆传统的内燃机驱动的车辆。"
    "车牌上的文字和数字在阳光下显得格外醒目,仿佛在诉说着它的故事。\n\n总的来说,这辆车不仅外观时尚,而且充满了实用性和可靠性。"
    "无论是日常通勤还是长途旅行,它都能轻松应对各种路况。")
SEED_DESCRIBE_F92639 = (
    "这辆重型货车的品牌是东风,从其独特的前脸设计和标志性的东风车标可以看出。虽然照片拍摄于阴雨天气,但可以推测出这辆车在晴天时"
    "应该是棕色的。它正对着镜头,给人一种威严而坚固的感觉。\n\n车牌显示该车属于中国的云南省,车牌号码为云F 92639,颜色为黄色。"
    "车牌的单层设计清晰可见,表明它专为货车使用而设。尽管照片中光线较为昏暗,但车牌的颜色依然鲜明,黄色在雨天的反光下显得格外醒目。"
    "\n\n总的来说,这是一辆典型的东风重型货车,无论是从品牌、颜色还是车牌来看,都与提示信息相符。")
SEED_CAPTION_CM158 = ("这是一辆蓝色的东风牌货车,车牌号为“EK CM158”。车辆顶部装有太阳能板,车窗上可以看到车内的一些物品和驾驶者。"
                      "背景中可以看到一些树木和建筑物。")
SEED_CAPTION_F92639 = ("图片显示一辆大型货车在雨天行驶,车头前方有一个车牌号为“浙F-92639”的黄色车牌。车顶上装有设备,"
                       "车窗内可以看到驾驶员戴着帽子。")
SEED_FUSED_CM158 = (
    "这辆蓝色的东风轻微型货车正迎面而来,车身线条流畅,显得格外稳重。东风品牌的标志清晰可见,彰显着其卓越的品质与实力。"
    "车身上的蓝色在阳光下更加鲜艳夺目,与车牌的颜色相得益彰,给人一种清新自然的感觉。车牌上显示的是中国云南省的车牌,号码为云K CM158,"
    "单层设计,用途为燃油车车牌,表明这是一辆传统的内燃机驱动的车辆。车牌上的文字和数字格外醒目,仿佛在诉说着它的故事。\n\n"
    "车辆顶部装有太阳能板,车窗上可以看到车内的一些物品和驾驶者。背景中可以看到一些树木和建筑物,与这辆充满实用性和可靠性的货车相映成趣。"
    "无论是日常通勤还是长途旅行,它都能轻松应对各种路况,成为一道亮丽的风景线。")
SEED_FUSED_F92639 = (
    "这辆威严而坚固的重型货车,品牌为东风,其独特的前脸设计和标志性的东风车标清晰可见。尽管雨幕笼罩,仍能想象它在晴朗日子里的棕色身影。"
    "车头正对着镜头,散发出一股不可小觑的力量感。车牌显示该车隶属于中国的云南省,车牌号码为云F 92639,颜色为黄色,单层设计清晰可见,"
    "专为货车使用而设。尽管雨水模糊了视线,车牌的黄色依然在雨中格外醒目。\n\n图片中,这辆大型货车在雨天行驶,车顶上装有设备,"
    "车窗内驾驶员戴着帽子,与前文描述的东风重型货车相呼应。这辆东风重型货车,无论是从品牌、颜色还是车牌来看,都显得格外引人注目。")


def codes(result):
    return sorted({reason_code(r) for r in result.reasons})


@pytest.mark.parametrize("text,labels", [
    (SEED_DESCRIBE_CM158, CM158), (SEED_DESCRIBE_F92639, F92639),
    (SEED_FUSED_CM158, CM158), (SEED_FUSED_F92639, F92639),
], ids=["describe-CM158", "describe-F92639", "fused-CM158", "fused-F92639"])
def test_seed_good_descriptions_pass(text, labels):
    result = check(text, labels)
    assert result.verdict == OK, result.reasons


def test_seed_invented_plate_ek_cm158_is_flagged():
    result = check(SEED_CAPTION_CM158, CM158)
    assert result.verdict == FLAGGED
    assert codes(result) == ["plate_contradiction", "plate_misread"]
    assert any("EK CM158" in r for r in result.reasons)


def test_seed_invented_plate_zhe_f_is_flagged():
    result = check(SEED_CAPTION_F92639, F92639)
    assert result.verdict == FLAGGED
    assert codes(result) == ["plate_contradiction", "plate_misread"]
    assert any("浙F-92639" in r for r in result.reasons)


@pytest.mark.parametrize("written", ["云K CM158", "云KCM158", "云K·CM158", "云K-CM158", "云Ｋ ＣＭ１５８", "云k cm158"])
def test_correct_plate_in_any_spelling_passes(written):
    assert check(f"这是一辆蓝色的东风牌货车,车牌号为“{written}”。", CM158).verdict == OK


def test_missing_plate_and_partial_mentions():
    result = check("这是一辆蓝色的东风牌货车。", CM158)
    assert codes(result) == ["plate_missing"]
    # a partial mention of the labelled number is not another plate
    assert check("车牌云K CM158,尾号CM158清晰可见。", CM158).verdict == OK
    # a second, different plate next to the right one is still a contradiction
    result = check("车牌云KCM158,旁边还有一块云A12345。", CM158)
    assert codes(result) == ["plate_contradiction"]


def test_no_plate_labelled():
    labels = {"车辆属性": CM158["车辆属性"], "车牌属性": []}
    assert check("一辆蓝色的东风轻微型货车,看不到车牌。", labels).verdict == OK
    assert codes(check("一辆蓝色的东风轻微型货车,车牌云A12345。", labels)) == ["plate_unlabelled"]


def test_unknown_plate_number_contradicts_nothing():
    labels = {"车辆属性": CM158["车辆属性"], "车牌属性": [dict(CM158["车牌属性"][0], 车牌号码="未知")]}
    assert check("一辆蓝色的东风轻微型货车,车牌模糊。", labels).verdict == OK


def test_foreign_and_two_plates():
    abu_dhabi = {"车辆属性": {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"},
                 "车牌属性": [{"车牌国家": "阿布扎比", "车牌省份": "未知", "车牌号码": "14 11586", "车牌颜色": "白色",
                           "车牌层数": "单层车牌", "车牌用途": "私家车车牌"}]}
    assert check("一辆白色的丰田小轿车,车牌号码为14 11586。", abu_dhabi).verdict == OK
    assert codes(check("一辆白色的丰田小轿车,车牌号码为14 11568。", abu_dhabi)) == ["plate_contradiction", "plate_misread"]
    truck = {"车辆属性": F92639["车辆属性"],
             "车牌属性": [F92639["车牌属性"][0], dict(F92639["车牌属性"][0], 车牌号码="云F1234挂", 车牌层数="双层车牌",
                                                   车牌用途="挂车车牌")]}
    assert check("东风重型货车,车头车牌云F 92639,挂车车牌云F 1234挂。", truck).verdict == OK
    assert codes(check("东风重型货车,车头车牌云F 92639。", truck)) == ["plate_missing"]


@pytest.mark.parametrize("sentence,code", [
    ("这辆白色的东风轻微型货车,车牌云K CM158。", "colour_mismatch"),
    ("车身为红色,车牌云K CM158。", "colour_mismatch"),
    ("一辆丰田轻微型货车,车牌云K CM158。", "brand_mismatch"),
    ("一辆蓝色的东风SUV,车牌云K CM158。", "type_mismatch"),
    ("一辆蓝色的东风重型货车,车牌云K CM158。", "type_mismatch"),
    ("车牌云K CM158,是一块黄色车牌。", "plate_colour_mismatch"),
    ("车牌云K CM158,黄底黑字。", "plate_colour_mismatch"),
    ("车牌的颜色为绿色,号码云K CM158。", "plate_colour_mismatch"),
    ("车牌云K CM158,是双层车牌。", "layers_mismatch"),
    ("浙江省的车牌云K CM158。", "province_mismatch"),
])
def test_attribute_contradictions(sentence, code):
    assert codes(check(sentence, CM158)) == [code]


@pytest.mark.parametrize("sentence", [
    "这辆货车在高速公路上奔驰,车牌云K CM158,充满现代感,是理想的运输工具。",  # brand names used as words
    "蓝天白云下,一辆蓝色的东风牌轻型货车,车牌云K CM158,蓝底白字。",             # synonyms of the labels
    "东风货车在雨中驶过长城脚下,车牌云K CM158,车身呈蓝色。",
    "这辆车属于云南的车,号码云K CM158。",
])
def test_ordinary_words_do_not_trip_the_gate(sentence):
    result = check(sentence, CM158)
    assert result.verdict == OK, result.reasons


def test_unknown_labels_contradict_nothing():
    labels = {"车辆属性": {"车辆品牌": "未知", "车辆类型": "未知", "车辆颜色": "未知", "车辆朝向": "未知"},
              "车牌属性": [dict(CM158["车牌属性"][0], 车牌颜色="未知", 车牌省份="未知", 车牌层数="未知")]}
    assert check("一辆白色的丰田SUV,浙江的车,黄色车牌双层车牌云KCM158。", labels).verdict == OK


def test_related_values_are_not_contradictions():
    trailer = {"车辆属性": {"车辆品牌": "乘龙", "车辆类型": "挂车", "车辆颜色": "红色", "车辆朝向": "正面"},
               "车牌属性": [dict(F92639["车牌属性"][0], 车牌号码="云N51323")]}
    assert check("一辆红色的东风柳汽乘龙重型货车,东风旗下品牌,车牌云N51323。", trailer).verdict == OK
    nev = {"车辆属性": CM158["车辆属性"], "车牌属性": [dict(CM158["车牌属性"][0], 车牌颜色="黄绿色")]}
    assert check("车牌云K CM158,是一块绿色车牌。", nev).verdict == OK


def test_empty_text():
    assert codes(check("", CM158)) == ["empty"]
    assert codes(check("  \n", CM158)) == ["empty"]


def test_template_texts_always_pass_the_gate():
    """The offline teacher writes from the labels, so none of its texts may ever be flagged."""
    from plates.synth import random_labels
    from plates.teaching.backends.template import TemplateBackend
    from plates.teaching.prompts import build_request, load_prompts

    prompts = load_prompts()
    backend = TemplateBackend(prompts)
    rng = random.Random(7)
    for index in range(300):
        labels = random_labels(rng)
        for mode in ("describe", "caption", "reason"):
            request = build_request(prompts, mode, f"k{index}", labels, question="q")
            text = backend.complete(request).text
            result = check(text, labels)
            assert result.verdict == OK, (mode, text, result.reasons)
