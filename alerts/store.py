"""Kept only for tests/simulators/test_asset_limits.py, outside the alerts part, which still
imports ``read_sensors`` from here: delete this module once it imports ``alerts.api``. The SQL
lives in alerts/stores/."""

from alerts.api import read_sensors

__all__ = ["read_sensors"]
