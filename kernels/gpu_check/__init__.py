"""GPU check of the CUDA batched-conv kernels: correctness (float64 NumPy and
torch references, compute-sanitizer) and speed against cuDNN, in one script
(``kernels/gpu_check/run.sh``).

Modules that need torch or a GPU import torch lazily, so everything else
(build-command construction, sweeps, the NumPy reference, roofline arithmetic,
report writers) runs and is tested on a CPU-only machine
(``tests/kernels/test_gpu_check.py``).
"""
