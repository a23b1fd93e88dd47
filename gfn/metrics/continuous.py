"""Metrics for continuous targets: grid divergences, Wasserstein distances, density plots.

* :func:`grid_divergences`: ``jsd_grid`` and ``tv_grid`` between the normalised histogram of
  samples and the exact target density integrated over the same grid of
  ``bins`` cells per axis (default :data:`DEFAULT_BINS` = 50, i.e. 50 x 50 cells in 2-D).
  The target mass of a cell is the midpoint rule on ``subdivisions`` sub-cells per axis;
  this is exact for densities that are constant on the sub-cells (e.g. the Box reward, whose
  level lines lie on multiples of 0.05 = 25 sub-cells of a 50-bin, 10-subdivision grid).
  A histogram of N exact samples is itself at a divergence of order (cells / N) from the
  target: :func:`reference_divergences` measures that floor with exact samples.
* :func:`wasserstein`: W_p between two sample sets with the ``pot`` package (exact 1-D
  formula; in more dimensions the exact optimal-transport cost on at most ``max_points``
  points of each set).
* :func:`density_plot`: a PNG of the sample histogram next to the target density (matplotlib).

All logs are natural logs; divergences use :func:`gfn.metrics.jsd` and :func:`gfn.metrics.tv`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch

from gfn.metrics.exact import jsd, tv

#: bins per axis of the grid metrics (the Box floor is stated on a 50 x 50 grid)
DEFAULT_BINS = 50
#: midpoint-rule sub-cells per axis and per cell for the target mass
DEFAULT_SUBDIVISIONS = 10

LogDensity = Callable[[torch.Tensor], torch.Tensor]
Bounds = Sequence[Sequence[float]]  # one (low, high) pair per dimension


def _bounds(bounds: Bounds) -> list[tuple[float, float]]:
    out = [(float(lo), float(hi)) for lo, hi in bounds]
    for lo, hi in out:
        if not hi > lo:
            raise ValueError(f"grid bounds must have high > low, got {out}")
    return out


def histogram(samples: torch.Tensor, bounds: Bounds, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """Normalised histogram of ``samples`` [N, d] on ``bins`` cells per axis (float64, shape
    ``[bins] * d``); points on the upper edge go to the last cell, points outside are dropped."""
    b = _bounds(bounds)
    x = samples.detach().double().reshape(samples.shape[0], -1).cpu()
    if x.shape[1] != len(b):
        raise ValueError(f"samples have {x.shape[1]} dimensions but {len(b)} bounds were given")
    lo = torch.tensor([p[0] for p in b], dtype=torch.float64)
    hi = torch.tensor([p[1] for p in b], dtype=torch.float64)
    inside = ((x >= lo) & (x <= hi)).all(1)
    cell = ((x[inside] - lo) / (hi - lo) * bins).floor().long().clamp(0, bins - 1)
    flat = torch.zeros((), dtype=torch.long)
    for j in range(len(b)):
        flat = flat * bins + cell[:, j]
    counts = torch.bincount(flat, minlength=bins ** len(b)).double()
    return (counts / counts.sum().clamp(min=1)).reshape([bins] * len(b))


def _subgrid_points(bounds: Bounds, bins: int, subdivisions: int) -> tuple[torch.Tensor, float]:
    """Midpoints of all sub-cells (in lexicographic order) and the volume of one sub-cell."""
    b = _bounds(bounds)
    m = bins * subdivisions
    axes = [lo + (hi - lo) * (torch.arange(m, dtype=torch.float64) + 0.5) / m for lo, hi in b]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(b))
    vol = float(np.prod([(hi - lo) / m for lo, hi in b]))
    return pts, vol


def target_grid_mass(log_density: LogDensity, bounds: Bounds, bins: int = DEFAULT_BINS,
                     subdivisions: int = DEFAULT_SUBDIVISIONS) -> torch.Tensor:
    """Target probability of each grid cell (shape ``[bins] * d``, float64, sums to 1): the
    density integrated with the midpoint rule on ``subdivisions`` sub-cells per axis."""
    d = len(_bounds(bounds))
    pts, _ = _subgrid_points(bounds, bins, subdivisions)
    with torch.no_grad():
        lp = log_density(pts).double().cpu()
    if not torch.isfinite(lp).any():
        raise ValueError("the target log-density is -inf (or NaN) on the whole grid")
    w = torch.softmax(lp, 0).reshape([bins * subdivisions] * d)
    for ax in range(d):  # sum the sub-cells of every axis into their cell
        shape = list(w.shape)
        shape[ax:ax + 1] = [bins, subdivisions]
        w = w.reshape(shape).sum(ax + 1)
    return w


def log_integral(log_density: LogDensity, bounds: Bounds, bins: int = DEFAULT_BINS,
                 subdivisions: int = DEFAULT_SUBDIVISIONS) -> float:
    """log of the integral of ``exp(log_density)`` over the grid (midpoint rule on the sub-cells),
    e.g. the true log Z of an unnormalised continuous target."""
    pts, vol = _subgrid_points(bounds, bins, subdivisions)
    with torch.no_grad():
        return float(torch.logsumexp(log_density(pts).double().cpu(), 0)) + float(np.log(vol))


def sample_grid_density(log_density: LogDensity, bounds: Bounds, n: int, bins: int = DEFAULT_BINS,
                        subdivisions: int = DEFAULT_SUBDIVISIONS,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``n`` samples of the target (float64 [n, d]): a sub-cell drawn by its midpoint mass, then a
    uniform point in it (exact for densities constant on sub-cells)."""
    b = _bounds(bounds)
    pts, _ = _subgrid_points(bounds, bins, subdivisions)
    with torch.no_grad():
        p = torch.softmax(log_density(pts).double().cpu(), 0)
    idx = torch.multinomial(p, n, replacement=True, generator=generator)
    width = torch.tensor([(hi - lo) / (bins * subdivisions) for lo, hi in b], dtype=torch.float64)
    jitter = torch.rand(n, len(b), dtype=torch.float64, generator=generator) - 0.5
    return pts[idx] + jitter * width


