"""plates/swift_plugin.py loaded the way ms-swift loads an ``--external_plugins`` file (by path, in a fresh
process, as ``swift.utils.import_external_file`` does): it registers the ``plates_fields`` loss scale always, and
the schema-decoding and placeholder-loss hooks only when their variables ask for them.

Covered elsewhere: what each hook does once installed (tests/test_decoding.py, tests/test_field_weights.py,
tests/test_placeholder_loss.py) and real runs with the plugin (the slow tests there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent.parent / "plates" / "swift_plugin.py"

PROBE = f"""
import json
from swift.utils import import_external_file
import_external_file({str(PLUGIN)!r})
from swift.loss_scale import LossScale
from swift.loss_scale.mapping import loss_scale_map
from swift.template.base import Template
from swift.trainers import Seq2SeqTrainer
scale = loss_scale_map.get("plates_fields")
print(json.dumps({{
    "loss_scale": scale is not None and issubclass(scale, LossScale),
    "schema_hook": bool(getattr(Template.prepare_generate_kwargs, "_plates_schema_hook", False)),
    "closed_form": bool(getattr(Seq2SeqTrainer.compute_loss, "_plates_closed_form", False)),
}}))
"""


def _load(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PLATES_DECODING_SCHEMA", "PLATES_PLACEHOLDER_LOSS", "PLATES_FIELD_LOSS_WEIGHTS")}
    return subprocess.run([sys.executable, "-c", PROBE], env={**clean, "CUDA_VISIBLE_DEVICES": "", **env},
                          capture_output=True, text=True, timeout=300)


def test_by_default_only_the_loss_scale_is_registered():
    done = _load({})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"loss_scale": True, "schema_hook": False,
                                                         "closed_form": False}


def test_the_variables_install_the_hooks():
    from plates.resources import schema_path

    done = _load({"PLATES_DECODING_SCHEMA": str(schema_path()), "PLATES_PLACEHOLDER_LOSS": "closed_form"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"loss_scale": True, "schema_hook": True,
                                                         "closed_form": True}


def test_a_wrong_placeholder_mode_stops_the_import_with_the_reason():
    done = _load({"PLATES_PLACEHOLDER_LOSS": "closed-form"})
    assert done.returncode != 0
    assert "PLATES_PLACEHOLDER_LOSS must be one of" in done.stderr and "'closed-form'" in done.stderr
