"""``hyflexpim fpga BLOCK [--board ice40|ecp5]``: LUTs, FFs and nextpnr Fmax of a block."""

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
    p.add_argument("-o", "--outdir", default=str(F.DEFAULT_OUTDIR))


def run(args):
    blk = get_block(args.block)
    over = parse_params(blk, args.param)
    for board in args.board or ["ice40", "ecp5"]:
        r = F.fpga_build(args.block, board, over, small=not args.full, outdir=args.outdir)
        fmax = f"{r['fmax_mhz']:.1f} MHz" if r["fmax_mhz"] else "n/a"
        print(f"{r['block']} on {r['device']}: {r['luts']} LUT4, {r['flip_flops']} FFs "
              f"(of which {r['wrapper_flip_flops']} in the board wrapper), Fmax {fmax}, "
              f"build {r['build_s']} s")
    return 0
