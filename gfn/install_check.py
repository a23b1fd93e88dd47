"""Refuse to run when the import package ``gfn`` is shared with another distribution.

This library is distributed as :data:`DIST_NAME` but imports as ``gfn``, a name that other
projects also install (torchgfn's package is ``gfn``; so is the unrelated PyPI project ``gfn``).
Two distributions writing into one ``gfn/`` folder leave a mix of their files, which fails later
in confusing ways, so ``import gfn`` checks first (stdlib only, before torch is imported) and
raises one clear :class:`ImportError` naming the other distribution.  Installs made before the
rename (distribution ``gfn`` with this library's summary) count as this library.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterable, Optional

#: the distribution name of this library on the package index (the import name stays ``gfn``)
DIST_NAME = "gfnkit"
#: start of this library's summary: recognises installs made under the old distribution name "gfn"
_SUMMARY = "Generative Flow Networks in PyTorch: batched environments"
_IMPORT_NAME = "gfn"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name or "").lower()


def provides_gfn(dist: metadata.Distribution) -> bool:
    """Whether a distribution installs the top-level import package ``gfn``."""
    top = dist.read_text("top_level.txt")
    if top is not None:
        return _IMPORT_NAME in top.split()
    record = dist.read_text("RECORD") or dist.read_text("SOURCES.txt") or ""
    prefix = _IMPORT_NAME + "/"
    return record.startswith(prefix) or ("\n" + prefix) in record


def is_this_library(dist: metadata.Distribution) -> bool:
    """Whether ``dist`` is this library (current name, or the old name ``gfn`` with our summary)."""
    name = _normalise(dist.metadata["Name"])
    if name == DIST_NAME:
        return True
    return name == _IMPORT_NAME and (dist.metadata["Summary"] or "").startswith(_SUMMARY)


def foreign_owners(search_path: Optional[Iterable[str]] = None) -> list[str]:
    """``"name version"`` of every other distribution on ``search_path`` (default ``sys.path``)
    that installs the import package ``gfn``."""
    path = list(sys.path if search_path is None else search_path)
    found = set()
    for dist in metadata.distributions(path=path):
        try:
            if provides_gfn(dist) and not is_this_library(dist):
                found.add(f"{dist.metadata['Name']} {dist.version}")
        except Exception:  # a broken metadata folder of some other package is not our business
            continue
    return sorted(found)


def check_installation(search_path: Optional[Iterable[str]] = None) -> None:
    """Raise :class:`ImportError` when another distribution also provides the package ``gfn``."""
    owners = foreign_owners(search_path)
    if owners:
        here = Path(__file__).resolve().parent
        raise ImportError(
            f"the import package 'gfn' ({here}) is also installed by {', '.join(owners)}: this library "
            f"({DIST_NAME}) and that distribution both install a package named 'gfn' and cannot share one "
            f"environment. Uninstall it (pip uninstall {owners[0].split()[0]}) or use a separate virtual "
            f"environment for each (torchgfn's benchmarks here install it into its own folder).")
