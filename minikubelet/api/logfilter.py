"""Bad requests are logged one line each and rate-limited, never as tracebacks (issue 9, point 5).

aiohttp logs every unparsable request (``aiohttp.server``: "Error handling request" with the parser's traceback)
and asyncio every failed TLS handshake; 1,000 malformed request lines wrote 556 KB. This filter keeps one line per
record (the message and the exception's type and text, cut short), at most ``BURST`` lines per ``WINDOW`` seconds
per logger, then says how many it suppressed.
"""

from __future__ import annotations

import logging
import time

BURST = 10
WINDOW = 10.0
LOGGERS = ("aiohttp.server", "aiohttp.web", "asyncio")


class OneLineRateLimit(logging.Filter):
    def __init__(self, burst: int = BURST, window: float = WINDOW) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._start = 0.0
        self._count = 0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        if record.name == "asyncio" and not any(w in str(record.msg) for w in ("SSL", "handshake", "transport")):
            return True  # asyncio's other reports (a task's unhandled exception) keep their tracebacks
        now = time.monotonic()
        if now - self._start >= self.window:
            if self._suppressed:
                record.msg = f"{self._suppressed} similar log lines were suppressed in {self.window:.0f} s; " \
                             f"then: {record.getMessage()}"
                record.args = None
            self._start, self._count, self._suppressed = now, 0, 0
        self._count += 1
        if self._count > self.burst:
            self._suppressed += 1
            return False
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = str(exc).replace("\n", " ")
            record.msg = f"{record.getMessage()} error={type(exc).__name__}: {text[:160]}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_installed: list[tuple[logging.Logger, OneLineRateLimit]] = []


def install() -> None:
    """Attach the filter to the loggers that report bad requests (once per process)."""
    if _installed:
        return
    for name in LOGGERS:
        logger = logging.getLogger(name)
        f = OneLineRateLimit()
        logger.addFilter(f)
        _installed.append((logger, f))
