"""The built wheel works on its own: installed into a fresh virtual environment and run from a directory outside
the checkout, every stage finds its labels, schema, prompts and presets inside the installed package.

The wheel is installed with ``--no-deps``; its dependencies come from this test run's environment through a
``.pth`` line (appended after the new environment's own site-packages, and without running that environment's
``.pth`` files, so the checkout's editable install is not active there). The first test proves the installed
copy is the one used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ASSETS = {"labels": ["fields.yaml", "plates.yaml"], "eval": ["answer.schema.json"],
          "prompts": ["v1/prompts.yaml", "v1/template.yaml"], "swift_args": ["tiny_cpu.yaml"]}


class Installed:
    def __init__(self, venv: Path, cwd: Path):
        self.venv, self.cwd = venv, cwd
        self.bin = venv / "bin"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        self.env["PATH"] = str(self.bin) + os.pathsep + "/usr/bin:/bin"
        self.env["VIRTUAL_ENV"] = str(venv)

    def run(self, *argv: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(self.bin / argv[0]), *argv[1:]], cwd=self.cwd, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        if check:
            assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # A copy of the tree, so the build's own scratch (build/, *.egg-info) never lands in the checkout.
    shutil.copytree(REPO, build / "src", ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "plates-demo", "*.body"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(build / "src")], check=True, capture_output=True, timeout=120)
    (path,) = out.glob("plates-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Installed:
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    purelib = Path(sysconfig.get_paths()["purelib"])
    site = next((venv / "lib").glob("python*/site-packages"))
    with zipfile.ZipFile(wheel) as archive:  # what `pip install --no-deps` does for a pure wheel
        archive.extractall(site)
    (site / "zz_test_dependencies.pth").write_text(str(purelib) + "\n", encoding="utf-8")
    python = venv / "bin" / "python"
    for name, target in (("plates", "plates.cli:main"), ("swift", "swift.cli.main:cli_main")):
        module, func = target.split(":")
        script = venv / "bin" / name
        script.write_text(f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
        script.chmod(0o755)
    cwd = tmp_path_factory.mktemp("outside")
    assert REPO not in cwd.parents
    return Installed(venv, cwd)


def test_wheel_carries_the_data_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, files in ASSETS.items():
        for name in files:
            assert f"plates/_assets/{folder}/{name}" in names
    assert not any(n.startswith(("labels/", "eval/", "tests/")) for n in names)


def test_installed_package_reads_its_own_copy(installed):
    probe = ("import json, plates, plates.resources as r;"
             "print(json.dumps([plates.__file__, str(r.labels_dir()), str(r.schema_path()), str(r.prompts_dir()),"
             " str(r.presets_dir()), r.from_checkout()]))")
    out = json.loads(installed.run("python", "-c", probe).stdout)
    *paths, from_checkout = out
    assert from_checkout is False
    for path in paths:
        assert Path(path).is_relative_to(installed.venv), path
        assert not Path(path).is_relative_to(REPO), path


def test_every_stage_runs_from_the_wheel(installed):
    run = installed.run
    schema = run("plates", "schema").stdout
    assert json.loads(schema)["$id"] == "urn:plates:answer"
    assert run("plates", "schema", "--check").returncode == 0
    presets = run("plates", "train", "--list-presets").stdout
    assert "tiny_cpu" in presets and "qwen2_5_vl_7b_lora" in presets

    run("python", "-c", "from plates.synth import make_dump; make_dump('dump', 12, seed=3, broken=1)")
    run("plates", "parse", "dump", "-o", "records.jsonl")
    assert sum(1 for _ in open(installed.cwd / "records.jsonl", encoding="utf-8")) == 12
    run("plates", "teach", "records.jsonl", "-o", "teacher.jsonl", "--mode", "describe", "--backend", "template")
    run("plates", "build", "records.jsonl", "-o", "dataset", "--descriptions", "teacher.jsonl",
        "--val-ratio", "0.25")
    assert (installed.cwd / "dataset" / "train.jsonl").stat().st_size > 0
    dry = run("plates", "train", "--preset", "tiny_cpu", "--dataset", "dataset", "--model", "some/model", "--dry-run")
    assert "sft" in dry.stdout and str(installed.cwd / "dataset" / "train.jsonl") in dry.stdout
    assert str(REPO) not in dry.stdout + dry.stderr


def test_demo_starts_from_the_wheel(installed):
    """The demo takes minutes; its requirement checks and first stages (draw, parse, teach, build) prove it runs
    from the installed package. It is stopped once the dataset exists (about 15 s on an idle machine)."""
    workdir = installed.cwd / "demo"
    proc = subprocess.Popen([str(installed.bin / "plates"), "demo", "--workdir", str(workdir), "--images", "8"],
                            cwd=installed.cwd, env=installed.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600  # generous: a loaded CI machine; the loop ends at the dataset
        while time.monotonic() < deadline and proc.poll() is None:
            if (workdir / "dataset" / "stats.json").is_file():
                break
            time.sleep(0.5)
        exited = proc.poll()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode("utf-8", "replace")
    assert exited is None or exited == 0, output[-3000:]
    assert (workdir / "dataset" / "stats.json").is_file(), output[-3000:]
    assert (workdir / "teacher.jsonl").stat().st_size > 0


def test_wheel_holds_every_module_of_the_checkout(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "plates").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules - names == set(), "add the missing subpackage to [tool.setuptools] packages in pyproject.toml"
