"""python -m podcap: the same command as the podcap console script."""

from podcap.cli import console

console()
