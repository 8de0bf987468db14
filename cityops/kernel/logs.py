"""Structured logs: one JSON object per line, with the event's fields as keys.

``log_event(log, "batch_committed", readings=500)`` writes
``{"t": ..., "level": "INFO", "logger": ..., "event": "batch_committed", "readings": 500}``.
Field values are JSON-encoded, so a newline or a quote from a payload cannot forge a log line.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "t": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields:
            doc["event"] = record.getMessage()
            doc.update(fields)
        else:
            doc["msg"] = record.getMessage()
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields or {"_": None}})


def install_json_logging(level: int = logging.INFO) -> None:
    """Make every handler of the root logger write JSON lines (entry points only)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level)
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
    root.setLevel(level)
