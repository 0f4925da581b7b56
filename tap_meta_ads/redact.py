"""The last line of defence for secrets: a logging filter and an excepthook that mask them.

The first lines are structural (the token travels only in the ``Authorization`` header, the
``next`` URL is never followed, errors are built from Meta's body, not from URLs); this filter
catches whatever slips past them, in log messages, their arguments and formatted tracebacks.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from types import TracebackType

MASK = "***REDACTED***"
_MIN_SECRET_LENGTH = 4  # masking a one-letter "secret" would mangle every log line


class SecretFilter(logging.Filter):
    """Replaces every known secret in a log record with a mask."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)

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


def install(secrets: Iterable[str]) -> SecretFilter:
    """Attach one filter to every handler that exists now, and guard uncaught exceptions.

    Filters on handlers (not loggers) see records propagated from every child logger, which
    is where the SDK, requests, urllib3 and backoff log.
    """
    secret_filter = SecretFilter(secrets)
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, SecretFilter) for f in handler.filters):
                handler.addFilter(secret_filter)
            else:
                for existing in handler.filters:
                    if isinstance(existing, SecretFilter):
                        existing.secrets = sorted({*existing.secrets, *secret_filter.secrets}, key=len, reverse=True)

    previous_hook = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        """Mask secrets in the text of an exception nobody caught."""
        text = str(exc)
        cleaned = secret_filter.scrub(text)
        if cleaned != text:
            # the exception's own text held a secret: report a plain RuntimeError with the masked text
            exc_type, exc, tb = RuntimeError, RuntimeError(f"{exc_type.__name__}: {cleaned}"), None
        previous_hook(exc_type, exc, tb)

    sys.excepthook = hook
    return secret_filter
