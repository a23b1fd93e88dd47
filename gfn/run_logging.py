"""Run logging: TensorBoard scalars and images plus a plain-text log under the run directory."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from typing import Optional

import numpy as np


class RunLogger:
    """Writes TensorBoard event files and ``log.txt`` into ``run_dir`` (rank 0 only)."""

    def __init__(self, run_dir: str, enabled: bool = True, purge_step: Optional[int] = None):
        self.run_dir = run_dir
        self.enabled = enabled
        self._writer = None
        self._text = None
        self._non_finite: set = set()  # names already warned about
        if enabled:
            os.makedirs(run_dir, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=run_dir, purge_step=purge_step)
            self._text = open(os.path.join(run_dir, "log.txt"), "a", buffering=1)

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        """Log numeric values as TensorBoard scalars and one text line.  A non-finite value is
        kept, never dropped: NaN/inf in TensorBoard, ``"nan"``/``"inf"`` in ``log.txt`` (valid
        JSON), and the first time a name turns non-finite a ``RuntimeWarning`` and a
        ``warning:`` line in ``log.txt`` say so."""
        if not self.enabled:
            return
        clean = {}
        for k, v in values.items():
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            self._writer.add_scalar(f"{prefix}{k}", f, step)
            if math.isfinite(f):
                clean[k] = f
                continue
            clean[k] = str(f)
            if prefix + k not in self._non_finite:
                self._non_finite.add(prefix + k)
                msg = (f"{prefix}{k} is {f} at step {step} (a diverged model, an environment whose exact "
                       "metrics are undefined, or a quantity this run does not define)")
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                self._text.write(f"warning: {msg}\n")
        self._text.write(f"{time.strftime('%H:%M:%S')} step={step} " + json.dumps(clean) + "\n")

    def image(self, tag: str, img: np.ndarray, step: int) -> None:
        """Log an HxWx3 (or HxW) uint8/float image."""
        if not self.enabled:
            return
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        self._writer.add_image(tag, arr, step, dataformats="HWC")

    def text(self, line: str) -> None:
        """Append a line to the plain-text log."""
        if self.enabled:
            self._text.write(line.rstrip("\n") + "\n")

    def flush(self) -> None:
        """Flush pending events to disk."""
        if self.enabled:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the files."""
        if self.enabled and self._writer is not None:
            self._writer.close()
            self._text.close()
            self._writer = None


def heatmap_image(values: np.ndarray, scale: int = 16) -> np.ndarray:
    """Render a 2-D array as an RGB uint8 heat map (viridis-like ramp), each cell ``scale`` pixels."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    t = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    # a small fixed ramp from dark blue to yellow; no matplotlib needed
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
    pos = t * (len(stops) - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, len(stops) - 2)
    frac = (pos - i0)[..., None]
    rgb = stops[i0] * (1 - frac) + stops[i0 + 1] * frac
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    return rgb.astype(np.uint8)


def comparison_figure(learned: np.ndarray, target: np.ndarray,
                      titles: tuple = ("learned P(x)", "target R(x)/Z")):
    """A matplotlib figure: two titled heat maps on one colour scale, and a colour bar."""
    from matplotlib.figure import Figure  # drawn off-screen: no pyplot, no global backend change
    learned, target = np.asarray(learned, dtype=np.float64), np.asarray(target, dtype=np.float64)
    lo = float(min(np.nanmin(learned), np.nanmin(target)))
    hi = float(max(np.nanmax(learned), np.nanmax(target)))
    fig = Figure(figsize=(6.4, 3.0), dpi=80)
    axes = fig.subplots(1, 2)
    for ax, grid, title in zip(axes, (learned, target), titles):
        im = ax.imshow(grid, vmin=lo, vmax=hi if hi > lo else lo + 1e-12, cmap="viridis", origin="lower")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("x[1]")
        ax.set_ylabel("x[0]")
    fig.colorbar(im, ax=list(axes), fraction=0.046, pad=0.04, label="probability")
    return fig


def figure_image(fig) -> np.ndarray:
    """Render a matplotlib figure to an HxWx3 uint8 array (for :meth:`RunLogger.image`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def comparison_image(learned: np.ndarray, target: np.ndarray, scale: int = 16) -> np.ndarray:
    """Learned | target heat maps as one RGB image: titled panels on a shared colour scale with
    a colour bar (matplotlib); without matplotlib, unlabelled panels side by side with a warning
    (install the ``continuous`` extra for the labels)."""
    try:
        return figure_image(comparison_figure(learned, target))
    except ImportError:
        warnings.warn("matplotlib is not installed: the learned | target heat map has no titles or colour bar "
                      "(pip install matplotlib)", RuntimeWarning, stacklevel=2)
    both = np.concatenate([learned, np.full((learned.shape[0], 1), np.nan), target], axis=1)
    both = np.nan_to_num(both, nan=float(np.nanmin(both)))
    return heatmap_image(both, scale=scale)
