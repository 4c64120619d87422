import json
import warnings

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from jsonschema import Draft202012Validator

from plates.cli import main
from plates.evaluation.align import align_plates, plate_similarity
from plates.evaluation.common import MISSING
from plates.evaluation.extract import parse_response
from plates.evaluation.items import Item
from plates.evaluation.plots import write_plots
from plates.evaluation.render import format_markdown, format_report
from plates.evaluation.report import evaluate, evaluate_file
from plates.evaluation.schema_check import Violation
from plates.evaluation.scorer import Scorer
from plates.labels import PLATE_FIELDS, UNKNOWN, load_plate_rules, load_vocabularies, plate_warnings
from plates.schema import load_schema

V = {"车辆品牌": "奥迪", "车辆类型": "小轿车", "车辆颜色": "黑色", "车辆朝向": "背面"}
P = {"车牌国家": "中国", "车牌省份": "黑龙江省", "车牌号码": "黑GCY987", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
     "车牌用途": "燃油车车牌"}
P2 = {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云A12345", "车牌颜色": "黄色", "车牌层数": "单层车牌",
      "车牌用途": "货车车牌"}

# The seed's "模糊" output: 黑 misread as 鲁, so the province silently became 山东省.
SEED_OUTPUT = """{'车辆属性': {
'车辆品牌': '奥迪',
'车辆类型': '小轿车',
'车辆颜色': '黑色',
'车辆朝向': '背面'},
'车牌属性': {
'车牌国家': '中国',
'车牌省份': '山东省',
'车牌号码': '鲁GCY987',
'车牌颜色': '蓝色',
'车牌层数': '单层车牌',
'车牌用途': '燃油车车牌'}}"""


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False)


def answer(vehicle=None, plates=None):
    plates = [P] if plates is None else plates
    return {"车辆属性": dict(V if vehicle is None else vehicle), "车牌属性": plates[0] if len(plates) == 1 else plates}


@pytest.fixture(scope="module")
def scorer():
    return Scorer()


# ------------------------------------------------------------------------------------------------ parsing


def test_parse_paths():
    text = dumps(answer())
    assert parse_response(text).method == "json"
    assert parse_response(f"```json\n{text}\n```").method == "fence"
    assert parse_response(f"答案如下:\n```\n{SEED_OUTPUT}\n```\n").method == "fence"
    assert parse_response(SEED_OUTPUT).method == "python"
    assert parse_response(SEED_OUTPUT).value["车牌属性"]["车牌号码"] == "鲁GCY987"
    reasoning = "车辆是一辆黑色奥迪{背面}。车牌为蓝色单层车牌,号码黑GCY987。\n" + text
    parsed = parse_response(reasoning)
    assert (parsed.method, parsed.value) == ("extract", answer())
    assert parse_response(text + "\n以上是我的回答。").method == "extract"
    truncated = parse_response(text[:text.index("车牌层数") - 1])
    assert truncated.method == "repair"
    assert truncated.value["车牌属性"]["车牌颜色"] == "蓝色" and "车牌层数" not in truncated.value["车牌属性"]
    assert parse_response("```json\n" + text[:-20]).method == "repair"
    for hopeless in ("无法识别该图片", "", "   ", None, "{", "}{"):
        assert parse_response(hopeless).method == "none", hopeless
    assert parse_response("[1, 2]").method == "json"  # decodes; the schema then rejects it
    assert parse_response({"already": "decoded"}).method == "json"


# ------------------------------------------------------------------------------------------------ schema


