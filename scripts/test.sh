#!/usr/bin/env bash
# Sets up everything and runs the whole test suite: the README's second Quick start
# command, and what .ci/run calls. Needs root (network namespaces, iptables, sshd).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh
python3 -m pip install -q --disable-pip-version-check -e '.[test,notebooks]'

ruff check .
ruff format --check .
# pytest exits 5 when it collects no test; set -e turns that into a failure.
python3 -m pytest "$@"
