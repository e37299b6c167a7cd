"""Diversity statistics."""

import numpy as np
import pytest

from hyperkeras import evaluation as ev


def test_layer_norms_and_pairwise_distances():
    k1 = np.array([[[3.0, 4.0]], [[0.0, 1.0]]])           # [2, 1, 2]: norms 5, 1
    b1 = np.zeros((2, 2))
    res = ev.diversity([(k1, b1)], layer_names=["dense"])
    assert res["layers"]["dense"]["norm_mean"] == pytest.approx(3.0)
    assert res["layers"]["dense"]["norm_std"] == pytest.approx(2.0)
    assert res["layers"]["dense"]["norm_relative_std"] == pytest.approx(2.0 / 3.0)
    assert res["mean_pairwise_distance"] == pytest.approx(np.hypot(3.0, 3.0))
    d = ev.pairwise_distances(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]))
    np.testing.assert_allclose(d, [[0, 5, 1], [5, 0, np.hypot(3, 3)], [1, np.hypot(3, 3), 0]])


def test_diversity_errors():
    with pytest.raises(ValueError, match="at least two"):
        ev.diversity([(np.ones((1, 2, 2)), np.ones((1, 2)))])
    with pytest.raises(ValueError, match="mismatched shapes"):
        ev.diversity([(np.ones((3, 2, 2)), np.ones((2, 2)))])
