"""``hyflexpim registers [-o FILE]``: the CONFIG register maps of every unit, as Markdown."""

import sys
from pathlib import Path

from ..blocks import all_register_maps
from ...rtl.registers import markdown

NAME = "registers"
HELP = "write the CONFIG register maps of every unit as Markdown (docs/registers.md)"


def add_arguments(p):
    p.add_argument("-o", "--output", help="output file (default: stdout)")


def run(args):
    text = markdown(all_register_maps())
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
