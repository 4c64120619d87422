import json
import random
import string
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plates import parse as parse_module
from plates.cli import main
from plates.labels import normalise, plate_checks, plate_key
from plates.dump import Rejected, default_rejects_path, iter_files, read_image_info
from plates.names import ParsedName, clear_caches, name_format, parse_ccpd_filename, parse_filename, plate_number
from plates.parse import parse_to_files
from plates.records import iter_records, resolve_image
from plates.synth import dump_entries, random_labels, seed_filename

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


# --------------------------------------------------------------------------------------------- properties


_NAME_ALPHABET = string.ascii_letters + string.digits + " _-.:：&车辆属性牌中国云南省蓝色单层燃油车新能源挂学无"


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


@pytest.fixture(scope="module")
def jpeg_bytes() -> bytes:
    image = np.full((48, 64, 3), 128, np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


_FILE_NAME = st.text(alphabet=_NAME_ALPHABET, min_size=1, max_size=60).filter(lambda n: n not in (".", ".."))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_FILE_NAME, min_size=1, max_size=12, unique=True), data=st.data())
def test_every_file_is_parsed_or_rejected(tmp_path_factory, jpeg_bytes, names, data):
    root = tmp_path_factory.mktemp("prop")
    valid = [seed_filename(random_labels(random.Random(i)), [str(i)]) for i in range(data.draw(st.integers(0, 3)))]
    for name in names + valid:
        body = data.draw(st.sampled_from([jpeg_bytes, b"", b"garbage", jpeg_bytes[:200]]))
        (root / name).write_bytes(body if name not in valid else jpeg_bytes)
    out = root.parent / (root.name + ".jsonl")
    summary = parse_to_files(root, out, show_progress=False)
    records = [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()]
    rejects = [json.loads(line)["image"] for line in default_rejects_path(out).read_text(encoding="utf-8").splitlines()]
    seen = sorted(set(names + valid))
    assert summary.files == len(seen) == summary.parsed + summary.rejected
    assert sorted(records + rejects) == seen
    assert len(records) == summary.parsed >= len(valid)


# --------------------------------------------------------------------------------------------- image headers


def _write(path: Path, image, ext=".jpg", params=()):
    path.write_bytes(cv2.imencode(ext, image, list(params))[1].tobytes())
    return path


def test_image_info_from_headers(tmp_path):
    colour = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    grey = colour[:, :, 0]
    rgba = np.dstack([colour, grey])
    cases = [(_write(tmp_path / "c.jpg", colour), (53, 37, 3)),
             (_write(tmp_path / "g.jpg", grey), (53, 37, 1)),
             (_write(tmp_path / "p.jpg", colour, params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1)), (53, 37, 3)),
             (_write(tmp_path / "a.png", rgba, ".png"), (53, 37, 4)),
             (_write(tmp_path / "g.png", grey, ".png"), (53, 37, 1)),
             (_write(tmp_path / "b.bmp", colour, ".bmp"), (53, 37, 3)),
             (_write(tmp_path / "w.webp", colour, ".webp"), (53, 37, 3))]  # no header reader: decoded
    for path, expected in cases:
        info = read_image_info(str(path))
        assert (info.width, info.height, info.channels) == expected, path
        assert info.warnings == ()


def test_jpeg_with_large_exif_segment(tmp_path):
    data = cv2.imencode(".jpg", np.zeros((21, 34, 3), np.uint8))[1].tobytes()
    app1 = b"\xff\xe1" + (30002).to_bytes(2, "big") + b"Exif\0\0" + bytes(29994)
    path = tmp_path / "exif.jpg"
    path.write_bytes(data[:2] + app1 + data[2:])
    info = read_image_info(str(path))
    assert (info.width, info.height, info.channels) == (34, 21, 3)


def test_truncated_corrupt_and_empty_files(tmp_path):
    data = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "bad.jpg").write_bytes(b"\0garbage" * 40)
    (tmp_path / "empty.jpg").write_bytes(b"")
    cut = read_image_info(str(tmp_path / "cut.jpg"))
    assert (cut.width, cut.height) == (64, 64) and cut.warnings[0].startswith("image_truncated")
    assert read_image_info(str(tmp_path / "bad.jpg")).code == "corrupt_image"
    assert read_image_info(str(tmp_path / "empty.jpg")).code == "empty_file"
    assert read_image_info(str(tmp_path / "missing.jpg")).code == "unreadable"


# --------------------------------------------------------------------------------------------- dumps


