"""ms-swift plugin file: ``swift rlhf --rlhf_type grpo --external_plugins …/plates/grpo_plugin.py --reward_funcs
plates_schema plates_fields plates_plate_chars``. Registers plates' rewards (:mod:`plates.grpo`: each is a score
of `plates eval`'s scorer) in ms-swift's ``orms`` registry. `plates train` adds it when a preset's reward_funcs
name a plates reward."""

from plates.grpo import register_rewards

register_rewards()
