"""plates.swift_cli: `--set` parsing, names and values checked against the installed ms-swift, argv building.

Covered elsewhere: 3.x names through `plates train` and misspelt keys (tests/test_train.py), command lines pasted
into a shell and secret redaction in the manifest (tests/test_train.py), run_streaming and quiet runs
(tests/test_train.py, tests/test_quiet.py, tests/test_signals.py).
"""

from __future__ import annotations

import pytest

from plates.errors import UserError
from plates.swift_cli import REDACTED, options_to_argv, parse_gpus, parse_overrides, redact_argv, resolve_options, \
    with_plugins


def _one_line_error(call, *args) -> str:
    with pytest.raises(UserError) as raised:
        call(*args)
    message = str(raised.value)
    assert message and "\n" not in message
    return message


def test_parse_overrides_reads_yaml_values_and_keeps_the_raw_text():
    values, raw = parse_overrides(["lora_rank=8", "learning_rate=1e-4", "freeze_vit=false", "system=1.10",
                                   "target_modules=[q_proj, v_proj]", " model_author = 模型 作者", "empty=",
                                   "bad_yaml=[1", "url=http://h:1/a=b", "lora_rank=16"])
    assert values == {"lora_rank": 16, "learning_rate": "1e-4", "freeze_vit": False, "system": 1.1,
                      "target_modules": ["q_proj", "v_proj"], "model_author": "模型 作者", "empty": "",
                      "bad_yaml": "[1", "url": "http://h:1/a=b"}
    # YAML 1.1 reads 1e-4 as text; resolve_options makes it the float the field is (below)
    assert raw["system"] == "1.10" and raw["lora_rank"] == "16" and raw["model_author"] == " 模型 作者"
    assert parse_overrides(None) == ({}, {})


@pytest.mark.parametrize("text", ["lora_rank", "=8", "  =8", ""])
def test_a_set_without_key_and_value_is_a_one_line_error(text):
    assert _one_line_error(parse_overrides, [text]) == f"--set takes key=value, not {text!r}"


def test_values_are_coerced_to_the_installed_fields():
    values, raw = parse_overrides(["lora_rank=2.0", "learning_rate=1e-4", "freeze_vit=yes", "system=1.10",
                                   "model_name=1.10", "torch_dtype=bfloat16", "target_modules=all-linear",
                                   "max_pixels=null", "train_type=lora"])
    notes: list[str] = []
    resolved = resolve_options("sft", values, raw, notes)
    assert resolved == {"lora_rank": 2, "learning_rate": 1e-4, "freeze_vit": True, "system": "1.10",
                        "model_name": ["1.10"], "torch_dtype": "bfloat16", "target_modules": ["all-linear"],
                        "tuner_type": "lora"}, "null drops max_pixels"
    assert notes == ["`train_type` is called `tuner_type` in this ms-swift; using `tuner_type`"]
    values, raw = parse_overrides(["max_new_tokens=64", "temperature=0"])
    assert resolve_options("infer", values, raw) == {"max_new_tokens": 64, "temperature": 0.0}


@pytest.mark.parametrize("text, says", [
    ("lora_rank=1.5", "`lora_rank` takes an integer, not 1.5"),
    ("lora_rank=eight", "`lora_rank` takes an integer, not 'eight'"),
    ("lora_rank=true", "`lora_rank` takes an integer, not True"),
    ("freeze_vit=maybe", "`freeze_vit` takes true or false, not 'maybe'"),
    ("learning_rate=fast", "`learning_rate` takes a number, not 'fast'"),
    ("torch_dtype=bfloat61", "(did you mean bfloat16?)"),
    ("target_modules=[]", "`target_modules` needs at least one value"),
    ("lora_rnak=8", "ms-swift does not know the argument `lora_rnak`; did you mean `lora_rank`?"),
])
def test_bad_values_are_one_line_errors(text, says):
    values, raw = parse_overrides([text])
    assert says in _one_line_error(resolve_options, "sft", values, raw)


def test_options_to_argv_renders_values_as_ms_swift_reads_them():
    argv = options_to_argv({"lora_rank": 8, "num_train_epochs": 2.0, "learning_rate": 1e-4, "freeze_vit": False,
                            "target_modules": ["q_proj", "v_proj"], "model_kwargs": {"fps": 2, "名": "值"},
                            "max_pixels": None, "system": "a b"})
    assert argv == ["--lora_rank", "8", "--num_train_epochs", "2", "--learning_rate", "0.0001", "--freeze_vit",
                    "false", "--target_modules", "q_proj", "v_proj", "--model_kwargs", '{"fps": 2, "名": "值"}',
                    "--system", "a b"]
    assert redact_argv(["--hub_token", "t1", "t2", "--seed", "1"]) == [
        "--hub_token", REDACTED, REDACTED, "--seed", "1"]


def test_plugins_and_gpus():
    assert with_plugins(None, "/p/a.py") == ["/p/a.py"]
    assert with_plugins("/p/mine.py", "/p/a.py", "/p/mine.py") == ["/p/mine.py", "/p/a.py"]
    assert with_plugins(["/p/b.py", "/p/a.py"], "/p/a.py") == ["/p/b.py", "/p/a.py"]
    assert parse_gpus(" 0, 2,3 ") == ["0", "2", "3"]
    assert "comma-separated GPU indices" in _one_line_error(parse_gpus, "0;1")
    assert "comma-separated GPU indices" in _one_line_error(parse_gpus, ",")
    assert "lists a GPU twice" in _one_line_error(parse_gpus, "1,1")
