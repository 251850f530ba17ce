#!/usr/bin/env bash
# Pin both environments to what is installed now (constraints.txt for .venv, constraints-libero.txt for
# .venv-libero). Run after a deliberate upgrade; a fresh machine then installs exactly these versions.
set -euo pipefail
cd "$(dirname "$0")/.."
freeze() { "$1/bin/python" -m pip freeze --disable-pip-version-check | grep -v -e '^-e ' -e '^#' -e '^vlm4vla' -e '^torch=='; }
{ sed -n '/^# /p' constraints.txt; echo "torch==2.13.0"; freeze .venv; } > constraints.txt.new
{ sed -n '/^# /p' constraints-libero.txt; echo "torch==2.13.0"; freeze .venv-libero; } > constraints-libero.txt.new
mv constraints.txt.new constraints.txt
mv constraints-libero.txt.new constraints-libero.txt
echo "pinned: $(grep -vc '^#' constraints.txt) packages in constraints.txt, $(grep -vc '^#' constraints-libero.txt) in constraints-libero.txt"
