"""Per-field confidence from token logprobs, risk–coverage and the abstention threshold (`plates eval`), and
`plates infer --logprobs` end to end on the tiny model."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace

import pytest

from plates.cli import main
from plates.evaluation.confidence import (
    ANSWER, char_tokens, field_confidences, risk_coverage, threshold_for, token_entries, value_confidences,
)
from plates.labels import FIELDS

V = {"车辆品牌": "东风", "车辆类型": "轻微型货车", "车辆颜色": "蓝色", "车辆朝向": "正面"}
P = {"车牌国家": "中国", "车牌省份": "黑龙江省", "车牌号码": "黑KCM158", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
     "车牌用途": "燃油车车牌"}
P2 = {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云A12345", "车牌颜色": "黄色", "车牌层数": "单层车牌",
      "车牌用途": "货车车牌"}


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def swift_logprobs(tokenizer, text: str, logprob_of) -> tuple[dict, list[int], list[tuple[int, int]]]:
    """What `swift infer --logprobs true` writes for a response ``text``: built by ms-swift's own
    ``InferEngine._get_logprobs`` from the real token ids, with ``logprob_of(k)`` for token k. Also returns the
    ids and the tokenizer's character offsets (the independent truth of which token wrote which character)."""
    from swift.infer_engine.infer_engine import InferEngine

    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids = encoded["input_ids"]
    per_token = [{token_id: logprob_of(k)} for k, token_id in enumerate(ids)]
    content = InferEngine._get_logprobs(SimpleNamespace(tokenizer=tokenizer), per_token, ids, None)
    return content, ids, encoded["offset_mapping"]


def expected_confidence(text: str, field: str, value: str, offsets, logprobs: list[float]) -> float:
    """Product of the probabilities of the tokens overlapping the value (written after its key) and its closing
    quote, from the tokenizer's own offsets."""
    written = f'"{field}": "{value}"'
    start = text.index(written) + len(written) - len(value) - 1
    end = start + len(value) + 1
    used = [k for k, (a, b) in enumerate(offsets) if a < end and b > start]
    return math.exp(sum(logprobs[k] for k in used))


def test_field_confidences_on_the_real_tokenizer_and_ms_swift_format(tokenizer):
    answer = {"车辆属性": V, "车牌属性": P}
    text = dumps(answer)
    rng = random.Random(1)
    marks: dict[int, float] = {}
    content, ids, offsets = swift_logprobs(tokenizer, text, lambda k: marks.setdefault(k, -rng.random() / 3))
    values = [marks[k] for k in range(len(ids))]
    entries = token_entries(content)
    assert [t for t, _ in entries] == [tokenizer.decode(i) for i in ids]
    assert any("\ufffd" in t for t, _ in entries), "rare characters are split into byte tokens (轻, 黑)"
    assert all(o is not None for o in char_tokens(text, [t for t, _ in entries]))

    got = field_confidences(text, content)
    assert set(got) == set(FIELDS)
    for field, value in {**V, **P}.items():
        want = expected_confidence(text, field, value, offsets, values)
        assert got[field] == pytest.approx(want, rel=1e-9), field
    spans = {v.field: v for v in value_confidences(text, content)}
    assert text[spans["车牌号码"].start:spans["车牌号码"].end] == "黑KCM158"
    assert spans["车牌号码"].min_token_probability >= spans["车牌号码"].confidence


def test_several_plates_take_the_least_sure_plate_and_single_quotes_work(tokenizer):
    text = dumps({"车辆属性": V, "车牌属性": [P, P2]})
    logprobs = {}

    def logprob_of(k):
        logprobs[k] = -0.05 if k % 3 else -0.4
        return logprobs[k]

    content, _, offsets = swift_logprobs(tokenizer, text, logprob_of)
    values = [logprobs[k] for k in range(len(offsets))]
    got = field_confidences(text, content)
    first = expected_confidence(text, "车牌号码", P["车牌号码"], offsets, values)
    second = expected_confidence(text, "车牌号码", P2["车牌号码"], offsets, values)
    assert got["车牌号码"] == pytest.approx(min(first, second))
    plates = [v.plate for v in value_confidences(text, content) if v.field == "车牌号码"]
    assert plates == [0, 1]

    seed_style = str({"车辆属性": V, "车牌属性": P})  # Python dict text with single quotes
    content, _, _ = swift_logprobs(tokenizer, seed_style, lambda k: -0.1)
    assert set(field_confidences(seed_style, content)) == set(FIELDS)


