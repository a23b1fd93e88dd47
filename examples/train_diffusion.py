"""Train a diffusion sampler (GFlowNet over (x, t)) on an unnormalised density; report log Z metrics.

    python examples/train_diffusion.py --target gmm25 --steps 100 --objective tb --exploration 0.2 \
        --iterations 25000 --batch-size 300 --seed 0 --json-out runs/tb.json --out runs/tb

The same as ``gfn train --env diffusion ...``; every flag and the JSON written by ``--json-out`` are
described in :mod:`gfn.envs.diffusion.cli` and docs/diffusion.md.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

from gfn.envs.diffusion.cli import main  # noqa: E402

if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ValueError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
