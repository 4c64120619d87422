"""The full-vocabulary loss of a plates tiny model, without computing its ~148k placeholder logits.

A plates tiny model (``plates tiny-model``) keeps the real Qwen vocabulary size, 151,936 rows, because ms-swift
refers to the special tokens by their real ids; but its tokenizer only ever produces its ~2,300 learnt tokens and
the specials. The rows in between (``<|placeholder_N|>``) are equal (zero when built) in the embedding that is
tied to the output, so they all score the same logit at every position, and training keeps them equal (each gets
the same gradient). Training still computes all 151,936 logits for every answer token, their softmax and its
gradient: on the demo's 2 CPU cores that was about 90% of a training step.

With ``PLATES_PLACEHOLDER_LOSS=closed_form`` (both demo presets set it) the training loss computes the logits of
the other rows, and the ``n`` equal placeholder rows as one logit, the first row's plus ``log(n)``
(``log(n * exp(z)) = z + log(n)``), so the cross-entropy is the full-vocabulary one (up to float rounding). The
first placeholder row stands for the block and receives the gradient each row of it gets in a full computation
(the block's sum over ``n``), so the optimizer moves it exactly as it would move every row; the only difference
is the gradient norm that clipping sees, where the block counts as one row instead of ``n``. The other rows are
set equal to it whenever the trainer is about to save and when training ends, so every checkpoint is a standard
Qwen2.5-VL whose whole head infers as usual. Outside the loss (generation, saving) the head is untouched:
the shortcut is on only while ms-swift computes a training loss. The token accuracy ms-swift logs counts the
block as one token, so it reads lower than the whole head's for the first few dozen steps, until the answer
tokens outscore the block.

It refuses (one line, at the first training step) a model whose placeholder rows are not all equal, or whose
tokenizer has no placeholder tokens: a real checkpoint needs every logit.
"""

from __future__ import annotations

import functools
import math
import os

from plates.errors import UserError
from plates.contracts import PLACEHOLDER_PREFIX

PLACEHOLDER_LOSS_ENV = "PLATES_PLACEHOLDER_LOSS"
PLACEHOLDER_LOSS_MODES = ("closed_form", "off")


def placeholder_loss_mode(environ=os.environ) -> str:
    """``closed_form`` or ``off`` (unset); one-line ``UserError`` for anything else."""
    mode = (environ.get(PLACEHOLDER_LOSS_ENV) or "off").strip()
    if mode not in PLACEHOLDER_LOSS_MODES:
        raise UserError(f"{PLACEHOLDER_LOSS_ENV} must be one of {', '.join(PLACEHOLDER_LOSS_MODES)}, not {mode!r}")
    return mode


def placeholder_ids(vocab: dict[str, int]) -> range:
    """The contiguous id range of the tokenizer's placeholder tokens (a plates tiny model's unreachable ids)."""
    ids = sorted(i for token, i in vocab.items() if token.startswith(PLACEHOLDER_PREFIX))
    if not ids:
        raise UserError(f"{PLACEHOLDER_LOSS_ENV}=closed_form needs a plates tiny model (its tokenizer has "
                        "<|placeholder_N|> tokens); this model's has none: unset the variable")
    if ids[-1] - ids[0] + 1 != len(ids):
        raise UserError(f"{PLACEHOLDER_LOSS_ENV}=closed_form: the tokenizer's placeholder ids are not one block")
    return range(ids[0], ids[-1] + 1)


