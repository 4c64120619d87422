"""What schema-constrained decoding costs per generated token, beside free decoding, in one run.

Builds the tiny random Qwen2.5-VL (`plates tiny-model`, no download; or --model DIR), then generates answers to
the extraction prompt (text only, greedy, batch --batch) with `model.generate` twice per repeat, alternating:

* free    - plain generation
* schema  - the same with plates' xgrammar logits processor (plates.decoding.SchemaLogitsProcessor, exactly what
            `plates infer --decoding schema` plugs into ms-swift), constrained to eval/answer.schema.json

and prints ms per generated token (per sequence) of each, their ratio, the processor's own share, and the
one-off grammar compile time. Each figure is the best of --repeat runs. The untrained model never ends a free
answer, so free runs to --max-new-tokens while the schema run ends when the answer is complete: compare
per-token figures, not totals. Usage: python benchmarks/bench_decoding.py [--batch 4] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: build the tiny random model in a temp folder)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from plates import decoding
    from plates.student import EXTRACTION_PROMPT

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else None
        if model_dir is None:
            from plates.tiny_model import build_tiny_model

            model_dir = build_tiny_model(Path(tmp) / "tiny")
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
        text = tokenizer.apply_chat_template([{"role": "user", "content": EXTRACTION_PROMPT}], tokenize=False,
                                             add_generation_prompt=True)
        tokenizer.padding_side = "left"
        inputs = tokenizer([text] * args.batch, return_tensors="pt", padding=True)
        eos = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
        schema_text = decoding._schema_text(decoding.resolve_schema_path())
        vocab = model.get_output_embeddings().weight.shape[0]

        start = time.perf_counter()
        decoding.compile_grammar(tokenizer, vocab, schema_text, eos)
        compile_s = time.perf_counter() - start

        class Timed(decoding.SchemaLogitsProcessor):
            spent = 0.0

            def __call__(self, input_ids, scores):
                t = time.perf_counter()
                out = super().__call__(input_ids, scores)
                Timed.spent += time.perf_counter() - t
                return out

        def run(constrained: bool) -> tuple[float, float, int, list[str]]:
            Timed.spent = 0.0
            processor = Timed(tokenizer, schema_text, eos, max_new_tokens=args.max_new_tokens)
            extra = {"logits_processor": [processor]} if constrained else {}
            t = time.perf_counter()
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False,
                                     eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, **extra)
            elapsed = time.perf_counter() - t
            new = out[:, inputs["input_ids"].shape[1]:]
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            tokens = int((new != tokenizer.pad_token_id).sum())
            return elapsed, Timed.spent, tokens, texts

        best = {"free": None, "schema": None}
        for _ in range(args.repeat):
            for mode in ("free", "schema"):
                elapsed, spent, tokens, texts = run(mode == "schema")
                steps = tokens / args.batch
                per_token = elapsed / steps * 1000
                if best[mode] is None or per_token < best[mode][0]:
                    best[mode] = (per_token, spent / steps * 1000, tokens, texts)

    valid = 0
    from plates.schema import answer_validator

    validator = answer_validator()
    for text in best["schema"][3]:
        try:
            valid += validator.is_valid(json.loads(text))
        except json.JSONDecodeError:
            pass
    free_ms, schema_ms = best["free"][0], best["schema"][0]
    print(f"tiny Qwen2.5-VL, vocabulary {vocab:,}, batch {args.batch}, greedy, best of {args.repeat}")
    print(f"grammar setup, once per process (tokenizer info, compile, closing reserve): {compile_s * 1000:.0f} ms")
    print(f"{'mode':8} {'ms/step':>9} {'processor ms/step':>18} {'tokens':>7}")
    print(f"{'free':8} {free_ms:9.2f} {'-':>18} {best['free'][2]:7d}")
    print(f"{'schema':8} {schema_ms:9.2f} {best['schema'][1]:18.2f} {best['schema'][2]:7d}")
    print(f"schema/free per step: {schema_ms / free_ms:.2f}x; overhead {schema_ms - free_ms:.2f} ms per step of "
          f"{args.batch} sequences ({(schema_ms - free_ms) / args.batch:.2f} ms per sequence-token)")
    print(f"schema answers valid against eval/answer.schema.json: {valid}/{len(best['schema'][3])} "
          f"(complete within {args.max_new_tokens} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
