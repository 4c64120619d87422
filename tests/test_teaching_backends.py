"""The teacher backend registry and the flags each backend declares: `plates teach` lists every backend's flags
in a group of its own, hands the chosen backend its options, and refuses in one line a flag that belongs only to
another backend (both ways, for the shipped backends and for one registered here)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from plates.chat_client import Completion
from plates.cli import main
from plates.errors import UserError
from plates.teaching import backends
from plates.teaching.backends import TeacherBackend, backend_class, make_backend, non_negative, option, positive_int
from plates.teaching.backends.openai import OpenAIBackend
from plates.teaching.backends.template import TemplateBackend
from plates.teaching.prompts import build_request, load_prompts
from test_teach import make_records, read_lines


class ShoutBackend(TeacherBackend):
    """A backend of the test's own, with two flags."""

    name = "shout"
    help = "the prompt's first line, loud"
    model = "shout-1"
    counts_tokens = False

    @dataclasses.dataclass(frozen=True)
    class Options:
        volume: int = option(3, type=positive_int, help="exclamation marks (default 3)")
        timeout: float = option(30.0, type=non_negative, help="seconds (default 30): openai's flag, parsed alike")

    def __init__(self, volume: int):
        self.volume = volume

    @classmethod
    def from_options(cls, options, prompts):
        return cls(options.volume)

    def complete(self, request):
        return Completion(text=request.prompt.splitlines()[0] + "!" * self.volume)


@pytest.fixture
def shout(monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "shout", ShoutBackend)
    return ShoutBackend


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    backends.add_arguments(parser)
    return parser.parse_args(list(argv))


def refusal(capsys, records, tmp_path, *argv: str) -> str:
    assert main(["teach", str(records), "-o", str(tmp_path / "o.jsonl"), "--mode", "describe", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_an_openai_flag_with_the_template_backend_is_refused_in_one_line(tmp_path, capsys):
    records = make_records(tmp_path, 1)
    err = refusal(capsys, records, tmp_path, "--model", "gpt-4o")
    assert err == "plates teach: error: --model is an option of --backend openai, not used by --backend template"
    err = refusal(capsys, records, tmp_path, "--backend", "template", "--rpm", "0", "--base-url", "http://x/v1")
    assert "--base-url and --rpm are options of --backend openai, not used by --backend template" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_flags_of_a_registered_backend_are_its_own_both_ways(shout, tmp_path, capsys):
    records = make_records(tmp_path, 2)
    with pytest.raises(SystemExit):
        main(["teach", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "shout: the prompt's first line, loud" in shown and "--backend shout:" in shown and "--volume" in shown
    for flag in ("--base-url", "--model", "--api-key-env", "--rpm", "--retries", "--timeout", "--max-pixels",
                 "--max-tokens", "--temperature", "--concurrency", "--prompts", "--inputs", "--limit", "--summary"):
        assert flag in shown
    err = refusal(capsys, records, tmp_path, "--backend", "openai", "--base-url", "http://x/v1", "--model", "m",
                  "--volume", "5")
    assert err.endswith("--volume is an option of --backend shout, not used by --backend openai")
    err = refusal(capsys, records, tmp_path, "--backend", "shout", "--model", "m")
    assert err.endswith("--model is an option of --backend openai, not used by --backend shout")
    err = refusal(capsys, records, tmp_path, "--volume", "5")
    assert err.endswith("--volume is an option of --backend shout, not used by --backend template")
    # --timeout is declared alike by openai and shout: one flag, used by both, refused by neither
    out = tmp_path / "shout.jsonl"
    assert main(["teach", str(records), "-o", str(out), "--mode", "describe", "--backend", "shout", "--volume", "5",
                 "--timeout", "3"]) == 0
    lines = read_lines(out)
    assert len(lines) == 2 and all(line["text"].endswith("!!!!!") and line["model"] == "shout-1" for line in lines)
    assert "tokens" not in capsys.readouterr().err  # counts_tokens = False


def test_options_carry_the_given_flags_and_the_declared_defaults():
    prompts = load_prompts()
    args = parse("--backend", "openai", "--base-url", "http://a/v1", "--base-url", "http://b/v1", "--model", "m",
                 "--retries", "0")
    assert not hasattr(args, "rpm")  # a flag not given is left out, so a given default is still told apart
    backend = make_backend(args, prompts)
    assert isinstance(backend, OpenAIBackend) and backend.model == "m"
    client = backend.client
    assert client.base_urls == ["http://a/v1", "http://b/v1"] and client.retries == 0
    assert client.max_tokens == 1024 and client.temperature == 0.7 and client.limiter.interval == 0.0
    assert OpenAIBackend.Options().api_key_env == "OPENAI_API_KEY" and OpenAIBackend.Options().base_url == []
    assert isinstance(make_backend(parse(), prompts), TemplateBackend)  # the default backend
    with pytest.raises(SystemExit):
        parse("--backend", "openai", "--max-pixels", "0")  # a declared type checks the value


def test_the_registry_is_lazy_and_checked(monkeypatch):
    code = ("import sys, plates.teaching.backends as b; "
            "assert not [m for m in sys.modules if m.startswith('plates.teaching.backends.')], sys.modules; "
            "b.backend_class('template'); assert 'plates.teaching.backends.template' in sys.modules; "
            "assert 'plates.teaching.backends.openai' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with pytest.raises(UserError, match="unknown teacher backend 'nope'; choose from openai, template"):
        backend_class("nope")
    monkeypatch.setitem(backends.BACKENDS, "misnamed", "plates.teaching.backends.template:TemplateBackend")
    with pytest.raises(ValueError, match="must have name = 'misnamed'"):
        backend_class("misnamed")
    with pytest.raises(ValueError, match="unique name"):
        backends.register_backend("template", TemplateBackend)


def test_two_backends_declaring_one_flag_differently_is_a_programming_error(monkeypatch):
    class Clash(ShoutBackend):
        name = "clash"

        @dataclasses.dataclass(frozen=True)
        class Options:
            timeout: int = option(5, type=int, help="a different --timeout")

    monkeypatch.setitem(backends.BACKENDS, "clash", Clash)
    with pytest.raises(ValueError, match="declare --timeout differently"):
        parse()


def test_template_backend_marks_itself():
    prompts = load_prompts()
    backend = TemplateBackend(prompts)
    assert backend.name == "template" and backend.model == "template-v1" and not backend.counts_tokens
    assert backend.fingerprint.startswith("template-v1:")
    labels = {"车辆属性": {}, "车牌属性": []}
    request = build_request(prompts, "describe", "k", labels, question="q")
    assert backend.complete(request).text == backend.complete(request).text  # deterministic per key
