"""e2e_measure.py - run a command; print its wall time and peak resident memory.

Memory is sampled every 20 ms from /proc over the whole process tree (the command and
all its descendants: Python's pool workers and the node worker count too), so the peak
is of the tree's summed VmRSS; the largest single process's peak (getrusage's
ru_maxrss, exact) is printed as well. Usage: e2e_measure.py LABEL OUT.json -- CMD...
The command's stdout goes to OUT.json's sibling OUT.json.out.
"""
import json
import os
import resource
import subprocess
import sys
import time


def tree_rss_kb(root):
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def main():
    label, out = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    t0 = time.monotonic()
    with open(out + ".out", "wb") as so:
        p = subprocess.Popen(cmd, stdout=so)
        peak = 0
        while p.poll() is None:
            peak = max(peak, tree_rss_kb(p.pid))
            time.sleep(0.02)
    wall = time.monotonic() - t0
    single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(out, "w") as f:
        json.dump({"label": label, "rc": p.returncode, "wall_s": round(wall, 3),
                   "peak_tree_rss_mb": round(peak / 1024, 1),
                   "peak_single_rss_mb": round(single / 1024, 1)}, f)
        f.write("\n")
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
