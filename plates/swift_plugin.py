"""ms-swift plugin file: ``swift infer/deploy --external_plugins …/plates/swift_plugin.py``.

ms-swift imports this file before it builds its engine. When ``PLATES_DECODING_SCHEMA`` names an answer schema,
every generation in the process is constrained to it (see :func:`plates.decoding.install_swift_hook`); without
the variable the plugin does nothing. ``plates.decoding.decoding_options`` adds both the argument and the
variable, so users never pass this file by hand.
"""

import os

from plates.decoding import SCHEMA_ENV, install_swift_hook

if os.environ.get(SCHEMA_ENV):
    install_swift_hook(os.environ[SCHEMA_ENV])
