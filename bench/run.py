#!/usr/bin/env python3
"""Run hoare's benchmarks side by side with their Go twins and report medians and C/Go ratios.

    python3 bench/run.py              # full run: builds, runs, writes docs/BENCHMARKS.md + chart
    python3 bench/run.py --quick      # small sizes, one run each, checks results only (CI)
    python3 bench/run.py --save F     # full run, its outcomes also kept in F; then, after
    python3 bench/run.py --from F     #   editing bench/analysis.md, the report written again

Each workload is a C program (bench/c/<name>.c, built by CMake as bench_<name>) and a Go program
(bench/go/<name>/main.go, built here with `go build`, no network). Both print one line
"RESULT name=... procs=... n=... value=... unit=..." and exit non-zero when their result is wrong.
Every workload runs with the default number of processors and with one (HOARE_PROCS=1 /
GOMAXPROCS=1), C and Go alternating, --runs times each; then its C side runs twice more at the
default processors, driven from main()'s plain thread and through hoare_main (MODES), each run
alternating with a partner run of its own: Go for the plain thread, the C code in a goroutine for
hoare_main. The ratio of a row is the median of the per-pair ratios. http loads
examples/http_hello and bench/go/http with wrk in turn.

Only python3's standard library is used. Exit status: 0, or 1 when a run failed (a wrong result, a
crash, a timeout); missed speed targets do not fail the run.
"""

import argparse
import datetime
import math
import os
import pickle
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# key, C program, extra C arguments, full size, quick size, target (kind, value).
# Target kinds: "ratio" = median C/Go <= value; "bytes" = C median <= value;
# "http" = C requests/s >= value * Go's, with a lower p99.
WORKLOADS = [
    ("spawn", "spawn", [], 1000000, 20000, ("ratio", 0.2)),
    ("pingpong", "pingpong", [], 1000000, 20000, ("ratio", 0.25)),
    ("buffered", "buffered", [], 10000000, 200000, ("ratio", 0.33)),
    ("mpmc", "mpmc", [], 10000000, 200000, ("ratio", 0.5)),
    ("select", "select", [], 4000000, 40000, ("ratio", 0.33)),
    ("skynet", "skynet", [], 1000000, 10000, ("ratio", 0.2)),
    ("sieve", "sieve", [], 5000, 300, ("ratio", 0.33)),
    ("ring", "ring", [], 10000000, 100000, ("ratio", 0.25)),
    ("mutex", "mutex", [], 10000000, 200000, ("ratio", 1.0)),
    ("sleepers", "sleepers", [], 100000, 2000, ("ratio", 0.33)),
    ("parked", "parked", [], 1000000, 10000, ("bytes", 4400)),
    ("parked-2k", "parked", ["2048"], 1000000, 10000, ("bytes", 2400)),
    ("yield", "yield", [], 10000000, 100000, ("ratio", 0.25)),
    ("startpark", "startpark", [], 100000, 10000, ("ratio", 1.0)),
    ("wakeall", "wakeall", [], 100000, 10000, ("ratio", 1.0)),
    ("demo", "demo", [], 1500000000, 20000000, ("ratio", 1.05)),
    # sizes in MiB; the file lives in $TMPDIR (default /tmp)
    ("fileread-cold", "fileread", ["cold"], 256, 8, ("ratio", 1.0)),
    ("fileread-warm", "fileread", ["warm"], 256, 8, ("ratio", 1.0)),
    ("http", "http", [], None, None, ("http", 1.5)),
]
# The same C code driven two more ways (bench.h's HOARE_BENCH_MODE), default processors only:
# "thread", straight from main()'s plain thread; "main", in hoare_main's main goroutine. Each run
# alternates with a partner run, so that the VM's drift between minutes cancels as in the C/Go
# pairs: a Go run for "thread" (target: C/Go, where the issue set one), the same C code in a
# goroutine for "main" (target: the C time over the goroutine time, per pair).
MODES = ["thread", "main"]
THREAD_TARGETS = {"pingpong": 1.0, "select": 1.0, "buffered": 0.5, "mpmc": 0.5, "spawn": 0.3,
                  "startpark": 0.5, "sleepers": 0.5}
MAIN_VS_GOROUTINE = 1.1

