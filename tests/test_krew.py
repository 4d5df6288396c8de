"""The krew plugin: the release archive and manifest scripts/krew_package.py makes, installed
the way krew installs a plugin (the archive unpacked, its files placed, the bin linked onto
PATH) and run by the real kubectl as `kubectl podcap`, whose launcher installs podcap into a
venv of its own on first use."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from scripts.krew_package import package

URL_BASE = "https://releases.invalid/podcap/releases/download"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("krew")
    manifest = yaml.safe_load(package("v" + _version(), URL_BASE, out).read_text())
    return manifest, out / f"kubectl-podcap-v{_version()}.tar.gz"


def _version() -> str:
    from scripts.krew_package import project_version

    return project_version()


def test_the_manifest_names_the_archive_its_checksum_and_its_bin(release):
    manifest, archive = release
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "podcap"
    assert manifest["spec"]["version"] == f"v{_version()}"
    (platform,) = manifest["spec"]["platforms"]
    assert platform["uri"] == f"{URL_BASE}/v{_version()}/{archive.name}"
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert tar.getmember(platform["bin"]).mode & 0o111
    assert sorted(names) == ["kubectl-podcap", f"podcap-{_version()}.tar.gz"]


def test_the_archive_is_the_same_bytes_when_made_again(release, tmp_path):
    from scripts.krew_package import plugin_archive

    _, archive = release
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "files", filter="data")
    members = {p.name: p for p in (tmp_path / "files").iterdir()}
    assert plugin_archive(tmp_path / "again.tar.gz", members) == archive.read_bytes()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_runs_the_plugin_krew_installs(release, tmp_path):
    manifest, archive = release
    (platform,) = manifest["spec"]["platforms"]
    store, bin_dir = tmp_path / "store", tmp_path / "bin"
    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    store.mkdir()
    bin_dir.mkdir()
    for rule in platform["files"]:  # krew's files: from (a glob) -> to
        for found in unpacked.glob(rule["from"]):
            shutil.copy2(found, store / rule["to"] / found.name)
    (bin_dir / "kubectl-podcap").symlink_to(store / platform["bin"])
    # This Python first after the plugin: the venv sees its packages, pip builds podcap alone.
    env = dict(
        os.environ,
        HOME=str(tmp_path),
        PATH=f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
    )
    env.pop("XDG_DATA_HOME", None)
    first = subprocess.run(
        ["kubectl", "podcap", "-h"], env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Usage: kubectl podcap [OPTIONS] COMMAND")
    assert "first run: installing podcap" in first.stderr
    venv = tmp_path / ".local/share/kubectl-podcap/venv"
    assert (venv / "bin" / "kubectl-podcap").exists()
    again = subprocess.run(
        ["kubectl", "podcap", "analyze", "-h"], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert "first run" not in again.stderr and "Usage: kubectl podcap analyze" in again.stdout
    listed = subprocess.run(
        ["kubectl", "plugin", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert str(bin_dir / "kubectl-podcap") in listed.stdout


def test_a_missing_source_archive_is_one_line_and_exit_2(release, tmp_path):
    _, archive = release
    with tarfile.open(archive) as tar:
        tar.extract("kubectl-podcap", tmp_path, filter="data")
    done = subprocess.run([str(tmp_path / "kubectl-podcap"), "-h"], capture_output=True,
                          text=True, env=dict(os.environ, HOME=str(tmp_path)), timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("kubectl podcap: error: no podcap-*.tar.gz beside")
    assert len(done.stderr.splitlines()) == 1
