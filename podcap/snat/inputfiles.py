"""Reading the node-side inputs the snat report takes from files: facts, ConfigMap, iptables.

One place for the two things that go wrong with any of them, so each gives the same one-line
error: the file cannot be read as text, or its YAML/JSON is not a mapping.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from podcap.errors import UsageError


def read_text_file(path: str | Path, what: str) -> str:
    """The file's text; ``what`` names it in the error (``"iptables dump"``, ...)."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        # A binary file (often a capture passed to the wrong flag) is not a traceback.
        raise UsageError(
            f"{what} {path} is not text (not UTF-8 at byte offset {exc.start})"
        ) from exc


def load_mapping(text: str, source: str, expected: str) -> dict:
    """Parse YAML or JSON text that must hold a mapping; an empty document is ``{}``.

    ``expected`` names the keys the mapping should have, for the error message.
    """
    # YAML is a superset of JSON, so one parser reads both spellings.
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not YAML or JSON: {str(exc).splitlines()[0]}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"{source}: expected a mapping of {expected}, got {type(loaded).__name__}")
    return loaded
