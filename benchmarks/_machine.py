"""What every benchmark records beside its numbers: the CPU model, its vector
ISA, the core count and the oneDNN setting TensorFlow runs with."""

import os
import platform


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def vector_isa(flags):
    """The widest float vector ISA: AVX-512, AVX2+FMA, AVX or SSE."""
    if {"avx512f", "avx512vl"} <= flags:
        return "AVX-512 (avx512f, avx512vl)"
    if {"avx2", "fma"} <= flags:
        return "AVX2+FMA (no AVX-512)"
    if "avx" in flags:
        return "AVX"
    return "SSE" if flags else "unknown"


def machine_info():
    model, flags = _cpuinfo()
    return {"cpu_model": model or platform.processor() or "unknown",
            "vector_isa": vector_isa(flags),
            "cores": os.cpu_count(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TF default)"),
            # ISA caps that make an AVX-512 machine stand in for an AVX2 one
            "HYPERKERAS_CPU_ISA": os.environ.get("HYPERKERAS_CPU_ISA", "unset (detected)"),
            "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset (detected)")}
