"""``hyflexpim formal [NAME ...]``: prove the RTL properties of :mod:`hyflexpim.sim.formal`."""

import sys

from .. import formal as F

NAME = "formal"
HELP = "formal property checks with SymbiYosys (SAR step count and code, S&A overflow, bus order)"


def add_arguments(p):
    p.add_argument("checks", nargs="*", metavar="NAME", help="checks to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the checks and their claims")


def run(args):
    known = {c.name: c for c in F.CHECKS}
    if args.list:
        for c in F.CHECKS:
            print(f"{c.name:18s} {c.mode} depth {c.depth}: {c.claim}")
        return 0
    for n in args.checks:
        if n not in known:
            raise ValueError(f"unknown check {n!r}; known checks: {', '.join(known)}")
    status = 0
    for c in (known[n] for n in args.checks) if args.checks else F.CHECKS:
        r = F.run_check(c)
        kind = "k-induction" if r.mode == "prove" else "BMC"
        print(f"{r.name:18s} {r.status:7s} {kind} depth {r.depth}, {r.seconds:.1f} s ({r.solver})")
        if not r.passed:
            print(f"  {r.summary}\n  log: {r.workdir}/sby.log", file=sys.stderr)
            status = 1
    return status
