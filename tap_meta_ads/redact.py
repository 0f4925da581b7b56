"""The last line of defence for secrets: a logging filter and an excepthook that mask them.

The first lines are structural (the token travels only in the ``Authorization`` header, the
``next`` URL is never followed, errors are built from Meta's body, not from URLs); this filter
catches whatever slips past them, in log messages, their arguments and formatted tracebacks.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

MASK = "***REDACTED***"
_MIN_SECRET_LENGTH = 4  # masking a one-letter "secret" would mangle every log line


class SecretFilter(logging.Filter):
    """Replaces every known secret in a log record with a mask."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these too; longest first, so a secret containing another is masked whole."""
        found = {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}
        self.secrets = sorted({*self.secrets, *found}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """Return ``text`` with every secret masked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the message, its arguments and any traceback; never drop the record."""
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = self.scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = self.scrub(formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


#: One filter per process: every tap built in it adds its secrets (tests build many taps in-process).
_FILTER = SecretFilter([])


def install(secrets: Iterable[str]) -> SecretFilter:
    """Mask ``secrets`` in every handler that exists now and in uncaught exceptions' texts.

    Filters on handlers (not loggers) see records propagated from every child logger, which
    is where the SDK, requests, urllib3 and backoff log. Calling it again only adds secrets.
    """
    _FILTER.add(secrets)
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    if sys.excepthook is not _masking_excepthook:
        _previous_hooks.append(sys.excepthook)
        sys.excepthook = _masking_excepthook
    return _FILTER


_previous_hooks: list[Callable[[type[BaseException], BaseException, TracebackType | None], Any]] = []


def _masking_excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """Mask secrets in the text of an exception nobody caught, then hand it to the previous hook."""
    text = str(exc)
    cleaned = _FILTER.scrub(text)
    if cleaned != text:
        # the exception's own text held a secret: report a plain RuntimeError with the masked text
        exc_type, exc, tb = RuntimeError, RuntimeError(f"{exc_type.__name__}: {cleaned}"), None
    _previous_hooks[-1](exc_type, exc, tb)
