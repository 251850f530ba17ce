"""Is a zoo member rebuilt from the same seed byte-identical to the stored one? Prints one line per file.

Every policy run depends (in DVC) on its backbone's folder, so a rebuild (a fresh machine restores the
zoo before training a new run) must give the same bytes, or DVC sees every finished run as changed.
Builds one member of params.yaml's zoo with the current code into a temporary folder, one torch
thread as `build_zoo` does, and compares it file by file with ``artifacts/zoo/<member>``. Files the
current code writes differently from older code (``--normalise``: history.csv without its wall-clock
column, summary.json without build_seconds) are compared after normalising the stored copy, and
with ``--write`` the stored copies are normalised in place when every other file is identical.

    .venv/bin/python benchmarks/zoo_rebuild_check.py [--member NAME] [--normalise] [--write]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from vlm4vla.backbones.zoo import _cost, build_zoo_member, get_zoo
from vlm4vla.data.corpus import CorpusConfig, make_corpus


def normalised(name: str, text: str) -> str:
    """What the current code writes for a file that older code wrote with wall-clock times."""
    if name == "history.csv":  # drop the last column, "seconds", as text (no float parsing)
        lines = text.splitlines()
        if lines and lines[0] == "step,loss,lr,seconds":
            return "\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n"
        return text
    if name == "summary.json":
        return json.dumps({k: v for k, v in json.loads(text).items() if k != "build_seconds"}, indent=2) + "\n"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--member", help="zoo member (default: the cheapest pretrained one)")
    parser.add_argument("--normalise", action="store_true")
    parser.add_argument("--write", action="store_true", help="with --normalise: rewrite the stored copies")
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())["zoo"]
    specs = [s for s in get_zoo(params["zoo"]) if not s.scratch]
    spec = next(s for s in specs if s.name == args.member) if args.member else min(specs, key=_cost)
    torch.set_num_threads(1)
    stored = Path("artifacts/zoo") / spec.name
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_zoo_member(spec, make_corpus(CorpusConfig(**params["corpus"])), tmp, n_probe=params["n_probe"], progress=False)
        print(f"rebuilt {spec.name} in {time.perf_counter() - t0:.0f} s")
        fresh = Path(tmp) / spec.name
        names = sorted({p.name for p in fresh.iterdir()} | {p.name for p in stored.iterdir()})
        differ = []
        for name in names:
            a, b = stored / name, fresh / name
            if not (a.is_file() and b.is_file()):
                print(f"  {name}: only in {'the rebuild' if b.is_file() else 'the stored member'}")
                differ.append(name)
                continue
            same = a.read_bytes() == b.read_bytes()
            if not same and args.normalise and name in ("history.csv", "summary.json"):
                same = normalised(name, a.read_text()) == b.read_text()
                print(f"  {name}: {'identical after normalising' if same else 'DIFFERENT'}")
            else:
                print(f"  {name}: {'identical' if same else 'DIFFERENT'}")
            differ += [] if same else [name]
    if args.write and args.normalise and not differ:
        for member in sorted(p for p in Path("artifacts/zoo").iterdir() if (p / "summary.json").is_file()):
            for name in ("history.csv", "summary.json"):
                (member / name).write_text(normalised(name, (member / name).read_text()))
        print("stored members normalised in place")
    print("verdict:", "byte-identical" if not differ else f"differs in {differ}")


if __name__ == "__main__":
    main()
