"""The TensorBoard heat map of learned vs target distribution: two titled panels on one colour
scale with a colour bar, so the two cannot be confused."""

import numpy as np
import pytest

import gfn
from gfn import metrics
from gfn.envs import HyperGrid
from gfn.objectives import get_objective

pytest.importorskip("matplotlib")


def test_comparison_figure_has_titles_shared_scale_and_colour_bar():
    from gfn.run_logging import comparison_figure
    learned = np.array([[0.1, 0.2], [0.3, 0.0]])
    target = np.array([[0.25, 0.25], [0.5, 0.0]])
    fig = comparison_figure(learned, target)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels[:2]] == ["learned P(x)", "target R(x)/Z"]
    # one colour scale for both panels, spanning both: a learned 0.3 and a target 0.3 look alike
    assert all(ax.images[0].get_clim() == (0.0, 0.5) for ax in panels[:2])
    bars = [ax for ax in fig.axes if ax not in panels[:2]]
    assert len(bars) == 1 and bars[0].get_ylabel() == "probability"  # the colour bar


def test_grid_heat_map_is_the_labelled_comparison():
    from gfn.cli import grid_images_fn
    from gfn.run_logging import comparison_image
    env = HyperGrid(2, 5)
    objective = get_objective("tb")
    model = objective.build_model(env, hidden=16)
    trainer = gfn.Trainer(env, model, objective)
    img = grid_images_fn(env)(trainer)["distribution/learned_vs_target"]
    p = metrics.exact_terminal_distribution(env, model).reshape(5, 5).numpy()
    q = metrics.target_distribution(env).reshape(5, 5).numpy()
    expected = comparison_image(p, q)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    np.testing.assert_array_equal(img, expected)
    # titles and colour bar take room beside the 2 x 5 cells (the old image was the bare cells)
    assert img.shape[1] > 2 * img.shape[0]
