"""GPU readiness: a few real `swift sft` steps of the shipped 7B preset on a random-initialised Qwen2.5-VL-7B, beside
the seed's original recipe: samples/s, tokens/s and peak GPU memory for each.

No download: the model is Qwen2.5-VL-7B-Instruct's real architecture (its config values are written below) with
random weights, saved once to a scratch folder with the tiny tokenizer of `plates tiny-model` (token ids match
Qwen's, so text and visual tokens are laid out as in the real model; only the BPE merges differ, which shifts text
token counts a little - visual tokens dominate a sample). The images are drawn vehicles at a realistic camera size
(default 1280x720), parsed and built into a dataset by plates itself. Throughput does not depend on the weights'
values, so the figures are those the real 7B would show on this machine.

    .venv/bin/python benchmarks/gpu_train.py [--steps 3] [--gpus 0] [--image-size 1280x720]
    .venv/bin/python benchmarks/gpu_train.py --small      # CPU smoke test: tiny config, 2 steps
    .venv/bin/python benchmarks/gpu_train.py --grpo       # also the GRPO preset (rollouts with vLLM colocate)

``--grpo`` adds a third row: a few real `swift rlhf --rlhf_type grpo` steps of the shipped GRPO preset on a
`plates build --grpo` dataset of the same drawings, with plates' rewards. Its samples are completions (GRPO's
batch counts rollouts: num_generations per image), and the random weights write until max_completion_length,
so its figures are the worst case of rollout length. It needs vLLM on the GPU machine (``--grpo-rollouts
transformers`` rolls out with ms-swift's transformers engine instead).

``--small`` swaps in a tiny configuration (CPU, fp32, batch 1, small images); the tests run it to keep the script
working on machines without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PRESET = "qwen2_5_vl_7b_lora"
GRPO_PRESET = "qwen2_5_vl_7b_grpo"

# Qwen/Qwen2.5-VL-7B-Instruct config.json (text and vision parts), transformers 5 layout.
QWEN2_5_VL_7B_TEXT = dict(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, hidden_act="silu", max_position_embeddings=128000, rms_norm_eps=1e-6,
    bos_token_id=151643, eos_token_id=151645, tie_word_embeddings=False, use_sliding_window=False,
    sliding_window=32768, max_window_layers=28, attention_dropout=0.0,
    rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
)
QWEN2_5_VL_7B_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, out_hidden_size=3584, hidden_act="silu",
    fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
)
SMALL_TEXT = dict(QWEN2_5_VL_7B_TEXT, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_window_layers=2, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1000000.0})
SMALL_VISION = dict(QWEN2_5_VL_7B_VISION, depth=2, hidden_size=64, intermediate_size=128, num_heads=2,
                    out_hidden_size=64, fullatt_block_indexes=[1])

# The seed's recipe as it ran (seed 000/004): LoRA r8/alpha32 on all linear layers, vision tower trained, bf16,
# batch 3 x accumulation 16, lr 1e-4, max_length 2048, images capped at 1280*28*28 pixels.
SEED_RECIPE = {
    "ENV": {"MAX_PIXELS": 1003520},
    "model": "Qwen/Qwen2.5-VL-7B-Instruct", "tuner_type": "lora", "freeze_vit": False, "torch_dtype": "bfloat16",
    "num_train_epochs": 2, "per_device_train_batch_size": 3, "per_device_eval_batch_size": 1,
    "learning_rate": 1.0e-4, "lora_rank": 8, "lora_alpha": 32, "target_modules": "all-linear",
    "gradient_accumulation_steps": 16, "eval_steps": 50, "save_steps": 300, "save_total_limit": 5,
    "logging_steps": 5, "max_length": 2048, "warmup_ratio": 0.05, "dataloader_num_workers": 4,
    "max_pixels": 1003520, "output_dir": "output",
}
SMALL_OVERRIDES = ["torch_dtype=float32", "per_device_train_batch_size=1", "gradient_accumulation_steps=1",
                   "max_pixels=50176", "dataloader_num_workers=0", "max_length=1024"]
# GRPO's batch holds whole groups of rollouts: two completions of one image per step, written without vLLM.
SMALL_GRPO_OVERRIDES = ["per_device_train_batch_size=2", "num_generations=2", "use_vllm=false", "sleep_level=0",
                        "max_completion_length=16"]
TRANSFORMERS_ROLLOUTS = ["use_vllm=false", "sleep_level=0"]


def build_model(folder: Path, *, small: bool) -> Path:
    """Random-initialised Qwen2.5-VL (7B or the small config) with the tiny tokenizer, saved for ms-swift."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from plates.tiny_model import build_processor, build_tokenizer

    if (folder / "config.json").is_file() and (folder / ".plates-tiny-model.json").is_file():
        return folder
    text, vision = (SMALL_TEXT, SMALL_VISION) if small else (QWEN2_5_VL_7B_TEXT, QWEN2_5_VL_7B_VISION)
    config = Qwen2_5_VLConfig(text_config=dict(text), vision_config=dict(vision), image_token_id=151655,
                              video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
                              tie_word_embeddings=text["tie_word_embeddings"])
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    dtype = torch.float32 if small else torch.bfloat16
    device = "cuda" if torch.cuda.is_available() and not small else "cpu"
    started = time.monotonic()
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, max_shard_size="5GB")
    params = sum(p.numel() for p in model.parameters())
    del model
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(folder)
    build_processor(tokenizer).save_pretrained(folder)
    GenerationConfig(bos_token_id=151643, pad_token_id=151643, eos_token_id=[151645, 151643]).save_pretrained(folder)
    (folder / ".plates-tiny-model.json").write_text(json.dumps({"template": "qwen2_5_vl", "benchmark": True}))
    print(f"model: random {'small' if small else 'Qwen2.5-VL-7B'} ({params / 1e9:.2f} B parameters) -> {folder} "
          f"in {time.monotonic() - started:.0f} s", flush=True)
    return folder


