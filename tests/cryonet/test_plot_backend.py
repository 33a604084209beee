"""Library plots must not switch the user's matplotlib backend (e.g. Jupyter inline)."""

import matplotlib
import numpy as np

from cryonet.plots import plot_confusion_matrix


def test_plotting_keeps_the_active_backend(tmp_path):
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # stand-in for a notebook's interactive backend
    try:
        cm = np.array([[5, 1, 0, 0, 0], [0, 4, 1, 0, 0], [0, 0, 3, 0, 0], [0, 0, 0, 2, 0],
                       [0, 0, 0, 0, 1]])  # fmt: skip
        out = plot_confusion_matrix(cm, tmp_path / "cm.png")
        assert out.is_file() and out.stat().st_size > 0
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