def test_only_the_answer_object_counts_and_bad_input_gives_nothing(tokenizer):
    draft = dumps({"车辆属性": {**V, "车辆颜色": "红色"}, "车牌属性": P})
    final = dumps({"车辆属性": V, "车牌属性": P})
    text = f"草稿：{draft}\n最终答案：{final}"
    content, _, _ = swift_logprobs(tokenizer, text, lambda k: -0.1)
    spans = [v for v in value_confidences(text, content) if v.field == "车辆颜色"]
    assert [text[v.start:v.end] for v in spans] == ["蓝色"] and spans[0].start > len(draft)
    assert field_confidences(text, None) == {} and field_confidences(text, {"content": []}) == {}
    assert field_confidences(None, content) == {}
    assert field_confidences("not json at all", content) == {}
    broken = {"content": [{"token": "x"}, "junk", {"token": None, "logprob": "nan"}]}
    assert field_confidences(final, broken) == {}


def brute_force_threshold(confidences, correct, target):
    best = None
    for t in sorted(set(confidences)):
        answered = [c for conf, c in zip(confidences, correct) if conf >= t]
        if answered and sum(answered) / len(answered) >= target:
            best = t
            break
    return best


def test_risk_coverage_and_threshold_match_a_brute_force_count():
    rng = random.Random(7)
    for trial in range(40):
        n = rng.randint(1, 60)
        confidences = [round(rng.random(), 1) for _ in range(n)]  # many ties
        correct = [rng.random() < 0.3 + 0.7 * c for c in confidences]
        target = rng.choice([0.5, 0.8, 0.9, 1.0])
        got = threshold_for(confidences, correct, target)
        want = brute_force_threshold(confidences, correct, target)
        if want is None:
            assert got is None
        else:
            answered = [c for conf, c in zip(confidences, correct) if conf >= want]
            assert got["threshold"] == want and got["answered"] == len(answered)
            assert got["accuracy"] == pytest.approx(sum(answered) / len(answered))
        rows = risk_coverage(confidences, correct)
        order = sorted(range(n), key=lambda i: -confidences[i])
        for row in rows:
            k = min(n, max(1, round(row["coverage"] * n)))
            assert row["answered"] == k
            assert row["accuracy"] == pytest.approx(sum(correct[i] for i in order[:k]) / k)


def test_risk_coverage_known_truth():
    # 100 answers: the 20 least confident are the only wrong ones.
    confidences = [i / 100 for i in range(100)]
    correct = [i >= 20 for i in range(100)]
    rows = {r["coverage"]: r["accuracy"] for r in risk_coverage(confidences, correct)}
    assert rows == {1.0: 0.8, 0.95: pytest.approx(80 / 95), 0.9: pytest.approx(80 / 90), 0.8: 1.0}
    reach = threshold_for(confidences, correct, 0.99)
    assert reach == {"threshold": 0.2, "answered": 80, "coverage": 0.8, "accuracy": 1.0}
    assert threshold_for([0.5, 0.5], [True, False], 0.99) is None, "ties are answered or abstained together"


