"""ms-swift plugin file: ``swift infer/deploy/sft --external_plugins …/plates/swift_plugin.py``.

ms-swift imports this file before it builds its engine or trainer. It does three things, each only when asked:

* when ``PLATES_DECODING_SCHEMA`` names an answer schema, every generation in the process is constrained to it
  (see :func:`plates.decoding.install_swift_hook`); ``plates.decoding.decoding_options`` adds the argument and
  the variable;
* it registers the ``plates_fields`` loss-scale strategy (per-field loss weights from
  ``PLATES_FIELD_LOSS_WEIGHTS``, see :mod:`plates.field_weights`), which ``swift sft --loss_scale plates_fields``
  then uses; ``plates train`` adds this file when a preset asks for that strategy;
* when ``PLATES_PLACEHOLDER_LOSS=closed_form``, the training loss of a plates tiny model takes its placeholder
  logits as one closed-form term (see :mod:`plates.placeholder_loss`); ``plates train`` adds this file then too.

Users never pass this file by hand.
"""

import os

from plates.decoding import SCHEMA_ENV, install_swift_hook
from plates.field_weights import register_loss_scale
from plates.placeholder_loss import install_trainer_hook, placeholder_loss_mode

if os.environ.get(SCHEMA_ENV):
    install_swift_hook(os.environ[SCHEMA_ENV])
register_loss_scale()
if placeholder_loss_mode() == "closed_form":
    install_trainer_hook()
