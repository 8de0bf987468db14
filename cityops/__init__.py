"""The thin shell of cityops: CLI, settings, database connection and migrations, local stack."""
