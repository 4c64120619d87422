"""Schema-constrained decoding (`plates infer --decoding schema|free`): the bounded schema, the vLLM regex, the
xgrammar logits processor on the tiny model's real tokenizer, the `swift infer` command lines, and real
`swift infer` runs on the untrained tiny model and with a freshly trained LoRA."""

from __future__ import annotations

import json
import random
import re
import shlex
from pathlib import Path

import pytest

from plates import decoding
from plates.student import REASON_PROMPT
from plates.cli import main
from plates.errors import UserError
from plates.labels import PLATE_GROUP, VEHICLE_GROUP, answer_from_labels
from plates.schema import answer_validator, build_schema, load_schema, schema_path
from plates.synth import random_labels
from helpers import argv_pairs

SPECIAL_NUMBERS = ["12 34567", "51G-123.45", "AB 1234", "粤Z1234港", "冀A1234挂", "沪A1234学", "京A1234警",
                   "云KCM158", "京AD12345", "川A12345D", "未知"]


def _answers(n: int, seed: int) -> list[dict]:
    """Answers as the project makes them: random labels (annotator slips included) -> answer_from_labels, plus
    every special plate shape in a one-plate, two-plate and no-plate answer."""
    rng = random.Random(seed)
    answers = [answer_from_labels(random_labels(rng, faults=0.3)) for _ in range(max(n, 1))]
    for k in range(0, len(answers), 3):  # every third answer as `plates build --grounding` teaches it
        count = len(answers[k][PLATE_GROUP]) if isinstance(answers[k][PLATE_GROUP], list) else 1
        answers[k] = answer_from_labels(_labels_of(answers[k]), boxes=[
            [rng.choice((0, rng.randrange(100000))) for _ in range(4)] if rng.random() < 0.8 else None
            for _ in range(count)])
    base = answers[0][VEHICLE_GROUP]
    plate = {"车牌国家": "中国", "车牌省份": "未知", "车牌号码": "", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
             "车牌用途": "未知"}
    for number in SPECIAL_NUMBERS:
        one = {**plate, "车牌号码": number}
        answers += [{VEHICLE_GROUP: base, PLATE_GROUP: one}, {VEHICLE_GROUP: base, PLATE_GROUP: [one, one]}]
    answers.append({VEHICLE_GROUP: base, PLATE_GROUP: []})
    return answers


def _labels_of(answer: dict) -> dict:
    plates = answer[PLATE_GROUP]
    return {VEHICLE_GROUP: answer[VEHICLE_GROUP], PLATE_GROUP: [plates] if isinstance(plates, dict) else plates}


BOXES_OUT_OF_BOUNDS = ("[1, 2, 3]", "[1, 2, 3, 4, 5]", "[100000, 2, 3, 4]", "[-1, 2, 3, 4]", "[1.5, 2, 3, 4]",
                       "[01, 2, 3, 4]", '["1", 2, 3, 4]', "[]")


def _with_box_text(answer: dict, box_text: str) -> str:
    """The answer's JSON with its (single) plate's box written as ``box_text``."""
    plate = answer[PLATE_GROUP]
    text = json.dumps(answer_from_labels(_labels_of(answer), boxes=[[7, 8, 9, 10]]), ensure_ascii=False)
    assert isinstance(plate, dict) and '"车牌位置": [7, 8, 9, 10]' in text
    return text.replace('"车牌位置": [7, 8, 9, 10]', f'"车牌位置": {box_text}')


@pytest.fixture(scope="module")
def regex() -> re.Pattern:
    return re.compile(decoding.schema_regex())


# ---- the schema's bounds ---------------------------------------------------------------------------------------

def test_every_answer_the_project_produces_is_valid_under_the_bounded_schema():
    committed = answer_validator(load_schema(schema_path()))
    generated = answer_validator(build_schema())
    answers = _answers(3000, seed=7)
    shapes = {"foreign": 0, "hk": 0, "suffix": 0}
    for answer in answers:
        assert committed.is_valid(answer), (answer, [e.message for e in committed.iter_errors(answer)])
        assert generated.is_valid(answer), [e.message for e in generated.iter_errors(answer)]
        for plate in [answer[PLATE_GROUP]] if isinstance(answer[PLATE_GROUP], dict) else answer[PLATE_GROUP]:
            number = plate["车牌号码"]
            shapes["foreign"] += plate["车牌国家"] != "中国"
            shapes["hk"] += plate["车牌省份"] == "香港特别行政区"
            shapes["suffix"] += number[-1:] in ("挂", "学", "警", "港")
    assert all(count > 10 for count in shapes.values()), shapes