def build_data(folder: Path, n: int, size: tuple[int, int], *, grpo: bool = False) -> Path:
    """``n`` drawn vehicles of ``size`` -> `plates parse` -> `plates build` (extraction samples; with ``grpo``
    the GRPO rows of the same records)."""
    from plates.cli import main
    from plates.synth import make_dump

    data = folder / ("data-grpo" if grpo else "data")
    if (data / "train.jsonl").is_file():
        return data
    records = folder / "records.jsonl"
    if not records.is_file():
        make_dump(folder / "dump", n, seed=0, width=size[0], height=size[1])
        if main(["parse", str(folder / "dump"), "-o", str(records), "-j", "1"]) != 0:
            raise SystemExit("plates parse failed")
    if main(["build", str(records), "-o", str(data), "--val-ratio", "0.05", "--seed", "0"]
            + (["--grpo"] if grpo else [])) != 0:
        raise SystemExit("plates build failed")
    return data


def tokens_per_sample(data: Path, model: Path, max_pixels: int) -> float:
    """Mean tokens a training sample puts through the model: visual tokens of the resized image (Qwen2-VL's
    smart_resize with the run's pixel cap, 28x28 pixels per token) plus the chat text."""
    from PIL import Image
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    from plates.io import read_jsonl

    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = read_jsonl(data / "train.jsonl")
    total = 0
    for row in rows:
        for image in row.get("images") or []:
            with Image.open(image if os.path.isabs(image) else data / image) as im:
                width, height = im.size
            h, w = smart_resize(height, width, factor=28, min_pixels=56 * 56, max_pixels=max_pixels)
            total += (h // 28) * (w // 28) + 2  # + vision start/end
        messages = row["messages"] + ([{"role": "assistant", "content": row["solution"]}] if "solution" in row else [])
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        total += len(tokenizer(text)["input_ids"])
    return total / max(1, len(rows))


def run_recipe(name: str, preset: str, model: Path, data: Path, out: Path, *, steps: int, small: bool,
               gpus: str | None, extra: list[str] = ()) -> dict:
    """A few real `swift sft` (or `swift rlhf`) steps; figures from ms-swift's logging.jsonl."""
    from plates.runs import find_run_dir
    from plates.train import build_plan

    overrides = [f"max_steps={steps}", "logging_steps=1", "save_steps=1000000", "eval_steps=1000000", "report_to=none",
                 "warmup_ratio=0", "num_train_epochs=1", "template=qwen2_5_vl", "check_model=false"]
    if small:
        overrides += SMALL_OVERRIDES
    overrides += list(extra)
    plan = build_plan(preset, data / "train.jsonl", model=str(model), overrides=overrides, output_dir=out / name,
                      gpus=None if small else gpus,
                      env_overrides=["CUDA_VISIBLE_DEVICES="] if small else None)
    env = {**os.environ, **plan.env, "PYTHONUNBUFFERED": "1"}
    if small:
        env["MAX_PIXELS"] = "50176"
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / f"{name}.log"
    before = set(os.listdir(plan.output_dir)) if plan.output_dir.is_dir() else set()
    started = time.monotonic()
    with log_path.open("wb") as log:
        code = subprocess.call(plan.argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - started
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{name}: swift {plan.command} exited with {code}\n{tail}")
    run_dir = find_run_dir(plan.output_dir, before, None)
    rows = [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines() if line.strip()]
    final = next((r for r in rows if "train_runtime" in r), {})
    step_rows = [r for r in rows if "loss" in r]
    memory = [float(r["memory(GiB)"]) for r in rows if "memory(GiB)" in r]
    options = plan.options
    world = int(plan.env.get("NPROC_PER_NODE") or 1)
    global_batch = int(options.get("per_device_train_batch_size", 1)) * int(
        options.get("gradient_accumulation_steps", 1)) * world
    samples = global_batch * len(step_rows)
    # Steady state: leave out the first step (CUDA kernels, allocator warm-up) when there is more than one.
    speeds = [float(r["train_speed(s/it)"]) for r in step_rows if "train_speed(s/it)" in r]
    runtime = float(final.get("train_runtime") or wall)
    return {"recipe": name, "preset": str(preset), "steps": len(step_rows), "global_batch": global_batch,
            "samples": samples, "train_runtime_s": runtime, "samples_per_s": samples / runtime if runtime else 0.0,
            "s_per_step_last": speeds[-1] if speeds else None,
            "max_pixels": int(options.get("max_pixels") or 0),
            "peak_gpu_memory_gib": max(memory) if memory else None, "run_dir": str(run_dir), "log": str(log_path)}


def seed_recipe_file(folder: Path) -> Path:
    import yaml

    path = folder / "seed_recipe.yaml"
    path.write_text("# the seed's original recipe (benchmarks/gpu_train.py)\n" + yaml.safe_dump(SEED_RECIPE),
                    encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny config on CPU (smoke test)")
    parser.add_argument("--steps", type=int, help="optimizer steps per recipe (default 3; --small 2)")
    parser.add_argument("--image-size", default=None, help="drawn image size WxH (default 1280x720; --small 224x168)")
    parser.add_argument("--gpus", default="0", help="GPUs for the run (default 0)")
    parser.add_argument("--preset", default=PRESET, help=f"the shipped preset to measure (default {PRESET})")
    parser.add_argument("--grpo", action="store_true", help=f"also measure the GRPO preset ({GRPO_PRESET})")
    parser.add_argument("--grpo-rollouts", choices=("vllm", "transformers"), default="vllm",
                        help="rollout engine of the GRPO row (default vllm, as the preset; transformers without)")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one); reused between runs")
    parser.add_argument("--json", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    steps = args.steps or (2 if args.small else 3)
    size = tuple(int(v) for v in (args.image_size or ("224x168" if args.small else "1280x720")).lower().split("x"))
    if not args.small:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU: this benchmark measures GPU training (use --small for the CPU smoke test)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="plates-gpu-train-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = build_model(work / ("model-small" if args.small else "model-7b"), small=args.small)
    seed = seed_recipe_file(work)
    recipes = [("preset", args.preset), ("seed", str(seed))] + ([("grpo", GRPO_PRESET)] if args.grpo else [])
    from plates.train import load_preset

    most = max(int(load_preset(p).options.get("per_device_train_batch_size", 1)) *
               int(load_preset(p).options.get("gradient_accumulation_steps", 1)) for _, p in recipes)
    per_step = 1 if args.small else most
    results = []
    for name, preset in recipes:
        print(f"{name}: {steps} steps of {preset} ...", flush=True)
        extra: list[str] = []
        if name == "grpo":
            extra = (SMALL_GRPO_OVERRIDES if args.small else
                     TRANSFORMERS_ROLLOUTS if args.grpo_rollouts == "transformers" else [])
        recipe_data = build_data(work, max(8, per_step * steps + 4), size, grpo=name == "grpo")
        result = run_recipe(name, preset, model, recipe_data, work / "runs", steps=steps, small=args.small,
                            gpus=args.gpus, extra=extra)
        result["tokens_per_sample"] = tokens_per_sample(recipe_data, model, result["max_pixels"] or 1003520)
        result["tokens_per_s"] = result["samples_per_s"] * result["tokens_per_sample"]
        results.append(result)
    header = f"{'recipe':8} {'steps':>5} {'batch':>5} {'samples/s':>10} {'tokens/s':>10} {'peak GPU GiB':>13}"
    print(f"\n{'small config, CPU' if args.small else 'Qwen2.5-VL-7B (random weights)'}, images {size[0]}x{size[1]}")
    print(header)
    for r in results:
        memory = "n/a (CPU)" if r["peak_gpu_memory_gib"] is None else f"{r['peak_gpu_memory_gib']:.1f}"
        print(f"{r['recipe']:8} {r['steps']:>5} {r['global_batch']:>5} {r['samples_per_s']:>10.3f} "
              f"{r['tokens_per_s']:>10.1f} {memory:>13}")
    if args.grpo:
        print("grpo: samples are completions (num_generations per image), each written to max_completion_length")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
