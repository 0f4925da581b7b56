"""Which lines of a `meltano run` say that this project's code or packaging warns: none may, in a clean run.

Meltano prefixes every line a plugin prints with the plugin's name and re-levels the SDK's log lines
(`[warning  ] tap-meta-ads ...`); the guard's own log lines keep their `| WARNING |` column; a Python
warning is printed as `path:line: SomethingWarning: text` (Meltano runs plugins with PYTHONWARNINGS=once,
so ResourceWarning and DeprecationWarning show too). Lines of Meltano itself are not this project's.
"""

from __future__ import annotations

import re

#: The plugins this project ships: the tap, and the guarded loader.
OWN_PLUGINS = ("tap-meta-ads", "target-gcs")
_PLUGIN_LINE = re.compile(r"\[(?P<level>\w+)\s*\]\s+(?P<plugin>[\w.-]+)\s")
_PYTHON_WARNING = re.compile(r"\b[A-Z]\w*Warning\b:")


def own_warnings(output: str) -> list[str]:
    """The lines of our plugins that warn (or err): log level warning or above, or a Python warning."""
    found = []
    for line in output.splitlines():
        match = _PLUGIN_LINE.search(line)
        if not match or match["plugin"] not in OWN_PLUGINS:
            continue
        text = line[match.end() :]
        leveled = match["level"].lower() not in {"info", "debug"} or "| WARNING" in text or "| ERROR" in text
        if leveled or _PYTHON_WARNING.search(text):
            found.append(line)
    return found
