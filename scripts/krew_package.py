"""The krew plugin of a release: its archive (the launcher and podcap's source archive) and
its manifest, filled in from the template deploy/krew/podcap.yaml.

    python3 -m scripts.krew_package --version v0.1.0 \\
        --url-base https://github.com/OWNER/podcap/releases/download [--out dist/krew]

writes OUT/kubectl-podcap-v0.1.0.tar.gz (upload it to the release) and OUT/podcap.yaml (its
URL is URL-BASE/v0.1.0/kubectl-podcap-v0.1.0.tar.gz, with the archive's sha256; submit it to a
krew index, or `kubectl krew install --manifest=OUT/podcap.yaml --archive=ARCHIVE`). The
outer archive is the same bytes for the same inner files: entries sorted, times and owners
zeroed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KREW = ROOT / "deploy" / "krew"
LAUNCHER = "kubectl-podcap"


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def source_archive(out: Path) -> Path:
    """``podcap-X.Y.Z.tar.gz``, the source distribution pip installs (the C part optional)."""
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(out)],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return out / f"podcap-{project_version()}.tar.gz"


def plugin_archive(path: Path, members: dict[str, Path]) -> bytes:
    """A tar.gz of ``members`` (name in the archive -> file), its bytes fixed by their content."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data = members[name].read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o755 if name == LAUNCHER else 0o644
            tar.addfile(info, io.BytesIO(data))
    packed = gzip.compress(raw.getvalue(), mtime=0)
    path.write_bytes(packed)
    return packed


def manifest(version: str, uri: str, sha256: str, homepage: str) -> str:
    text = (KREW / "podcap.yaml").read_text()
    body = text[text.index("apiVersion:") :]  # the template's own comment is not the manifest's
    for key, value in (("VERSION", version), ("HOMEPAGE", homepage), ("URI", uri),
                       ("SHA256", sha256)):  # fmt: skip
        body = body.replace(f": {key}\n", f": {value}\n")
    return body


def package(version: str, url_base: str, out: Path, homepage: str | None = None) -> Path:
    """The archive and manifest of ``version`` in ``out``; the manifest's path."""
    if version.lstrip("v") != project_version():
        raise SystemExit(
            f"krew_package: error: --version {version} is not pyproject.toml's {project_version()}"
        )
    out.mkdir(parents=True, exist_ok=True)
    name = f"kubectl-podcap-{version}.tar.gz"
    with tempfile.TemporaryDirectory() as scratch:
        sdist = source_archive(Path(scratch))
        packed = plugin_archive(out / name, {LAUNCHER: KREW / LAUNCHER, sdist.name: sdist})
    uri = f"{url_base.rstrip('/')}/{version}/{name}"
    home = homepage or url_base.split("/releases/")[0]
    text = manifest(version, uri, hashlib.sha256(packed).hexdigest(), home)
    (out / "podcap.yaml").write_text(text)
    return out / "podcap.yaml"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="the release tag, e.g. v0.1.0")
    parser.add_argument("--url-base", required=True, help="where release files are downloaded")
    parser.add_argument("--homepage", help="the project's page (default: URL-BASE's repository)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "krew")
    args = parser.parse_args(argv)
    print(package(args.version, args.url_base, args.out, args.homepage))


if __name__ == "__main__":
    main()
