#!/usr/bin/python3
"""The table of bench/image_tower.sh: its raw JSON lines in, markdown out.

Reads WORK/results.jsonl (timing lines of bench_vision, torch_vision.py and ort_vision.js,
tagged with the round and engine run; "others_percent" noise lines; check lines) and
WORK/skips.tsv (engine, precision, reason), and prints, per precision and batch size, each
engine's median ms/image over its quiet runs, the ratio of our time to theirs at the same
precision, and each engine's time at int8/bf16 over its own fp32 time (our target <= 0.5).
The header names the CPU (model, family/model, the ISA flags that decide the kernels) and
the load, since numbers from a shared 2-core machine mean little without them.

Usage: tower_table.py RESULTS.jsonl [--skips SKIPS.tsv] [--noise-limit P] [--load-start S]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# The OpenBLAS kernel check of the demo training (tools/demo/blas.py): which kernels torch's
# process gets here, and whether they are below what the CPU supports.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "demo"))
import blas  # noqa: E402

ISA = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
       "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
ENGINES = ("clipmod", "torch", "ort")
PRECISIONS = ("fp32", "int8", "bf16")
TARGET_RATIO, TARGET_COSINE = 0.5, 0.995


def cpu_lines():
    """'# CPU: ...' header lines from lscpu and /proc/cpuinfo (the flags lscpu may shorten)."""
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    flags = blas.cpu_flags()
    model = info.get("Model name", platform.processor() or "unknown")
    has = [f for f in ISA if f in flags]
    lacks = [f for f in ISA if f not in flags]
    return [f"# CPU: {model} (cpu family {info.get('CPU family', '?')}, model "
            f"{info.get('Model', '?')}), {os.cpu_count()} CPUs; has {' '.join(has) or '-'}; "
            f"lacks {' '.join(lacks) or '-'}"]


def load_groups(lines, limit):
    """{(engine, precision, config, batch): {...}} over the quiet runs, and the warnings."""
    noise = {(l["round"], l["engine_run"]): l["others_percent"]
             for l in lines if "others_percent" in l}
    by_cfg = {}
    for l in lines:
        if "median_ms" in l:
            key = (l["engine"], l.get("precision", "fp32"), l["config"], l["batch"])
            by_cfg.setdefault(key, []).append(l)
    groups, warnings = {}, []
    for key, ls in by_cfg.items():
        quiet = [l for l in ls if noise.get((l["round"], l.get("run")), 0) < limit]
        n_quiet = len(quiet)
        if n_quiet < 2:
            warnings.append(f"{key[0]} {key[1]} b={key[3]}")
            quiet = ls
        g = groups.setdefault(key, {"times": [], "rounds": [], "kept": n_quiet, "of": len(ls)})
        for l in quiet:
            g["times"] += l["times_ms"]
            g["rounds"].append(l["median_ms"])
    return groups, warnings, noise


def summary(g, batch):
    med = statistics.median(g["times"])
    return {"ms": med / batch, "gflops": 8.82 * batch / (med / 1e3), "n": len(g["times"]),
            "lo": min(g["rounds"]) / batch, "hi": max(g["rounds"]) / batch}


def read_skips(path):
    skips = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t", 2)
                if len(parts) == 3:
                    skips[(parts[0], parts[1])] = parts[2]
    return skips


def print_table(best, skips, precisions, batches):
    print("| precision | batch | engine | ms/image | GFLOP/s | run medians, ms/image "
          "| clipmod ÷ engine | ÷ its own fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for p in precisions:
        for b in batches:
            ours = best.get(("clipmod", p, b))
            for eng in ENGINES:
                if (eng, p, b) not in best:
                    continue
                _, s = best[(eng, p, b)]
                ratio = f"{ours[1]['ms'] / s['ms']:.2f}" if ours and eng != "clipmod" else "—"
                own = "—"
                if p != "fp32" and (eng, "fp32", b) in best:
                    r = s["ms"] / best[(eng, "fp32", b)][1]["ms"]
                    own = f"{r:.2f}"
                    if eng == "clipmod":
                        own += " ✓" if r <= TARGET_RATIO else f" (target ≤ {TARGET_RATIO})"
                print(f"| {p} | {b} | {eng} | {s['ms']:.1f} | {s['gflops']:.0f} | "
                      f"{s['lo']:.1f}–{s['hi']:.1f} | {ratio} | {own} |")
        for eng in ENGINES:
            if (eng, p) in skips:
                print(f"| {p} | — | {eng} | skipped: {skips[(eng, p)]} | | | | |")


def print_checks(checks):
    for c in checks:
        reduced = c.get("precision", "fp32") != "fp32" or "int8" in c["check"] \
            or "bf16" in c["check"]
        verdict = ""
        if reduced:
            ok = c["min_cosine"] >= TARGET_COSINE
            verdict = f" {'≥' if ok else 'BELOW'} the {TARGET_COSINE} target"
        print(f"check {c['check']}: min cosine {c['min_cosine']:.6f}, max |diff| of normalised "
              f"embeddings {c['max_abs_diff']:.2e}, {c['images']} images{verdict}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--skips")
    ap.add_argument("--noise-limit", type=int, default=10)
    ap.add_argument("--load-start", default="?")
    a = ap.parse_args()

    lines = [json.loads(l) for l in open(a.results) if l.strip()]
    runs = [l for l in lines if "median_ms" in l]
    checks = [l for l in lines if "check" in l]
    groups, warnings, noise = load_groups(lines, a.noise_limit)
    skips = read_skips(a.skips)
    best = {}  # (engine, precision, batch) -> (config, summary): each engine's fastest config
    for k, g in groups.items():
        s = summary(g, k[3])
        if (k[0], k[1], k[3]) not in best or s["ms"] < best[(k[0], k[1], k[3])][1]["ms"]:
            best[(k[0], k[1], k[3])] = (k[2], s)
    present = {k[1] for k in groups} | {p for _, p in skips}
    precisions = [p for p in PRECISIONS if p in present]
    batches = sorted({k[3] for k in groups})
    rounds = sorted({l["round"] for l in runs})
    r0 = runs[0] if runs else {"runs": 0, "warmup": 0}
    with open("/proc/loadavg") as f:
        load_end = " ".join(f.read().split()[:3])
    core = blas.loaded_core() or "(no libopenblas)"
    _, good = blas.wanted_core(blas.cpu_flags())

    print()
    print(f"# clipmod image tower vs PyTorch / ONNX Runtime, ViT-B/32, "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}")
    for line in cpu_lines():
        print(line)
    print(f"# load average (1, 5, 15 min): {a.load_start} at the start, {load_end} at the end; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"OpenBLAS kernels {core}")
    if good and core.upper() not in good:
        print(f"# NOTE: OpenBLAS runs its {core} kernels, below what this CPU supports: "
              "PyTorch's fp32 GEMMs (torch uses OpenBLAS) are slowed by that, so the PyTorch "
              "ratios are against a PyTorch below what this CPU allows; ONNX Runtime is not "
              "affected (its own kernels).")
    print(f"# {len(rounds)} interleaved rounds; each engine run = {r0['warmup']} warm-up + "
          f"{r0['runs']} timed calls per batch size; medians over the quiet runs "
          f"(other processes < {a.noise_limit}% of the machine)")
    print("# other load per round and engine run (% of the machine): " + "; ".join(
        f"{r}: " + " ".join(str(v) for (rr, _), v in noise.items() if rr == r) for r in rounds))
    if warnings:
        print("# WARNING: fewer than 2 quiet runs, so all runs (noisy ones too) were used for: "
              + ", ".join(sorted(set(warnings))) + ". The machine was busy: rerun with "
              "--quiet-wait.")
    print()
    print_table(best, skips, precisions, batches)
    print()
    print("All configurations (* = the fastest of its engine and precision, used in the table):")
    for k in sorted(groups, key=lambda k: (PRECISIONS.index(k[1]) if k[1] in PRECISIONS else 9,
                                           k[0], k[3], k[2])):
        s = summary(groups[k], k[3])
        mark = "*" if best[(k[0], k[1], k[3])][0] == k[2] else " "
        print(f" {mark} {k[1]:4s} {k[0]:8s} b={k[3]:<2d} {s['ms']:7.1f} ms/image "
              f"{s['gflops']:6.0f} GFLOP/s ({groups[k]['kept']}/{groups[k]['of']} runs quiet, "
              f"{s['n']} calls)  [{k[2]}]")
    print()
    print_checks(checks)
    versions = {l["engine"]: l.get("torch") or l.get("ort") or l.get("version") for l in runs}
    print("versions: " + ", ".join(f"{e} {v}" for e, v in sorted(versions.items()) if v))
    print("clipmod ÷ engine = our ms/image ÷ theirs at the same precision: below 1 means "
          "clipmod is faster. ÷ its own fp32 = that engine's time at this precision over its "
          f"fp32 time (clipmod's target ≤ {TARGET_RATIO}). GFLOP/s counts 8.82 GFLOP per image "
          "whatever the precision.")


if __name__ == "__main__":
    main()