def test_violation_classes(scorer):
    assert scorer.violations(answer()) == ()
    plate = dict(P)
    del plate["车牌用途"]
    assert scorer.violations({"车辆属性": V, "车牌属性": plate}) == (
        Violation("missing_field", "车牌属性.车牌用途", "车牌用途"),)
    assert scorer.violations({"车辆属性": V}) == (Violation("missing_field", "车牌属性", "车牌属性"),)
    assert scorer.violations(answer(plates=[P, {**P2, "车牌层数": "单层"}])) == (
        Violation("unknown_value", "车牌属性[1].车牌层数", "车牌层数"),)
    assert scorer.violations({"车辆属性": V, "车牌属性": "无"}) == (Violation("wrong_type", "车牌属性", "车牌属性"),)
    assert scorer.violations({"车辆属性": {**V, "车辆颜色": 3}, "车牌属性": []}) == (
        Violation("wrong_type", "车辆属性.车辆颜色", "车辆颜色"),)
    assert scorer.violations([answer()]) == (Violation("wrong_type", "(answer)", "(answer)"),)
    assert scorer.violations({**answer(), "备注": "x", "置信度": 1}) == (
        Violation("extra_field", "备注", "(answer)"), Violation("extra_field", "置信度", "(answer)"))
    assert scorer.violations(answer(vehicle={**V, "车辆型号": "A6"})) == (
        Violation("extra_field", "车辆属性.车辆型号", "车辆属性"),)


def test_open_fields_and_plate_numbers_accept_any_string(scorer):
    assert scorer.fast_valid(answer(vehicle={**V, "车辆品牌": "某新品牌"}))
    assert scorer.fast_valid(answer(plates=[{**P, "车牌号码": "14 11586", "车牌国家": "阿布扎比"}]))
    assert scorer.fast_valid(answer(plates=[]))


# ------------------------------------------------------------------------------------------------ scoring


def test_seed_misread_plate(scorer):
    outcome = scorer.score(SEED_OUTPUT, scorer.reference(answer()))
    assert outcome.method == "python" and outcome.schema_valid and not outcome.exact
    assert outcome.wrong() == [("车牌省份", "黑龙江省", "山东省"), ("车牌号码", "黑GCY987", "鲁GCY987")]
    assert outcome.char_scores == [pytest.approx(6 / 7)]
    assert outcome.char_substitutions == [("黑", "鲁")]
    assert outcome.inconsistencies == ()  # 鲁 + 山东省 agree: the misread is self-consistent


def test_normalisation_and_plate_number_forms(scorer):
    reference = scorer.reference(answer())
    synonyms = answer(vehicle={**V, "车辆朝向": "车尾", "车辆品牌": "Audi"},
                      plates=[{**P, "车牌层数": "单层", "车牌用途": "燃油车", "车牌号码": "黑Ｇ-CY 98.7"}])
    outcome = scorer.score(dumps(synonyms), reference)
    assert outcome.exact and outcome.wrong() == [] and outcome.char_scores == [1.0]
    assert not outcome.schema_valid
    # synonyms are unknown values; the full-width, punctuated plate number breaks the schema's number pattern
    assert {v.kind for v in outcome.violations} == {"unknown_value", "bad_format"}


def test_unknown_references_leave_support(scorer):
    reference = scorer.reference({"车辆属性": {**V, "车辆品牌": "未知"}, "车牌属性": [{**P, "车牌号码": "unknown"}]})
    outcome = scorer.score(dumps(answer(vehicle={**V, "车辆品牌": "大众"})), reference)
    fields = [f for f, _, _ in outcome.pairs]
    assert "车辆品牌" not in fields and outcome.numbers == [] and outcome.char_scores == []
    assert outcome.exact


def test_inconsistent_answers_are_flagged(scorer):
    reference = scorer.reference(answer())
    mismatch = scorer.score(dumps(answer(plates=[{**P, "车牌省份": "山东省"}])), reference)
    assert mismatch.inconsistencies == ("province_mismatch",)
    colour = scorer.score(dumps(answer(plates=[{**P, "车牌颜色": "黄色"}])), reference)
    assert colour.inconsistencies == ("colour_usage",)