def grid_divergences(samples: torch.Tensor, log_density: LogDensity, bounds: Bounds, bins: int = DEFAULT_BINS,
                     subdivisions: int = DEFAULT_SUBDIVISIONS) -> dict:
    """``jsd_grid`` and ``tv_grid`` between the histogram of ``samples`` and the target cell masses."""
    p = histogram(samples, bounds, bins).flatten()
    q = target_grid_mass(log_density, bounds, bins, subdivisions).flatten()
    return {"jsd_grid": jsd(p, q), "tv_grid": tv(p, q)}


def reference_divergences(log_density: LogDensity, bounds: Bounds, n: int, bins: int = DEFAULT_BINS,
                          subdivisions: int = DEFAULT_SUBDIVISIONS, seed: int = 0) -> dict:
    """:func:`grid_divergences` of ``n`` exact target samples: the finite-sample floor of the metric."""
    g = torch.Generator().manual_seed(seed)
    x = sample_grid_density(log_density, bounds, n, bins, subdivisions, g)
    m = grid_divergences(x, log_density, bounds, bins, subdivisions)
    return {f"{k}_reference": v for k, v in m.items()}


def _require_pot():
    try:
        import ot  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError("Wasserstein metrics need the `pot` package: pip install pot "
                          "(or pip install 'gfn[continuous]')") from e
    return ot


def wasserstein(x: torch.Tensor, y: torch.Tensor, p: int = 1, max_points: int = 2000, seed: int = 0) -> float:
    """W_p distance between the empirical distributions of ``x`` [N] or [N, d] and ``y`` [M] or [M, d].

    1-D: the exact quantile formula (``ot.wasserstein_1d``) on all points.  d > 1: the exact
    optimal-transport cost (``ot.emd2``, ground cost ``|x - y|^p``) between at most
    ``max_points`` points drawn (without replacement, seeded) from each set.
    """
    if p not in (1, 2):
        raise ValueError(f"wasserstein supports p = 1 or 2, got {p}")
    ot = _require_pot()
    xs = x.detach().double().cpu().reshape(x.shape[0], -1).numpy()
    ys = y.detach().double().cpu().reshape(y.shape[0], -1).numpy()
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"sample sets have different dimensions: {xs.shape[1]} and {ys.shape[1]}")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError("wasserstein got non-finite samples")
    if xs.shape[1] == 1:
        return float(ot.wasserstein_1d(xs[:, 0], ys[:, 0], p=p)) ** (1.0 / p)
    rng = np.random.default_rng(seed)
    if xs.shape[0] > max_points:
        xs = xs[rng.choice(xs.shape[0], max_points, replace=False)]
    if ys.shape[0] > max_points:
        ys = ys[rng.choice(ys.shape[0], max_points, replace=False)]
    cost = ot.dist(xs, ys, metric="euclidean") ** p
    a = np.full(xs.shape[0], 1.0 / xs.shape[0])
    b = np.full(ys.shape[0], 1.0 / ys.shape[0])
    return float(ot.emd2(a, b, cost, numItermax=1_000_000)) ** (1.0 / p)


def density_plot(samples: torch.Tensor, log_density: LogDensity, bounds: Bounds, bins: int = DEFAULT_BINS,
                 subdivisions: int = DEFAULT_SUBDIVISIONS, path: Optional[str] = None,
                 title: str = "") -> np.ndarray:
    """Side-by-side 2-D densities (sample histogram | target on the same grid, same colour scale);
    saves a PNG at ``path`` if given and returns the image as an HxWx3 uint8 array."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    b = _bounds(bounds)
    if len(b) != 2:
        raise ValueError("density_plot draws 2-D densities")
    p = histogram(samples, bounds, bins).numpy()
    q = target_grid_mass(log_density, bounds, bins, subdivisions).numpy()
    vmax = float(max(p.max(), q.max()))
    extent = (b[0][0], b[0][1], b[1][0], b[1][1])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), dpi=100)
    for ax, img, name in ((axes[0], p, f"samples (n={samples.shape[0]})"), (axes[1], q, "target")):
        # arrays are indexed [x, y]; imshow wants rows = y
        im = ax.imshow(img.T, origin="lower", extent=extent, vmin=0.0, vmax=vmax, cmap="viridis")
        ax.set_title(name)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.colorbar(im, ax=list(axes), fraction=0.046, pad=0.04, label=f"cell probability ({bins}x{bins} grid)")
    if title:
        fig.suptitle(title)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if path:
        fig.savefig(path)
    plt.close(fig)
    return rgb
