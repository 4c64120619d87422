"""Images answered by one `swift infer` per run (:mod:`plates.engine_answers`): the pending images split into
runs, each image asked with the run's turns, ms-swift's results file read while it grows and every answer filed
under its own image in the journal, and a re-run answering only what is missing (the slow test runs a real
`swift infer` on the tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from plates.answer_lines import PredictSummary
from plates.engine_answers import (
    ENGINE_RUN_IMAGES, Answers, answer_images, engine_segments, prepare_engine, sample,
)
from plates.errors import UserError
from plates.grounding import BoxMapper
from plates.image_inputs import Candidate, collect_inputs
from plates.inference import InferenceSettings
from plates.io import read_jsonl, write_jsonl
from plates.journal import Journal
from helpers import argv_pairs, unlabelled_images as _unlabelled

GOOD = json.dumps({"车辆属性": {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"},
                   "车牌属性": []}, ensure_ascii=False)
WIDTH, HEIGHT = 720, 1160  # a CCPD image: not square, over MAX_PIXELS
MAX_PIXELS = 200704  # 256 × 28²


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class _Bar:
    n = 0

    def update(self, k):
        self.n += k


def _swift_rows(images: list[Path]) -> list[bytes]:
    """Result lines as `swift infer` writes them (``images`` as ms-swift's dicts)."""
    return [(json.dumps({"response": GOOD, "images": [{"path": str(p), "bytes": None}], "logprobs": None},
                        ensure_ascii=False) + "\n").encode() for p in images]


def test_answers_are_filed_by_image_as_ms_swift_writes_them(tmp_path):
    """The results file is read while it grows: torn last lines wait, lines in any rank order are filed under
    their own image, each once; an answer for an image not asked stops the run and keeps what came before."""
    from plates.answer_lines import PredictSummary
    from plates.engine_answers import Answers
    from plates.journal import Journal

    images = _unlabelled(tmp_path / "in", 3)
    pending, _ = collect_inputs([str(p) for p in images])
    result, out = tmp_path / "results.jsonl", tmp_path / "preds.jsonl"
    summary = PredictSummary(out=str(out))
    log = Journal(out)

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    answers = Answers(pending, result, log=log, summary=summary, settings="s", decoding="schema", bar=bar)
    answers.drain()  # no results file yet
    rows = _swift_rows([Path(pending[2].path), Path(pending[0].path), Path(pending[1].path)])
    result.write_bytes(rows[0] + rows[1][:20])
    answers.drain()
    assert [line["image"] for line in read_jsonl(out)] == [pending[2].path] and bar.n == 1
    with open(result, "ab") as handle:
        handle.write(rows[1][20:] + rows[2])
    answers.drain()
    lines = read_jsonl(out)
    assert sorted(line["key"] for line in lines) == sorted(c.key for c in pending) and bar.n == 3
    assert all(line["decoding"] == "schema" and line["schema_valid"] for line in lines)
    assert summary.answered == 3 and summary.chunks == 2
    with open(result, "ab") as handle:
        handle.write(rows[0])
    answers.drain()
    assert isinstance(answers.error, UserError) and "answered already" in str(answers.error)
    log.close()
    assert len(read_jsonl(out)) == 3


def test_predict_keeps_mapped_boxes_in_its_answer_lines(tmp_path):
    """predict's own results reader (Answers, what follows `swift infer`'s result file) with a mapper: the line's
    response and normalised answer hold the box in original pixels, the model's text stays in raw_response."""
    from plates.answer_lines import PredictSummary, describe_answer
    from plates.engine_answers import Answers
    from plates.image_inputs import Candidate
    from plates.journal import Journal
    from tqdm import tqdm

    image = tmp_path / "车 1.jpg"
    cv2.imwrite(str(image), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    vehicle = {"车辆品牌": "大众", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"}
    plate = {"车牌国家": "中国", "车牌省份": "安徽省", "车牌号码": "皖AE981N", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
             "车牌用途": "燃油车车牌"}
    text = json.dumps({"车辆属性": vehicle, "车牌属性": {**plate, "车牌位置": [42, 338, 187, 396]}}, ensure_ascii=False)
    result = tmp_path / "results.jsonl"
    write_jsonl(result, [{"response": text, "images": [{"path": str(image), "bytes": None}]}])
    output = tmp_path / "predictions.jsonl"
    log = Journal(output, "predict")
    log.recover()
    with tqdm(disable=True) as bar:
        answers = Answers([Candidate(str(image), "0" * 64)], result, log=log, summary=PredictSummary(out=str(output)),
                          settings="s", decoding="schema", bar=bar, mapper=BoxMapper("none", MAX_PIXELS))
        answers.drain()
    log.close()
    assert answers.error is None
    (line,) = _read(output)
    assert line["raw_response"] == text and line["box_mapping"]["box_convention"] == "none"
    assert json.loads(line["response"])["车牌属性"]["车牌位置"] == [90, 700, 401, 820]
    assert line["answer"]["车牌属性"] == {**plate, "车牌位置": [90, 700, 401, 820]} and line["schema_valid"]
    plain = describe_answer(json.dumps({"车辆属性": vehicle, "车牌属性": plate}, ensure_ascii=False))
    assert plain["answer"] == {"车辆属性": vehicle, "车牌属性": plate}, "answers without a box are as before"


def test_a_result_line_that_is_not_json_stops_the_run_and_keeps_the_answers_before_it(tmp_path):
    pending = [Candidate(str(tmp_path / f"{i}.jpg"), f"{i}" * 64) for i in range(3)]
    result, out = tmp_path / "results.jsonl", tmp_path / "preds.jsonl"
    log = Journal(out, "predict")
    answers = Answers(pending, result, log=log, summary=PredictSummary(out=str(out)), settings="s",
                      decoding="free", bar=_Bar())
    rows = _swift_rows([Path(c.path) for c in pending])
    result.write_bytes(rows[0])
    answers.drain()
    with open(result, "ab") as handle:
        handle.write(b"Traceback (most recent call last):\n" + rows[1])
    answers.drain()
    answers.drain()  # a stopped reader reads no further
    log.close()
    assert isinstance(answers.error, UserError) and "not JSON" in str(answers.error)
    assert [line["key"] for line in _read(out)] == [pending[0].key]
    assert answers.answered == {0}


def test_what_swift_wrote_before_it_stopped_is_kept_when_the_reader_closes(tmp_path):
    """Leaving the ``with`` block reads the file once more whatever the polling thread saw: an answer written
    just before ms-swift stopped (a Ctrl-C included) is never lost."""
    pending = [Candidate(str(tmp_path / "车 a.jpg"), "a" * 64)]
    result, out = tmp_path / "results.jsonl", tmp_path / "preds.jsonl"
    log = Journal(out, "predict")
    summary = PredictSummary(out=str(out))
    answers = Answers(pending, result, log=log, summary=summary, settings="s1", decoding="schema", bar=_Bar())
    with answers:
        result.write_bytes(_swift_rows([Path(pending[0].path)])[0])
    log.close()
    (line,) = _read(out)
    assert (line["key"], line["image"], line["sha256"], line["settings"]) == (pending[0].key, pending[0].path,
                                                                            "a" * 64, "s1")
    assert line["schema_valid"] and line["confidence"] is None
    assert (summary.answered, summary.parsed, summary.schema_valid, summary.chunks) == (1, 1, 1, 1)


def test_runs_are_capped_so_ms_swift_never_holds_too_many_answers():
    pending = [Candidate(f"/in/{i}.jpg", "0") for i in range(ENGINE_RUN_IMAGES + 1)]
    assert [len(s) for s in engine_segments(pending, logprobs=False)] == [ENGINE_RUN_IMAGES, 1]
    with_logprobs = engine_segments(pending, logprobs=True)
    assert [len(s) for s in with_logprobs] == [ENGINE_RUN_IMAGES // 5] * 5 + [1]
    assert [c for s in with_logprobs for c in s] == pending, "every image once, in order"
    assert engine_segments([], logprobs=False) == []


def test_each_image_is_asked_with_the_runs_turns():
    messages = [{"role": "system", "content": "你是交警"}, {"role": "user", "content": "<image>请识别"}]
    assert sample(Candidate("/in/车 1.jpg", "0"), messages) == {"messages": messages, "images": ["/in/车 1.jpg"]}


def test_the_engine_is_one_swift_infer_over_the_scratch_folder(tmp_path, tiny_model_dir):
    """Built up front: the dataset and results files live in the caller's folder, chunks are ms-swift's
    ``write_batch_size``, and the fingerprint follows the settings that decide the answers."""
    settings = InferenceSettings(model=str(tiny_model_dir), decoding="free", max_new_tokens=16)
    notes: list[str] = []
    engine = prepare_engine(settings, tmp_path, tmp_path / "swift.log", chunk_size=7, dry_run=True, notes=notes)
    got = argv_pairs(engine.argv)
    assert got["val_dataset"] == [str(tmp_path / "pending.jsonl")] and engine.dataset == tmp_path / "pending.jsonl"
    assert got["result_path"] == [str(tmp_path / "results.jsonl")] and engine.result == tmp_path / "results.jsonl"
    assert got["write_batch_size"] == ["7"] and got["max_new_tokens"] == ["16"]
    assert not engine.worker and engine.mapper is None
    assert engine.messages[-1]["role"] == "user"
    again = prepare_engine(settings, tmp_path, tmp_path / "swift.log", chunk_size=99, dry_run=True)
    assert again.settings_key == engine.settings_key, "the chunk size decides no answer"
    other = InferenceSettings(model=str(tiny_model_dir), decoding="free", max_new_tokens=17)
    assert prepare_engine(other, tmp_path, tmp_path / "swift.log", chunk_size=7, dry_run=True).settings_key != \
        engine.settings_key


@pytest.mark.slow
def test_a_real_swift_infer_answers_each_image_once_and_a_rerun_only_what_is_missing(tmp_path, tiny_model_dir):
    images = _unlabelled(tmp_path / "in", 3, seed=3)
    candidates, _ = collect_inputs([str(p) for p in images])
    out = tmp_path / "预测 out" / "preds.jsonl"
    rejects = out.with_name("preds.rejects.jsonl")
    rejected = [{"image": str(tmp_path / "in" / "x.txt"), "reason": "not an image", "code": "not_image"}]
    settings = InferenceSettings(model=str(tiny_model_dir), max_new_tokens=32, max_pixels=112 * 112)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    engine = prepare_engine(settings, scratch, tmp_path / "swift.log", chunk_size=1)
    first = PredictSummary(out=str(out))
    answer_images(engine, candidates[:2], rejected, rejects, out, first)
    lines = read_jsonl(out)
    assert sorted(line["key"] for line in lines) == sorted(c.key for c in candidates[:2])
    assert all(line["settings"] == engine.settings_key and line["decoding"] == "schema" for line in lines)
    assert all(isinstance(line["response"], str) for line in lines)
    assert (first.answered, first.skipped) == (2, 0)
    assert 1 <= first.chunks <= 2, "appended as read: ms-swift writes one line per chunk of one, the reader may find both"
    assert read_jsonl(rejects) == rejected
    again = PredictSummary(out=str(out))
    answer_images(engine, candidates, [], rejects, out, again)
    assert (again.answered, again.skipped) == (1, 2)
    assert sorted(line["key"] for line in read_jsonl(out)) == sorted(c.key for c in candidates), "each image once"
