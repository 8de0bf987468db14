from cityops.shell.cli import app

app()
