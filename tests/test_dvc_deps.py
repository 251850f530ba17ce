"""Every DVC stage lists, among its deps, each library file its notebook can import.

Stages list the files they use (not all of lib/), so editing an analysis or the repro scheduler
does not re-train 75 policies; this test keeps those lists complete. The import closure is read
from the source (nested and relative imports included, plus the backbone family files the registry
imports by name), starting from the notebook's imports and the runner that executes it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from vlm4vla.backbones.registry import FAMILY_MODULES

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib"
RUNNER = "vlm4vla.pipeline.runner"  # what `vlm4vla run` executes around the notebook


def _module_file(name: str) -> Path | None:
    path = LIB.joinpath(*name.split("."))
    return next((f for f in (path / "__init__.py", path.with_suffix(".py")) if f.exists()), None)


def _package(path: Path) -> str:
    if not path.is_relative_to(LIB):
        return ""
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1])


def _imports(path: Path) -> set[str]:
    package, found = _package(path), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    if path == _module_file("vlm4vla.backbones.registry"):
        found |= {f"vlm4vla.backbones.{m}" for m in FAMILY_MODULES}
    return {m for m in found if m.split(".")[0] == "vlm4vla"}


def import_closure(notebook: Path) -> set[Path]:
    """Library files reachable by imports from ``notebook`` and the runner."""
    seen: set[Path] = set()
    todo = [*_imports(notebook), RUNNER]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = _module_file(name)
        if path is not None and path not in seen:
            seen.add(path)
            todo += _imports(path)
    return seen


def _stages() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


NOTEBOOK_STAGES = {name: s for name, s in _stages().items() if s["cmd"].startswith("vlm4vla run ")}


@pytest.mark.parametrize("stage", sorted(NOTEBOOK_STAGES))
def test_stage_deps_cover_the_notebooks_imports(stage: str) -> None:
    spec = NOTEBOOK_STAGES[stage]
    notebook = ROOT / "notebooks" / f"{spec['cmd'].split()[2]}.py"
    deps = [ROOT / d for d in spec["deps"] if not d.startswith("${")]
    assert notebook in deps, f"{stage}: its notebook {notebook.name} is not a dep"
    missing = sorted(str(f.relative_to(ROOT)) for f in import_closure(notebook)
                     if not any(f == d or f.is_relative_to(d) for d in deps))
    assert not missing, f"dvc.yaml stage {stage!r} imports these files but does not depend on them: {missing}"


def test_lib_deps_exist() -> None:
    for name, spec in _stages().items():
        for dep in spec["deps"]:
            if dep.startswith("lib/"):
                assert (ROOT / dep).exists(), f"dvc.yaml stage {name!r}: dep {dep} does not exist"


def test_closure_follows_relative_nested_and_registry_imports() -> None:
    """The closure itself is right on a file whose imports are known."""
    closure = {str(p.relative_to(LIB)) for p in import_closure(ROOT / "notebooks" / "02-train-policy.py")}
    assert "vlm4vla/pipeline/report.py" in closure  # runner -> report, a relative import
    assert "vlm4vla/backbones/paligemma.py" in closure  # by name, through the registry
    assert "vlm4vla/analysis/runs.py" not in closure  # training never imports the analysis