def test_eval_reports_risk_coverage_from_logprobs(tokenizer, tmp_path, capsys):
    """20 answers, 4 of them wrong (plate number misread) and written with low token probabilities: answering the
    most confident 80% is 100% right, and the 99% threshold is the confidence of the least sure right one."""
    lines = []
    for i in range(20):
        plate = {**P, "车牌号码": f"黑KC{i:04d}"}
        reference = {"车辆属性": V, "车牌属性": plate}
        wrong = i % 5 == 0
        predicted = {"车辆属性": V, "车牌属性": {**plate, "车牌号码": "黑KC9999"}} if wrong else reference
        text = dumps(predicted)
        level = -0.9 if wrong else -0.001 * (i + 1)
        content, _, _ = swift_logprobs(tokenizer, text, lambda k, level=level: level)
        lines.append({"response": text, "labels": dumps(reference), "logprobs": content,
                      "images": [f"/data/cam/{i}.jpg"]})
    lines.append({"response": dumps({"车辆属性": V, "车牌属性": P}), "labels": dumps({"车辆属性": V, "车牌属性": P}),
                  "logprobs": None})  # a line without logprobs is counted, not scored for confidence
    results = tmp_path / "结果 logprobs.jsonl"
    results.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "report.json"
    plots = tmp_path / "plots"
    code = main(["eval", str(results), "--json", str(out), "--bootstrap", "0", "--plots", str(plots),
                 "--markdown", str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html")])
    printed = capsys.readouterr().out
    assert code == 0
    block = json.loads(out.read_text(encoding="utf-8"))["confidence"]
    assert block["answers_with_logprobs"] == 20 and block["answers_without_logprobs"] == 1
    number = block["fields"]["车牌号码"]
    assert number["n"] == 20 and number["accuracy"] == 0.8
    assert {r["coverage"]: r["accuracy"] for r in number["coverage"]}[0.8] == 1.0
    assert number["target"]["coverage"] == 0.8 and number["target"]["accuracy"] == 1.0
    right_confidences = []
    for line in lines[:20]:
        conf = field_confidences(line["response"], line["logprobs"])["车牌号码"]
        if json.loads(line["response"]) == json.loads(line["labels"]):
            right_confidences.append(conf)
    assert number["target"]["threshold"] == pytest.approx(min(right_confidences))
    assert block["fields"]["车辆颜色"]["accuracy"] == 1.0
    assert block["fields"][ANSWER]["n"] == 20
    assert "risk–coverage" in printed and "threshold for 99.0%" in printed
    assert "## Confidence" in (tmp_path / "r.md").read_text(encoding="utf-8")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    section = page[page.index("<h2>Confidence and abstention</h2>"):page.index("<h2>Confusion matrices</h2>")]
    assert '<img class="chart" src="data:image/png;base64,' in section and "<td>车牌号码</td>" in section
    import cv2

    image = cv2.imread(str(plots / "risk_coverage.png"))
    assert image is not None and image.shape[1] > 300


def test_target_accuracy_is_checked(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps({"response": "{}", "labels": dumps({"车辆属性": V, "车牌属性": P})}) + "\n")
    assert main(["eval", str(results), "--target-accuracy", "1.5"]) == 2
    assert "--target-accuracy must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_infer_logprobs_end_to_end(tiny_model_dir, tmp_path, capsys):
    """Real `plates infer --logprobs` (real `swift infer`, schema-constrained decoding) on the tiny model, then
    `plates eval`: every character of each response is placed on the tokens that wrote it and each field the
    answer holds gets a confidence."""
    import cv2
    import numpy as np

    from plates.student import EXTRACTION_PROMPT, make_sample

    picture = np.full((224, 320, 3), (60, 120, 40), np.uint8)
    cv2.putText(picture, "A12345", (40, 120), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    image = tmp_path / "车 1.jpg"
    assert cv2.imwrite(str(image), picture)
    one = tmp_path / "one.jsonl"
    sample = make_sample(EXTRACTION_PROMPT, dumps({"车辆属性": V, "车牌属性": P}), str(image))
    one.write_text(dumps(sample) + "\n", encoding="utf-8")
    results = tmp_path / "results.jsonl"
    assert main(["infer", "--model", str(tiny_model_dir), "--dataset", str(one), "-o", str(results),
                 "--logprobs", "--max-new-tokens", "120"]) == 0
    row = json.loads(results.read_text(encoding="utf-8").splitlines()[0])
    content = row["logprobs"]["content"]
    assert len(content) >= 10 and all(isinstance(e["logprob"], float) and e["logprob"] <= 0 for e in content)
    assert {"token", "logprob", "bytes"} <= set(content[0])
    owners = char_tokens(row["response"], [t for t, _ in token_entries(row["logprobs"])])
    assert owners and all(o is not None for o in owners), "every character is placed on its tokens"
    confidences = field_confidences(row["response"], row["logprobs"])
    assert confidences, row["response"]
    assert set(confidences) <= set(FIELDS) and all(0.0 <= c <= 1.0 for c in confidences.values())
    capsys.readouterr()
    out = tmp_path / "report.json"
    assert main(["eval", str(results), "--json", str(out), "--bootstrap", "0"]) == 0
    block = json.loads(out.read_text(encoding="utf-8"))["confidence"]
    assert block["answers_with_logprobs"] == 1
    assert "risk–coverage" in capsys.readouterr().out
