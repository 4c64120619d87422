"""Synthetic labelled dumps: realistic labels, seed-grammar file names, and OpenCV-drawn vehicles.

Tests and benchmarks need real image files named the way real dumps name them, without shipping any data.
The labels follow the real couplings (the province abbreviation matches the province, blue 7-character
燃油车 plates, green 8-character 新能源 plates, yellow truck plates, trailers with 挂), so the rules in
``plates.labels`` have something true to check, and the drawings carry the label's body and plate colours,
so a model trained on them has something real to learn.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from plates.io import write_jsonl
from plates.labels import (
    PLATE_COLOUR, PLATE_COUNTRY, PLATE_FIELDS, PLATE_GROUP, PLATE_LAYERS, PLATE_NUMBER, PLATE_PROVINCE, PLATE_USAGE,
    UNKNOWN, VEHICLE_BRAND, VEHICLE_COLOUR, VEHICLE_FIELDS, VEHICLE_GROUP, VEHICLE_ORIENTATION, VEHICLE_TYPE,
    abbreviation_for_province, canonical_values, load_plate_rules, slot_fields,
)

DIGITS = "0123456789"

# Vehicle types with the brands that build them and the plate kinds they carry.
_CAR_BRANDS = ("丰田", "大众", "本田", "日产", "别克", "现代", "吉利", "长安", "哈弗", "奇瑞", "宝骏", "奥迪",
               "宝马", "奔驰", "比亚迪", "红旗", "马自达", "福特", "起亚", "雪佛兰")
_NEV_BRANDS = ("比亚迪", "特斯拉", "蔚来", "理想", "小鹏", "五菱", "吉利")
_TYPES: dict[str, tuple[float, tuple[str, ...]]] = {
    "小轿车": (0.34, _CAR_BRANDS),
    "SUV": (0.16, _CAR_BRANDS),
    "MPV": (0.05, ("别克", "本田", "上汽大通", "五菱")),
    "面包车": (0.05, ("五菱", "金杯", "长安")),
    "皮卡": (0.03, ("长城", "江铃", "五十铃")),
    "轻微型货车": (0.12, ("东风", "福田", "江淮", "凯马", "时风", "五十铃")),
    "中型货车": (0.05, ("东风", "解放", "福田", "江淮")),
    "重型货车": (0.10, ("东风", "解放", "重汽", "陕汽", "乘龙", "欧曼")),
    "挂车": (0.04, ("解放", "重汽", "陕汽", "东风")),
    "客车": (0.04, ("宇通", "金龙", "海格", "中通")),
    "中型客车": (0.02, ("依维柯", "金杯", "宇通")),
}
_TRUCKS = ("轻微型货车", "中型货车", "重型货车", "挂车")
_BUSES = ("客车", "中型客车")
_BODY_COLOURS = (("白色", 0.30), ("黑色", 0.12), ("灰色", 0.10), ("银色", 0.10), ("红色", 0.08),
                 ("蓝色", 0.12), ("黄色", 0.04), ("绿色", 0.04), ("棕色", 0.04), ("橙色", 0.03), ("金色", 0.03))

# Raw forms that real file names use (the canonical values are the answer forms).
_RAW_ORIENTATION = {"正面": "车头", "背面": "车尾", "侧面": "车侧"}
_RAW_LAYERS = {"单层车牌": "单层", "双层车牌": "双层"}
_RAW_BRAND = {"奔驰": "梅赛德斯-奔驰"}  # real dumps carry brands with '-' in them

# BGR drawing colours.
BODY_BGR = {
    "白色": (235, 235, 235), "黑色": (25, 25, 25), "灰色": (128, 128, 128), "银色": (192, 192, 200),
    "红色": (40, 40, 210), "蓝色": (200, 90, 20), "黄色": (30, 210, 240), "绿色": (60, 160, 40),
    "棕色": (40, 75, 120), "橙色": (20, 130, 250), "紫色": (150, 40, 130), "粉色": (190, 160, 250),
    "金色": (80, 180, 210), UNKNOWN: (110, 120, 100),
}
PLATE_BGR = {
    "蓝色": (170, 60, 0), "黄色": (0, 200, 250), "绿色": (90, 210, 90), "黄绿色": (0, 200, 250),
    "白色": (250, 250, 250), "黑色": (10, 10, 10), UNKNOWN: (150, 150, 150),
}
_PLATE_TEXT_BGR = {"蓝色": (255, 255, 255), "黑色": (255, 255, 255)}

_FOLDERS = ("磨憨整理_20241210/已整理", "batch 02/cam-3", "2025:03 night/出口", "flat")


def _weighted(rng: random.Random, pairs) -> Any:
    values, weights = zip(*pairs)
    return rng.choices(values, weights=weights, k=1)[0]


def _serial(rng: random.Random, n: int = 5) -> str:
    """An ordinary serial: digits with at most two letters (no I or O), as issued."""
    letters = load_plate_rules()["letters"]
    chars = [rng.choice(DIGITS) for _ in range(n)]
    for index in rng.sample(range(n), k=_weighted(rng, ((0, 0.45), (1, 0.35), (2, 0.20)))):
        chars[index] = rng.choice(letters)
    return "".join(chars)


def _mainland_prefix(rng: random.Random, province: str | None = None) -> tuple[str, str]:
    provinces = [p for p in canonical_values(PLATE_PROVINCE) if p not in ("香港特别行政区", "澳门特别行政区")]
    if province is None:
        province = "云南省" if rng.random() < 0.4 else rng.choice(provinces)
    letters = load_plate_rules()["letters"]
    return province, abbreviation_for_province(province) + rng.choice(letters[:12])


def _plate(country: str, province: str, number: str, colour: str, layers: str, usage: str) -> dict[str, str]:
    given = {PLATE_COUNTRY: country, PLATE_PROVINCE: province, PLATE_NUMBER: number, PLATE_COLOUR: colour,
             PLATE_LAYERS: layers, PLATE_USAGE: usage}
    return {name: given.get(name, UNKNOWN) for name in PLATE_FIELDS}


def _vehicle(brand: str, vehicle_type: str, colour: str, orientation: str) -> dict[str, str]:
    given = {VEHICLE_BRAND: brand, VEHICLE_TYPE: vehicle_type, VEHICLE_COLOUR: colour,
             VEHICLE_ORIENTATION: orientation}
    return {name: given.get(name, UNKNOWN) for name in VEHICLE_FIELDS}


def _mainland_plate(rng: random.Random, vehicle_type: str, orientation: str, brand: str) -> dict[str, str]:
    province, prefix = _mainland_prefix(rng)
    rear = orientation == "背面"
    letters = load_plate_rules()["letters"]
    if vehicle_type in _TRUCKS or vehicle_type in _BUSES:
        if vehicle_type == "挂车" and rear:
            return _plate("中国", province, prefix + _serial(rng, 4) + "挂", "黄色", "双层车牌", "挂车车牌")
        if vehicle_type == "轻微型货车" and rng.random() < 0.6:
            return _plate("中国", province, prefix + _serial(rng), "蓝色", "单层车牌", "燃油车车牌")
        if rng.random() < 0.08:
            number = prefix + "".join(rng.choice(DIGITS) for _ in range(5)) + rng.choice("DF")
            return _plate("中国", province, number, "黄绿色", "单层车牌", "新能源车牌")
        layers = "双层车牌" if rear and vehicle_type not in _BUSES and vehicle_type != "轻微型货车" else "单层车牌"
        return _plate("中国", province, prefix + _serial(rng), "黄色", layers, "货车车牌")
    roll = rng.random()
    if brand in _NEV_BRANDS and roll < 0.7 or roll < 0.12:
        second = rng.choice(letters[:8] + DIGITS)
        number = prefix + rng.choice("DF") + second + "".join(rng.choice(DIGITS) for _ in range(4))
        return _plate("中国", province, number, "绿色", "单层车牌", "新能源车牌")
    if roll < 0.15:
        return _plate("中国", province, prefix + _serial(rng, 4) + "学", "黄色", "单层车牌", "教练车车牌")
    if roll < 0.17:
        return _plate("中国", province, prefix + "".join(rng.choice(DIGITS) for _ in range(4)) + "警", "白色",
                      "单层车牌", "警用车牌")
    return _plate("中国", province, prefix + _serial(rng), "蓝色", "单层车牌", "燃油车车牌")


def _foreign_plate(rng: random.Random) -> dict[str, str]:
    if rng.random() < 0.5:
        number = f"{rng.randint(1, 17)} {rng.randint(10000, 99999)}"
        return _plate("阿布扎比", UNKNOWN, number, "白色", "单层车牌", "私家车车牌")
    number = f"{rng.randint(10, 99)}{rng.choice('ABCDEFGH')}-{rng.randint(100, 999)}.{rng.randint(10, 99)}"
    return _plate("越南", UNKNOWN, number, "白色", "单层车牌", "私家车车牌")


def _hong_kong_pair(rng: random.Random) -> list[dict[str, str]]:
    """Cross-border cars carry a black 粤Z…港 plate and their Hong Kong plate."""
    mainland = _plate("中国", "广东省", "粤Z" + _serial(rng, 4) + "港", "黑色", "单层车牌", "港澳车牌")
    letters = load_plate_rules()["letters"]
    hk = f"{rng.choice(letters)}{rng.choice(letters)} {rng.randint(1, 9999)}"
    return [mainland, _plate("中国", "香港特别行政区", hk, "白色", "单层车牌", "私家车车牌")]


def random_labels(rng: random.Random, *, plates: int | None = None, faults: float = 0.03) -> dict[str, Any]:
    """Canonical labels in the record shape, drawn with realistic couplings.

    ``plates`` forces the number of plates; by default most vehicles have one, some none, a few two
    (a tractor with its trailer plate, a cross-border car with its Hong Kong plate). A ``faults`` share of
    vehicles carries the slips real annotators make (a plate number from another province, a letter O typed
    for a zero, a brand outside the vocabulary), which ``plates parse`` must flag."""
    vehicle_type = _weighted(rng, ((t, w) for t, (w, _) in _TYPES.items()))
    brand = rng.choice(_TYPES[vehicle_type][1])
    if vehicle_type in ("小轿车", "SUV") and rng.random() < 0.1:
        brand = rng.choice(_NEV_BRANDS)
    if rng.random() < 0.04:
        brand = UNKNOWN
    orientation = _weighted(rng, (("正面", 0.6), ("背面", 0.37), ("侧面", 0.03)))
    colour = _weighted(rng, _BODY_COLOURS)
    vehicle = _vehicle(brand, vehicle_type, colour, orientation)
    if plates is None:
        plates = _weighted(rng, ((1, 0.85), (0, 0.08), (2, 0.07)))
    plate_list: list[dict[str, str]] = []
    if plates >= 2 and vehicle_type in ("小轿车", "SUV", "MPV") and rng.random() < 0.5:
        plate_list = _hong_kong_pair(rng)
    elif plates >= 2 and vehicle_type in _TRUCKS:
        province, prefix = _mainland_prefix(rng)
        plate_list = [_plate("中国", province, prefix + _serial(rng), "黄色", "单层车牌", "货车车牌"),
                      _plate("中国", province, prefix + _serial(rng, 4) + "挂", "黄色", "双层车牌", "挂车车牌")]
    while len(plate_list) < plates:
        if rng.random() < 0.04 and vehicle_type in ("小轿车", "SUV"):
            plate_list.append(_foreign_plate(rng))
        else:
            plate_list.append(_mainland_plate(rng, vehicle_type, orientation, brand))
    labels = {VEHICLE_GROUP: vehicle, PLATE_GROUP: plate_list[:plates]}
    if rng.random() < faults:
        _add_fault(rng, labels)
    return labels


# The demo's label mix: each visual attribute the demo scores is drawn uniformly from well-separated values, so
# a model can only beat "always answer the commonest value" by looking at the image.
BALANCED_BODY_COLOURS = ("白色", "黑色", "灰色", "红色", "蓝色", "黄色")
BALANCED_ORIENTATIONS = ("正面", "背面", "侧面")
BALANCED_PLATE_COLOURS = ("蓝色", "黄色", "绿色")


def balanced_labels(rng: random.Random) -> dict[str, Any]:
    """Canonical labels of one vehicle with one plate, its body colour, orientation and plate colour each
    uniform over the ``BALANCED_*`` values; type, brand and plate number keep the real couplings (a yellow plate
    is on a truck or bus, a green one on a new-energy car)."""
    plate_colour = rng.choice(BALANCED_PLATE_COLOURS)
    orientation = rng.choice(BALANCED_ORIENTATIONS)
    colour = rng.choice(BALANCED_BODY_COLOURS)
    for _ in range(100):
        if plate_colour == "黄色":
            vehicle_type = rng.choice(("中型货车", "重型货车") + _BUSES)
            brand = rng.choice(_TYPES[vehicle_type][1])
        elif plate_colour == "绿色":
            vehicle_type, brand = rng.choice(("小轿车", "SUV")), rng.choice(_NEV_BRANDS)
        else:
            vehicle_type = rng.choice(("小轿车", "SUV", "MPV", "面包车"))
            brand = rng.choice([b for b in _TYPES[vehicle_type][1] if b not in _NEV_BRANDS])
        plate = _mainland_plate(rng, vehicle_type, orientation, brand)
        if plate[PLATE_COLOUR] == plate_colour:
            break
    vehicle = _vehicle(brand, vehicle_type, colour, orientation)
    return {VEHICLE_GROUP: vehicle, PLATE_GROUP: [plate]}


def _add_fault(rng: random.Random, labels: dict[str, Any]) -> None:
    plates = [p for p in labels[PLATE_GROUP] if p[PLATE_COUNTRY] == "中国" and p[PLATE_PROVINCE] != "香港特别行政区"]
    kind = rng.choice(("province", "letter", "brand") if plates else ("brand",))
    if kind == "brand":
        labels[VEHICLE_GROUP][VEHICLE_BRAND] = rng.choice(("雷诺", "标致", "斯柯达", "北奔"))
    elif kind == "province":
        plate = rng.choice(plates)
        others = [p for p in canonical_values(PLATE_PROVINCE) if p != plate[PLATE_PROVINCE] and "特别行政区" not in p]
        plate[PLATE_PROVINCE] = rng.choice(others)
    else:
        plate = rng.choice(plates)
        plate[PLATE_NUMBER] = plate[PLATE_NUMBER][:2] + "O" + plate[PLATE_NUMBER][3:]


def raw_plate_number(number: str) -> str:
    """The way file names write a mainland number: '云KCM158' -> '云K CM158'; others unchanged."""
    if number and "\u4e00" <= number[0] <= "\u9fff" and " " not in number and len(number) > 2:
        return f"{number[:2]} {number[2:]}"
    return number


def _raw_usage(usage: str) -> str:
    return usage[:-2] if usage.endswith("车牌") and len(usage) > 2 else usage


def seed_filename(labels: dict[str, Any], ids: list[str], ext: str = ".jpg") -> str:
    """The file name a real dump gives these labels (the seed's grammar with raw forms), e.g.
    ``车辆属性:东风-车头-轻微型货车-蓝色_车牌属性0:中国-云南省-云K CM158-蓝色-单层-燃油车_00032804_car10062_00336842.jpg``."""
    vehicle = labels.get(VEHICLE_GROUP) or {}
    brand = vehicle.get(VEHICLE_BRAND, UNKNOWN)
    orientation = vehicle.get(VEHICLE_ORIENTATION, UNKNOWN)
    raw_vehicle = {VEHICLE_BRAND: _RAW_BRAND.get(brand, brand),
                   VEHICLE_ORIENTATION: _RAW_ORIENTATION.get(orientation, orientation)}
    name = "车辆属性:" + "-".join(raw_vehicle[f] if f in raw_vehicle else vehicle.get(f, UNKNOWN)
                                  for f in slot_fields(VEHICLE_GROUP))
    for index, plate in enumerate(labels.get(PLATE_GROUP) or []):
        layers, usage = plate.get(PLATE_LAYERS, UNKNOWN), plate.get(PLATE_USAGE, UNKNOWN)
        raw_plate = {PLATE_NUMBER: raw_plate_number(plate.get(PLATE_NUMBER, UNKNOWN)),
                     PLATE_LAYERS: _RAW_LAYERS.get(layers, layers), PLATE_USAGE: _raw_usage(usage)}
        fields = [raw_plate[f] if f in raw_plate else plate.get(f, UNKNOWN) for f in slot_fields(PLATE_GROUP)]
        name += f"_车牌属性{index}:" + "-".join(fields)
    return name + "".join(f"_{i}" for i in ids) + ext


def _glyph_text(number: str) -> str:
    """ASCII rendering of a plate number for cv2.putText (no CJK font here): CJK characters become '#'."""
    return "".join(c if c.isascii() else "#" for c in number)


def draw_vehicle(labels: dict[str, Any], width: int = 160, height: int = 120, rng: random.Random | None = None):
    """A BGR image of the labelled vehicle: body in the vehicle colour, seen from the labelled side (front: white
    headlights and a grille; rear: red tail lights and a rear window; side: a long low body with a cabin and two
    wheels), plates in their colours with the number written (CJK characters as a placeholder glyph)."""
    return draw_vehicle_boxes(labels, width, height, rng)[0]


def draw_vehicle_boxes(labels: dict[str, Any], width: int = 160, height: int = 120, rng: random.Random | None = None,
                       random_plates: bool = False):
    """(image, plate boxes) of :func:`draw_vehicle`: each plate's ``[x1, y1, x2, y2]`` in the image's pixels,
    as drawn. ``random_plates`` draws each plate at a random size (28–50% of the image width) and a random place
    in the lower 60% of the image (below the windscreen, so the lamps keep most of their area), instead of
    centred on the bumper: the plate-location task of the demo. Without it the drawing (and the ``rng`` draws)
    are those of :func:`draw_vehicle`."""
    import cv2
    import numpy as np

    rng = rng or random.Random(0)
    vehicle = labels.get(VEHICLE_GROUP) or {}
    plates = labels.get(PLATE_GROUP) or []
    image = np.empty((height, width, 3), np.uint8)
    sky = rng.randint(150, 200)
    image[: height // 2] = (sky + 20, sky, sky - 30)
    image[height // 2:] = (rng.randint(60, 90),) * 3
    body = BODY_BGR.get(vehicle.get(VEHICLE_COLOUR, UNKNOWN), BODY_BGR[UNKNOWN])
    orientation = vehicle.get(VEHICLE_ORIENTATION)
    big = vehicle.get(VEHICLE_TYPE) in _TRUCKS + _BUSES
    margin = int(width * (0.06 if big else 0.12)) + rng.randint(-3, 3)
    top = int(height * (0.08 if big else 0.2)) + rng.randint(-3, 3)
    bottom = int(height * 0.85)
    left, right = margin, width - margin
    wheel = max(4, height // 12)
    if orientation == "侧面":
        # Side view: a cabin on a long, low body, two large wheels in profile, side windows.
        low = top + (bottom - top) * 2 // 5
        cv2.rectangle(image, (left, low), (right, bottom), body, -1)
        cabin_l, cabin_r = left + (right - left) // 5, right - (right - left) // 5
        cv2.rectangle(image, (cabin_l, top), (cabin_r, low), body, -1)
        mid = (cabin_l + cabin_r) // 2
        for x0, x1 in ((cabin_l + 4, mid - 2), (mid + 2, cabin_r - 4)):
            cv2.rectangle(image, (x0, top + 4), (x1, low - 2), (90, 70, 60), -1)
        cv2.rectangle(image, (left, low), (right, bottom), (20, 20, 20), 1)
        for x in (left + (right - left) // 6, right - (right - left) // 6):
            cv2.circle(image, (x, bottom), 2 * wheel, (15, 15, 15), -1)
            cv2.circle(image, (x, bottom), wheel, (170, 170, 170), -1)
    else:
        cv2.rectangle(image, (left, top), (right, bottom), body, -1)
        cv2.rectangle(image, (left, top), (right, bottom), (20, 20, 20), 1)
        glass_bottom = top + (bottom - top) // 3
        for x in (left + 2 * wheel, right - 2 * wheel):
            cv2.circle(image, (x, bottom), wheel, (15, 15, 15), -1)
        # Lamps large and outlined in black, so a white car's headlights and a red car's tail lights still show:
        # at 224 px wide each lamp spans about two 14-px patches.
        lamp_w, lamp_h = max(8, (right - left) // 4), max(6, (bottom - top) // 5)
        lamp_y = glass_bottom + max(3, (bottom - top) // 12)
        if orientation == "背面":
            # Rear: a smaller rear window, red tail lights at the outer edges.
            cv2.rectangle(image, (left + 12, top + 8), (right - 12, glass_bottom - 2), (90, 70, 60), -1)
            lamp = (20, 20, 230)
        else:
            # Front: a full-width windscreen, white headlights, a dark grille between them.
            cv2.rectangle(image, (left + 4, top + 3), (right - 4, glass_bottom), (90, 70, 60), -1)
            lamp = (235, 255, 255)
            cv2.rectangle(image, (left + lamp_w + 6, lamp_y), (right - lamp_w - 6, lamp_y + lamp_h), (30, 30, 30), -1)
        for x0 in (left + 3, right - 3 - lamp_w):
            cv2.rectangle(image, (x0, lamp_y), (x0 + lamp_w, lamp_y + lamp_h), lamp, -1)
            cv2.rectangle(image, (x0, lamp_y), (x0 + lamp_w, lamp_y + lamp_h), (10, 10, 10), 2)
    boxes: list[list[int]] = []
    if not plates:
        return image, boxes
    slot = (right - left) // len(plates)
    for index, plate in enumerate(plates):
        double = plate.get(PLATE_LAYERS) == "双层车牌"
        plate_w = min(int(slot * 0.85), max(40, int(width * 0.45)))
        if random_plates:
            plate_w = min(rng.randint(int(width * 0.28), int(width * 0.5)), max(40, slot - 4))
        plate_h = max(10, int(plate_w * (0.5 if double else 0.3)))
        x0 = left + index * slot + (slot - plate_w) // 2
        y0 = bottom - plate_h - 3
        if random_plates:
            x0 = rng.randint(index * width // len(plates) + 2, (index + 1) * width // len(plates) - plate_w - 2)
            y0 = rng.randint(int(height * 0.4), height - plate_h - 2)
        boxes.append([x0, y0, x0 + plate_w, y0 + plate_h])
        _draw_plate(image, plate, x0, y0, plate_w, plate_h)
    return image, boxes


def _draw_plate(image, plate: dict[str, Any], x0: int, y0: int, plate_w: int, plate_h: int) -> None:
    """A plate in its colour with its number written to fill it (a double-layer plate on two lines: the province
    and letter, then the serial), onto ``image`` at ``(x0, y0)``."""
    import cv2

    double = plate.get(PLATE_LAYERS) == "双层车牌"
    colour_name = plate.get(PLATE_COLOUR, UNKNOWN)
    cv2.rectangle(image, (x0, y0), (x0 + plate_w, y0 + plate_h), PLATE_BGR.get(colour_name, PLATE_BGR[UNKNOWN]), -1)
    if colour_name == "黄绿色":
        cv2.rectangle(image, (x0 + plate_w // 4, y0), (x0 + plate_w, y0 + plate_h), PLATE_BGR["绿色"], -1)
    ink = _PLATE_TEXT_BGR.get(colour_name, (0, 0, 0))
    text = _glyph_text(plate.get(PLATE_NUMBER, ""))
    lines = [text[:2], text[2:]] if double else [text]
    line_h = plate_h / len(lines)
    for row, line in enumerate(lines):
        if not line:
            continue
        (tw, th), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
        scale = min((plate_w - 4) / max(tw, 1), (line_h - 3) / max(th, 1))
        (tw, th), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        origin = (x0 + (plate_w - tw) // 2, int(y0 + line_h * row + (line_h + th) / 2))
        cv2.putText(image, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 2 if scale > 0.6 else 1,
                    cv2.LINE_AA)


# `plates demo --long`'s frames, as many traffic cameras save them: a close-up strip of the plate on top, large
# enough to read, and the vehicle below. Every size is a multiple of the vision tower's 28-px merged token, so the
# strip cut out of a frame (CLOSEUP_STRIP_BOX) puts each character on the same tokens as in the frame.
CLOSEUP_WIDTH = 224
CLOSEUP_STRIP_BOX = (0, 0, CLOSEUP_WIDTH, 56)
CLOSEUP_VEHICLE_HEIGHT = 112


def draw_closeup_frame(labels: dict[str, Any], rng: random.Random | None = None):
    """(image, plate boxes) of a close-up frame, 224 x 168: the first plate in a full-width strip
    (``CLOSEUP_STRIP_BOX``, characters about a merged token high; no plate: a grey strip) over
    :func:`draw_vehicle_boxes` at 224 x 112 (its plates on the bumper; their boxes returned, in the frame's
    pixels)."""
    import numpy as np

    x1, y1, x2, y2 = CLOSEUP_STRIP_BOX
    vehicle, boxes = draw_vehicle_boxes(labels, CLOSEUP_WIDTH, CLOSEUP_VEHICLE_HEIGHT, rng)
    strip = np.empty((y2 - y1, x2 - x1, 3), np.uint8)
    strip[:] = PLATE_BGR[UNKNOWN]
    plates = labels.get(PLATE_GROUP) or []
    if plates:
        _draw_plate(strip, plates[0], 0, 0, x2 - x1 - 1, y2 - y1 - 1)
    shift = y2 - y1
    return np.concatenate([strip, vehicle]), [[a, b + shift, c, d + shift] for a, b, c, d in boxes]

def _broken_name(rng: random.Random, index: int) -> str:
    kinds = (
        f"IMG_{index:05d}.jpg",
        f"车辆属性:丰田-车头_{index:08d}.jpg",
        f"车牌属性0:中国-云南省_{index:08d}.png",
        f"readme {index}.txt",
    )
    return kinds[index % len(kinds)]


class DumpEntry(NamedTuple):
    """One image of a synthetic dump: where it goes, what it shows."""

    path: str  # relative to the dump root, '/'-separated
    labels: dict[str, Any]
    ids: list[str]


def dump_entries(n: int, *, seed: int = 0, balanced: bool = False) -> Iterator[DumpEntry]:
    """The labelled images :func:`make_dump` writes for a seed, without drawing anything: vehicles seen in one
    to three frames sharing a ``carNNNN`` id, a few nested folders, some full-width colons, mixed-case extensions.
    ``balanced`` draws the labels with :func:`balanced_labels` instead of the realistic mix."""
    rng = random.Random(seed)
    frame = 10000 * (seed % 1000)
    labels: dict[str, Any] = {}
    car = frames_left = 0
    for _ in range(n):
        if frames_left == 0:
            labels = balanced_labels(rng) if balanced else random_labels(rng)
            car = rng.randint(1000, 99999)
            frames_left = _weighted(rng, ((1, 0.5), (2, 0.3), (3, 0.2)))
        frames_left -= 1
        frame += 1
        ids = [f"{frame:08d}", f"car{car}", f"{rng.randint(0, 99999999):08d}"]
        name = seed_filename(labels, ids, _weighted(rng, ((".jpg", 0.85), (".JPG", 0.1), (".jpeg", 0.05))))
        if rng.random() < 0.15:
            name = name.replace(":", "：")
        yield DumpEntry(f"{rng.choice(_FOLDERS)}/{name}", labels, ids)


def make_dump(root: str | Path, n: int, *, seed: int = 0, broken: int = 0, corrupt: int = 0,
              width: int = 160, height: int = 120, balanced: bool = False, random_plates: bool = False,
              boxes_file: str | Path | None = None, closeup: bool = False) -> list[Path]:
    """Write a labelled dump under ``root``: the ``n`` images of :func:`dump_entries` drawn as JPEGs of about
    ``width`` x ``height``, plus ``broken`` files whose names cannot be parsed (or are not images) and ``corrupt``
    files with a valid name but garbage bytes. Deterministic for a seed; returns every path written.

    ``random_plates``: plates at a random place and size (:func:`draw_vehicle_boxes`). ``boxes_file``: a JSONL
    of where each image's plates were drawn, ``{"image": <path relative to root>, "plate_geometry": [{"box":
    [x1, y1, x2, y2]}, …]}`` (the shape of a record's ``plate_geometry``, see :mod:`plates.records`): seed-grammar
    names carry no box, so this sidecar is how the labels of a drawn dump get them. ``closeup``: every image is a
    :func:`draw_closeup_frame` of fixed size (``width`` and ``height`` are not used)."""
    import cv2

    root = Path(root)
    for folder in _FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    encode = [int(cv2.IMWRITE_JPEG_QUALITY), 80]
    rng = random.Random(f"draw-{seed}")
    written: list[Path] = []
    boxes: list[dict[str, Any]] = []
    # Creating files dominates on slow file systems: threads overlap it while this thread draws.
    with ThreadPoolExecutor(max_workers=4) as writer:
        pending = []
        for entry in dump_entries(n, seed=seed, balanced=balanced):
            w = width + rng.randint(-width // 8, width // 8)
            h = height + rng.randint(-height // 8, height // 8)
            if closeup:
                image, drawn = draw_closeup_frame(entry.labels, rng)
            else:
                image, drawn = draw_vehicle_boxes(entry.labels, w, h, rng, random_plates)
            ok, data = cv2.imencode(".jpg", image, encode)
            if not ok:  # pragma: no cover - cv2 always encodes a uint8 BGR array
                raise RuntimeError("cv2.imencode failed")
            boxes.append({"image": entry.path, "plate_geometry": [{"box": box} for box in drawn]})
            path = root / entry.path
            pending.append(writer.submit(path.write_bytes, data.tobytes()))
            written.append(path)
        for future in pending:
            future.result()
    if boxes_file is not None:
        write_jsonl(boxes_file, boxes)
    folders = [root / f for f in _FOLDERS]
    for index in range(broken):
        path = folders[index % len(folders)] / _broken_name(rng, index)
        if path.suffix == ".txt":
            path.write_text("not an image\n", encoding="utf-8")
        else:
            ok, data = cv2.imencode(".jpg", draw_vehicle(random_labels(rng), width, height, rng), encode)
            path.write_bytes(data.tobytes())
        written.append(path)
    for index in range(corrupt):
        ids = [f"{90000000 + index:08d}", f"car{rng.randint(1000, 99999)}", f"{index:08d}"]
        path = folders[-1] / seed_filename(random_labels(rng), ids)
        path.write_bytes(b"\0garbage" + rng.randbytes(rng.randint(16, 512)))
        written.append(path)
    return written
