from cityops.cli import app

app()
