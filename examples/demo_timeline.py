#!/usr/bin/env python3
"""demo_timeline.py ONE.json TWO.json OUT.png - draw the demo's two traces as one timeline picture.

Top: the run with hoare_procs(1); bottom: hoare_procs(2). One row per thread that ran a counter
goroutine, one box per slice of "counter A" / "counter B" (from the Trace Event Format files that
`demo --trace` writes). Rendered by gnuplot (the data and script go to a temporary directory).
"""
import json
import os
import subprocess
import sys
import tempfile

COLORS = {"counter A": "#1f77b4", "counter B": "#ff7f0e"}


def slices(path):
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    out = [e for e in events if e.get("ph") == "X" and e.get("name") in COLORS]
    t0 = min(e["ts"] for e in out)
    rows = {}
    for e in sorted(out, key=lambda e: e["ts"]):
        rows.setdefault(e["tid"], len(rows))
    return [((e["ts"] - t0) / 1000.0, e["dur"] / 1000.0, rows[e["tid"]], e["name"]) for e in out], len(rows)


def main(one, two, png):
    tmp = tempfile.mkdtemp()
    panels = []
    for i, (path, title) in enumerate(((one, "hoare_procs(1): one thread, the goroutines take turns"),
                                       (two, "hoare_procs(2): two threads, side by side"))):
        data, nrows = slices(path)
        files = {}
        for name in COLORS:
            fn = os.path.join(tmp, f"run{i}_{name[-1]}.dat")
            with open(fn, "w") as f:
                for start, dur, row, n in data:
                    if n == name:
                        # boxxyerror: x y xlow xhigh ylow yhigh
                        f.write(f"{start + dur / 2} {row} {start} {start + dur} {row - 0.35} {row + 0.35}\n")
            files[name] = fn
        end = max(s + d for s, d, _, _ in data)
        panels.append((title, files, nrows, end))
    xmax = max(p[3] for p in panels)
    script = [f"set terminal pngcairo noenhanced size 1200,560 font 'sans,11'", f"set output '{png}'",
              "set multiplot layout 2,1", "set style fill solid 1.0 noborder", "set xlabel 'time (ms)'",
              f"set xrange [0:{xmax * 1.01}]", "set key outside right top"]
    for title, files, nrows, _ in panels:
        ytics = ", ".join(f"'thread {r + 1}' {r}" for r in range(nrows))
        script += [f"set title \"{title}\"", f"set yrange [-0.6:{nrows - 0.4}]", f"set ytics ({ytics})",
                   "plot " + ", ".join(f"'{fn}' using 1:2:3:4:5:6 with boxxyerror lc rgb '{COLORS[name]}' title '{name}'"
                                       for name, fn in files.items())]
    script.append("unset multiplot")
    gp = os.path.join(tmp, "timeline.gp")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    subprocess.run(["gnuplot", gp], check=True)
    print(f"wrote {png}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