class ClosedFormHead:
    """Swaps an output head's forward for the compact one and maps label ids to compact positions."""

    def __init__(self, head, placeholders: range):
        import torch

        weight = head.weight
        rows = weight.shape[0]
        if getattr(head, "bias", None) is not None:
            raise UserError(f"{PLACEHOLDER_LOSS_ENV}=closed_form: the output head has a bias; unset the variable")
        if placeholders.stop > rows:
            raise UserError(f"{PLACEHOLDER_LOSS_ENV}=closed_form: placeholder ids reach {placeholders.stop - 1}, "
                            f"beyond the head's {rows} rows")
        with torch.no_grad():
            block = weight[placeholders.start:placeholders.stop]
            if not bool((block == block[0]).all()):
                raise UserError(f"{PLACEHOLDER_LOSS_ENV}=closed_form: this model's placeholder rows differ (not a "
                                "plates tiny model); unset the variable")
        # the block's representative (its first row) comes last, where the compact logits put the block
        kept = torch.cat([torch.arange(0, placeholders.start), torch.arange(placeholders.stop, rows),
                          torch.tensor([placeholders.start])])
        self.head = head
        self.kept = kept.to(weight.device)
        self.log_placeholders = math.log(len(placeholders))
        self.gradient_scale = torch.ones(len(kept), 1, dtype=weight.dtype, device=weight.device)
        self.gradient_scale[-1] = 1.0 / len(placeholders)
        self.placeholders = placeholders
        compact = torch.full((rows,), -100, dtype=torch.long)
        compact[kept[:-1]] = torch.arange(len(kept) - 1)
        self.compact_ids = compact.to(weight.device)

    def compact_labels(self, labels):
        """Label ids -> positions in the compact logits (-100 stays -100)."""
        import torch

        mapped = torch.where(labels >= 0, self.compact_ids[labels.clamp(min=0)], labels)
        if bool(((mapped < 0) & (labels >= 0)).any()):
            raise RuntimeError(f"{PLACEHOLDER_LOSS_ENV}=closed_form: a training label is a placeholder id "
                               f"({self.placeholders.start}-{self.placeholders.stop - 1}); the tokenizer never "
                               "produces those")
        return mapped

    def forward(self, hidden):
        import torch.nn.functional as F

        weight = self.head.weight.index_select(0, self.kept)
        # the representative's value, but 1/n of the block's gradient: exactly the gradient each row gets
        weight = weight * self.gradient_scale + (weight * (1 - self.gradient_scale)).detach()
        logits = F.linear(hidden, weight)
        offset = logits.new_zeros(logits.shape[-1])
        offset[-1] = self.log_placeholders
        return logits + offset

    def sync_placeholders(self) -> None:
        """Set every placeholder row to the first (which alone was trained): the whole head is consistent."""
        import torch

        with torch.no_grad():
            block = self.head.weight[self.placeholders.start:self.placeholders.stop]
            block[1:] = block[0]


def install_trainer_hook() -> None:
    """Wrap ms-swift's ``Seq2SeqTrainer.compute_loss``: compact labels and head while it runs (idempotent)."""
    from swift.trainers import Seq2SeqTrainer

    original = Seq2SeqTrainer.compute_loss
    if getattr(original, "_plates_closed_form", False):
        return

    import torch

    @functools.wraps(original)
    def compute_loss(self, model, inputs, *args, **kwargs):
        closed = getattr(self, "_plates_closed_form_head", None)
        if closed is None:
            unwrapped = self.accelerator.unwrap_model(model)
            head = unwrapped.get_output_embeddings()
            closed = ClosedFormHead(head, placeholder_ids(self.template.tokenizer.get_vocab()))
            self._plates_closed_form_head = closed
            self.add_callback(_sync_callback(closed))
        labels = inputs.get("labels")
        if labels is not None:
            inputs["labels"] = closed.compact_labels(labels)
            if inputs.get("loss_scale") is None:
                # a scale of ones routes the loss through ms-swift's own per-token path, which takes the logits
                # as they come; the model's built-in loss would reshape them to the whole vocabulary
                inputs["loss_scale"] = torch.ones_like(labels, dtype=torch.float32)
        head = closed.head
        head.forward = closed.forward
        try:
            return original(self, model, inputs, *args, **kwargs)
        finally:
            del head.forward  # back to the class's forward

    compute_loss._plates_closed_form = True
    Seq2SeqTrainer.compute_loss = compute_loss


def _sync_callback(closed: ClosedFormHead):
    """A trainer callback that makes the placeholder rows equal before every save and at the end."""
    from transformers import TrainerCallback

    class SyncPlaceholderRows(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or state.global_step >= state.max_steps:
                closed.sync_placeholders()

        def on_epoch_end(self, args, state, control, **kwargs):
            closed.sync_placeholders()

        def on_train_end(self, args, state, control, **kwargs):
            closed.sync_placeholders()

    return SyncPlaceholderRows()
