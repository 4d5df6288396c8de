"""podcap's version: one place, read by the CLI's --version and written into every sidecar."""

__version__ = "0.1.0"
