"""Adversarial examples vs network ensembles (HyperGAN sec. 4.5, Fig. 5 and 10).

    python examples/adversarial.py --weights_from runs/ood_detection --out runs/adversarial

For each method (HyperGAN, gauge-entropy hypernetwork, deep ensemble, MC
dropout; the same models as examples/ood_detection.py, whose saved weights
``--weights_from`` reuses, else they are trained here with the same flags),
FGSM and PGD (random restarts) attacks under an L-inf budget, images clipped
to [0, 1], are made against (a) one sampled network and (b) an ensemble of
``--ensemble`` networks, then scored by a *fresh* ensemble of the same size
drawn with another seed: accuracy, predictive entropy and the fraction of
fresh networks fooled, for each epsilon. (The deep ensemble has a finite set
of members: its "fresh" ensemble is a seeded choice among them.)

Writes OUT/metrics.json (``methods`` {method: rows}) and OUT/adversarial.png.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ood_detection  # noqa: E402  (its flags: data, methods, training steps)

from hyperkeras import evaluation as ev  # noqa: E402
from hyperkeras import plots  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("weights_from", None, "An examples/ood_detection.py output folder "
                    "whose weights/<method>.weights.h5 are loaded instead of training.")
flags.DEFINE_list("epsilons", ["0.02", "0.05", "0.1", "0.2"], "L-inf budgets.")
flags.DEFINE_integer("ensemble", 10, "Size of the attacked and of the fresh test ensemble.")
flags.DEFINE_integer("examples", 100, "Inlier test images attacked.")
flags.DEFINE_integer("pgd_steps", 10, "PGD steps.")
flags.DEFINE_integer("pgd_restarts", 2, "PGD random restarts.")
flags.DEFINE_string("adv_out", None, "Output folder (default: --out).")


def main(argv):
    del argv
    out = FLAGS.adv_out or FLAGS.out
    os.makedirs(out, exist_ok=True)
    (x_tr, y_tr), (x_in, y_in), _, num_classes, info = ood_detection.load_ood_data(
        FLAGS.inlier, FLAGS.inlier_classes, FLAGS.outlier, FLAGS.outlier_classes,
        FLAGS.examples, FLAGS.seed)
    epsilons = [float(e) for e in FLAGS.epsilons]
    results, summary = {}, {}
    total = time.time()
    for name in FLAGS.methods:
        print(f"--- {name}", flush=True)
        path = (os.path.join(FLAGS.weights_from, "weights", f"{name}.weights.h5")
                if FLAGS.weights_from else None)
        try:
            if path and os.path.exists(path):
                model = ood_detection.load_method(name, path, x_tr.shape[1:], num_classes,
                                                  FLAGS.seed)
                print(f"loaded {path}", flush=True)
            else:
                model, _, _ = ood_detection.train_method(name, x_tr, y_tr, FLAGS.seed)
        except RuntimeError as e:
            print(f"skipping {name}: {e}", flush=True)
            continue
        n = min(FLAGS.ensemble, getattr(model, "n_members", None) or FLAGS.ensemble)
        start = time.time()
        rows = ev.adversarial_evaluation(
            model, x_in, y_in, epsilons=epsilons, n=n, attack_seed=FLAGS.seed + 1000,
            test_seed=FLAGS.seed + 2000, pgd_steps=FLAGS.pgd_steps,
            pgd_restarts=FLAGS.pgd_restarts, batch_size=100)
        results[name] = rows
        summary[name] = {"ensemble": n, "seconds": time.time() - start}
        print(f"{'target':<9}{'attack':<6}{'eps':>6}{'acc':>8}{'entropy':>9}"
              f"{'fooled':>8}{'attacked acc':>14}")
        for r in rows:
            print(f"{r['target']:<9}{r['attack']:<6}{r['epsilon']:>6.3f}{r['accuracy']:>8.3f}"
                  f"{r['entropy']:>9.3f}{r['fooled_fraction']:>8.3f}"
                  f"{r['attacked_accuracy']:>14.3f}", flush=True)
    if results:
        plots.adversarial_curves(results, os.path.join(out, "adversarial.png"))
    metrics = {"inlier": info["inlier"], "epsilons": epsilons,
               "examples": int(len(x_in)), "pgd_steps": FLAGS.pgd_steps,
               "pgd_restarts": FLAGS.pgd_restarts, "methods": results,
               "summary": summary, "total_seconds": time.time() - total}
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"wrote {out}/metrics.json in {metrics['total_seconds']:.0f}s")


if __name__ == "__main__":
    app.run(main)