def test_parse_synthetic_dump(synth_dump, tmp_path):
    out = tmp_path / "records.jsonl"
    summary = parse_to_files(synth_dump, out, show_progress=False)
    files = iter_files(synth_dump)
    assert summary.files == len(files) == 27 and summary.parsed == 24 and summary.rejected == 3
    assert summary.reject_codes == {"unparseable_name": 2, "corrupt_image": 1}
    records = list(iter_records(out))
    expected = {e.path: e for e in dump_entries(24, seed=0)}
    assert [r["image"] for r in records] == sorted(expected)
    for record in records:
        entry = expected[record["image"]]
        assert record["labels"] == entry.labels and record["ids"] == entry.ids
        assert record["format"] == "seed" and record["root"] == str(synth_dump)
        image = cv2.imdecode(np.fromfile(resolve_image(record), np.uint8), cv2.IMREAD_UNCHANGED)
        assert image.shape == (record["height"], record["width"], record["channels"])
    rejects = [json.loads(line) for line in default_rejects_path(out).read_text(encoding="utf-8").splitlines()]
    assert sorted(r["code"] for r in rejects) == ["corrupt_image", "unparseable_name", "unparseable_name"]
    assert all(r["reason"] and (synth_dump / r["image"]).exists() for r in rejects)
    text = "\n".join(summary.lines())
    assert "files seen 27 = parsed 24 + rejected 3" in text and "车辆颜色" in text
    again = tmp_path / "again.jsonl"
    parse_to_files(synth_dump, again, show_progress=False)
    assert again.read_bytes() == out.read_bytes()


def test_worker_processes_give_the_same_output(synth_dump, tmp_path, monkeypatch):
    monkeypatch.setattr(parse_module, "CHUNK_FILES", 4)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    parse_to_files(synth_dump, one, show_progress=False, jobs=1)
    summary = parse_to_files(synth_dump, two, show_progress=False, jobs=2)
    assert one.read_bytes() == two.read_bytes()
    assert default_rejects_path(one).read_bytes() == default_rejects_path(two).read_bytes()
    assert summary.files == 27


def test_forced_format(synth_dump, tmp_path):
    summary = parse_to_files(synth_dump, tmp_path / "c.jsonl", fmt="ccpd", show_progress=False)
    assert summary.parsed == 0 and summary.rejected == summary.files == 27


def test_ccpd_dump_and_outputs_inside_root(tmp_path, jpeg_bytes):
    names = CCPD_SAMPLE.read_text(encoding="utf-8").split()[:20]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(jpeg_bytes)
    out = tmp_path / "records.jsonl"
    parse_to_files(tmp_path, out, show_progress=False)
    summary = parse_to_files(tmp_path, out, show_progress=False)  # its own outputs are not inputs
    assert summary.files == summary.parsed == 20
    assert {r["format"] for r in iter_records(out)} == {"ccpd"}


def test_output_is_atomic(synth_dump, tmp_path, monkeypatch):
    out = tmp_path / "records.jsonl"
    out.write_text("previous\n", encoding="utf-8")
    calls = []

    def interrupted(path):
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return original(path)

    original = parse_module.read_image_info
    monkeypatch.setattr(parse_module, "read_image_info", interrupted)
    with pytest.raises(KeyboardInterrupt):
        parse_to_files(synth_dump, out, show_progress=False)
    assert out.read_text(encoding="utf-8") == "previous\n"
    assert not default_rejects_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]


# --------------------------------------------------------------------------------------------- CLI


def test_cli_errors(tmp_path, capsys):
    assert main(["parse", str(tmp_path / "nope"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "file.jpg").write_bytes(b"x")
    assert main(["parse", str(tmp_path / "file.jpg"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "is a file, expected a folder" in capsys.readouterr().err
    assert main(["parse", str(tmp_path), "-o", str(tmp_path)]) == 2
    assert "is a folder, expected a file" in capsys.readouterr().err
    assert main(["parse", str(tmp_path), "-o", str(tmp_path / "o.jsonl"), "--jobs", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["parse", str(tmp_path), "-o", "x.jsonl", "--format", "xml"])
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_end_to_end(synth_dump, tmp_path):
    out = tmp_path / "out: 记录 1.jsonl"
    summary_path = tmp_path / "summary.json"
    done = subprocess.run([sys.executable, "-m", "plates.cli", "parse", str(synth_dump), "-o", str(out),
                           "--summary", str(summary_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "files seen 27 = parsed 24 + rejected 3" in done.stdout
    assert len(out.read_text(encoding="utf-8").splitlines()) == 24
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["files"] == 27 and sum(summary["field_values"]["车辆朝向"].values()) == 24
    help_text = subprocess.run([sys.executable, "-m", "plates.cli", "parse", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert "--format" in help_text and "rejects" in help_text


def test_the_name_parsing_benchmark_runs_in_one_and_two_processes():
    """bench_parse.py --names-only: its worker processes read their names from the list they inherit (as `plates
    parse`'s do), and both rates come out."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_parse.py"
    done = subprocess.run([sys.executable, str(script), "--names-only", "--files", "3000", "--jobs", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("  ")[1].strip(): line.split()[-2:] for line in done.stdout.splitlines()
            if line.startswith("  ")}
    for label in ("names of this dump", "every vehicle distinct"):
        one, two = (float(rate.replace(",", "")) for rate in rows[label])
        assert one > 0 and two > 0
    assert "target >= 200,000 names/s:" in done.stdout
