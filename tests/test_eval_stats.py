"""Confidence intervals, paired compare, plate metrics, decoding mode and output guards of `plates eval`/`compare`,
on crafted results whose truth is known."""

import json
import random

import numpy as np
import pytest

from plates.cli import main
from plates.evaluation.metrics import METRICS
from plates.evaluation.plate_metrics import plate_type
from plates.evaluation.report import evaluate_file, load_report
from plates.evaluation.scorer import Scorer
from plates.evaluation.samples import read_samples
from plates.evaluation.stats import bootstrap_intervals, paired_delta, sign_test

V = {"车辆品牌": "奥迪", "车辆类型": "小轿车", "车辆颜色": "黑色", "车辆朝向": "背面"}
BLUE = {"车牌国家": "中国", "车牌省份": "北京市", "车牌号码": "京A12345", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
        "车牌用途": "燃油车车牌"}
GREEN = {"车牌国家": "中国", "车牌省份": "广东省", "车牌号码": "粤BD12345", "车牌颜色": "绿色", "车牌层数": "单层车牌",
         "车牌用途": "新能源车牌"}
YELLOW_DOUBLE = {"车牌国家": "中国", "车牌省份": "河南省", "车牌号码": "豫A12345", "车牌颜色": "黄色",
                 "车牌层数": "双层车牌", "车牌用途": "货车车牌"}
COLOURS = ["黑色", "白色", "红色", "蓝色"]


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False)


def answer(vehicle=None, plates=()):
    plates = list(plates)
    return {"车辆属性": dict(V if vehicle is None else vehicle), "车牌属性": plates[0] if len(plates) == 1 else plates}


