"""The one way to run a notebook: papermill with its own params.yaml section, then an offline report.

``run_notebook("01-zoo", sections=["zoo"])`` executes ``notebooks/01-zoo.py`` (a jupytext percent
script) with the keys of ``params.yaml:zoo`` as parameters plus ``out_dir`` and ``metrics_path``, saves
the executed copy under ``artifacts/notebooks/``, renders ``reports/<name>.html`` and records the
stage's wall time in its metrics JSON. Parameters are checked against the notebook's parameters cell
before any kernel starts: unknown names and wrong types are errors naming the field.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import papermill
import yaml

from .errors import ConfigError, unknown
from .notebook import repo_root, write_metrics
from .report import render_html

KERNEL = "python3"  # papermill must use the kernel of the environment it runs in (TOOLCHAIN.md)
# The runner supplies these to every notebook; they are not params.yaml keys.
RUNNER_PARAMS = ("out_dir", "metrics_path")


@dataclass(frozen=True)
class NotebookRun:
    """Where one execution of a notebook reads and writes (all relative to the repository root)."""

    notebook: str  # e.g. "01-zoo"
    sections: tuple[str, ...]  # params.yaml sections merged into the parameters, e.g. ("runs.qwen-s0",)
    stem: str  # output name, e.g. "01-zoo" or "runs/qwen-s0"

    @property
    def source(self) -> str:
        return f"notebooks/{self.notebook}.py"

    @property
    def out_dir(self) -> str:
        """``artifacts/<slug>``: the stem without its ``NN-`` prefix (01-zoo -> artifacts/zoo)."""
        return f"artifacts/{re.sub(r'^[0-9]{2}-', '', self.stem)}"

    @property
    def metrics_path(self) -> str:
        return f"artifacts/metrics/{self.stem}.json"

    @property
    def executed(self) -> str:
        return f"artifacts/notebooks/{self.stem}.ipynb"

    @property
    def report(self) -> str:
        return f"reports/{self.stem}.html"


def available_notebooks(root: Path) -> list[str]:
    """Notebook names (``NN-slug``) under ``notebooks/``."""
    return sorted(p.stem for p in (root / "notebooks").glob("[0-9][0-9]-*.py"))


def section_params(params: dict[str, Any], section: str) -> dict[str, Any]:
    """``params`` at the dotted path ``section`` (e.g. ``runs.qwen-s0``), which must be a mapping."""
    node: Any = params
    for i, part in enumerate(section.split(".")):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(section.split(".")[:i]) or "params.yaml"
            raise unknown(f"params section {section!r}: key {part!r} under {where}", part, node if isinstance(node, dict) else [])
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"params section {section!r} must be a mapping of notebook parameters, got {node!r}")
    return node


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The notebook's declared parameters (name -> papermill's inference of type and default)."""
    with tempfile.TemporaryDirectory() as tmp:
        ipynb = Path(tmp) / f"{path.stem}.ipynb"
        nbformat.write(read_notebook(path), ipynb)
        return papermill.inspect_notebook(str(ipynb))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """A jupytext percent script as a notebook bound to the project's kernel."""
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    return nb


def check_parameters(given: dict[str, Any], declared: dict[str, dict[str, Any]], where: str) -> None:
    """Raise ConfigError for a parameter the notebook does not declare or of the wrong type."""
    for name, value in given.items():
        if name not in declared:
            raise unknown(f"{where}.{name}: the notebook has no parameter", name, declared)
        default = _default_value(declared[name])
        if default is not _UNKNOWN and not _same_kind(value, default):
            raise ConfigError(
                f"{where}.{name} = {value!r} is a {type(value).__name__}, "
                f"but the notebook expects a {type(default).__name__} (default {default!r})"
            )


_UNKNOWN = object()


def notebook_defaults(path: Path) -> dict[str, Any]:
    """The values of the notebook's parameters cell (literals only; others are left out)."""
    values = {name: _default_value(spec) for name, spec in notebook_parameters(path).items()}
    return {k: v for k, v in values.items() if v is not _UNKNOWN and k not in RUNNER_PARAMS}


def _default_value(spec: dict[str, Any]) -> Any:
    try:
        return ast.literal_eval(spec.get("default", ""))
    except (ValueError, SyntaxError):
        return _UNKNOWN


def _same_kind(value: Any, default: Any) -> bool:
    """Types match, allowing int for float and None where the default is None."""
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float) and isinstance(value, int):
        return True
    kinds = (dict, list, str, int, float)
    return next((k for k in kinds if isinstance(value, k)), None) is next((k for k in kinds if isinstance(default, k)), None)


def run_notebook(run: NotebookRun, root: Path | None = None, params_file: str = "params.yaml") -> Path:
    """Execute ``run``: parameters checked, papermill, executed copy, HTML report, wall time."""
    root = root or repo_root()
    source = root / run.source
    if not source.exists():
        raise unknown("notebook", run.notebook, available_notebooks(root))
    params = yaml.safe_load((root / params_file).read_text()) or {}
    given: dict[str, Any] = {}
    for section in run.sections:
        given.update(section_params(params, section))
    check_parameters(given, notebook_parameters(source), f"{params_file}:{'+'.join(run.sections)}")
    given.update(out_dir=run.out_dir, metrics_path=run.metrics_path)
    return _execute(run, source, given, root, params.get("profile", "unknown"))


def _execute(run: NotebookRun, source: Path, given: dict[str, Any], root: Path, profile: str) -> Path:
    for rel in (run.executed, run.report, run.metrics_path):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / run.metrics_path).unlink(missing_ok=True)
    executed = root / run.executed
    tmp = executed.with_suffix(".tmp.ipynb")
    nbformat.write(read_notebook(source), tmp)
    start, error = time.time(), None
    # Reports stay readable: no per-update progress lines in them (tqdm reads TQDM_* variables);
    # the console shows papermill's per-cell bar instead when it is a terminal.
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        papermill.execute_notebook(
            str(tmp), str(tmp), parameters=given, kernel_name=KERNEL, cwd=str(root),
            progress_bar=sys.stderr.isatty(), log_output=bool(os.environ.get("VLM4VLA_LOG_OUTPUT")),
        )
    except papermill.PapermillExecutionError as exc:
        error = exc
    wall = time.time() - start
    tmp.replace(executed)  # the executed copy is kept even when a cell failed, to read the error
    render_html(executed, root / run.report, title=run.stem)
    if error is not None:
        raise RuntimeError(f"{run.source} failed in cell {error.exec_count}: {error.ename}: {error.evalue} "
                           f"(executed copy: {run.executed}, report: {run.report})") from None
    write_metrics(root / run.metrics_path, {"wall_time_s": round(wall, 1), "profile": profile})
    return root / run.report


def stage_record(root: Path, stem: str) -> dict[str, Any]:
    """A stage's metrics JSON, or an empty dict if it has not run."""
    path = root / f"artifacts/metrics/{stem}.json"
    return json.loads(path.read_text()) if path.exists() else {}
