#!/usr/bin/env python3
"""trace_check.py - checks on hoare's execution traces (Trace Event Format JSON).

  trace_check.py events FILE NAME...      the file parses; an event named NAME exists for each NAME
                                          (instants, slices and flow arrows are all named)
  trace_check.py demo ONE TWO [--no-turns]
      ONE (the demo with 1 processor): the slices of "counter A" and "counter B" never overlap
      and take turns (A, B, A or B, A, B at least), unless --no-turns (no preemption: TSan);
      TWO (2 processors): some slice of A overlaps some slice of B.
Exit status 0 when every check holds; the failures are printed.
"""
import json
import sys


def load(path):
    with open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"]
    if not isinstance(events, list) or not events:
        raise SystemExit(f"{path}: no events")
    return events


def slices(events, name):
    return sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("ph") == "X" and e.get("name") == name)


EPS = 0.01  # µs: ts and dur are printed with 3 decimals, so a slice may end a rounding after the next starts


def overlaps(a, b):
    return any(s1 < e2 - EPS and s2 < e1 - EPS for s1, e1 in a for s2, e2 in b)


def check_events(path, names):
    events = load(path)
    seen = {e.get("name") for e in events}
    phases = {e.get("ph") for e in events}
    missing = [n for n in names if n not in seen]
    for ph in ("X", "i", "s", "f", "M"):
        if ph not in phases:
            missing.append(f"phase {ph}")
    for e in events:
        if e.get("ph") == "i" and e.get("name") == "block" and not e.get("args", {}).get("reason"):
            missing.append("block without a reason")
            break
    if missing:
        print(f"{path}: missing {missing}; seen {sorted(n for n in seen if n)}")
        return False
    return True


def check_demo(one, two, turns):
    ok = True
    ev1 = load(one)
    a, b = slices(ev1, "counter A"), slices(ev1, "counter B")
    if not a or not b:
        print(f"{one}: no slices of counter A / counter B")
        return False
    if overlaps(a, b):
        print(f"{one}: counter A and counter B overlap on one processor")
        ok = False
    order = [n for _, n in sorted([(s, "A") for s, _ in a] + [(s, "B") for s, _ in b])]
    changes = sum(1 for x, y in zip(order, order[1:]) if x != y)
    if turns and changes < 2:
        print(f"{one}: no turns taken: {''.join(order)}")
        ok = False
    ev2 = load(two)
    if not overlaps(slices(ev2, "counter A"), slices(ev2, "counter B")):
        print(f"{two}: counter A and counter B never overlap on two processors")
        ok = False
    return ok


def main(argv):
    if len(argv) >= 3 and argv[1] == "events":
        return 0 if check_events(argv[2], argv[3:]) else 1
    if len(argv) >= 4 and argv[1] == "demo":
        return 0 if check_demo(argv[2], argv[3], "--no-turns" not in argv[4:]) else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
