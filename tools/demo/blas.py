"""Let torch's matrix products use this CPU's OpenBLAS kernels when OpenBLAS does not know the CPU.

Debian 12's OpenBLAS (0.3.21, built with DYNAMIC_ARCH) picks its kernels by CPU model when it
loads. On a CPU newer than the library it falls back to the generic SSE3 kernels ("Prescott"):
seen on an Intel Xeon of family 6 model 207 (Emerald Rapids) with AVX-512, where a sgemm of a
training step's shape ran at 58-71 GFLOP/s on 2 quiet threads against 136-187 with the SkylakeX
kernels, and a demo training step (batch 128) took 3.3-3.5 s instead of 0.8-0.9 s (BENCHMARKS.md). Debian's torch does its Linear layers with
that library, so the demo model's training time depended on whether OpenBLAS knew the CPU.

The kernels are chosen from OPENBLAS_CORETYPE when the library loads, so ensure_cpu_kernels()
must run before numpy or torch is imported: when the host has not set OPENBLAS_CORETYPE and the
library reports a core below what the CPU's flags support, it sets the matching core and
re-executes the process (the library cannot be reloaded in place). A host's own setting is
never changed, and a CPU the library knows (Zen 4 -> Cooperlake, Skylake-X -> SkylakeX) is
left alone. Results stay deterministic for a seed on one machine: the kernels are fixed for
the process's life.
"""
import ctypes
import ctypes.util
import os
import sys

# Cores with AVX-512 kernels, and cores with at least AVX2+FMA kernels (OpenBLAS's names).
AVX512_CORES = {"SKYLAKEX", "COOPERLAKE", "SAPPHIRERAPIDS"}
AVX2_CORES = AVX512_CORES | {"HASWELL", "ZEN"}


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def wanted_core(flags):
    """The OpenBLAS core this CPU's flags call for, and the cores that already satisfy it."""
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags:
        return "SkylakeX", AVX512_CORES
    if {"avx2", "fma"} <= flags:
        return "Haswell", AVX2_CORES
    return None, set()


def loaded_core():
    """openblas_get_corename() of the library torch and numpy will load, or None."""
    name = ctypes.util.find_library("openblas")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


def ensure_cpu_kernels():
    """Re-executes this process with OPENBLAS_CORETYPE set when OpenBLAS chose kernels below the
    CPU's; returns (only in the process that goes on) a line describing the BLAS kernels."""
    if "OPENBLAS_CORETYPE" in os.environ:
        by = (f" set by blas.py: the library chose {os.environ['CLIPMOD_BLAS_FROM']}"
              if "CLIPMOD_BLAS_FROM" in os.environ else " set by the host")
        return f"OpenBLAS core {loaded_core()} (OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}{by})"
    core = loaded_core()
    want, good = wanted_core(cpu_flags())
    if core is None or want is None or core.upper() in good:
        return f"OpenBLAS core {core}"
    print(f"blas: OpenBLAS chose its {core} kernels on a CPU with "
          f"{'AVX-512' if good is AVX512_CORES else 'AVX2'}; re-running with "
          f"OPENBLAS_CORETYPE={want}", file=sys.stderr, flush=True)
    os.environ["OPENBLAS_CORETYPE"] = want
    os.environ["CLIPMOD_BLAS_FROM"] = core
    os.execv(sys.executable, [sys.executable] + sys.argv)
    return None  # not reached
