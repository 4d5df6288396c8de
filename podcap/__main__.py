from podcap.cli import console

console()