def write_lines(path, rows):
    path.write_text("".join(dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def colour_results(path, right, vehicles=None, decoding="schema"):
    """One line per entry of ``right``: the body colour is answered right or wrong, everything else right.
    ``vehicles`` gives each line's carNNNN id (frames of one vehicle share it)."""
    rows = []
    for k, ok in enumerate(right):
        truth = COLOURS[k % 4]
        said = truth if ok else COLOURS[(k + 1) % 4]
        car = vehicles[k] if vehicles is not None else k
        row = {"image": f"/data/cam{k % 3}/car{car:04d}_{k:05d}.jpg",
               "response": dumps(answer({**V, "车辆颜色": said}, [BLUE])),
               "labels": dumps(answer({**V, "车辆颜色": truth}, [BLUE]))}
        if decoding is not None:
            row["decoding"] = decoding
        rows.append(row)
    return write_lines(path, rows)


# ------------------------------------------------------------------------------------------------ intervals


def test_intervals_cover_the_true_rate_at_the_nominal_frequency():
    rng = np.random.default_rng(1)
    p, n, trials, covered = 0.7, 300, 300, 0
    ids = [str(k) for k in range(n)]
    for trial in range(trials):
        num = (rng.random((n, 1)) < p).astype(float)
        (low, high), = bootstrap_intervals(num, np.ones_like(num), ids, replicates=400, seed=trial)
        covered += low <= p <= high
    assert 0.91 <= covered / trials <= 0.98, covered / trials


def test_clustering_by_vehicle_widens_intervals_and_keeps_coverage():
    """Five identical frames per vehicle: resampling images pretends to 5x the data and under-covers; resampling
    vehicles gives intervals about sqrt(5) wider that cover at the nominal rate."""
    rng = np.random.default_rng(2)
    p, n_vehicles, frames, trials = 0.6, 80, 5, 200
    vehicles = [f"car{v}" for v in range(n_vehicles) for _ in range(frames)]
    images = [str(k) for k in range(n_vehicles * frames)]
    covered = {"vehicle": 0, "image": 0}
    widths = {"vehicle": [], "image": []}
    for trial in range(trials):
        per_vehicle = rng.random(n_vehicles) < p
        num = np.repeat(per_vehicle, frames).astype(float)[:, None]
        den = np.ones_like(num)
        for kind, clusters in (("vehicle", vehicles), ("image", images)):
            (low, high), = bootstrap_intervals(num, den, clusters, replicates=300, seed=trial)
            covered[kind] += low <= p <= high
            widths[kind].append(high - low)
    ratio = np.mean(widths["vehicle"]) / np.mean(widths["image"])
    assert 1.8 < ratio < 2.7, ratio
    assert 0.90 <= covered["vehicle"] / trials <= 0.99, covered
    assert covered["image"] / trials < 0.80, covered


def test_eval_json_has_seeded_intervals_by_vehicle(tmp_path):
    rng = random.Random(3)
    right = [rng.random() < 0.75 for _ in range(120)]
    vehicles = [k // 3 for k in range(120)]  # three frames per vehicle
    results = colour_results(tmp_path / "r.jsonl", right, vehicles)
    assert main(["eval", str(results), "--json", str(tmp_path / "a.json"), "--markdown", str(tmp_path / "a.md"),
                 "--bootstrap", "500", "--seed", "7"]) == 0
    assert main(["eval", str(results), "--json", str(tmp_path / "b.json"), "--bootstrap", "500", "--seed", "7"]) == 0
    assert main(["eval", str(results), "--json", str(tmp_path / "c.json"), "--bootstrap", "500", "--seed", "8"]) == 0
    a, b, c = (load_report(tmp_path / f"{x}.json") for x in "abc")
    assert a["ci95"] == b["ci95"] and a["ci95"] != c["ci95"]
    assert a["bootstrap"] == {"replicates": 500, "seed": 7, "level": 0.95, "resampled": "vehicles", "clusters": 40}
    colour = a["fields"]["车辆颜色"]
    low, high = colour["ci95"]
    assert low < colour["accuracy"] == sum(right) / 120 < high and high - low < 0.35
    assert a["ci95"]["vehicle_colour_accuracy"] == colour["ci95"]
    assert a["ci95"]["exact_match"] == colour["ci95"]  # the colour is the only thing that can be wrong
    assert a["ci95"]["schema_valid_rate"] == [1.0, 1.0]
    assert a["fields"]["车辆品牌"]["ci95"] == [1.0, 1.0]
    markdown = (tmp_path / "a.md").read_text(encoding="utf-8")
    assert f"| exact match | {100 * colour['accuracy']:.1f}% | [{100 * low:.1f}, {100 * high:.1f}] |" in markdown
    assert "500 bootstrap replicates resampling whole vehicles (40 of them), seed 7" in markdown
    assert main(["eval", str(results), "--json", str(tmp_path / "off.json"), "--bootstrap", "0"]) == 0
    off = load_report(tmp_path / "off.json")
    assert "ci95" not in off and "ci95" not in off["fields"]["车辆颜色"] and off["samples"]["id"]


def test_terminal_table_shows_intervals(tmp_path, capsys):
    results = colour_results(tmp_path / "r.jsonl", [True, False] * 20)
    assert main(["eval", str(results), "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "decoding: schema" in out and "95% CI" in out and "exact match 50.0% [" in out
    row = next(line for line in out.splitlines() if line.startswith("车辆颜色"))
    low, high = row.split()[4].split("–")
    assert float(low) < 50 < float(high)


def test_metric_values_equal_their_per_answer_sums(tmp_path):
    """The registry's per-answer contributions add up to exactly what the report says."""
    rng = random.Random(4)
    rows = []
    for k in range(60):
        plates = rng.choice([[BLUE], [GREEN], [BLUE, YELLOW_DOUBLE], []])
        said = [{**p, "车牌号码": p["车牌号码"][:-1] + "9"} if rng.random() < 0.4 else p for p in plates]
        if rng.random() < 0.2:
            said = said[:-1]
        response = dumps(answer({**V, "车辆颜色": rng.choice(COLOURS)}, said))
        if rng.random() < 0.1:
            response = "I cannot tell"
        rows.append({"image": f"x/{k}.jpg", "response": response,
                     "labels": dumps(answer({**V, "车辆颜色": rng.choice(COLOURS)}, plates))})
    report = evaluate_file(write_lines(tmp_path / "r.jsonl", rows), samples=True)
    _, _, columns = read_samples(report)
    assert set(columns) == set(METRICS)
    for name, metric in METRICS.items():
        num, den = columns[name]
        expected = num.sum() / den.sum() if den.sum() else None
        assert metric.value(report) == pytest.approx(expected), name


# ------------------------------------------------------------------------------------------------ compare


def test_compare_identical_reports_is_paired_with_p_one(tmp_path, capsys):
    rng = random.Random(5)
    results = colour_results(tmp_path / "r.jsonl", [rng.random() < 0.6 for _ in range(150)])
    assert main(["eval", str(results), "--json", str(tmp_path / "a.json"), "--bootstrap", "300"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--json", str(tmp_path / "c.json"),
                 "--bootstrap", "300"]) == 0
    out = capsys.readouterr()
    comparison = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    assert comparison["paired"] is True and "paired: the same 150 answers" in out.out
    for name, entry in comparison["metrics"].items():
        assert set(entry) >= {"a", "b", "delta", "ci95", "p_value"}
        assert entry["p_value"] == 1.0 and entry["delta"] == 0 and not entry["significant"], name
        assert entry["ci95"] is None or entry["ci95"] == [0.0, 0.0], name
    assert "*" not in out.out and "warning" not in out.err


def test_compare_finds_a_clearly_better_model(tmp_path, capsys):
    rng = random.Random(6)
    base = [rng.random() < 0.5 for _ in range(200)]
    better = [ok or rng.random() < 0.8 for ok in base]
    colour_results(tmp_path / "a.jsonl", base)
    colour_results(tmp_path / "b.jsonl", better)
    for name in "ab":
        assert main(["eval", str(tmp_path / f"{name}.jsonl"), "--json", str(tmp_path / f"{name}.json"),
                     "--bootstrap", "0"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(tmp_path / "c.json"),
                 "--markdown", str(tmp_path / "c.md")]) == 0
    out = capsys.readouterr().out
    colour = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["metrics"]["vehicle_colour_accuracy"]
    assert colour["p_value"] < 0.01 and colour["significant"]
    assert 0 < colour["ci95"][0] < colour["delta"] < colour["ci95"][1]
    assert colour["delta"] == pytest.approx((sum(better) - sum(base)) / 200)
    row = next(line for line in out.splitlines() if line.startswith("车辆颜色"))
    assert row.rstrip().endswith("* better") and "<0.001" in row
    assert "* = significant" in (tmp_path / "c.md").read_text(encoding="utf-8")


def test_compare_unpaired_reports_say_so(tmp_path, capsys):
    colour_results(tmp_path / "a.jsonl", [True] * 60 + [False] * 40)
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["image"] = row["image"].replace("/data/", "/other/")
    write_lines(tmp_path / "b.jsonl", rows)
    for name in "ab":
        assert main(["eval", str(tmp_path / f"{name}.jsonl"), "--json", str(tmp_path / f"{name}.json"),
                     "--bootstrap", "0"]) == 0
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(tmp_path / "c.json"),
                 "--bootstrap", "300"]) == 0
    assert "unpaired: the reports scored different answers (100 and 100, 0 shared)" in capsys.readouterr().out
    comparison = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    colour = comparison["metrics"]["vehicle_colour_accuracy"]
    assert comparison["paired"] is False and colour["delta"] == 0 and colour["p_value"] > 0.5
    assert colour["ci95"][0] < 0 < colour["ci95"][1]


def test_paired_beats_unpaired_on_correlated_answers():
    """Two models that mostly agree: pairing cancels the shared difficulty, so the paired interval of the
    difference is much narrower than resampling each model on its own would give."""
    rng = np.random.default_rng(7)
    hard = rng.random(400) < 0.4
    a = (~hard).astype(float)[:, None]
    b = a.copy()
    b[rng.choice(np.flatnonzero(hard), 20, replace=False)] = 1.0
    ones = np.ones_like(a)
    ids = [str(k) for k in range(400)]
    (low, high), = paired_delta(a, ones, b, ones, ids, replicates=500)
    assert 0 < low < 0.05 < high < 0.08
    assert sign_test(a[:, 0], ones[:, 0], b[:, 0], ones[:, 0]) < 1e-5


def test_decoding_mode_is_recorded_and_compare_warns(tmp_path, capsys):
    colour_results(tmp_path / "s.jsonl", [True, False] * 10, decoding="schema")
    colour_results(tmp_path / "f.jsonl", [True, False] * 10, decoding="free")
    colour_results(tmp_path / "old.jsonl", [True, False] * 10, decoding=None)
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[0]["decoding"] = "free"
    write_lines(tmp_path / "mixed.jsonl", rows)
    modes = {}
    for name in ("s", "f", "old", "mixed"):
        assert main(["eval", str(tmp_path / f"{name}.jsonl"), "--json", str(tmp_path / f"{name}.json"),
                     "--markdown", str(tmp_path / f"{name}.md"), "--bootstrap", "0"]) == 0
        modes[name] = load_report(tmp_path / f"{name}.json")["decoding"]
    assert modes == {"s": "schema", "f": "free", "old": "unknown", "mixed": "mixed"}
    assert "Decoding: free." in (tmp_path / "f.md").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "f.json"), str(tmp_path / "s.json")]) == 0
    err = capsys.readouterr().err
    assert "warning: A was decoded free, B schema" in err
    assert main(["compare", str(tmp_path / "s.json"), str(tmp_path / "s.json")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_compare_accepts_older_reports(tmp_path, capsys):
    results = colour_results(tmp_path / "r.jsonl", [True, False, True] * 10)
    assert main(["eval", str(results), "--json", str(tmp_path / "new.json"), "--bootstrap", "0"]) == 0
    old = load_report(tmp_path / "new.json")
    for key in ("plate", "samples", "decoding", "inconsistent_rate", "plate_char_accuracy"):
        old.pop(key)
    (tmp_path / "old.json").write_text(json.dumps(old, ensure_ascii=False), encoding="utf-8")
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json",
                 str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "unpaired: A has no per-answer samples" in out
    comparison = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    assert comparison["metrics"]["full_plate_accuracy"]["a"] is None
    assert comparison["metrics"]["full_plate_accuracy"]["b"] == 1.0
    assert comparison["metrics"]["exact_match"]["delta"] == 0


# ------------------------------------------------------------------------------------------------ plate metrics


def test_plate_types():
    assert [plate_type(p) for p in (BLUE, GREEN, YELLOW_DOUBLE)] == ["blue", "green_new_energy", "yellow_double"]
    assert plate_type({**YELLOW_DOUBLE, "车牌层数": "单层车牌"}) == "yellow_single"
    assert plate_type({**YELLOW_DOUBLE, "车牌号码": "豫A1234挂", "车牌用途": "挂车车牌"}) == "trailer"
    assert plate_type({**BLUE, "车牌号码": "京A1234警", "车牌颜色": "白色", "车牌用途": "警用车牌"}) == "police"
    assert plate_type({**BLUE, "车牌号码": "粤Z1234港", "车牌颜色": "黑色", "车牌用途": "港澳车牌"}) == "hk_macao"
    assert plate_type({**BLUE, "车牌号码": "使123456", "车牌颜色": "黑色", "车牌用途": "使领馆车牌"}) == "embassy"
    assert plate_type({**BLUE, "车牌国家": "越南", "车牌号码": "29A12345"}) == "foreign"


def test_plate_metrics_match_hand_computed_values(tmp_path):
    """Blue 7-character plate misread in one character, green 8-character plate missing, yellow double-layer plate
    with its last character dropped, and one blue plate read right."""
    cases = [
        ([BLUE], [{**BLUE, "车牌号码": "京A12845"}]),
        ([GREEN], []),
        ([YELLOW_DOUBLE], [{**YELLOW_DOUBLE, "车牌号码": "豫A1234"}]),
        ([{**BLUE, "车牌号码": "沪C99999", "车牌省份": "上海市"}], [{**BLUE, "车牌号码": "沪C99999", "车牌省份": "上海市"}]),
    ]
    rows = [{"image": f"{k}.jpg", "response": dumps(answer(None, said)), "labels": dumps(answer(None, ref))}
            for k, (ref, said) in enumerate(cases)]
    report = evaluate_file(write_lines(tmp_path / "r.jsonl", rows), bootstrap=200, samples=True)
    plate = report["plate"]
    assert plate["n"] == 4
    assert plate["full_plate_accuracy"] == pytest.approx(1 / 4)
    assert plate["char_accuracy"] == pytest.approx((6 / 7 + 0 + 6 / 7 + 1) / 4)
    assert plate["length_accuracy"] == pytest.approx(2 / 4)
    assert plate["mean_edit_distance"] == pytest.approx((1 / 7 + 1 + 1 / 7 + 0) / 4)
    # positions: 4 plates have 7+ characters, one (green) has an 8th; 京A12845 is wrong at index 4 (3→8),
    # 豫A1234 at index 6 (nothing there), the missing green plate everywhere
    assert plate["position_support"] == [4, 4, 4, 4, 4, 4, 4, 1]
    assert plate["by_position"] == pytest.approx([3 / 4, 3 / 4, 3 / 4, 3 / 4, 2 / 4, 3 / 4, 2 / 4, 0.0])
    blue = plate["by_type"]["blue"]
    assert blue["n"] == 2 and blue["full_plate_accuracy"] == 0.5 and blue["mean_edit_distance"] == pytest.approx(1 / 14)
    green = plate["by_type"]["green_new_energy"]
    assert (green["n"], green["full_plate_accuracy"], green["char_accuracy"], green["length_accuracy"],
            green["mean_edit_distance"], green["by_position"]) == (1, 0.0, 0.0, 0.0, 1.0, [0.0] * 8)
    yellow = plate["by_type"]["yellow_double"]
    assert yellow["length_accuracy"] == 0.0 and yellow["char_accuracy"] == pytest.approx(6 / 7)
    assert yellow["by_position"] == [1.0] * 6 + [0.0]
    assert list(plate["by_type"]) == ["blue", "green_new_energy", "yellow_double"]
    assert report["plate_char_accuracy"] == pytest.approx(plate["char_accuracy"])
    assert report["fields"]["车牌号码"]["accuracy"] == plate["full_plate_accuracy"]
    assert set(report["ci95"]) >= {"full_plate_accuracy", "plate_length_accuracy", "plate_edit_distance"}


def test_plate_metrics_in_text_and_markdown(tmp_path, capsys):
    rows = [{"image": "a.jpg", "response": dumps(answer(None, [{**GREEN, "车牌号码": "粤BD12346"}])),
             "labels": dumps(answer(None, [GREEN]))}]
    results = write_lines(tmp_path / "r.jsonl", rows)
    assert main(["eval", str(results), "--markdown", str(tmp_path / "r.md"), "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "plate numbers: full plate 0.0%" in out and "edit distance 0.125" in out
    assert "green_new_energy" in out
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "## Plate numbers" in markdown and "| green_new_energy | 1 | 0.0% | 87.5% | 100.0% | 0.125 |" in markdown


# ------------------------------------------------------------------------------------------------ output guards


def test_outputs_never_replace_inputs(tmp_path, capsys):
    results = colour_results(tmp_path / "r.jsonl", [True, False] * 5)
    before = results.read_bytes()
    for flag in ("--json", "--markdown", "--details"):
        assert main(["eval", str(results), flag, str(results)]) == 2, flag
        assert "plates eval: error" in capsys.readouterr().err
    assert results.read_bytes() == before
    assert main(["eval", str(results), "--json", str(tmp_path / "a.json"), "--bootstrap", "0"]) == 0
    report_bytes = (tmp_path / "a.json").read_bytes()
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--json",
                 str(tmp_path / "a.json")]) == 2
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--markdown",
                 str(tmp_path / "a.json")]) == 2
    assert (tmp_path / "a.json").read_bytes() == report_bytes
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["eval", str(results), "--plots", str(tmp_path / "plots"), "--bootstrap", "0"]) == 2
    assert "holds files plates did not write" in capsys.readouterr().err
    assert (tmp_path / "plots" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_scorer_keeps_plate_types_on_references():
    scorer = Scorer()
    reference = scorer.reference(answer(None, [BLUE, GREEN]))
    assert reference.types == ("blue", "green_new_energy")
    outcome = scorer.score(dumps(answer(None, [GREEN, BLUE])), reference)
    assert sorted(zip(outcome.number_types, outcome.numbers)) == [
        ("blue", ("京A12345", "京A12345")), ("green_new_energy", ("粤BD12345", "粤BD12345"))]


def test_recipe_add_a_metric(tmp_path, capsys):
    """CONTRIBUTING's recipe: one `register` call adds a metric to the report, its interval, the Markdown and
    `plates compare`; an older report without it still compares."""
    from plates.evaluation.metrics import Metric, register, unregister

    colour_results(tmp_path / "r.jsonl", [True, False, True, True] * 10)
    assert main(["eval", str(tmp_path / "r.jsonl"), "--json", str(tmp_path / "old.json"), "--bootstrap", "0"]) == 0
    register(Metric("brand_audi_rate", "answers Audi", ("brand_audi_rate",),
                    lambda o: (float(any(f == "车辆品牌" and p == "奥迪" for f, _, p in o.pairs)), 1.0)))
    try:
        assert main(["eval", str(tmp_path / "r.jsonl"), "--json", str(tmp_path / "new.json"), "--markdown",
                     str(tmp_path / "new.md"), "--bootstrap", "100"]) == 0
        assert "more: answers Audi 100.0% [100.0, 100.0]" in capsys.readouterr().out
        report = load_report(tmp_path / "new.json")
        assert report["brand_audi_rate"] == 1.0 and report["ci95"]["brand_audi_rate"] == [1.0, 1.0]
        assert "| answers Audi | 100.0% | [100.0, 100.0] |" in (tmp_path / "new.md").read_text(encoding="utf-8")
        assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json",
                     str(tmp_path / "c.json")]) == 0
        entry = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["metrics"]["brand_audi_rate"]
        assert (entry["a"], entry["b"], entry["ci95"]) == (None, 1.0, None)
    finally:
        unregister("brand_audi_rate")


def test_vehicle_ids_for_resampling():
    from plates.evaluation.items import Item
    from plates.evaluation.samples import vehicle_of

    def vehicle(image, line=1, known=""):
        return vehicle_of(Item(line, image, "", None, known))

    assert vehicle("/d/cam1/car0012_3.jpg") == vehicle("/d/cam2/CAR0012-x.jpg") == "car0012"
    assert vehicle("/d/car0012/3.jpg") == "car0012"
    assert vehicle("/d/x/3.jpg") == "/d/x/3.jpg" and vehicle("/d/scar12x.jpg") == "/d/scar12x.jpg"
    assert vehicle("", 5) == "line 5" and vehicle("/d/car1_2.jpg", known="car0099") == "car0099"
