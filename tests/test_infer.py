"""`plates infer` / `plates export`: the `swift infer` / `swift export` command lines and their guard rails."""

from __future__ import annotations

import shlex

import pytest

from plates import swift_cli
from plates.cli import main
from plates.errors import UserError
from plates.export import build_export_command
from plates.infer import run_infer
from plates.runs import checkpoint_dir
from plates.swift_infer import build_infer_command
from helpers import LANGUAGE_KEY, VISION_KEY, argv_pairs, lora_checkpoint as _checkpoint


def test_bad_inputs_are_user_errors(tmp_path, val_file):
    with pytest.raises(UserError, match="--adapters"):
        build_infer_command(adapters=None, model=None, dataset=None, result_path=tmp_path / "r")
    with pytest.raises(UserError, match="not a LoRA checkpoint"):
        checkpoint_dir(tmp_path)
    with pytest.raises(UserError, match="no such"):
        checkpoint_dir(tmp_path / "missing")
    with pytest.raises(UserError, match="does not know the argument `temprature`; did you mean `temperature`"):
        build_infer_command(adapters=None, model="m", dataset=str(val_file), result_path=tmp_path / "r",
                            overrides=["temprature=0"])
    with pytest.raises(UserError, match="is a folder"):
        run_infer(tmp_path, model="m", dataset=str(val_file))


def test_dry_run_shows_the_real_output_path_and_writes_nothing(tmp_path, val_file, capsys):
    out = tmp_path / "结果 dir:1" / "results.jsonl"
    code = main(["infer", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--dataset", str(val_file), "-o", str(out),
                 "--backend", "pt", "--max-pixels", "1003520", "--dry-run", "--set", "temperature=0"])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert list(out.parent.iterdir()) == [], "no staging folder is left behind"
    words = shlex.split(text.replace("\\\n", " "))
    assert "MAX_PIXELS=1003520" in words
    got = argv_pairs(words)
    assert got["result_path"] == [str(out)] and got["temperature"] == ["0"]
    assert got["val_dataset"] == [str(val_file)]


def test_export_command(run_dir):
    ckpt = _checkpoint(run_dir, [LANGUAGE_KEY, VISION_KEY], step=300)
    words, target, _ = build_export_command(str(ckpt))
    got = argv_pairs(words)
    assert target == run_dir / "checkpoint-300-merged"
    assert words[len(swift_cli.swift_command())] == "export"
    assert got["adapters"] == [str(ckpt)] and got["merge_lora"] == ["true"]
    assert got["output_dir"] == [str(run_dir / "checkpoint-300-merged")]
    (run_dir / "taken").mkdir()
    (run_dir / "taken" / "f").write_text("x")
    with pytest.raises(UserError, match="taken.*(already exists|did not write)"):
        build_export_command(str(ckpt), str(run_dir / "taken"))


@pytest.mark.slow
def test_results_move_into_place_only_on_success(tmp_path, val_file, capsys):
    """A failing ms-swift run leaves an existing results file untouched (and no staging folder behind)."""
    out = tmp_path / "results.jsonl"
    out.write_text("previous\n")
    code = run_infer(out, adapters=None, model=str(tmp_path / "no such model"), dataset=str(val_file),
                     max_new_tokens=4)
    assert code != 0
    assert out.read_text() == "previous\n"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["results.jsonl", "results.swift-infer.log", val_file.name]), "only ms-swift's log is added"
    assert "Traceback" in (tmp_path / "results.swift-infer.log").read_text(encoding="utf-8")
    assert "results.swift-infer.log" in capsys.readouterr().err, "the failure points to the log"