def test_multi_plate_alignment(scorer):
    reference = scorer.reference(answer(plates=[P, P2]))
    swapped = scorer.score(dumps(answer(plates=[P2, P])), reference)
    assert swapped.exact and swapped.missing_plates == swapped.extra_plates == 0
    one = scorer.score(dumps(answer(plates=[{**P2, "车牌号码": "云A12845"}])), reference)
    assert (one.missing_plates, one.extra_plates) == (1, 0)
    assert ("车牌号码", "黑GCY987", MISSING) in one.wrong() and ("车牌号码", "云A12345", "云A12845") in one.wrong()
    assert sorted(one.char_scores) == [0.0, pytest.approx(6 / 7)]
    three = scorer.score(dumps(answer(plates=[P, P2, P2])), reference)
    assert (three.missing_plates, three.extra_plates, three.exact) == (0, 1, False)
    assert three.wrong() == []
    none = scorer.score(dumps(answer(plates=[])), scorer.reference(answer(plates=[])))
    assert none.exact and none.pairs[-1][0] == "车辆朝向"


def test_align_plates_rules():
    def norm(plate):
        return {f: (v.replace(" ", "") if f == "车牌号码" else v) for f, v in plate.items()}

    a, b = norm(P), norm(P2)
    assert align_plates([a, b], [b, a]).pairs == ((0, 1), (1, 0))
    assert align_plates([a], []).missing == (0,)
    assert align_plates([], [a, b]).extra == (0, 1)
    near_b = {**b, "车牌号码": "云A12346"}
    alignment = align_plates([a, b], [near_b])
    assert alignment.pairs == ((1, 0),) and alignment.missing == (0,)
    assert plate_similarity(b, near_b)[0] > plate_similarity(a, near_b)[0]
    # number unknown on both: the other fields decide
    blank_a, blank_b = {**a, "车牌号码": UNKNOWN}, {**b, "车牌号码": UNKNOWN}
    assert align_plates([blank_a, blank_b], [{**blank_b}, {**blank_a}]).pairs == ((0, 1), (1, 0))


# ------------------------------------------------------------------------------------------------ report


def write_results(path):
    truncated = dumps(answer())
    truncated = truncated[:truncated.index("车牌层数") - 1]
    lines = [
        {"response": dumps(answer()), "labels": dumps(answer())},                                      # 1
        {"response": SEED_OUTPUT, "labels": dumps(answer())},                                          # 2
        {"response": "```json\n" + dumps(answer(plates=[{**P, "车牌层数": "单层"}])) + "\n```",
         "labels": dumps(answer())},                                                                   # 3
        {"response": "这是一辆黑色奥迪,从背面拍摄。\n" + dumps(answer(vehicle={**V, "车辆品牌": "大众"})),
         "labels": answer(vehicle={**V, "车辆品牌": "未知"})},                                         # 4
        {"response": truncated, "labels": dumps(answer())},                                            # 5
        {"response": "图片太模糊,无法回答。", "labels": dumps(answer())},                              # 6
        "not json at all",                                                                             # 7
        {"response": dumps(answer())},                                                                 # 8
        {"response": dumps(answer(vehicle={**V, "车辆颜色": "白色"}, plates=[])),
         "labels": dumps(answer(plates=[]))},                                                          # 9
        {"response": dumps(answer(plates=[{**P2, "车牌用途": "燃油车车牌"}, P])),
         "labels": dumps(answer(plates=[P, P2]))},                                                     # 10
        {"response": dumps(answer(vehicle={**V, "车辆型号": "A6"}, plates=[{**P, "车牌层数": 1, "车牌省份": "山东省"}])),
         "labels": dumps(answer())},                                                                   # 11
    ]
    with open(path, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else dumps(line)) + "\n")
        handle.write("\n")
    return path


