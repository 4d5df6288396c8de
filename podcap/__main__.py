from podcap.cli import main

main()