@pytest.mark.parametrize("field, value", [
    ("车辆品牌", "东风" * 20),                   # rambling
    ("车辆品牌", "东风  汽车"),                  # two spaces
    ("车辆品牌", " 东风"),                       # leading space
    ("车辆品牌", "东\n风"),
    ("车辆品牌", ""),
    ("车牌国家", "中国" * 9),
    ("车牌号码", "云kcm158"),                    # canonical numbers are upper case
    ("车牌号码", "云K车CM158"),                  # a Chinese character no plate carries
    ("车牌号码", "A" * 11),
    ("车牌号码", "12 345 67 89"),                # four words
])
def test_open_strings_are_bounded(field, value):
    validator = answer_validator(load_schema(schema_path()))
    answer = next(json.loads(json.dumps(a)) for a in _answers(0, seed=0) if isinstance(a[PLATE_GROUP], dict))
    assert validator.is_valid(answer)
    if field == "车辆品牌":
        answer[VEHICLE_GROUP][field] = value
    else:
        answer[PLATE_GROUP][field] = value
    assert not validator.is_valid(answer)


def test_decoding_schema_rewrites_if_then_else_and_accepts_the_same_answers():
    from jsonschema import Draft202012Validator

    schema = load_schema(schema_path())
    rewritten = decoding.decoding_schema(schema)
    text = json.dumps(rewritten, ensure_ascii=False)
    assert '"if"' not in text and '"examples"' not in text and "anyOf" in text
    assert "maxLength" not in text and "maxItems" in text
    original, simple = Draft202012Validator(schema), Draft202012Validator(rewritten)
    for answer in _answers(300, seed=3):
        assert simple.is_valid(answer)
    for bad in ({VEHICLE_GROUP: {}, PLATE_GROUP: []}, {VEHICLE_GROUP: _answers(0, 0)[0][VEHICLE_GROUP],
                                                       PLATE_GROUP: "无"}):
        assert not original.is_valid(bad) and not simple.is_valid(bad)


# ---- the vLLM regex --------------------------------------------------------------------------------------------

def test_regex_accepts_every_valid_answer_in_both_whitespace_styles(regex):
    for answer in _answers(3000, seed=11):
        assert regex.fullmatch(json.dumps(answer, ensure_ascii=False)), answer
        assert regex.fullmatch(json.dumps(answer, ensure_ascii=False, separators=(",", ":")))


def _corruptions(text: str, answer: dict, rng: random.Random) -> list[str]:
    """Edits that each make the answer schema-invalid (checked by the caller with jsonschema)."""
    vehicle = dict(answer[VEHICLE_GROUP])
    out = [
        text[:-1],                                                         # truncated
        text[: rng.randrange(1, len(text) - 1)],                           # cut anywhere
        text.replace('"车辆颜色": "', '"车辆颜色": "很', 1),                 # not an enum value
        text.replace('"车辆朝向"', '"朝向"', 1),                             # renamed key
        "```json\n" + text + "\n```",                                     # fenced
        text + " 以上",                                                    # trailing text
        json.dumps({**answer, "备注": "无"}, ensure_ascii=False),            # extra field
        json.dumps({VEHICLE_GROUP: {**vehicle, "车辆颜色": 3}, PLATE_GROUP: answer[PLATE_GROUP]},
                   ensure_ascii=False),                                    # wrong type
        json.dumps({VEHICLE_GROUP: {**vehicle, "车辆品牌": "东风" * 12}, PLATE_GROUP: answer[PLATE_GROUP]},
                   ensure_ascii=False),                                    # rambling string
        json.dumps({VEHICLE_GROUP: vehicle}, ensure_ascii=False),          # missing group
        str(answer),                                                       # Python dict
    ]
    plates = answer[PLATE_GROUP]
    if isinstance(plates, dict):
        out.append(json.dumps({VEHICLE_GROUP: vehicle, PLATE_GROUP: [plates] * 5}, ensure_ascii=False))
    return out


