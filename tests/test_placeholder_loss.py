"""The closed-form placeholder loss (plates.placeholder_loss): the same loss and gradients as the whole head, the
refusals, the train plan's plugin, and a real `swift sft` whose losses and checkpoint match a run without it."""

from __future__ import annotations

import pytest

from plates.errors import UserError
from plates.placeholder_loss import (PLACEHOLDER_LOSS_ENV, ClosedFormHead, placeholder_ids,
                                     placeholder_loss_mode)

torch = pytest.importorskip("torch")

ROWS, WIDTH, BLOCK = 60, 8, range(20, 50)


def _vocab() -> dict[str, int]:
    vocab = {f"tok{i}": i for i in range(ROWS) if i not in BLOCK}
    vocab.update({f"<|placeholder_{i}|>": i for i in BLOCK})
    return vocab


def _head(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(WIDTH, ROWS, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(ROWS, WIDTH, generator=generator))
        head.weight[BLOCK.start:BLOCK.stop] = torch.randn(WIDTH, generator=generator)
    return head


def test_loss_and_gradients_equal_the_whole_heads():
    head = _head()
    closed = ClosedFormHead(head, placeholder_ids(_vocab()))
    hidden = torch.randn(2, 7, WIDTH, generator=torch.Generator().manual_seed(1)) * 3
    labels = torch.tensor([[-100, 3, 19, 50, 59, 0, -100], [5, 5, 51, -100, 2, 18, 57]])
    full = torch.nn.functional.cross_entropy(head(hidden).flatten(0, 1), labels.flatten(), reduction="sum")
    full.backward()
    whole = head.weight.grad.clone()
    head.weight.grad = None
    compact = closed.forward(hidden)
    assert compact.shape[-1] == ROWS - len(BLOCK) + 1
    loss = torch.nn.functional.cross_entropy(compact.flatten(0, 1), closed.compact_labels(labels).flatten(),
                                             reduction="sum")
    loss.backward()
    got = head.weight.grad
    assert loss.item() == pytest.approx(full.item(), rel=1e-5)
    outside = [i for i in range(ROWS) if i not in BLOCK]
    assert torch.allclose(got[outside], whole[outside], atol=1e-5)
    # the block's first row gets what each row of it gets from the whole head; the others none (they are copied
    # before saves)
    assert torch.allclose(whole[BLOCK.start:BLOCK.stop], whole[BLOCK.start].expand(len(BLOCK), -1), atol=1e-6)
    assert torch.allclose(got[BLOCK.start], whole[BLOCK.start], atol=1e-6)
    assert not got[BLOCK.start + 1:BLOCK.stop].any()


def test_sync_makes_the_block_equal_again():
    head = _head()
    closed = ClosedFormHead(head, BLOCK)
    with torch.no_grad():
        head.weight[BLOCK.start] += 1.0
    closed.sync_placeholders()
    block = head.weight[BLOCK.start:BLOCK.stop]
    assert bool((block == block[0]).all()) and not torch.equal(block[0], _head().weight[BLOCK.start])


def test_labels_map_to_compact_positions_and_a_placeholder_label_is_refused():
    closed = ClosedFormHead(_head(), BLOCK)
    assert closed.compact_labels(torch.tensor([-100, 0, 19, 50, 59])).tolist() == [-100, 0, 19, 20, 29]
    with pytest.raises(RuntimeError, match="placeholder id"):
        closed.compact_labels(torch.tensor([3, 25]))


def test_refusals_are_one_line():
    head = _head()
    with torch.no_grad():
        head.weight[BLOCK.start + 3, 0] += 1.0
    problems = [(lambda: ClosedFormHead(head, BLOCK), "placeholder rows differ"),
                (lambda: placeholder_ids({"a": 0, "b": 1}), "has none"),
                (lambda: placeholder_ids({"<|placeholder_3|>": 3, "<|placeholder_5|>": 5}), "not one block"),
                (lambda: ClosedFormHead(torch.nn.Linear(WIDTH, ROWS), BLOCK), "has a bias"),
                (lambda: ClosedFormHead(_head(), range(40, 70)), "beyond the head"),
                (lambda: placeholder_loss_mode({PLACEHOLDER_LOSS_ENV: "fast"}), "must be one of")]
    for call, words in problems:
        with pytest.raises(UserError) as info:
            call()
        assert words in str(info.value) and "\n" not in str(info.value)
    assert placeholder_loss_mode({}) == "off" and placeholder_loss_mode({PLACEHOLDER_LOSS_ENV: "closed_form"})


def test_train_plan_adds_the_plugin_only_when_asked(tiny_model_dir, tmp_path):
    from plates.decoding import plugin_path
    from plates.train import build_plan

    data = tmp_path / "d.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    common = dict(model=str(tiny_model_dir), output_dir=tmp_path / "out")
    plan = build_plan("tiny_cpu", data, env_overrides=[f"{PLACEHOLDER_LOSS_ENV}=closed_form"], environ={}, **common)
    assert plan.options["external_plugins"] == [str(plugin_path())]
    assert any("closed-form" in note for note in plan.notes)
    assert "external_plugins" not in build_plan("tiny_cpu", data, environ={}, **common).options
    from_shell = build_plan("tiny_cpu", data, environ={PLACEHOLDER_LOSS_ENV: "closed_form"}, **common)
    assert from_shell.options["external_plugins"] == [str(plugin_path())]
    with pytest.raises(UserError, match="must be one of"):
        build_plan("tiny_cpu", data, env_overrides=[f"{PLACEHOLDER_LOSS_ENV}=yes"], environ={}, **common)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny_cpu_full", "tiny_cpu"])
def test_real_swift_sft_matches_the_whole_head(preset, tiny_model_dir, synth_dump, tmp_path):
    """Two runs of a few steps from the same seed, one with the closed form: the same losses step by step. The
    full fine-tune (per-field loss weights: ms-swift's per-token loss) leaves a checkpoint whose placeholder rows
    moved together (trained, and all equal); LoRA (the model's own loss otherwise) leaves them as built."""
    from safetensors.torch import load_file

    from plates.cli import main
    from plates.io import read_jsonl

    records = tmp_path / "records.jsonl"
    assert main(["parse", str(synth_dump), "-o", str(records)]) == 0
    data = tmp_path / "data"
    assert main(["build", str(records), "-o", str(data), "--val-ratio", "0"]) == 0
    losses, checkpoints = {}, {}
    for name, extra in (("whole", ["--env", f"{PLACEHOLDER_LOSS_ENV}=off"]),
                        ("closed", ["--env", f"{PLACEHOLDER_LOSS_ENV}=closed_form"])):
        out = tmp_path / name
        code = main(["train", "--preset", preset, "--model", str(tiny_model_dir), "--dataset", str(data),
                     "--output-dir", str(out), "--set", "max_steps=6", "--set", "logging_steps=1",
                     "--set", "save_strategy=steps", "--set", "save_steps=6",
                     "--set", "seed=7", "--set", "data_seed=7", *extra])
        assert code == 0
        run = next(p for p in out.iterdir() if p.is_dir() and p.name.startswith("v"))
        losses[name] = [float(r["loss"]) for r in read_jsonl(run / "logging.jsonl") if "loss" in r]
        if preset == "tiny_cpu_full":
            checkpoints[name] = load_file(str(run / "checkpoint-6" / "model.safetensors"))
    assert len(losses["closed"]) == 6
    assert losses["closed"] == pytest.approx(losses["whole"], rel=2e-3), losses
    if preset != "tiny_cpu_full":
        return
    start = min(i for t, i in _tiny_vocab(tiny_model_dir).items() if t.startswith("<|placeholder_"))
    key = next(k for k in checkpoints["closed"] if k.endswith("embed_tokens.weight"))
    block = checkpoints["closed"][key][start:151643]
    assert bool((block == block[0]).all()) and bool(block[0].any())
    assert torch.allclose(block[0], checkpoints["whole"][key][start], atol=1e-3)


def _tiny_vocab(model_dir) -> dict[str, int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir)).get_vocab()


def test_the_benchmark_runs_and_reports_both_losses(tiny_model_dir, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_train_step.py"
    spec = importlib.util.spec_from_file_location("bench_train_step", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--model", str(tiny_model_dir), "--tokens", "40", "--answer", "10", "--steps", "1",
                       "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "whole" in out and "closed" in out and "speed-up" in out
    difference = float(out.split("largest relative loss difference ")[1].split()[0])
    assert difference < 1e-4
