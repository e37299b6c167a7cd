"""The examples run end to end (tiny settings, a tiny .npz dataset) and write
the metrics they document."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import hyperkeras  # noqa: F401  (registers the models for load_model)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    """A 10-class 28x28 dataset whose class is readable from the image."""
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 2 * c:2 * c + 4, 4:24] = 255
        return x, y

    (x_tr, y_tr), (x_te, y_te) = split(320), split(80)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return str(path)


def run_example(name, *args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                       capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


def test_gauge_entropy_example(tiny_npz, tmp_path):
    run_example("mnist_gauge_entropy.py", "--dataset", tiny_npz, "--steps", "2",
                "--networks", "4", "--images_per_network", "4", "--eval_examples", "40",
                "--path_pairs", "1", "--out", str(tmp_path))
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["steps"] >= 1 and 0.0 <= m["single_network_accuracy"]["mean"] <= 1.0
    assert set(m["calibration"]) == {"1", "10", "100", "single_network_mean"}
    assert m["calibration"]["100"]["nll"] > 0
    assert 0.0 <= m["function_diversity"]["disagreement"] <= 1.0
    for f in ("accuracy_histogram.png", "pca_scatter.png", "paths.png", "filters.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert (tmp_path / "saved_model" / "saved_model.pb").exists()


def test_hypergan_example(tiny_npz, tmp_path):
    run_example("hypergan_mnist.py", "--dataset", tiny_npz, "--steps", "10",
                "--networks", "2", "--batch_size", "8", "--noise_dim", "16",
                "--code_dim", "8", "--entropy_weight", "0.01", "--batch_mode", "split",
                "--flip", "--train_split", "train[:256]", "--eval_split", "train[256:]",
                "--erase", "0.5", "--diversity_schedule", "cosine",
                "--diversity_final_fraction", "0.5", "--generator_units", "32,16",
                "--out", str(tmp_path))
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["evaluated_on"] == "train[256:]" and m["flags"]["entropy_weight"] == 0.01
    assert m["flags"]["erase"] == 0.5 and m["flags"]["diversity_schedule"] == "cosine"
    assert m["flags"]["diversity_final_fraction"] == 0.5
    assert m["flags"]["batch_mode"] == "split" and m["flags"]["flip"] is True
    assert set(m["ensemble_accuracy"]) == {"1", "5", "10", "100"}
    assert m["calibration"]["single_network_mean"]["ece"] >= 0
    assert m["function_diversity"]["members"] == 100
    assert set(m["layer_l2_norms"]) == {"layer1", "layer2", "layer3"}
    assert m["flags"]["generator_units"] == [32, 16]
    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.generator_units == (32, 16)


def test_ood_detection_example_with_lenet5(tiny_npz, tmp_path):
    r = run_example("ood_detection.py", "--inlier", tiny_npz, "--inlier_classes", "0-4",
                    "--target", "lenet5", "--hypergan_steps", "2", "--gauge_steps", "2",
                    "--ensemble_steps", "2", "--dropout_steps", "2", "--networks", "4",
                    "--ensemble_members", "2", "--eval_examples", "30",
                    "--ensemble_outlier_entropy", "0.3", "--out", str(tmp_path))
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m["methods"]) == {"hypergan", "gauge_entropy", "deep_ensemble", "mc_dropout"}
    for name, res in m["methods"].items():
        assert res["target"].startswith("lenet5"), (name, res["target"])
        assert 0.0 <= res["auroc"] <= 1.0 and res["nll"] > 0 and res["ece"] >= 0
        assert 0.0 <= res["function_diversity"]["disagreement"] <= 1.0
        # AUROC is a mean over outliers: the class AUROCs, weighted by class size, give it
        per, counts = res["auroc_per_outlier_class"], m["outlier"]["class_counts"]
        assert set(per) == set(counts) and set(per) <= {"5", "6", "7", "8", "9"}
        weighted = sum(per[c] * counts[c] for c in per) / sum(counts.values())
        assert abs(weighted - res["auroc"]) < 1e-9, (weighted, res["auroc"])
    assert m["methods"]["hypergan"]["settings"]["outlier_kind"] == "rotate"
    assert m["methods"]["hypergan"]["settings"]["outlier_entropy_weight"] == 0.3
    assert m["methods"]["deep_ensemble"]["settings"]["outlier_entropy_weight"] == 0.3
    assert m["methods"]["deep_ensemble"]["settings"]["outlier_kind"] == "rotate"
    assert m["methods"]["mc_dropout"]["settings"] == {}
    assert "NLL" in r.stdout and "ECE" in r.stdout
    # benchmarks/ood_per_class.py rebuilds the outlier labels from the run's
    # flags: it must find the example's own per-class AUROCs
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "ood_per_class.py"),
                        str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-3000:]
    rebuilt = json.loads(r.stdout)[os.path.basename(str(tmp_path))]
    for name, res in m["methods"].items():
        for c, v in res["auroc_per_outlier_class"].items():
            assert abs(rebuilt[name][c] - v) < 1e-4, (name, c, rebuilt[name][c], v)


def test_ood_validation_split_uses_no_test_image(tiny_npz, tmp_path):
    r = run_example("ood_detection.py", "--inlier", tiny_npz, "--inlier_classes", "0-4",
                    "--validation", "--methods", "hypergan,gauge_entropy",
                    "--hypergan_steps", "2", "--gauge_steps", "2",
                    "--hypergan_diversity", "0.5", "--gauge_lambda", "300", "--networks", "4",
                    "--eval_examples", "0", "--out", str(tmp_path))
    m = json.loads((tmp_path / "metrics.json").read_text())
    data = np.load(tiny_npz)
    n_train_in = int(np.sum(data["y_train"] < 5))
    assert m["evaluated_on"].startswith("validation") and m["flags"]["validation"]
    assert m["methods"]["hypergan"]["settings"]["diversity_weight"] == 0.5
    assert m["methods"]["gauge_entropy"]["settings"]["lambda_"] == 300
    assert m["inlier"]["test_examples"] == n_train_in // 5
    assert m["inlier"]["train_examples"] == n_train_in - n_train_in // 5
    assert m["outlier"]["test_examples"] == int(np.sum(data["y_train"] >= 5))
    assert 0.0 <= m["methods"]["hypergan"]["auroc"] <= 1.0, r.stdout[-500:]