def test_the_optional_box_is_accepted_with_and_without_and_bounded(regex):
    """Answers with and without 车牌位置 are valid under the schema and the regex; a box that is not four integers
    in 0..99999 is refused by both."""
    validator = answer_validator(load_schema(schema_path()))
    answers = _answers(300, seed=31)
    with_box = [a for a in answers if "车牌位置" in json.dumps(a, ensure_ascii=False)]
    assert len(with_box) > 50 and len(answers) - len(with_box) > 50
    one = next(a for a in answers if isinstance(a[PLATE_GROUP], dict))
    for text in (_with_box_text(one, "[0, 0, 99999, 99999]"), _with_box_text(one, "[12, 3, 140, 57]")):
        assert validator.is_valid(json.loads(text)) and regex.fullmatch(text), text
    for box in BOXES_OUT_OF_BOUNDS:
        text = _with_box_text(one, box)
        assert not regex.fullmatch(text), text
        if box != "[01, 2, 3, 4]":  # not JSON at all
            assert not validator.is_valid(json.loads(text)), text


def test_regex_rejects_corrupted_answers(regex):
    rng = random.Random(5)
    validator = answer_validator(load_schema(schema_path()))
    checked = 0
    for answer in _answers(800, seed=13):
        text = json.dumps(answer, ensure_ascii=False)
        for bad in _corruptions(text, answer, rng):
            try:
                assert not validator.is_valid(json.loads(bad)), bad
            except json.JSONDecodeError:
                pass
            assert not regex.fullmatch(bad), bad
            checked += 1
        for loose in (text.replace(", ", ",  ", 1), text.replace("{", "{\n", 1), " " + text):
            assert validator.is_valid(json.loads(loose))
            assert not regex.fullmatch(loose), "whitespace is compact: at most one space, no newlines"
    assert checked > 9000


def test_regex_random_edits_never_admit_an_invalid_answer(regex):
    """Soundness under arbitrary one-character edits: whatever the regex still accepts is a valid answer."""
    rng = random.Random(17)
    validator = answer_validator(load_schema(schema_path()))
    alphabet = '{}[]",: 0A中未知东风色 \n'
    accepted = 0
    for answer in _answers(1500, seed=19):
        text = json.dumps(answer, ensure_ascii=False)
        for _ in range(4):
            i = rng.randrange(len(text))
            edit = rng.choice((text[:i] + text[i + 1:], text[:i] + rng.choice(alphabet) + text[i:],
                               text[:i] + rng.choice(alphabet) + text[i + 1:]))
            if regex.fullmatch(edit):
                accepted += 1
                assert validator.is_valid(json.loads(edit)), edit
    assert accepted > 100, "some edits (inside plate numbers and brands) stay valid and must stay accepted"


def test_regex_compiles_in_xgrammar_as_vllm_would(tiny_model_dir, regex):
    """vLLM's default structured-output backend is xgrammar: the regex must compile there and mean the same."""
    import xgrammar as xgr
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    compiled = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer)).compile_regex(regex.pattern)
    matcher = xgr.GrammarMatcher(compiled)
    for answer in _answers(30, seed=23):
        matcher.reset()
        assert matcher.accept_string(json.dumps(answer, ensure_ascii=False))
    matcher.reset()
    assert not matcher.accept_string('{"车辆属性": {"车辆品牌": "东风  汽车"')


# ---- the logits processor on a real tokenizer ------------------------------------------------------------------

