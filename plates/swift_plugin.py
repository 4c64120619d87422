"""ms-swift plugin file: ``swift infer/deploy/sft --external_plugins …/plates/swift_plugin.py``.

ms-swift imports this file before it builds its engine or trainer. It does two things, each only when asked:

* when ``PLATES_DECODING_SCHEMA`` names an answer schema, every generation in the process is constrained to it
  (see :func:`plates.decoding.install_swift_hook`); ``plates.decoding.decoding_options`` adds the argument and
  the variable;
* it registers the ``plates_fields`` loss-scale strategy (per-field loss weights from
  ``PLATES_FIELD_LOSS_WEIGHTS``, see :mod:`plates.field_weights`), which ``swift sft --loss_scale plates_fields``
  then uses; ``plates train`` adds this file when a preset asks for that strategy.

Users never pass this file by hand.
"""

import os

from plates.decoding import SCHEMA_ENV, install_swift_hook
from plates.field_weights import register_loss_scale

if os.environ.get(SCHEMA_ENV):
    install_swift_hook(os.environ[SCHEMA_ENV])
register_loss_scale()
