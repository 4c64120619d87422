"""plates.resources: where the data folders are found, in a checkout and in an installed copy.

Covered elsewhere: a real wheel installed into a virtualenv reads its own copy (tests/test_wheel.py). Here: the
checkout, the labels override, and the choice between the two homes made folder by folder, on a copy of the
package laid out as a wheel lays it out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plates.resources import ASSETS, LABELS_ENV, asset_dir, from_checkout, labels_dir, presets_dir, prompts_dir, \
    schema_path

CHECKOUT = Path(__file__).resolve().parent.parent


def test_a_checkout_reads_its_top_level_folders():
    assert {name: asset_dir(name) for name in ASSETS} == {name: CHECKOUT / name for name in ASSETS}
    assert (labels_dir() / "fields.yaml").is_file() and (labels_dir() / "plates.yaml").is_file()
    assert json.loads(schema_path().read_text(encoding="utf-8"))["$id"] == "urn:plates:answer"
    assert (prompts_dir() / "prompts.yaml").is_file() and (prompts_dir("v1") / "template.yaml").is_file()
    assert (presets_dir() / "tiny_cpu.yaml").is_file()
    assert all(from_checkout(name) for name in ASSETS)


def test_unknown_folder_is_refused():
    with pytest.raises(ValueError, match="unknown asset folder 'data'; one of labels, eval, prompts, swift_args"):
        asset_dir("data")


def test_labels_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(LABELS_ENV, str(tmp_path / "my labels"))
    assert labels_dir() == tmp_path / "my labels"
    assert asset_dir("labels") == CHECKOUT / "labels", "only labels_dir() reads the override"
    monkeypatch.setenv(LABELS_ENV, "")
    assert labels_dir() == CHECKOUT / "labels"


PROBE = ("import json, plates.resources as r; print(json.dumps([str(r.labels_dir()), str(r.schema_path()), "
         "r.from_checkout('labels'), r.from_checkout('eval'), r.__file__]))")


def test_an_installed_copy_reads_the_package_data_it_carries(tmp_path):
    """A package directory with ``_assets/labels`` (as the wheel lays it out) reads labels from there; a folder
    it does not carry falls back to the folder beside the package, each decided on its own."""
    site = tmp_path / "site"
    shutil.copytree(CHECKOUT / "plates", site / "plates", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(CHECKOUT / "labels", site / "plates" / "_assets" / "labels")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    probe = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {PROBE}"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    labels, schema, labels_from_checkout, eval_from_checkout, module = json.loads(probe.stdout)
    assert Path(module).parent == site / "plates", "the copy was imported, not the checkout"
    assert Path(labels) == site / "plates" / "_assets" / "labels" and labels_from_checkout is False
    assert Path(schema) == site / "eval" / "answer.schema.json" and eval_from_checkout is True