def test_processor_masks_a_batch_to_schema_valid_answers(tiny_model_dir, regex):
    """Random logits through the processor, greedy, batch of 3: every sequence ends in a schema-valid answer in
    json.dumps' format; finished sequences are padded and left alone."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id
    schema_text = decoding._schema_text(schema_path())
    processor = decoding.SchemaLogitsProcessor(tokenizer, schema_text, [eos])
    validator = answer_validator(load_schema(schema_path()))
    generator = torch.Generator().manual_seed(0)
    batch, vocab = 3, 151936
    ids = torch.full((batch, 5), pad)
    done, outputs = [False] * batch, [[] for _ in range(batch)]
    for _ in range(2000):
        scores = processor(ids, torch.randn((batch, vocab), generator=generator))
        assert torch.isfinite(scores).any(dim=-1).all()
        picked = scores.argmax(-1)
        for i in range(batch):
            if done[i]:
                picked[i] = pad
            elif int(picked[i]) == eos:
                done[i] = True
            else:
                outputs[i].append(int(picked[i]))
        ids = torch.cat([ids, picked[:, None]], dim=1)
        if all(done):
            break
    assert all(done)
    for tokens in outputs:
        text = tokenizer.decode(tokens)
        assert validator.is_valid(json.loads(text)), text
        assert regex.fullmatch(text)
        assert json.dumps(json.loads(text), ensure_ascii=False) == text, "json.dumps' separators, no other spaces"


def test_grammar_enforces_the_bounds_the_schema_states(tiny_model_dir):
    """The compiled grammar accepts the project's answers in json.dumps' format and refuses what the schema refuses:
    a fifth plate, a rambling brand, a lower-case plate number, other whitespace."""
    import xgrammar as xgr
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    grammar = decoding.compile_grammar(tokenizer, 151936, decoding._schema_text(schema_path()), [151645])
    matcher = xgr.GrammarMatcher(grammar)

    def accepts(text: str) -> bool:
        matcher.reset()
        return matcher.accept_string(text) and matcher.accept_token(151645) and matcher.is_terminated()

    answers = _answers(200, seed=29)
    assert all(accepts(json.dumps(a, ensure_ascii=False)) for a in answers)
    one = next(a for a in answers if isinstance(a[PLATE_GROUP], dict))
    vehicle, plate = one[VEHICLE_GROUP], one[PLATE_GROUP]
    for bad in ({VEHICLE_GROUP: vehicle, PLATE_GROUP: [plate] * 5},
                {VEHICLE_GROUP: {**vehicle, "车辆品牌": "东风" * 11}, PLATE_GROUP: plate},
                {VEHICLE_GROUP: vehicle, PLATE_GROUP: {**plate, "车牌号码": "云kcm158"}}):
        assert not accepts(json.dumps(bad, ensure_ascii=False))
    assert accepts(json.dumps({VEHICLE_GROUP: vehicle, PLATE_GROUP: [plate] * 4}, ensure_ascii=False))
    assert not accepts(json.dumps(one, ensure_ascii=False, separators=(",", ":")))
    assert accepts(_with_box_text(one, "[0, 5, 99999, 640]"))
    for box in BOXES_OUT_OF_BOUNDS:
        assert not accepts(_with_box_text(one, box)), box


def test_processor_closes_every_answer_within_the_token_budget(tiny_model_dir):
    """Logits biased against closing (every token holding '"', '}' or ']' and the stop token pushed down): unbudgeted,
    the answer runs past 150 tokens; with a budget of 150 or 100 it is closed in time and schema-valid."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id
    validator = answer_validator(load_schema(schema_path()))
    schema_text = decoding._schema_text(schema_path())
    bias = torch.zeros(151936)
    names = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    bias[[i for i, name in enumerate(names) if any(c in name for c in '"}]')] + [eos]] = -50.0

    def generate(budget: int | None, limit: int = 150) -> list[int]:
        processor = decoding.SchemaLogitsProcessor(tokenizer, schema_text, [eos], max_new_tokens=budget)
        generator = torch.Generator().manual_seed(3)
        ids, tokens = torch.full((2, 1), pad), []
        for _ in range(budget or limit):
            scores = processor(ids, (torch.randn((1, 151936), generator=generator) + bias).repeat(2, 1))
            picked = scores.argmax(-1)
            assert int(picked[0]) == int(picked[1])
            ids = torch.cat([ids, picked[:, None]], dim=1)
            if int(picked[0]) == eos:
                return tokens
            tokens.append(int(picked[0]))
        return tokens + [-1]

    assert generate(None)[-1] == -1, "without a budget these logits do not close the answer in 150 tokens"
    for budget in (150, 100):
        tokens = generate(budget)
        assert tokens[-1] != -1 and len(tokens) < budget
        assert validator.is_valid(json.loads(tokenizer.decode(tokens)))


