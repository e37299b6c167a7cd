"""AUROC of the inliers against each outlier class alone, recomputed from the
``scores.npz`` and ``metrics.json`` of ``examples/ood_detection.py`` runs
(runs written before the example reported ``auroc_per_outlier_class``): the
outlier labels are rebuilt with the run's own flags and data selection.

    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/ood_per_class.py \\
        runs/ood_ablation/deep_ensemble_eval_3000_seed_1 runs/ood_ablation/hypergan_rotate_oe_0.3
"""

import json
import os
import sys

import numpy as np

from _ablation import ROOT

sys.path.insert(0, os.path.join(ROOT, "examples"))
import ood_detection  # noqa: E402


def per_class(run):
    with open(os.path.join(run, "metrics.json")) as f:
        m = json.load(f)
    if not os.path.exists(os.path.join(run, "scores.npz")):
        raise FileNotFoundError(f"{run} has no scores.npz")
    if "flags" not in m:
        raise ValueError(f"{run}/metrics.json records no flags (written before the example "
                         "did), so its outlier selection cannot be rebuilt")
    fl, inl, out = m["flags"], m["inlier"], m["outlier"]
    classes = ",".join(str(c) for c in inl["classes"]) if inl["classes"] != "all" else ""
    out_classes = (",".join(str(c) for c in out["classes"]) if out["classes"] != "all"
                   else "")
    *_, (_, y_out), _, _ = ood_detection.load_ood_data(
        inl["dataset"], classes, out["dataset"], out_classes or None, fl["eval_examples"],
        fl["seed"], fl["validation"])
    scores = np.load(os.path.join(run, "scores.npz"))
    rows = {}
    for name in m["methods"]:
        s_in, s_out = scores[f"{name}_inlier"], scores[f"{name}_outlier"]
        if len(s_out) != len(y_out):
            raise ValueError(f"{run}: {len(s_out)} outlier scores, {len(y_out)} labels rebuilt")
        rows[name] = {"auroc": round(m["methods"][name]["auroc"], 4),
                      **{k: round(v, 4) for k, v in ood_detection.auroc_per_class(
                          s_in, s_out, y_out).items()}}
    return rows


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(json.dumps({os.path.basename(r.rstrip("/")): per_class(r) for r in sys.argv[1:]},
                     indent=1))
