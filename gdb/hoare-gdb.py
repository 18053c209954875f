# hoare-gdb.py - gdb commands for programs using libhoare (live processes and core files).
#
#   info goroutines       every goroutine (and plain thread waiting in the runtime): id, status,
#                         wait reason, name
#   goroutine N bt        the stack of goroutine N (parked, runnable or preempted: unwound from the
#                         context it saved when it switched out)
#
# Load it with `source /usr/local/share/hoare/gdb/hoare-gdb.py` (or add that line to ~/.gdbinit).
# The program (and libhoare) must have debug information: the commands read the runtime's own
# tables (the stack slabs, the thread waiter list) through it. Nothing is written to the inferior,
# so it works on core files too: `goroutine N bt` installs a gdb unwinder that, for the duration of
# one `bt`, makes the caller of the selected thread's innermost frame the goroutine's saved
# context; gdb then unwinds the goroutine's stack with its own DWARF unwinder.

import gdb
from gdb.unwinder import Unwinder, register_unwinder

STATUS = {0: "free", 1: "runnable", 2: "running", 3: "waiting", 4: "blocking", 5: "dead"}
G_THREAD = 1


def _symbol(name):
    sym = gdb.lookup_static_symbol(name) or gdb.lookup_global_symbol(name)
    if sym is None:
        raise gdb.GdbError(f"hoare: no symbol {name}: is this a program using libhoare, with debug information?")
    return sym.value()


def _string(v):
    try:
        return v.string() if int(v.address if v.type.code == gdb.TYPE_CODE_ARRAY else v) else ""
    except gdb.error:
        return "?"


def goroutines():
    """Every live goroutine (struct hoare_g values), from the stack slabs (stack.c)."""
    gtype = gdb.lookup_type("struct hoare_g")
    gptr = gtype.pointer()
    s = _symbol("slabs")
    while int(s) != 0:
        base, carved, size = int(s["base"]), int(s["carved"]), int(s["slot_size"])
        for i in range(carved):
            g = gdb.Value(base + (i + 1) * size - gtype.sizeof).cast(gptr).dereference()
            if int(g["status"]) != 0:
                yield g
        s = s["next"]


def thread_waiters():
    """Plain threads waiting in the runtime (their waiter records)."""
    g = _symbol("all_waiters")
    while int(g) != 0:
        if STATUS.get(int(g["status"])) == "waiting":
            yield g.dereference()
        g = g["alllink"]


def _describe(g):
    status = STATUS.get(int(g["status"]), "?")
    reason = _string(g["wait_reason"]) if status == "waiting" else ""
    return status, reason, _string(g["name"])


class InfoGoroutines(gdb.Command):
    """List goroutines: id, status, wait reason, name. Plain threads waiting in the runtime
are listed as "thread"."""

    def __init__(self):
        super().__init__("info goroutines", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        print(f"{'id':>6}  {'status':<9} {'wait reason':<24} name")
        for g in goroutines():
            status, reason, name = _describe(g)
            print(f"{int(g['id']):>6}  {status:<9} {reason:<24} {name}")
        for g in thread_waiters():
            status, reason, _ = _describe(g)
            print(f"{int(g['id']):>6}  {status:<9} {reason:<24} (thread)")


class _FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class GoroutineUnwinder(Unwinder):
    """While `context` is set: the caller of frame 0 is the goroutine's saved context."""

    def __init__(self):
        super().__init__("hoare-goroutine")
        self.context = None

    def __call__(self, pending):
        if self.context is None or pending.level() != 0:
            return None
        arch = pending.architecture().name()
        sp_name, pc_name = ("sp", "pc") if "aarch64" in arch else ("rsp", "rip")
        info = pending.create_unwind_info(_FrameId(pending.read_register(sp_name), pending.read_register(pc_name)))
        for reg, value in self.context.items():
            like = pending.read_register(reg)
            info.add_saved_register(reg, gdb.Value(value).cast(gdb.lookup_type("unsigned long")).cast(like.type))
        return info


_unwinder = GoroutineUnwinder()
register_unwinder(None, _unwinder, replace=True)


def saved_context(g):
    """The registers hoare__ctx_switch saved on g's stack (layout: src/arch/switch_*.S)."""
    inferior = gdb.selected_inferior()
    sp = int(g["sp"])
    arch = gdb.selected_frame().architecture().name() if gdb.selected_thread() else "i386:x86-64"

    def words(n):
        raw = bytes(inferior.read_memory(sp, 8 * n))
        return [int.from_bytes(raw[8 * i:8 * i + 8], "little") for i in range(n)]

    if "aarch64" in arch:
        w = words(12)
        regs = {f"x{19 + i}": w[i] for i in range(10)}
        regs.update({"x29": w[10], "x30": w[11], "sp": sp + 176, "pc": w[11]})
        return regs
    w = words(8)  # +0 MXCSR/x87, r15 r14 r13 r12 rbx rbp, return address
    return {"r15": w[1], "r14": w[2], "r13": w[3], "r12": w[4], "rbx": w[5], "rbp": w[6],
            "rsp": sp + 64, "rip": w[7]}


class Goroutine(gdb.Command):
    """goroutine N bt: the backtrace of goroutine N, unwound from its saved context."""

    def __init__(self):
        super().__init__("goroutine", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = arg.split()
        if len(args) < 2 or not args[0].isdigit():
            raise gdb.GdbError("usage: goroutine N bt")
        goid = int(args[0])
        g = next((x for x in goroutines() if int(x["id"]) == goid), None)
        if g is None:
            raise gdb.GdbError(f"no goroutine {goid}")
        status, reason, name = _describe(g)
        print(f"goroutine {goid} [{reason or status}]:" + (f" {name}" if name else ""))
        if status in ("running", "blocking"):
            print("\tgoroutine running on a thread: use `thread apply all bt` to find it")
            return
        if status == "dead":
            return
        _unwinder.context = saved_context(g)
        gdb.invalidate_cached_frames()
        try:
            out = gdb.execute(" ".join(args[1:]), to_string=True)
        finally:
            _unwinder.context = None
            gdb.invalidate_cached_frames()
        # frame #0 is the selected thread's own innermost frame, not the goroutine's
        lines = out.splitlines()
        while lines and not lines[0].startswith("#1"):
            lines.pop(0)
        print("\n".join(lines))


InfoGoroutines()
Goroutine()