def test_processor_leaves_a_sequence_that_left_the_grammar_unconstrained(tiny_model_dir):
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    processor = decoding.SchemaLogitsProcessor(tokenizer, decoding._schema_text(schema_path()), [151645])
    first = processor(torch.zeros((2, 1), dtype=torch.long), torch.zeros((2, 151936)))
    brace = tokenizer.encode("{")[0]
    assert first[0, brace] == 0 and first[0].isinf().sum() > 150000, "only an opening brace can start"
    letter = tokenizer.encode("a")[0]
    again = processor(torch.tensor([[0, letter], [0, brace]]), torch.zeros((2, 151936)))
    assert processor.active == [False, True]
    assert not again[0].isinf().any(), "a refused token ends the constraint for that sequence only"
    assert again[1].isinf().sum() > 150000


# ---- options and command lines ---------------------------------------------------------------------------------

def test_decoding_options_per_mode_and_backend(tmp_path):
    assert decoding.decoding_options("free", "transformers") == ({}, {})
    options, env = decoding.decoding_options("schema", "pt")
    assert options == {"external_plugins": [str(decoding.plugin_path())]} and decoding.plugin_path().is_file()
    assert env == {decoding.SCHEMA_ENV: str(schema_path().resolve())}
    options, env = decoding.decoding_options("schema", "vllm")
    assert env == {} and options["structured_outputs_regex"] == decoding.schema_regex()
    with pytest.raises(UserError, match="pass --decoding free"):
        decoding.decoding_options("schema", "lmdeploy")
    with pytest.raises(UserError, match="unknown decoding"):
        decoding.decoding_options("json", "transformers")
    with pytest.raises(UserError, match="no such answer schema"):
        decoding.decoding_options("schema", "transformers", tmp_path / "missing.json")


@pytest.fixture
def val_file(tmp_path) -> Path:
    path = tmp_path / "数据 集：val.jsonl"
    answer = json.dumps(_answers(0, seed=0)[0], ensure_ascii=False)
    row = {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": answer}],
           "images": ["/x.jpg"]}
    path.write_text((json.dumps(row, ensure_ascii=False) + "\n") * 3, encoding="utf-8")
    return path


