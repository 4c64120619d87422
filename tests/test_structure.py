"""The house rules of CONTRIBUTING.md's "Layout", checked on the source: one floor of stages side by side over a
shared core, `demo` and `cli` the only composers above them.

A stage is the code behind one pipeline command (a module, or a package with its own parts). A stage imports
only the core, never another stage, not even inside a function; the core never imports a stage; no import
circle at module level; no private name (``_x``) imported across modules. A module not named in ``STAGES`` or
``COMPOSERS`` is core, so a new module starts in the core and must earn its place there.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "plates"

STAGES = {
    "parse": ("plates.parse",),
    "teach": ("plates.teaching",),
    "build": ("plates.build", "plates.build_scan", "plates.build_output"),
    "tiny-model": ("plates.tiny_model",),
    "train": ("plates.train",),
    "infer": ("plates.infer",),
    "eval": ("plates.evaluate", "plates.evaluation.cli"),
    "predict": ("plates.predict", "plates.predict_endpoint"),
    "serve": ("plates.serve",),
    "export": ("plates.export",),
    "audit": ("plates.audit",),
}
COMPOSERS = ("plates.demo", "plates.cli")
# Core modules that also offer a maintenance command of their own (not a pipeline stage).
CORE_COMMANDS = ("plates.schema",)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _place(module: str) -> str:
    if module in COMPOSERS:
        return "composer"
    for stage, members in STAGES.items():
        if any(_within(module, member) for member in members):
            return stage
    return "core"


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name if name and name != "plates" else None


def _imports(module: str) -> list[tuple[str, int, bool, list[str]]]:
    """(imported module, line, at module level, names taken) for every plates-internal import of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [alias.name for alias in node.names]
            targets = [(base, names)] + [(f"{base}.{name}", []) for name in names if f"{base}.{name}" in MODULES]
        else:
            continue
        for target, names in targets:
            known = _known(target)
            if known and known != module:
                found.append((known, node.lineno, id(node) in top, names))
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_stage_named_here_exists():
    for members in STAGES.values():
        for member in members:
            assert member in MODULES, f"{member}: named in STAGES but not a module of plates/"


def test_no_stage_imports_another_stage():
    crossings = [f"{module}:{line} ({_place(module)}) imports {target} ({_place(target)})"
                 for module, edges in GRAPH.items() if _place(module) not in ("core", "composer")
                 for target, line, _, _ in edges if _place(target) not in ("core", _place(module))]
    assert not crossings, "\n".join(crossings)


def test_the_core_imports_no_stage():
    upward = [f"{module}:{line} imports {target} ({_place(target)})"
              for module, edges in GRAPH.items() if _place(module) == "core"
              for target, line, _, _ in edges if _place(target) != "core"]
    assert not upward, "\n".join(upward)


def test_no_import_circle_at_module_level():
    edges = {module: {target for target, _, top, _ in found if top} for module, found in GRAPH.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def test_no_private_name_crosses_a_module():
    private = [f"{module}:{line} takes {name} from {target}"
               for module, found in GRAPH.items() for target, line, _, names in found
               for name in names if name.startswith("_") and not name.startswith("__")]
    assert not private, "\n".join(private)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_commands_live_in_stages(module):
    source = MODULES[module].read_text(encoding="utf-8")
    if "\nCOMMANDS = " in source:
        assert _place(module) != "core" or module in CORE_COMMANDS, (
            f"{module} defines COMMANDS but is not a stage: add it to STAGES (and to plates.cli.STAGE_MODULES)")


def test_every_top_level_module_has_its_test_file():
    """CONTRIBUTING.md, "Tests": tests/test_<module>.py mirrors each module of plates/."""
    tests = PACKAGE.parent / "tests"
    missing = [f"plates/{path.name} has no tests/test_{path.name}" for path in sorted(PACKAGE.glob("*.py"))
               if path.stem != "__init__" and not (tests / f"test_{path.name}").is_file()]
    assert not missing, "\n".join(missing)
