"""Reproductions of the papers' figures, registered with `jaxdyn reproduce`.

Each figure module computes (plain functions returning trajectories, fixed points, datasets), plots
(`plot_*` functions that take `ax=`/`axes=` and only draw) and, in its registered reproduction,
writes the PNG and the numbers. The library never chooses a matplotlib backend.
"""

from __future__ import annotations

import numpy as np


def new_axes(axes=None, ncols: int = 1, *, nrows: int = 1, figsize=None):
    """`(figure, axes)`: the given axes (any nesting; their figure), or a new constrained-layout
    figure with `nrows x ncols` axes. `axes` comes back as a flat NumPy array of Axes."""
    if axes is not None:
        flat = np.atleast_1d(np.asarray(axes, dtype=object)).ravel()
        return flat[0].figure, flat
    import matplotlib.pyplot as plt  # deferred: matplotlib only when drawing

    fig, ax = plt.subplots(nrows, ncols, figsize=figsize, constrained_layout=True, squeeze=False)
    return fig, ax.ravel()


def save(fig, path, *, dpi: int = 120) -> None:
    """Write `fig` to `path` and close it (the reproductions' file output)."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
