"""``hyflexpim verilog BLOCK [-p NAME=VALUE ...] [-o FILE]``: Verilog of any RTL block."""

from ..blocks import all_blocks, get_block, parse_params
from ..verilog import check_module_name, to_verilog
from ._output import emit

NAME = "verilog"
HELP = "generate the Verilog of an RTL block (--list shows the blocks and parameters)"


def add_arguments(p):
    p.add_argument("block", nargs="?", help="block name (see --list)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="generator parameter, repeatable")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument("--name", help="top module name (default: hyflexpim_BLOCK)")
    p.add_argument("--list", action="store_true", help="list blocks and their parameters")


def run(args):
    if args.list or not args.block:
        for name, blk in sorted(all_blocks().items()):
            params = ", ".join(f"{k}={v!r}" for k, v in blk.params.items())
            print(f"{name:24s} {blk.doc}\n{'':24s} parameters: {params or '(none)'}")
        return 0
    blk = get_block(args.block)
    name = check_module_name(args.name or f"hyflexpim_{blk.name}")
    comp = blk.build(**parse_params(blk, args.param))
    text = to_verilog(comp, name)
    emit(text, args.output, f"{len(text.splitlines())} lines")
    return 0