def test_report_numbers(tmp_path):
    report = evaluate_file(write_results(tmp_path / "results.jsonl"), by=["车牌颜色"])
    assert report["n"] == 9
    assert report["skipped_lines"] == 2
    assert report["skipped"][0].startswith("line 7: not JSON")
    assert report["skipped"][1] == "line 8: no 'labels' (reference answer)"
    assert report["parse_methods"] == {"json": 4, "fence": 1, "python": 1, "extract": 1, "repair": 1, "none": 1}
    assert report["json_valid_rate"] == pytest.approx(4 / 9)
    assert report["parsed_rate"] == pytest.approx(8 / 9)
    assert report["schema_valid_rate"] == pytest.approx(5 / 9)
    assert report["exact_match"] == pytest.approx(3 / 9)
    assert report["plate_char_accuracy"] == pytest.approx((7 + 6 / 7) / 9)
    expected = {"车辆品牌": (8, 7), "车辆类型": (9, 8), "车辆颜色": (9, 7), "车辆朝向": (9, 8), "车牌国家": (9, 8),
                "车牌省份": (9, 6), "车牌号码": (9, 7), "车牌颜色": (9, 8), "车牌层数": (9, 6), "车牌用途": (9, 6)}
    for field, (support, correct) in expected.items():
        stats = report["fields"][field]
        assert (stats["support"], stats["correct"]) == (support, correct), field
        assert stats["accuracy"] == pytest.approx(correct / support)
    assert report["fields"]["车辆颜色"]["macro_f1"] == pytest.approx(0.875)
    assert report["fields"]["车辆颜色"]["confusions"] == [["黑色", MISSING, 1], ["黑色", "白色", 1]]
    assert report["fields"]["车牌号码"]["confusions"] == [["黑", "鲁", 1]]
    assert report["violations"] == {"missing_field": {"count": 2, "answers": 1},
                                    "unknown_value": {"count": 1, "answers": 1},
                                    "wrong_type": {"count": 1, "answers": 1},
                                    "extra_field": {"count": 1, "answers": 1}}
    assert report["violation_fields"]["missing_field"] == {"车牌层数": 1, "车牌用途": 1}
    assert report["inconsistent_answers"] == 2
    assert report["inconsistencies"] == {"province_mismatch": 1, "colour_usage": 1}
    assert report["plates"] == {"reference": 9, "predicted": 8, "missing": 1, "extra": 0,
                                "count_accuracy": pytest.approx(8 / 9)}
    by = report["by"]["车牌颜色"]
    assert {k: v["n"] for k, v in by.items()} == {"蓝色": 7, "蓝色+黄色": 1, "无车牌": 1}
    assert by["无车牌"]["fields"]["车辆颜色"] == {"support": 1, "correct": 0, "accuracy": 0.0}
    assert by["蓝色"]["exact_match"] == pytest.approx(3 / 7)
    assert [e["line"] for e in report["examples"]["unparseable"]] == [6]
    assert [e["line"] for e in report["examples"]["inconsistent"]] == [10, 11]

    text = format_report(report)
    assert "9 answers (2 malformed lines skipped)" in text
    assert "strict JSON 44.4% · parsed 88.9% · schema-valid 55.6% · exact match 33.3% · plate chars 87.3%" in text
    assert "黑→鲁 ×1" in text
    markdown = format_markdown(report)
    assert "| 车牌层数 | 9 | 6 | 66.7% |" in markdown
    assert "- line 7: not JSON" in markdown


