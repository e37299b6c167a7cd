"""The benchmarks run (smallest settings) and print the JSON they document, so
a change of the op's interface cannot leave them broken unnoticed. Speed is
measured by the benchmarks themselves, never asserted here."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow


def run_benchmark(name, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
                       capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return json.loads(r.stdout)


def check_machine(machine):
    assert machine["cores"] >= 1 and machine["vector_isa"] and machine["TF_ENABLE_ONEDNN_OPTS"]


def positive(x):
    return x is not None and x > 0


def test_batched_conv_forward_benchmark():
    out = run_benchmark("batched_conv.py", "--quick", "--repeats", "1")
    check_machine(out["machine"])
    assert out["peak_gflops"] > 0
    assert [r["layer"] for r in out["rows"]] == [
        "hypergan_mnist_conv1", "hypergan_mnist_conv2",
        "deutsch_mnist_conv1", "deutsch_mnist_conv2"]
    for row in out["rows"]:
        assert positive(row["fallback"]) and positive(row["keras_loop"])
        if out["op_library"]:
            assert positive(row["op"]) and positive(row["op_speedup_vs_best_tf"])


def test_training_step_benchmark():
    out = run_benchmark("training_step.py", "--steps", "1", "--warmup", "1",
                        "--models", "hypergan_mnist")
    assert [(r["model"], r["path"]) for r in out["rows"]] == [
        ("hypergan_mnist", "op"), ("hypergan_mnist", "fallback")]
    for row in out["rows"]:
        check_machine(row["machine"])
        assert positive(row["seconds_per_step"]) and positive(row["gflop_per_step"])


def test_ablation_row_runner(tmp_path, capsys):
    """benchmarks/_ablation.run_rows: one subprocess per row with the row's
    flags, metrics summarised, a failing or unknown row stops the study."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from _ablation import run_rows  # noqa: PLC0415
    script = tmp_path / "fake_example.py"
    script.write_text(
        "import json, os, sys\n"
        "a = sys.argv[1:]\n"
        "out = a[a.index('--out') + 1]\n"
        "if '--fail' in a: sys.exit('boom')\n"
        "os.makedirs(out, exist_ok=True)\n"
        "json.dump({'w': float(a[a.index('--w') + 1])}, open(os.path.join(out, 'metrics.json'), 'w'))\n")
    rows = {"a": ["--w", "1"], "b": ["--w", "2.5"], "bad": ["--fail"]}
    summarise = lambda m: {"twice": 2 * m["w"]}   # noqa: E731
    run_rows(rows, [str(script)], summarise, {"study": "fake"},
             argv=["--rows", "a,b", "--out", str(tmp_path / "out")])
    table = json.loads(capsys.readouterr().out)
    assert table["study"] == "fake" and [r["twice"] for r in table["rows"]] == [2.0, 5.0]
    assert table["rows"][1]["command"].endswith("--w 2.5 --out " + str(tmp_path / "out" / "b"))
    check_machine(table["machine"])
    for bad, message in (("bad", "row bad failed"), ("nope", "unknown row 'nope'")):
        with pytest.raises(SystemExit, match=message):
            run_rows(rows, [str(script)], summarise, {}, argv=["--rows", bad, "--out",
                                                               str(tmp_path / "out")])


@pytest.mark.parametrize("study,example", [("ood_ablation", "ood_detection"),
                                           ("hypergan_ablation", "hypergan_mnist"),
                                           ("gauge_ablation", "mnist_gauge_entropy")])
def test_every_ablation_row_is_a_valid_command_of_its_example(study, example):
    """Each row's flags parse with the example's own flags (a typo or a
    removed flag fails here, not an hour into a study)."""
    code = f"""
import sys
sys.path[:0] = [{os.path.join(ROOT, "benchmarks")!r}, {os.path.join(ROOT, "examples")!r}]
import {study} as study
import {example} as example
from absl import flags
bad = []
for name, row in study.ROWS.items():
    try:
        flags.FLAGS(["prog", *row, "--out", "unused"])
    except flags.Error as e:
        bad.append((name, str(e)))
    flags.FLAGS.unparse_flags()
print(len(study.ROWS), bad)
assert not bad, bad
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert int(r.stdout.split()[0]) > 3
