"""Reports: executed notebooks as self-contained HTML, and the index that links them.

Reports must read offline: nbconvert's templates load require.js and MathJax from a CDN, so those
tags are dropped (notebooks write no LaTeX; figures are embedded PNGs).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import nbformat
from nbconvert import HTMLExporter

_REMOTE_TAG = re.compile(r"<(script|link)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]*\"[^>]*>(?:\s*</script>)?", re.I)


def render_html(notebook: Path, target: Path, title: str) -> Path:
    """Render an executed notebook to ``target`` as HTML with no remote resources (atomic write)."""
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata["title"] = title
    body, _ = HTMLExporter(template_name="lab", embed_images=True).from_notebook_node(nb)
    _write_atomic(target, strip_remote(body))
    return target


def strip_remote(page: str) -> str:
    """``page`` without <script>/<link> tags that load from the network."""
    return _REMOTE_TAG.sub("", page)


def remote_resources(page: str) -> list[str]:
    """Every src/href in ``page`` that would be fetched from the network (for tests)."""
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page, re.I)
    urls = (re.search(r"\b(?:src|href)=\"([^\"]*)\"", t) for t in tags)
    return [u.group(1) for u in urls if u and re.match(r"(https?:)?//", u.group(1))]


def collect_stages(root: Path) -> list[dict[str, Any]]:
    """One record per stage that ran here or whose metrics git brought (a run made on another machine):
    report path (None when its HTML is not on this machine), parameters (from the executed notebook,
    when it is here), headline metrics, wall time. ``ok``: its metrics were written (the stage finished)."""
    notebooks, metrics_dir = root / "artifacts/notebooks", root / "artifacts/metrics"
    stems = {p.relative_to(notebooks).with_suffix("").as_posix() for p in notebooks.rglob("*.ipynb")}
    stems |= {p.relative_to(metrics_dir).with_suffix("").as_posix() for p in metrics_dir.rglob("*.json")}
    records = []
    for stem in sorted(s for s in stems if not s.endswith(".tmp")):
        executed, metrics_file = notebooks / f"{stem}.ipynb", metrics_dir / f"{stem}.json"
        meta = nbformat.read(executed, as_version=4).metadata.get("papermill", {}) if executed.is_file() else {}
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        records.append({
            "stem": stem, "report": f"{stem}.html" if (root / "reports" / f"{stem}.html").is_file() else None,
            "parameters": meta.get("parameters"), "wall_time_s": metrics.pop("wall_time_s", None),
            "profile": metrics.pop("profile", None), "metrics": metrics, "ok": metrics_file.is_file(),
        })
    return records


def write_index(root: Path, target: Path | None = None) -> Path:
    """Write ``reports/index.html`` linking every report with its metrics, parameters and wall time."""
    target = target or root / "reports/index.html"
    stages = collect_stages(root)
    total = sum(s["wall_time_s"] or 0 for s in stages)
    rows = "\n".join(_row(s) for s in stages)
    profile = next((s["profile"] for s in stages if s["profile"]), "unknown")
    page = _PAGE.format(profile=html.escape(str(profile)), n=len(stages), total=_duration(total), rows=rows)
    _write_atomic(target, page)
    return target


def _row(stage: dict[str, Any]) -> str:
    metrics = "<br>".join(f"{html.escape(k)}: <b>{_fmt(v)}</b>" for k, v in sorted(stage["metrics"].items()))
    params = ("<details><summary>show</summary><pre>"
              f"{html.escape(json.dumps(stage['parameters'], indent=1, sort_keys=True))}</pre></details>"
              if stage["parameters"] is not None else "in params.yaml (executed on another machine)")
    status = "" if stage["ok"] else ' <span class="bad">(failed or incomplete)</span>'
    name = html.escape(stage["stem"])
    link = (f'<a href="{html.escape(stage["report"])}">{name}</a>' if stage["report"]
            else f"{name} (results in git; its report is on the machine that ran it)")
    return (f"<tr><td>{link}{status}</td><td>{_duration(stage['wall_time_s'])}</td><td>{metrics or '-'}</td>"
            f"<td>{params}</td></tr>")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _write_atomic(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>VLM4VLA study: reports</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border: 1px solid #ccc; padding: .4em; vertical-align: top; }}
th {{ background: #f3f3f3; text-align: left; }} pre {{ font-size: 80%; }} .bad {{ color: #b00; }}
</style></head><body>
<h1>VLM4VLA study: reports</h1>
<p>Profile <b>{profile}</b>; {n} stages recorded; total wall time {total}.
Regenerate with <code>make repro</code>; each report links to the notebook it was rendered from.</p>
<table><thead><tr><th>report</th><th>wall time</th><th>headline metrics</th><th>parameters</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
