"""hyperkeras.plots writes image files and never shows them."""

import numpy as np
import pytest

from hyperkeras import plots


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    p = plots.entropy_cdfs({"a": rng.uniform(size=50), "b": rng.uniform(size=30)},
                           str(tmp_path / "cdf.png"), max_entropy=np.log(5),
                           dashed_curves={"a": rng.uniform(size=20)})
    assert (tmp_path / "cdf.png").stat().st_size > 1000 and p.endswith("cdf.png")
    plots.accuracy_histograms({"x": rng.uniform(0.8, 0.9, 40)}, str(tmp_path / "h.png"))
    grid = np.linspace(-6, 6, 25)
    plots.regression_bands(rng.uniform(-4, 4, 5), rng.normal(size=5), grid,
                           {"10": rng.normal(size=(10, 25)), "100": rng.normal(size=(100, 25, 1))},
                           str(tmp_path / "sub" / "bands.png"), true_fn=lambda t: t ** 3)
    rows = [{"target": "clean", "attack": "none", "epsilon": 0.0, "accuracy": 0.9,
             "entropy": 0.1, "fooled_fraction": 0.1},
            {"target": "single", "attack": "fgsm", "epsilon": 0.1, "accuracy": 0.5,
             "entropy": 0.5, "fooled_fraction": 0.5}]
    plots.adversarial_curves({"m": rows}, str(tmp_path / "adv.png"))
    plots.reliability_diagram([1, 0, 3], [0.2, 0, 0.9], [0.0, 0, 1.0], str(tmp_path / "r.png"))
    for name in ("h.png", "sub/bands.png", "adv.png", "r.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_plot_errors(tmp_path):
    with pytest.raises(ValueError):
        plots.entropy_cdfs({}, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="grid"):
        plots.regression_bands([0], [0], np.arange(3), {"a": np.zeros((2, 4))},
                               str(tmp_path / "x.png"))
