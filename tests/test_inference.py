"""One set of inference options: declared once in plates.inference, the same flags and defaults on every
command that answers images, built into one object that infer, predict, serve and export pass on whole."""

from __future__ import annotations

import argparse

import pytest

from plates.cli import build_parser
from plates.inference import ALL_OPTIONS, InferenceSettings


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def test_every_answering_command_has_the_same_flags_and_defaults():
    reference = _flags(_subparser("infer"))
    expected = {"infer": 1024, "predict": 512, "serve": 512}
    for command, max_new_tokens in expected.items():
        flags = _flags(_subparser(command))
        for flag in ("--adapters", "--model", "--backend", "--decoding", "--max-pixels", "--max-new-tokens",
                     "--batch-size", "--template", "--gpus", "--set"):
            assert flag in flags, (command, flag)
            assert flags[flag].choices == reference[flag].choices, (command, flag)
            assert flags[flag].dest == reference[flag].dest
        assert flags["--decoding"].default == "schema" and flags["--backend"].default == "transformers"
        assert flags["--max-new-tokens"].default == max_new_tokens
    assert "--logprobs" in _flags(_subparser("predict")) and "--logprobs" not in _flags(_subparser("serve"))
    export = _flags(_subparser("export"))
    assert export["--decoding"].default == "schema" and export["--max-new-tokens"].default == 512


def test_from_args_builds_one_object_and_of_replaces_fields():
    args = build_parser().parse_args(["predict", "img.jpg", "-o", "p.jsonl", "--model", "m", "--decoding", "free",
                                      "--batch-size", "4", "--set", "temperature=0", "--logprobs", "--gpus", "1"])
    settings = InferenceSettings.from_args(args)
    assert settings == InferenceSettings(model="m", decoding="free", batch_size=4, overrides=["temperature=0"],
                                         logprobs=True, gpus="1", max_new_tokens=512)
    assert settings.replace(adapters="ckpt", model=None).adapters == "ckpt" and settings.model == "m"
    assert InferenceSettings(backend="pt").swift_backend == "transformers"
    with pytest.raises(TypeError, match="unknown inference setting"):
        InferenceSettings.of(chunk_size=3)


def test_recipe_add_an_inference_option():
    """CONTRIBUTING's recipe: a field with a flag in add_arguments reaches every parser and the object."""
    parser = argparse.ArgumentParser()
    InferenceSettings.add_arguments(parser, include=ALL_OPTIONS)
    args = parser.parse_args(["--model", "m", "--max-pixels", "50176", "--template", "qwen2_5_vl"])
    settings = InferenceSettings.from_args(args)
    assert (settings.model, settings.max_pixels, settings.template) == ("m", 50176, "qwen2_5_vl")
    declared = {action.dest for action in parser._actions} - {"help"}
    assert declared == set(InferenceSettings.names()), "every field has its flag, every flag its field"


def test_infer_and_serve_take_the_object(tmp_path, tiny_model_dir):
    from plates.swift_infer import build_infer_command
    from plates.serve import build_serve_command

    val = tmp_path / "val.jsonl"
    val.write_text('{"messages": [{"role": "user", "content": "<image>x"}], "images": ["a.jpg"]}\n')
    settings = InferenceSettings(model=str(tiny_model_dir), decoding="free", max_new_tokens=33, batch_size=2)
    argv, _ = build_infer_command(settings, dataset=str(val), result_path=tmp_path / "r.jsonl")
    assert argv == build_infer_command(dataset=str(val), result_path=tmp_path / "r.jsonl", model=str(tiny_model_dir),
                                       decoding="free", max_new_tokens=33, batch_size=2)[0]
    assert "--max_new_tokens" in argv and argv[argv.index("--max_new_tokens") + 1] == "33"
    served, _ = build_serve_command(settings, port=8123)
    assert served[served.index("--max_batch_size") + 1] == "2" and "--external_plugins" not in served
