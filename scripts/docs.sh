#!/usr/bin/env bash
# Build the documentation site (Sphinx) into docs/_build/html; warnings are errors, all reported.
# Needs the `docs` extra (scripts/setup.sh installs it). Extra arguments go to sphinx-build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