def _dry_run(capsys, *args: str) -> tuple[dict[str, list[str]], list[str]]:
    assert main(["infer", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", *args, "--dry-run"]) == 0
    words = shlex.split(capsys.readouterr().out.replace("\\\n", " "))
    return argv_pairs(words), words


def test_dry_run_prints_the_plugin_arguments_per_mode(tmp_path, val_file, capsys):
    out = str(tmp_path / "r.jsonl")
    got, words = _dry_run(capsys, "--dataset", str(val_file), "-o", out)
    assert got["external_plugins"] == [str(decoding.plugin_path())], "schema is the default"
    assert f"{decoding.SCHEMA_ENV}={schema_path().resolve()}" in words
    got, words = _dry_run(capsys, "--dataset", str(val_file), "-o", out, "--decoding", "free")
    assert "external_plugins" not in got and not any(w.startswith(decoding.SCHEMA_ENV) for w in words)
    got, _ = _dry_run(capsys, "--dataset", str(val_file), "-o", out, "--backend", "vllm")
    assert got["structured_outputs_regex"] == [decoding.schema_regex()] and "external_plugins" not in got
    mine = tmp_path / "my_plugin.py"
    mine.write_text("")
    got, _ = _dry_run(capsys, "--dataset", str(val_file), "-o", out, "--set", f"external_plugins={mine}")
    assert got["external_plugins"] == [str(mine), str(decoding.plugin_path())], "a user's plugin is kept"


def test_schema_decoding_refuses_chain_of_thought_datasets(tmp_path, val_file, capsys):
    reason = tmp_path / "reason.jsonl"
    answer = json.dumps(_answers(0, seed=0)[0], ensure_ascii=False)
    rows = [json.loads(val_file.read_text(encoding="utf-8").splitlines()[0]),
            {"messages": [{"role": "user", "content": "<image>" + REASON_PROMPT},
                          {"role": "assistant", "content": "车头朝前,蓝色车身。\n\n" + answer}], "images": ["/x.jpg"]}]
    reason.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert main(["infer", "--model", "m", "--dataset", str(reason), "-o", str(tmp_path / "r.jsonl"),
                 "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 samples are not JSON extraction samples" in err and "--decoding free" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["infer", "--model", "m", "--dataset", str(reason), "-o", str(tmp_path / "r.jsonl"),
                 "--dry-run", "--decoding", "free"]) == 0
    checkpoint = tmp_path / "run" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_config.json").write_text("{}")
    (checkpoint / "args.json").write_text(json.dumps({"val_dataset": [str(reason)]}))
    capsys.readouterr()
    assert main(["infer", "--adapters", str(checkpoint), "-o", str(tmp_path / "r.jsonl"), "--dry-run"]) == 2
    assert "--decoding free" in capsys.readouterr().err, "the run's own validation set is checked too"


def test_record_decoding_adds_the_mode_to_every_line(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [{"response": "{}", "labels": "x", "images": [{"path": "/a b.jpg"}]}, {"response": "坏", "labels": "y"}]
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "not json\n",
                      encoding="utf-8")
    assert decoding.record_decoding(source, target, "free") == 3
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines[:2]] == [{**r, "decoding": "free"} for r in rows]
    assert lines[2] == "not json"


# ---- real swift infer ------------------------------------------------------------------------------------------

SLOW_TOKENS = 200


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """A `plates build` folder from 8 drawn images, its val.jsonl cut to 4 samples."""
    from plates.io import read_jsonl, write_jsonl
    from plates.synth import make_dump

    base = tmp_path_factory.mktemp("decoding")
    make_dump(base / "dump", 8, seed=5)
    assert main(["parse", str(base / "dump"), "-o", str(base / "records.jsonl")]) == 0
    data = base / "data"
    assert main(["build", str(base / "records.jsonl"), "-o", str(data), "--val-ratio", "0.5", "--seed", "2"]) == 0
    val = read_jsonl(data / "val.jsonl")
    assert len(val) >= 2
    write_jsonl(data / "val.jsonl", val[:4])
    return data


def _responses(path: Path) -> list[dict]:
    from plates.io import read_jsonl

    return read_jsonl(path)


def _valid(response: str) -> bool:
    try:
        return answer_validator(load_schema(schema_path())).is_valid(json.loads(response))
    except json.JSONDecodeError:
        return False


@pytest.mark.slow
def test_untrained_model_answers_are_all_schema_valid_only_under_schema_decoding(tiny_model_dir, small_dataset,
                                                                                 tmp_path):
    common = ["--model", str(tiny_model_dir), "--dataset", str(small_dataset / "val.jsonl"), "--max-pixels",
              "50176", "--batch-size", "4", "--max-new-tokens", str(SLOW_TOKENS)]
    assert main(["infer", *common, "-o", str(tmp_path / "schema.jsonl")]) == 0
    assert main(["infer", *common, "-o", str(tmp_path / "free.jsonl"), "--decoding", "free"]) == 0
    constrained, free = _responses(tmp_path / "schema.jsonl"), _responses(tmp_path / "free.jsonl")
    assert len(constrained) == len(free) == len(_responses(small_dataset / "val.jsonl"))
    assert all(r["decoding"] == "schema" for r in constrained) and all(r["decoding"] == "free" for r in free)
    assert all(_valid(r["response"]) for r in constrained), [r["response"] for r in constrained]
    assert not all(_valid(r["response"]) for r in free)
    regex = re.compile(decoding.schema_regex())
    assert all(regex.fullmatch(r["response"]) for r in constrained), "the vLLM regex accepts generated answers"


@pytest.mark.slow
def test_schema_decoding_with_a_freshly_trained_lora(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "runs"
    assert main(["train", "--preset", "tiny_cpu", "--model", str(tiny_model_dir), "--dataset", str(small_dataset),
                 "--output-dir", str(out), "--set", "max_steps=2"]) == 0
    results = tmp_path / "tuned.jsonl"
    assert main(["infer", "--adapters", str(next(out.glob("v*"))), "--dataset", str(small_dataset), "-o",
                 str(results), "--batch-size", "4", "--max-new-tokens", str(SLOW_TOKENS)]) == 0
    rows = _responses(results)
    assert rows and all(r["decoding"] == "schema" and _valid(r["response"]) for r in rows), rows