def test_eval_cli_writes_json_markdown_plots_details(tmp_path, capsys):
    results = write_results(tmp_path / "results with space.jsonl")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["eval", str(results), "--json", str(out / "r.json"), "--markdown", str(out / "r.md"),
                     "--plots", str(out / "plots"), "--by", "plate_colour", "--details", str(out / "d.jsonl")])
    assert code == 0
    captured = capsys.readouterr()
    assert "skipped line 7: not JSON" in captured.err and "skipped line 8" in captured.err
    assert "车牌层数" in captured.out and "by 车牌颜色:" in captured.out
    report = json.loads((out / "r.json").read_text(encoding="utf-8"))
    for key in ("n", "json_valid_rate", "parsed_rate", "schema_valid_rate", "exact_match", "plate_char_accuracy"):
        assert key in report
    assert report["fields"]["车牌层数"]["support"] == 9 and report["fields"]["车牌层数"]["correct"] == 6
    assert (out / "r.md").read_text(encoding="utf-8").startswith("# plates eval")
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "accuracy.png" in pngs and "confusion_plate_layers.png" in pngs and len(pngs) == 10
    assert all((out / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    details = [json.loads(line) for line in (out / "d.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [d["line"] for d in details] == [1, 2, 3, 4, 5, 6, 9, 10, 11]
    assert details[1]["wrong"] == [["车牌省份", "黑龙江省", "山东省"], ["车牌号码", "黑GCY987", "鲁GCY987"]]


def test_plots_without_cjk_font_use_ascii_labels(tmp_path, monkeypatch):
    import plates.evaluation.plots as plots_module

    monkeypatch.setattr(plots_module, "_cjk_font", lambda: None)
    report = evaluate_file(write_results(tmp_path / "results.jsonl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_plots(report, tmp_path / "plots")
    assert len(paths) == 10
    legend = (tmp_path / "plots" / "legend.txt").read_text(encoding="utf-8")
    assert "  black = 黑色" in legend and "confusion_plate_usage.png (车牌用途)" in legend


def test_eval_cli_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.jsonl"
    junk.write_text("nope\n{\"response\": 1}\n", encoding="utf-8")
    assert main(["eval", str(junk)]) == 2
    assert "no scorable answers (2 malformed lines skipped)" in capsys.readouterr().err
    assert main(["eval", str(write_results(tmp_path / "r.jsonl")), "--by", "车牌号码"]) == 2
    assert main(["eval", str(tmp_path / "r.jsonl"), "--by", "colour"]) == 2
    assert "unknown field" in capsys.readouterr().err


def test_predictions_joined_to_records(tmp_path, scorer):
    root = tmp_path / "dump"
    images = ["a/车辆属性:奥迪-车尾 1.jpg", "b/第二张：图.jpg", "c/no prediction.jpg"]
    records = tmp_path / "records.jsonl"
    with open(records, "w", encoding="utf-8") as handle:
        for image in images:
            handle.write(dumps({"image": image, "root": str(root), "format": "seed", "width": 10, "height": 10,
                                "channels": 3, "labels": {"车辆属性": V, "车牌属性": [P]}, "ids": [],
                                "warnings": []}) + "\n")
    predictions = tmp_path / "predictions.jsonl"
    with open(predictions, "w", encoding="utf-8") as handle:
        handle.write(dumps({"image": images[0], "response": dumps(answer())}) + "\n")
        handle.write(dumps({"images": [{"path": str(root / images[1])}], "response": SEED_OUTPUT}) + "\n")
        handle.write(dumps({"image": "elsewhere.jpg", "response": "{}"}) + "\n")
        handle.write(dumps({"response": "{}"}) + "\n")
    report = evaluate_file(predictions, records=records)
    assert report["n"] == 2 and report["exact_match"] == 0.5
    assert report["skipped"] == ["line 3: image 'elsewhere.jpg' is not in the records",
                                 "line 4: no 'image' to join with the records"]
    assert report["records_without_prediction"] == 1
    assert report["records_without_prediction_examples"] == [images[2]]


def test_compare(tmp_path, capsys):
    base = {"n": 10, "json_valid_rate": 0.2, "parsed_rate": 0.9, "schema_valid_rate": 0.1, "exact_match": 0.0,
            "plate_char_accuracy": 0.5, "fields": {"车辆品牌": {"support": 10, "correct": 6, "accuracy": 0.6}}}
    tuned = {**base, "json_valid_rate": 1.0, "exact_match": 0.55,
             "fields": {"车辆品牌": {"support": 10, "correct": 9, "accuracy": 0.9},
                        "车牌号码": {"support": 10, "correct": 8, "accuracy": 0.8}}}
    (tmp_path / "base.json").write_text(json.dumps(base), encoding="utf-8")
    (tmp_path / "tuned.json").write_text(json.dumps(tuned), encoding="utf-8")
    code = main(["compare", str(tmp_path / "base.json"), str(tmp_path / "tuned.json"), "--names", "原始模型",
                 "微调后模型", "--markdown", str(tmp_path / "c.md")])
    assert code == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    # reports without per-answer samples (older ones): values and deltas, no interval or p-value
    assert lines["车辆品牌"] == ["accuracy", "60.0%", "90.0%", "+30.0", "pp", "—", "—"]
    assert lines["车牌号码"] == ["accuracy", "—", "80.0%", "—", "—", "—"]
    assert lines["parsed"] == ["90.0%", "90.0%", "±0.0", "pp", "—", "—"]
    assert "full plate" not in out and "unpaired: A and B have no per-answer samples" in out
    markdown = (tmp_path / "c.md").read_text(encoding="utf-8")
    assert "| exact match | 0.0% | 55.0% | +55.0 pp | — | — |  |" in markdown
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    assert main(["compare", str(tmp_path / "base.json"), str(tmp_path / "bad.json")]) == 2
    assert "not a `plates eval --json` report" in capsys.readouterr().err


def test_report_round_trip_compare(tmp_path, capsys):
    results = write_results(tmp_path / "results.jsonl")
    assert main(["eval", str(results), "--json", str(tmp_path / "a.json")]) == 0
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert "±0.0 pp" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ properties

VOCAB = load_vocabularies()
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                       st.sampled_from(["未知", "单层", "车头", "蓝", "unknown", "", "云A12345", "14 11586"]))
_json_value = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=8)


@st.composite
def canonical_plate(draw):
    plate = {f: draw(st.sampled_from([*VOCAB[f].canonical, UNKNOWN])) for f in PLATE_FIELDS if f != "车牌号码"}
    abbreviation = draw(st.sampled_from(sorted(load_plate_rules()["abbreviations"].values())))
    plate["车牌号码"] = draw(st.sampled_from([UNKNOWN, abbreviation + draw(st.text("ABC0123", min_size=6, max_size=7))]))
    return {f: plate[f] for f in PLATE_FIELDS}


@st.composite
def canonical_answer(draw):
    vehicle = {f: draw(st.sampled_from([*VOCAB[f].canonical, UNKNOWN])) for f in V}
    plates = draw(st.lists(canonical_plate(), max_size=3))
    return {"车辆属性": vehicle, "车牌属性": plates[0] if len(plates) == 1 else plates}


@st.composite
def mutated_answer(draw):
    value = json.loads(json.dumps(draw(canonical_answer())))
    for _ in range(draw(st.integers(0, 3))):
        plates = value.get("车牌属性")
        groups = [value, value.get("车辆属性")] + ([plates] if isinstance(plates, dict) else
                                                  [p for p in plates] if isinstance(plates, list) else [])
        group = draw(st.sampled_from([g for g in groups if isinstance(g, dict)]))
        keys = sorted(group)
        op = draw(st.sampled_from(["delete", "replace", "add"]))
        if op == "delete" and keys:
            del group[draw(st.sampled_from(keys))]
        elif op == "replace" and keys:
            group[draw(st.sampled_from(keys))] = draw(_json_value)
        else:
            group[draw(st.text(max_size=4))] = draw(_json_value)
    return value


@st.composite
def response_text(draw):
    value = draw(mutated_answer())
    text = draw(st.sampled_from([dumps(value), repr(value), json.dumps(value)]))
    wrap = draw(st.sampled_from(["plain", "fence", "prose", "truncate", "noise"]))
    if wrap == "fence":
        text = f"```json\n{text}\n```"
    elif wrap == "prose":
        text = draw(st.text(max_size=20)) + "\n" + text + draw(st.text(max_size=10))
    elif wrap == "truncate":
        text = text[:draw(st.integers(0, len(text)))]
    elif wrap == "noise":
        text = draw(st.text(max_size=60))
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(response_text(), canonical_answer()), min_size=1, max_size=6))
def test_property_every_answer_accounted_for(pairs):
    scorer = Scorer()
    items = [Item(i, "", text, scorer.reference(reference)) for i, (text, reference) in enumerate(pairs, 1)]
    report = evaluate(items, scorer, by=["车辆颜色"])
    n = len(pairs)
    assert report["n"] == n and sum(report["parse_methods"].values()) == n
    for key in ("json_valid_rate", "parsed_rate", "schema_valid_rate", "exact_match"):
        assert 0.0 <= report[key] <= 1.0
    assert report["json_valid_rate"] <= report["parsed_rate"]
    assert report["schema_valid_rate"] <= report["parsed_rate"]
    known = sum(1 for _, ref in pairs for f in V if ref["车辆属性"][f] != UNKNOWN)
    assert sum(report["fields"][f]["support"] for f in V) == known
    for stats in report["fields"].values():
        assert 0 <= stats["correct"] <= stats["support"]
    assert sum(s["n"] for s in report["by"]["车辆颜色"].values()) == n
    format_report(report)
    format_markdown(report)


@settings(max_examples=300, deadline=None)
@given(st.one_of(mutated_answer(), canonical_answer(), _json_value))
def test_property_fast_check_agrees_with_jsonschema(value):
    scorer = Scorer()
    validator = Draft202012Validator(load_schema())
    assert scorer.fast_valid(value) == validator.is_valid(value)
    assert (scorer.violations(value) == ()) == validator.is_valid(value)
    baseline = Scorer(fast_check=False)
    reference = scorer.reference(answer())
    fast, slow = scorer.score(dumps(value), reference), baseline.score(dumps(value), reference)
    assert (fast.schema_valid, fast.exact, fast.pairs, fast.numbers) == (slow.schema_valid, slow.exact, slow.pairs,
                                                                         slow.numbers)


@settings(max_examples=300, deadline=None)
@given(canonical_plate(), st.sampled_from(["", "未知"]))
def test_property_cached_consistency_matches_plate_warnings(plate, country):
    scorer = Scorer()
    if country:
        plate = {**plate, "车牌国家": country}
    normalised = {f: (scorer.number(v) if f == "车牌号码" else v) for f, v in plate.items()}
    codes = {w.split(":")[0] for w in plate_warnings(plate)} & {"province_mismatch", "colour_usage"}
    scorer.inconsistencies(normalised)  # fill the cache, then ask again
    assert set(scorer.inconsistencies(normalised)) == codes


def test_reference_label_forms(tmp_path):
    good = dumps(answer())
    lines = [
        {"response": good, "labels": answer()},                                       # object
        {"response": good, "labels": repr(answer())},                                 # Python-dict text
        {"response": good, "labels": "先看车辆:黑色奥迪,背面。再看车牌:蓝色单层。\n" + good},  # reasoning, then answer
        {"response": good, "labels": "一辆车"},                                        # no answer in it
        {"response": good, "labels": [answer()]},                                     # not an object
        {"response": None, "labels": good},                                           # model produced nothing
        [1, 2],
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(dumps(line) + "\n" for line in lines), encoding="utf-8")
    report = evaluate_file(path)
    assert report["n"] == 4 and report["exact_match"] == 0.75
    assert report["parse_methods"] == {"json": 3, "none": 1}
    assert report["skipped"] == ["line 4: 'labels' is not a JSON answer",
                                 "line 5: reference is not an answer (needs '车辆属性' / '车牌属性')",
                                 "line 7: not a JSON object"]


def test_cached_inconsistency_verdicts_match_plate_warnings_on_every_plate():
    """The scorer caches each consistency verdict on the few fields its check reads; over many random plates
    (every country, province, colour and usage, first characters right and wrong) the cached codes must equal
    what plate_warnings says of each plate afresh."""
    import random

    from plates.evaluation.common import INCONSISTENCY_CODES
    from plates.evaluation.scorer import Scorer

    rng = random.Random(7)
    vocab = load_vocabularies()
    abbreviations = list(load_plate_rules()["abbreviations"].values())
    scorer = Scorer()
    for _ in range(4000):
        plate = {f: rng.choice(list(vocab[f].canonical) + [UNKNOWN]) for f in PLATE_FIELDS if f != "车牌号码"}
        plate["车牌号码"] = rng.choice([UNKNOWN, rng.choice(abbreviations) + "A12345", "A12345", "粤Z1234港"])
        found = {w.split(":", 1)[0] for w in plate_warnings(plate)}
        assert scorer.inconsistencies(plate) == tuple(c for c in INCONSISTENCY_CODES if c in found), plate
