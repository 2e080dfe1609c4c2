#!/usr/bin/env bash
# The whole test suite: set up, then pytest under a virtual X server (napari's GUI tests need a
# real OpenGL context; offscreen Qt breaks vispy). Extra arguments go to pytest. Tests marked `slow`
# (long fuzzing, random kill points, the SIGKILLed dataset CLI) are left out
# by default; `bash scripts/test.sh -m slow` runs them (a later -m overrides the default one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest -p no:cacheprovider -m "not slow" "$@"
