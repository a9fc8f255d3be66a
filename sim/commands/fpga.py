"""``hyflexpim fpga BLOCK [--board ice40|ecp5]``: LUTs, FFs and nextpnr Fmax of a block."""

import sys

from ..blocks import get_block, parse_params
from .. import fpga as F

NAME = "fpga"
HELP = "FPGA build of a block (iCE40 UP5K / ECP5 via amaranth-boards and YoWASP): LUTs, FFs, Fmax"


def add_arguments(p):
    p.add_argument("block", help="block name")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--board", action="append", choices=sorted(F.BOARDS),
                   help="board (repeatable; default: ice40 and ecp5)")
    p.add_argument("--full", action="store_true",
                   help="default configuration instead of the small one")
    p.add_argument("--synth-opts", metavar="OPTS",
                   help="extra options of Yosys' synth_ice40 / synth_ecp5 (e.g. '-dff')")
    p.add_argument("-o", "--outdir", default=str(F.DEFAULT_OUTDIR))


def run(args):
    blk = get_block(args.block)
    over = parse_params(blk, args.param)
    status = 0
    for board in args.board or ["ice40", "ecp5"]:
        try:
            r = F.fpga_build(args.block, board, over, small=not args.full, outdir=args.outdir,
                             synth_opts=args.synth_opts)
        except F.FpgaBuildError as exc:
            print(f"hyflexpim fpga: error: {args.block} on {board}: build failed: {exc}",
                  file=sys.stderr)
            status = 1
            continue
        fmax = f"{r['fmax_mhz']:.1f} MHz" if r["fmax_mhz"] else "n/a"
        opts = f", synth options '{r['synth_opts']}'" if r["synth_opts"] else ""
        print(f"{r['block']} on {r['device']}: {r['luts']} LUT4, {r['flip_flops']} FFs "
              f"(of which {r['wrapper_flip_flops']} in the board wrapper), Fmax {fmax}, "
              f"build {r['build_s']} s{opts}")
        if r["workaround"]:
            print(f"  note: {r['workaround']}", file=sys.stderr)
    return status
