"""``hyflexpim registers [-o FILE]``: the CONFIG register maps of every unit, as Markdown."""

from ..blocks import all_register_maps
from ...rtl.registers import markdown
from ._output import emit

NAME = "registers"
HELP = "write the CONFIG register maps of every unit as Markdown (docs/registers.md)"


def add_arguments(p):
    p.add_argument("-o", "--output", help="output file (default: stdout)")


def run(args):
    emit(markdown(all_register_maps()), args.output)
    return 0
