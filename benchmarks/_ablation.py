"""The row runner shared by the ablation studies: each row is one run of an
example script with extra flags; its metrics.json is summarised into one
JSON row (stderr as it goes, the whole table on stdout at the end)."""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_rows(rows, base_cmd, summarise, header, argv=None, default_out=None):
    """Run ``rows`` ({name: flags}) as ``python base_cmd + flags --out OUT/name``.

    ``summarise(metrics)`` turns a row's metrics.json into a dict; ``header``
    is the dict printed above the rows (the machine is added). ``--rows``
    picks rows by name, ``--out`` is the output folder.
    """
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _machine import machine_info  # noqa: PLC0415
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default=",".join(rows))
    ap.add_argument("--out", default=default_out)
    args = ap.parse_args(argv)
    results = []
    for name in args.rows.split(","):
        if name not in rows:
            sys.exit(f"unknown row {name!r}; rows: {sorted(rows)}")
        out = os.path.join(args.out, name)
        cmd = [*base_cmd, *rows[name], "--out", out]
        r = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        if r.returncode:
            sys.exit(f"row {name} failed:\n{r.stderr[-3000:]}")
        with open(os.path.join(out, "metrics.json")) as f:
            row = {"row": name, "command": "python " + " ".join(cmd),
                   **summarise(json.load(f))}
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({**header, "machine": machine_info(), "rows": results}, indent=1))