# Rows whose Go column is another row's (same processor setting) instead of runs of their own:
# Go has no per-goroutine stack size, so the C small-stack run is compared with the ordinary Go run.
GO_SHARED_WITH = {"parked-2k": "parked"}
# Rows whose Go twin is another program than bench/go/<key>, with extra arguments after the size.
GO_PROGRAM = {"fileread-cold": ("fileread", ["cold"]), "fileread-warm": ("fileread", ["warm"])}

# Cleared from the environment of every run so that results are reproducible.
TUNING_ENV = ["HOARE_PROCS", "HOARE_STACK_SIZE", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"]

RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_env(procs, mode=None):
    env = {k: v for k, v in os.environ.items() if k not in TUNING_ENV + ["HOARE_BENCH_MODE"]}
    if mode:
        env["HOARE_BENCH_MODE"] = mode
    if procs == 1:
        env["HOARE_PROCS"] = "1"
        env["GOMAXPROCS"] = "1"
    return env


class Outcome:
    """One run of one side: a value (and its unit), or an error, or a skip."""

    def __init__(self, value=None, unit="", procs=None, error=None, skip=None, extra=None):
        self.value, self.unit, self.procs = value, unit, procs
        self.error, self.skip = error, skip
        self.extra = extra or {}

    @property
    def ok(self):
        return self.error is None and self.skip is None


def run_program(argv, procs, timeout, mode=None):
    """Run one benchmark program and parse its RESULT line."""
    try:
        proc = subprocess.run(argv, env=run_env(procs, mode), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(error=f"timed out after {timeout} s")
    except OSError as e:
        return Outcome(error=str(e))
    out = proc.stdout
    skip = re.search(r"^SKIP (.*)$", out, re.M)
    if proc.returncode == 0 and skip:
        return Outcome(skip=skip.group(1))
    m = RESULT_RE.search(out)
    if proc.returncode != 0 or not m:
        detail = (out + proc.stderr).strip().splitlines()
        return Outcome(error=f"exit status {proc.returncode}: " + " | ".join(detail[-3:]))
    fields = dict(kv.split("=", 1) for kv in m.group(1).split())
    return Outcome(value=float(fields["value"]), unit=fields["unit"], procs=int(fields["procs"]))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, server, deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if server.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def parse_latency(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    return float(m.group(1)) * scale


def run_http(argv, procs, wrk_args, timeout):
    """Start a server (argv + address), load it with wrk, stop it. Value: requests/s; extra p99 ms."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        server = subprocess.Popen(argv + [address], env=run_env(procs), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
    except OSError as e:
        return Outcome(error=str(e))
    try:
        if not wait_listening(port, server):
            return Outcome(error=f"server not listening on {address}")
        try:
            wrk = subprocess.run(["wrk"] + wrk_args + ["--latency", f"http://{address}/"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 timeout=timeout)
        except subprocess.TimeoutExpired:
            return Outcome(error="wrk timed out")
        out = wrk.stdout
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
        if wrk.returncode != 0 or not rps or not p99:
            return Outcome(error="wrk failed: " + " | ".join(out.strip().splitlines()[-3:]))
        for bad in ("Non-2xx or 3xx responses", "Socket errors"):
            if bad in out:
                line = next(l for l in out.splitlines() if bad in l)
                return Outcome(error=line.strip())
        if server.poll() is not None:
            return Outcome(error=f"server exited with status {server.returncode}")
        return Outcome(value=float(rps.group(1)), unit="req/s", procs=procs,
                       extra={"p99": parse_latency(p99.group(1))})
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


# ------------------------------------------------------------------------------------ building

def build_c(build_dir, jobs):
    subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                    "-DHOARE_SANITIZE=", "-DHOARE_BENCH=ON"], check=True, stdout=subprocess.DEVNULL)
    targets = ["hoare_bench"]
    if os.path.exists(os.path.join(ROOT, "examples", "http_hello.c")):
        targets.append("http_hello")
    subprocess.run(["cmake", "--build", build_dir, "-j", str(jobs), "--target"] + targets,
                   check=True, stdout=subprocess.DEVNULL)


def go_env(build_dir):
    env = dict(os.environ)
    env.update({
        "GOCACHE": os.path.join(build_dir, "bench", "go-cache"),
        "GOPATH": os.path.join(build_dir, "bench", "go-path"),
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOWORK": "off",
        "GO111MODULE": "on",
    })
    return env


def build_go(build_dir):
    out = os.path.join(build_dir, "bench", "go-bin") + os.sep
    os.makedirs(out, exist_ok=True)
    subprocess.run(["go", "build", "-o", out, "./..."], cwd=os.path.join(ROOT, "bench", "go"),
                   env=go_env(build_dir), check=True)


# ------------------------------------------------------------------------------------ running

class Row:
    """One workload at one processor setting: the C and Go outcomes, in run order."""

    def __init__(self, key, procs_setting, target, mode="goroutine", base=None):
        self.key, self.procs_setting, self.target = key, procs_setting, target
        self.mode = mode  # how the C side drives the workload (bench.h's HOARE_BENCH_MODE)
        self.base = base  # for mode "main": the goroutine row it is reported beside
        self.c, self.go = [], []
        self.partner = []  # mode "main": the C code in a goroutine, run i alternating with c[i]
        self.note = None  # why the row has no numbers ("not available", a skip reason)
        self.go_shared = False  # self.go belongs to another row (GO_SHARED_WITH)

    def values(self, side, field=None):
        runs = self.c if side == "c" else self.go
        if field:
            return [o.extra[field] for o in runs if o.ok]
        return [o.value for o in runs if o.ok]

    def errors(self):
        own = [("C", self.c), ("C in a goroutine", self.partner)] + \
            ([] if self.go_shared else [("Go", self.go)])
        return [f"{side}: {o.error}" for side, runs in own for o in runs if o.error]

    def unit(self):
        for o in self.c + self.go:
            if o.ok:
                return o.unit
        return ""

    def procs(self):
        for o in self.c + self.go:
            if o.ok and o.procs:
                return o.procs
        return self.procs_setting

    def pair_ratios(self, field=None):
        pairs = zip(self.c, self.go)
        if field:
            return [c.extra[field] / g.extra[field] for c, g in pairs
                    if c.ok and g.ok and g.extra[field] > 0]
        return [c.value / g.value for c, g in pairs if c.ok and g.ok and g.value > 0]

    def median_ratio(self, field=None):
        r = self.pair_ratios(field)
        return statistics.median(r) if r else None

    def vs_goroutine(self):
        """Median of the per-pair ratios of this row's C time over its goroutine partner's."""
        r = [c.value / g.value for c, g in zip(self.c, self.partner)
             if c.ok and g.ok and g.value > 0]
        return statistics.median(r) if r else None

    def verdict(self):
        """'met', 'missed' or None (no target at this processor setting, or no numbers)."""
        if self.target is None:
            return None
        kind, limit = self.target
        if kind == "vs-goroutine":
            r = self.vs_goroutine()
            return None if r is None else ("met" if r <= limit else "missed")
        if self.procs_setting != "default":
            return None
        if kind == "ratio":
            r = self.median_ratio()
            return None if r is None else ("met" if r <= limit else "missed")
        if kind == "bytes":
            c = self.values("c")
            return None if not c else ("met" if statistics.median(c) <= limit else "missed")
        if kind == "http":
            r = self.median_ratio()
            if r is None:
                return None
            lower_p99 = statistics.median(self.values("c", "p99")) < statistics.median(
                self.values("go", "p99"))
            return "met" if r >= limit and lower_p99 else "missed"
        return None


def target_text(target):
    if target is None:
        return ""
    kind, limit = target
    if kind == "vs-goroutine":
        return f"<= {limit:g}x goroutine"
    if kind == "ratio":
        return f"<= {limit:g}"
    if kind == "bytes":
        return f"C <= {limit:,} B"
    return f">= {limit:g}x req/s, lower p99"


def run_all(args, build_dir):
    c_bin = os.path.join(build_dir, "bench")
    go_bin = os.path.join(build_dir, "bench", "go-bin")
    http_c = os.path.join(build_dir, "examples", "http_hello")
    timeout = 120 if args.quick else 240  # a run that takes longer is hung
    wrk_args = ["-t2", "-c10", "-d1s"] if args.quick else ["-t2", "-c100", "-d10s"]
    runs = 1 if args.quick else args.runs
    selected = [w for w in WORKLOADS if not args.only or w[0] in args.only]
    rows = []
    for key, c_name, c_extra, full, quick, target in selected:
        for procs in ("default", 1):
            row = Row(key, procs, target)
            rows.append(row)
            shared = [r for r in rows if r.key == GO_SHARED_WITH.get(key) and r.procs_setting == procs]
            if shared:
                row.go, row.go_shared = shared[0].go, True
            if key == "http":
                if not os.path.exists(http_c):
                    row.note = "not available (examples/http_hello not built)"
                    continue
                if not shutil.which("wrk"):
                    row.note = "not available (wrk not installed)"
                    continue
            for i in range(runs):
                size = [] if key == "http" else [str(quick if args.quick else full)]
                sides = [("c", [os.path.join(c_bin, f"bench_{c_name}")] + size + c_extra)]
                if not args.no_go and key not in GO_SHARED_WITH:
                    go_name, go_extra = GO_PROGRAM.get(key, (key, []))
                    sides.append(("go", [os.path.join(go_bin, go_name)] + size + go_extra))
                for side, argv in sides:
                    if key == "http":
                        if side == "c":
                            argv = [http_c]
                        o = run_http(argv, procs, wrk_args, timeout)
                    else:
                        o = run_program(argv, procs, timeout)
                    (row.c if side == "c" else row.go).append(o)
                    shown = (o.error and "FAILED " + o.error) or (o.skip and "skip: " + o.skip) or \
                        f"{o.value:g} {o.unit}" + (f" p99 {o.extra['p99']:g} ms" if o.extra else "")
                    log(f"  {key:<10} procs={procs!s:<8} run {i + 1}/{runs} {side:<3} {shown}")
            skips = [o.skip for o in row.c if o.skip]
            if skips:
                row.note = skips[0]
        if key == "http" or args.no_modes:
            continue
        goroutine_row = next(r for r in rows if r.key == key and r.procs_setting == "default"
                             and r.mode == "goroutine")
        for mode in MODES:
            if mode == "thread":
                target = ("ratio", THREAD_TARGETS[key]) if key in THREAD_TARGETS else None
            else:
                target = ("vs-goroutine", MAIN_VS_GOROUTINE)
            row = Row(key, "default", target, mode, base=goroutine_row)
            rows.append(row)
            own_go = mode == "thread" and not args.no_go and key not in GO_SHARED_WITH
            if not own_go:
                row.go, row.go_shared = goroutine_row.go, True
            size = [str(quick if args.quick else full)]
            c_argv = [os.path.join(c_bin, f"bench_{c_name}")] + size + c_extra
            go_name, go_extra = GO_PROGRAM.get(key, (key, []))
            go_argv = [os.path.join(go_bin, go_name)] + size + go_extra
            for i in range(runs):
                partners = [(mode, c_argv, mode, row.c)]
                if own_go:
                    partners.append(("go", go_argv, None, row.go))
                elif mode == "main":
                    partners.append(("goroutine", c_argv, "goroutine", row.partner))
                for label, argv, run_mode, outcomes in partners:
                    o = run_program(argv, "default", timeout, run_mode)
                    outcomes.append(o)
                    shown = (o.error and "FAILED " + o.error) or (o.skip and "skip: " + o.skip) or \
                        f"{o.value:g} {o.unit}"
                    log(f"  {key:<10} mode={mode:<8} run {i + 1}/{runs} {label:<9} {shown}")
    return rows


# ------------------------------------------------------------------------------------ reporting

def fmt(v):
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def stats(values):
    if not values:
        return "-", "-", "-"
    return fmt(statistics.median(values)), fmt(min(values)), fmt(max(values))


HEADER = ["workload", "procs", "unit", "C median", "C min", "C max", "Go median", "Go min",
          "Go max", "C/Go", "target", "status"]
# The hoare_main table has one more column: its C time over the same code's in a goroutine.
MAIN_HEADER = HEADER[:10] + ["C/C in goroutine"] + HEADER[10:]


def table_rows(rows):
    """Lists of cells, one per table line (http gives two: requests/s and p99)."""
    out = []
    for row in rows:
        if row.mode == "main":
            ratio, vs = row.median_ratio(), row.vs_goroutine()
            out.append([row.key, str(row.procs()), row.unit(), *stats(row.values("c")),
                        *stats(row.values("go")), fmt(ratio) if ratio is not None else "-",
                        fmt(vs) if vs is not None else "-", target_text(row.target),
                        (row.verdict() or "") + (" FAILED" if row.errors() else "")])
            continue
        if row.note and not row.values("c"):
            out.append([row.key, str(row.procs()), "", "", "", "", "", "", "", "",
                        target_text(row.target) if row.procs_setting == "default" else "",
                        row.note])
            continue
        fields = [(None, row.unit())]
        if row.key == "http":
            fields.append(("p99", "ms p99"))
        for field, unit in fields:
            ratio = row.median_ratio(field)
            name = row.key if field is None else "http p99"
            first = field is None
            status = (row.verdict() or "") if first else ""
            if first and row.errors():
                status = (status + " " if status else "") + f"FAILED ({len(row.errors())} runs)"
            out.append([name, str(row.procs()), unit, *stats(row.values("c", field)),
                        *stats(row.values("go", field)), fmt(ratio) if ratio is not None else "-",
                        target_text(row.target) if first and row.procs_setting == "default" else "",
                        status])
    return out


def print_table(rows, header=HEADER):
    lines = [header] + table_rows(rows)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for j, line in enumerate(lines):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def markdown_table(rows, header=HEADER):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cells in table_rows(rows):
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def command_output(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine_info(build_dir):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cc = "gcc"
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            m = re.search(r"^CMAKE_C_COMPILER:\w+=(.*)$", f.read(), re.M)
            if m:
                cc = m.group(1)
    except OSError:
        pass
    commit = command_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    return [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} online, {len(os.sched_getaffinity(0))} usable by this process"),
        ("kernel", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("Go", command_output(["go", "version"])),
        ("C compiler", command_output([cc, "--version"])),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("hoare commit", commit + (" (with uncommitted changes)" if dirty else "")),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]


def gnuplot_terminal():
    """pngcairo (gnuplot-nox has it), else gd's png: None without gnuplot."""
    if not shutil.which("gnuplot"):
        return None
    terminals = subprocess.run(["gnuplot", "-e", "set terminal"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True).stdout
    return "pngcairo" if re.search(r"^\s*pngcairo\s", terminals, re.M) else "png"


def write_chart(rows, chart_path, work_dir):
    """Bar chart of the median ratios (C/Go, log scale) with the targets as marks. http is shown as
    Go/C requests/s so that lower is better everywhere; the parked rows (absolute bytes) are not."""
    terminal = gnuplot_terminal()
    if terminal is None:
        return False
    by_key = {}
    for row in rows:
        if row.mode == "goroutine":
            by_key.setdefault(row.key, {})[row.procs_setting] = row
    data = []
    for key, _, _, _, _, (kind, limit) in WORKLOADS:
        if kind == "bytes" or key not in by_key:
            continue
        ratios = []
        for setting in ("default", 1):
            row = by_key[key].get(setting)  # the goroutine rows (the first of each setting)
            r = row.median_ratio() if row else None
            if r is not None and kind == "http":
                r = 1 / r
            ratios.append(r)
        if all(r is None for r in ratios):
            continue
        label = "http (Go/C req/s)" if kind == "http" else key
        target = 1 / limit if kind == "http" else limit
        data.append((label, *ratios, target))
    if not data:
        return False
    dat = os.path.join(work_dir, "ratios.dat")
    with open(dat, "w") as f:
        for label, r_default, r_one, target in data:
            cols = [f'"{label}"'] + ["NaN" if r is None else f"{r:.4g}" for r in (r_default, r_one)]
            f.write(" ".join(cols + [f"{target:.4g}"]) + "\n")
    plotted = [v for _, *vals in data for v in vals if v is not None and v > 0]
    y_low = 10 ** math.floor(math.log10(min(plotted) / 1.5))
    y_high = 10 ** math.ceil(math.log10(max(plotted) * 1.5))
    script = f"""
set terminal {terminal} size 960,480 font "sans,10" background "white"
set output "{chart_path}"
set title "hoare vs Go: median time ratio C/Go (lower is better; 1 = as fast as Go)"
set logscale y
set yrange [{y_low:g}:{y_high:g}]
set ylabel "C/Go (log scale)"
set grid ytics
set style fill solid 0.8 border -1
set boxwidth 0.35
set xtics rotate by 30 right noenhanced nomirror
set bmargin 6
set xrange [-0.6:{len(data) - 0.4}]
set key top left
plot "{dat}" using ($0-0.18):2:xtic(1) with boxes lc rgb "#4477aa" title "default processors", \\
     "" using ($0+0.18):3 with boxes lc rgb "#aaccee" title "one processor", \\
     "" using ($0-0.42):4:(0.84):(0) with vectors nohead lw 4 lc rgb "#cc3311" title "target (default processors)", \\
     1 with lines dt 2 lc rgb "#555555" notitle
"""
    proc = subprocess.run(["gnuplot"], input=script, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    if proc.returncode != 0:
        log("gnuplot failed: " + proc.stderr.strip())
        return False
    return True


def demo_speedups(rows):
    """The demo's speedup from one processor to the default number, C and Go (median times)."""
    by = {r.procs_setting: r for r in rows if r.key == "demo" and r.mode == "goroutine"}
    if "default" not in by or 1 not in by:
        return ""
    out = []
    for side, name in (("c", "C"), ("go", "Go")):
        d, one = by["default"].values(side), by[1].values(side)
        if d and one and statistics.median(d) > 0:
            out.append(f"{name} {statistics.median(one) / statistics.median(d):.2f}x")
    if not out:
        return ""
    return ("Demo speedup from one processor to the default number (median times; target for C: "
            ">= 1.95x): " + ", ".join(out) + ".\n\n")


def write_markdown(rows, args, build_dir, path, chart_name, info):
    failures = [f"- {row.key} (procs {row.procs_setting}): {e}" for row in rows for e in row.errors()]
    raw = []
    for row in rows:
        if row.mode != "goroutine" and row.c:
            c = ", ".join(fmt(v) for v in row.values("c"))
            if row.mode == "main":
                g = ", ".join(fmt(o.value) for o in row.partner if o.ok)
                raw.append(f"- {row.key}, {row.mode} ({row.unit()}): C [{c}]; "
                           f"C in a goroutine [{g}]")
            elif row.go_shared:
                raw.append(f"- {row.key}, {row.mode} ({row.unit()}): C [{c}]")
            else:
                g = ", ".join(fmt(v) for v in row.values("go"))
                raw.append(f"- {row.key}, {row.mode} ({row.unit()}): C [{c}]; Go [{g}]")
        elif row.c or row.go:
            c = ", ".join(fmt(v) for v in row.values("c"))
            g = ", ".join(fmt(v) for v in row.values("go"))
            raw.append(f"- {row.key}, procs {row.procs_setting} ({row.unit()}): C [{c}]; Go [{g}]")
            if row.key == "http":
                c = ", ".join(fmt(v) for v in row.values("c", "p99"))
                g = ", ".join(fmt(v) for v in row.values("go", "p99"))
                raw.append(f"- http p99, procs {row.procs_setting} (ms): C [{c}]; Go [{g}]")
    text = f"""# Benchmarks: hoare (C) side by side with Go

Generated by `python3 bench/run.py` (`make bench`); do not edit by hand. How to reproduce and what
each workload measures: [design-bench.md](design-bench.md).

## Machine

{chr(10).join(f"- {k}: {v}" for k, v in info)}

{"## Note" + chr(10) + chr(10) + args.note + chr(10) + chr(10) if args.note else ""}## Method

Each workload is a C program using hoare (`bench/c/<name>.c`) and a Go program doing the same work
(`bench/go/<name>/main.go`). Both check their result and print one result line. Each side runs
{args.runs} time(s) with the default number of processors and {args.runs} time(s) with one
(`HOARE_PROCS=1` / `GOMAXPROCS=1`), C and Go alternating. min/median/max are over those runs;
**C/Go is the median of the per-pair ratios** (run i of C over run i of Go). Lower is better for
every unit except req/s. Targets apply to the default-processor rows. `parked-2k` is the C parked
run with `hoare_attr.stack_size = 2048` (its Go column repeats the parked row's Go runs).
`startpark`, `wakeall` and `demo` are the scale workloads of issue 10: starting 100k goroutines that
park, waking all of them with one close, and the seed's two counting goroutines.
http: `wrk -t2 -c100 -d10s --latency` on loopback against `examples/http_hello` and
`bench/go/http`, one server at a time; its C/Go is the ratio of requests/s (higher is better) and,
on the p99 line, of p99 latencies.

## Results, default processors

{markdown_table([r for r in rows if r.procs_setting == "default" and r.mode == "goroutine"])}

## Results, one processor

{markdown_table([r for r in rows if r.procs_setting == 1 and r.mode == "goroutine"])}

## Driven from a plain thread (main() without hoare_main), default processors

The same C code called on main()'s own thread (`HOARE_BENCH_MODE=thread`), as a C program that
does not use `hoare_main` is written, each run alternating with a Go run of its own (Go's main is
always a goroutine).

{markdown_table([r for r in rows if r.mode == "thread"])}

## Through hoare_main, default processors

The same C code in `hoare_main`'s main goroutine (`HOARE_BENCH_MODE=main`), each run alternating
with a run of the same code in a goroutine. "C/C in goroutine" is the median of those per-pair
ratios; the target is within 10%. The Go columns and C/Go repeat the goroutine rows' Go runs.

{markdown_table([r for r in rows if r.mode == "main"], MAIN_HEADER)}

{demo_speedups(rows)}## Ratios against targets

"""
    if chart_name:
        text += (f"![median C/Go ratios with targets]({chart_name})\n\n"
                 "Bars: median C/Go time ratio (log scale); dots: targets. http is drawn as Go/C "
                 "requests/s so that lower is better everywhere; parked (absolute bytes) is only "
                 "in the tables.\n")
    else:
        text += "(no chart: gnuplot not found or no ratios)\n"
    # What holds the missed targets back: written by hand from profiles (bench/analysis.md), kept
    # with the numbers so that every regenerated report carries it.
    analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            text += "\n" + f.read().rstrip() + "\n"
    if failures:
        text += "\n## Failed runs\n\n" + "\n".join(failures) + "\n"
    text += "\n## Raw values\n\n" + "\n".join(raw) + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, one run each, no report file (CI)")
    ap.add_argument("--runs", type=int, default=5, help="runs per side and setting (default 5)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "bench"),
                    help="CMake build directory (default build/bench)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not build the C side (it is already built in --build-dir)")
    ap.add_argument("--no-go", action="store_true", help="run the C side only")
    ap.add_argument("--only", type=lambda s: s.split(","), help="comma-separated workloads")
    ap.add_argument("--no-modes", action="store_true",
                    help="skip the plain-thread and hoare_main runs")
    ap.add_argument("--out", help="report file (default docs/BENCHMARKS.md; none in quick mode)")
    ap.add_argument("--note", help="a paragraph for the report (conditions of this run)")
    ap.add_argument("--save", metavar="FILE",
                    help="also keep this run's outcomes in FILE (for --from)")
    ap.add_argument("--from", dest="from_file", metavar="FILE",
                    help="run nothing: write the report again from outcomes kept by --save "
                         "(after bench/analysis.md changed)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.only:
        unknown = set(args.only) - {w[0] for w in WORKLOADS}
        if unknown:
            ap.error("unknown workloads: " + ", ".join(sorted(unknown)))
    if args.quick:
        args.runs = 1
    build_dir = os.path.abspath(args.build_dir)

    if args.from_file:
        with open(args.from_file, "rb") as f:
            kept = pickle.load(f)
        args.runs = kept["runs"]
        args.note = args.note or kept.get("note")
        rows, info = kept["rows"], kept["info"]
        args.no_build = args.no_go = True
    if not args.no_build:
        log(f"building the C side in {build_dir}")
        build_c(build_dir, os.cpu_count() or 2)
    if not args.no_go:
        if not shutil.which("go"):
            sys.exit("go not found: install Go or pass --no-go")
        log("building the Go side")
        build_go(build_dir)

    started = time.monotonic()
    if not args.from_file:
        rows = run_all(args, build_dir)
        info = machine_info(build_dir)
        if args.save:
            with open(args.save, "wb") as f:
                pickle.dump({"rows": rows, "info": info, "runs": args.runs, "note": args.note}, f)
    print()
    print_table([r for r in rows if r.mode == "goroutine"])
    for mode, header in (("thread", HEADER), ("main", MAIN_HEADER)):
        if any(r.mode == mode for r in rows):
            print(f"\nmode {mode}:")
            print_table([r for r in rows if r.mode == mode], header)
    print(f"\n({time.monotonic() - started:.0f} s)")

    out = args.out or (None if args.quick else os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    if out:
        out = os.path.abspath(out)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        chart = os.path.join(os.path.dirname(out), "bench-ratios.png")
        has_chart = write_chart(rows, chart, os.path.join(build_dir, "bench"))
        write_markdown(rows, args, build_dir, out, os.path.basename(chart) if has_chart else None,
                       info)
        print(f"wrote {out}" + (f" and {chart}" if has_chart else ""))

    failed = [e for row in rows for e in row.errors()]
    if failed:
        print(f"{len(failed)} runs failed:\n  " + "\n  ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
