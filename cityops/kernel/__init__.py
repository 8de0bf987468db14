"""The kernel every part of cityops stands on: settings, database connections, the MQTT client
adapters, the migration runner, the clock and logging. It imports no part of cityops (checked by
import-linter); every part may import it."""
