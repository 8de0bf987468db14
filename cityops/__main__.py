from cityops.shell.cli import main

main()
