"""The command line shared by the peer runners (``peer_torchgfn.py``, ``peer_gfnx.py``).

Standard library only: the runners execute in the peers' own interpreters, without torch or
this library necessarily importable.  ``compare_peers.peer_cmd`` builds these command lines.
"""

from __future__ import annotations

import argparse


def cell_parser(doc: str) -> argparse.ArgumentParser:
    """Parser for ``--cell '{"env": ..., "env_kwargs": {...}}' --batch-size B [--iterations
    --warmup --seed]``; a runner adds its own flags on top."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", required=True, help='JSON: {"env": ..., "env_kwargs": {...}}')
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    return p
