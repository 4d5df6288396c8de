#!/usr/bin/env bash
# Sets up everything and runs the whole test suite: the README's second Quick start
# command, and what .ci/run calls. Needs root (network namespaces, iptables, sshd).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh
python3 -m pip install -q --disable-pip-version-check -e '.[test,notebooks]'

# What a user gets from a plain `pip install .` (no extras): every output format must work from
# it, html included, so an extra the tests install cannot hide a missing runtime dependency.
plain=$(mktemp -d)
trap 'rm -rf "$plain"' EXIT
python3 -m venv "$plain/venv"
"$plain/venv/bin/pip" install -q --disable-pip-version-check .
"$plain/venv/bin/podcap" analyze sample_pcaps/01-http-mytest.pcap -r summary -r http -F html -o "$plain/r.html"
"$plain/venv/bin/podcap" analyze sample_pcaps/10-snat-pod.pcap sample_pcaps/10-snat-peer.pcap -r snat -F csv >/dev/null
echo "plain install: podcap analyze -F html and -r snat work without extras"
# tests/test_cli_every_output.py runs every report and format through this plain install.
export PODCAP_PLAIN_VENV="$plain/venv"

ruff check .
ruff format --check .
# pytest exits 5 when it collects no test; set -e turns that into a failure.
python3 -m pytest --durations=30 "$@"
