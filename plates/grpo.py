"""Reinforcement fine-tuning (GRPO through ``swift rlhf --rlhf_type grpo``) with rewards that are plates' own
scorer.

* :func:`grpo_row` turns one `plates build` extraction sample into the row ms-swift's GRPO trainer reads: the
  user turn with the image, and the reference answer in a ``solution`` column (ms-swift passes every extra column
  to the reward functions). `plates build --grpo` writes these rows.
* :func:`register_rewards` registers the rewards in ``swift.rewards.orms`` (``plates/grpo_plugin.py`` calls it
  inside ms-swift): ``plates_schema``, ``plates_fields`` and ``plates_plate_chars``, each one of the per-answer
  scores of :mod:`plates.evaluation.rewards`, i.e. exactly what `plates eval --details` reports for the same
  answer under ``"scores"``. ``--reward_weights`` weighs them.
* :func:`prepare_plan` is what `plates train` adds for a preset with ``rlhf_type``: the plugin file, checks of the
  reward names, weights and dataset before minutes of loading, the reference adapters of an SFT checkpoint.
* :func:`reward_history` and :func:`summary_lines` read a run's rewards back for the closing summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from plates import swift_cli
from plates.errors import UserError
from plates.evaluation.rewards import AnswerScorer

SOLUTION = "solution"
# reward function name (what --reward_funcs takes and ms-swift logs as rewards/NAME/mean) -> score key
REWARDS = {"plates_schema": "schema", "plates_fields": "fields", "plates_plate_chars": "plate_chars"}


# ---- rows --------------------------------------------------------------------------------------------------


def grpo_row(sample: Mapping[str, Any]) -> dict[str, Any]:
    """One ms-swift sample (``messages`` ending in the assistant's answer, ``images``) as a GRPO row: the prompt
    turns only, and the answer moved to ``solution``. Pure; raises ValueError for a sample without an answer."""
    messages = list(sample.get("messages") or [])
    if not messages or not isinstance(messages[-1], Mapping) or messages[-1].get("role") != "assistant":
        raise ValueError("a GRPO row needs a sample whose last message is the assistant's answer")
    rest = {key: value for key, value in sample.items() if key != "messages"}
    return {"messages": [dict(m) for m in messages[:-1]], **rest, SOLUTION: messages[-1]["content"]}


# ---- rewards inside ms-swift ---------------------------------------------------------------------------------


class _Batch:
    """The scores of the last batch, shared by the reward functions: ms-swift calls each one with the same
    completions and solutions, and the scorer runs once for all three."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.scores: list[dict[str, float]] = []
        self._scorer = None

    def scores_of(self, completions: list[Any], solutions: list[Any]) -> list[dict[str, float]]:
        if self._scorer is None:
            self._scorer = AnswerScorer()
        key = (tuple(map(_text, completions)), tuple(map(_text, solutions)))
        if key != self.key:
            self.scores = self._scorer.scores(key[0], key[1])
            self.key = key
        return self.scores


def _text(value: Any) -> Any:
    """A completion as text: ms-swift hands plain strings, multi-turn rollouts a list of messages (the last one
    is the answer)."""
    if isinstance(value, list) and value and isinstance(value[-1], Mapping):
        return value[-1].get("content", "")
    return value


def reward_classes() -> dict[str, type]:
    """``{name: ORM subclass}`` for every plates reward; each class is named after its reward so ms-swift logs
    ``rewards/plates_fields/mean`` and so on."""
    from swift.rewards import ORM

    batch = _Batch()

    def make(name: str, key: str) -> type:
        def __call__(self, completions, solution=None, **kwargs) -> list[float]:
            if solution is None:
                raise ValueError(f"reward {name} needs a '{SOLUTION}' column (build the dataset with "
                                 "`plates build --grpo`)")
            return [scores[key] for scores in batch.scores_of(list(completions), list(solution))]

        return type(name, (ORM,), {"__call__": __call__, "__doc__": f"plates' {key} score of each completion."})

    return {name: make(name, key) for name, key in REWARDS.items()}


def register_rewards() -> None:
    """Add the plates rewards to ``swift.rewards.orms`` (what ``--reward_funcs`` looks names up in)."""
    from swift.rewards import orms

    for name, cls in reward_classes().items():
        orms.setdefault(name, cls)


def plugin_path() -> Path:
    """The ``--external_plugins`` file that registers the rewards inside ms-swift."""
    return Path(__file__).resolve().with_name("grpo_plugin.py")


# ---- `plates train` with an rlhf preset ----------------------------------------------------------------------


def is_rlhf(options: Mapping[str, Any]) -> bool:
    """A preset (or its overrides) naming ``rlhf_type`` is run with `swift rlhf`, every other with `swift sft`."""
    return options.get("rlhf_type") is not None


def checkpoint_model(adapters: str | Path) -> str | None:
    """The base model an adapter checkpoint was trained from, as ms-swift recorded it (``args.json``)."""
    for folder in (Path(adapters), Path(adapters).parent):
        try:
            args = json.loads((folder / "args.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        model = args.get("model") if isinstance(args, dict) else None
        if isinstance(model, str) and model:
            return model
    return None


def _first_row(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else None
    except (OSError, ValueError):
        return None
    return None


def reward_weights(options: Mapping[str, Any]) -> dict[str, float]:
    """``{reward function: weight}`` as ms-swift will apply them (1 each when ``reward_weights`` is unset)."""
    funcs = list(options.get("reward_funcs") or [])
    weights = options.get("reward_weights")
    weights = [1.0] * len(funcs) if weights is None else [float(w) for w in weights]
    return dict(zip(funcs, weights))


def prepare_plan(options: dict[str, Any], dataset_files: Iterable[Path], notes: list[str]) -> None:
    """Check and complete an rlhf plan in place: GRPO needs reward functions with one weight each (plates' need
    the plugin file and a ``solution`` column); LoRA on an SFT checkpoint takes it as the reference too."""
    if options.get("adapters") and options.get("tuner_type", "lora") == "lora" and not options.get("ref_adapters"):
        options["ref_adapters"] = list(options["adapters"])
        notes.append("the SFT adapters are also the reference model's (ref_adapters), so the KL term keeps the "
                     "policy near the SFT model, not the base model")
    if not options.get("use_vllm") and options.pop("vllm_mode", None):
        notes.append("use_vllm is false: rollouts by ms-swift's transformers engine (vllm_mode dropped)")
    if options.get("rlhf_type") != "grpo":
        return
    funcs = list(options.get("reward_funcs") or [])
    if not funcs and not options.get("reward_model"):
        raise UserError("GRPO needs rewards: --set 'reward_funcs=[plates_schema,plates_fields,plates_plate_chars]'")
    _check_reward_names(funcs, own_plugins=bool(options.get("external_plugins")))
    weights = options.get("reward_weights")
    sources = len(funcs) + len(options.get("reward_model") or [])
    if weights is not None and len(weights) != sources:
        raise UserError(f"reward_weights has {len(weights)} values for {sources} rewards "
                        f"({', '.join(funcs)}); give one weight per reward")
    if not any(f in REWARDS for f in funcs):
        return
    options["external_plugins"] = swift_cli.with_plugins(options.get("external_plugins"), str(plugin_path()))
    for path in dataset_files:
        row = _first_row(path)
        if row is not None and SOLUTION not in row:
            raise UserError(f"{path}: rows have no '{SOLUTION}' column for the plates rewards; build the dataset "
                            "with `plates build --grpo`")
    notes.append("rewards: " + ", ".join(f"{name} x{weight:g}" for name, weight in reward_weights(options).items()))


def _check_reward_names(funcs: list[str], own_plugins: bool) -> None:
    """Every reward name must be a plates reward or one ms-swift ships (a user's own plugin file may register
    others, so names outside both pass when one is given)."""
    known = dict(REWARDS)
    if not own_plugins:
        known.update(dict.fromkeys(swift_cli.quiet_import("swift.rewards").orms))
    for name in funcs:
        if name in known or (own_plugins and not name.startswith("plates")):
            continue
        hint = swift_cli.suggest(name, known)
        raise UserError(f"no reward function {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
                        + f" (plates rewards: {', '.join(REWARDS)})")


def check_launchable(options: Mapping[str, Any]) -> None:
    """What an rlhf run needs installed on the machine that runs it (a dry run may be for another machine)."""
    import importlib.util

    if options.get("rlhf_type") == "grpo" and importlib.util.find_spec("msgspec") is None:
        raise UserError("ms-swift's GRPO trainer needs the msgspec package: pip install msgspec")
    if options.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        raise UserError("use_vllm needs vLLM on this machine (pip install vllm), or --set use_vllm=false to roll "
                        "out with ms-swift's transformers engine (slower)")


def manifest_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """What the run manifest records about an rlhf run: the algorithm, rewards and weights, where it started."""
    if not is_rlhf(options):
        return {}
    return {"rlhf": {"type": options.get("rlhf_type"), "rewards": reward_weights(options),
                     "reward_model": options.get("reward_model"), "adapters": options.get("adapters"),
                     "ref_adapters": options.get("ref_adapters")}}


# ---- reading a run back --------------------------------------------------------------------------------------


def reward_history(run_dir: Path | None) -> dict[str, list[float]]:
    """``{"reward": [...], "plates_fields": [...], …}``: the total reward and each function's mean, per logged
    training step (ms-swift's ``logging.jsonl``); empty for a run that logged none."""
    log = run_dir / "logging.jsonl" if run_dir else None
    history: dict[str, list[float]] = {}
    if log is None or not log.is_file():
        return history
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "reward" not in entry or "train_runtime" in entry:
            continue
        for key, value in entry.items():
            name = "reward" if key == "reward" else key[len("rewards/"):-len("/mean")] \
                if key.startswith("rewards/") and key.endswith("/mean") else None
            if name is None:
                continue
            try:
                history.setdefault(name, []).append(float(value))
            except (TypeError, ValueError):
                continue
    return history


def summary_lines(history: Mapping[str, list[float]]) -> list[str]:
    """The closing summary's reward lines: total first → last, then each function."""
    def span(values: list[float]) -> str:
        if len(values) >= 2:
            return f"{values[0]:.4g} → {values[-1]:.4g} over {len(values)} logged steps"
        return f"{values[0]:.4g}" if values else "not logged"

    if not history:
        return ["reward: not logged"]
    lines = [f"reward (weighted total): {span(history.get('reward', []))}"]
    lines += [f"  {name}: {span(values)}" for name, values in history.items() if name != "reward"]
    return lines
