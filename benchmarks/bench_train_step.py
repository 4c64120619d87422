"""What the closed-form placeholder loss saves per training step of the demo's tiny model, side by side in one run.

Builds the demo-size tiny random Qwen2.5-VL (`plates tiny-model --size demo`, no download; or --model DIR), then
times forward + loss + backward of one text batch shaped like a demo stage-1 step (--batch sequences of
--tokens tokens, the last --answer of them labelled, logits only for those, as ms-swift's logits_to_keep does),
alternating:

* whole   - the model's own head: 151,936 logits per answer token, the usual cross-entropy
* closed  - plates.placeholder_loss (PLATES_PLACEHOLDER_LOSS=closed_form): the placeholder block as one logit

and prints ms per step of each (best of --repeat rounds of --steps steps), their ratio and the largest relative
difference between the two losses. The vision tower is left out: it costs the same both ways.
Usage: python benchmarks/bench_train_step.py [--batch 2] [--tokens 300] [--answer 76]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: build the demo's tiny model in a temp folder)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--answer", type=int, default=76)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from plates.placeholder_loss import ClosedFormHead, placeholder_ids
    from plates.tiny_model import SIZES, build_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as scratch:
        model_dir = args.model
        if model_dir is None:
            model_dir = build_tiny_model(Path(scratch) / "tiny", **SIZES["demo"])
        model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=torch.float32)
        vocab = AutoTokenizer.from_pretrained(str(model_dir)).get_vocab()
    model.train()
    head = model.get_output_embeddings()
    placeholders = placeholder_ids(vocab)
    closed = ClosedFormHead(head, placeholders)
    generator = torch.Generator().manual_seed(0)
    reachable = torch.tensor(sorted(i for i in vocab.values() if i not in placeholders))
    input_ids = reachable[torch.randint(len(reachable), (args.batch, args.tokens), generator=generator)]
    labels = input_ids[:, -args.answer:]

    def step(kind: str) -> float:
        if kind == "closed":
            head.forward = closed.forward
        try:
            logits = model(input_ids=input_ids, logits_to_keep=args.answer + 1).logits[:, :-1]
            targets = closed.compact_labels(labels) if kind == "closed" else labels
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            loss.backward()
        finally:
            if kind == "closed":
                del head.forward
        model.zero_grad(set_to_none=True)
        return loss.item()

    best = {"whole": float("inf"), "closed": float("inf")}
    losses: dict[str, list[float]] = {"whole": [], "closed": []}
    for kind in best:
        step(kind)  # warm-up
    for _ in range(args.repeat):
        for kind in best:
            start = time.perf_counter()
            losses[kind] += [step(kind) for _ in range(args.steps)]
            best[kind] = min(best[kind], (time.perf_counter() - start) / args.steps)
    difference = max(abs(a - b) / abs(a) for a, b in zip(losses["whole"], losses["closed"]))
    rows = model.get_input_embeddings().weight.shape[0]
    print(f"tiny model {model_dir if args.model else '(demo size, built)'}: {rows} head rows, "
          f"{len(closed.kept)} computed by the closed form; batch {args.batch} x {args.tokens} tokens, "
          f"{args.answer} labelled; {torch.get_num_threads()} threads")
    print(f"{'loss':<10}{'ms/step':>10}{'loss value':>14}")
    for kind in best:
        print(f"{kind:<10}{best[kind] * 1000:>10.1f}{losses[kind][0]:>14.7f}")
    print(f"speed-up: {best['whole'] / best['closed']:.1f}x; largest relative loss difference {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
