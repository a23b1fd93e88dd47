"""Writing a benchmark's JSON report (shared by the scripts in this folder)."""

from __future__ import annotations

import json
import os


def write_json(path: str, report, indent: int = 1) -> None:
    """Write ``report`` as JSON to ``path``, creating its folder if needed."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=indent)
