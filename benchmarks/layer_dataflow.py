"""Draw the dataflow of one encoder layer on a PU (docs/layer_dataflow.svg) from the
layer program itself (tb/layer_tb.py: LayerProgram.phases): one box per step, coloured
by the unit that does the work, with the operation, the output format and the engine
instructions of that step (counted by opcode from the compiled program).

    .venv/bin/python benchmarks/layer_dataflow.py [--out docs/layer_dataflow.svg]
"""

import argparse
from collections import Counter
from html import escape
from pathlib import Path

from hyflexpim.models import transformer as tr
from hyflexpim.rtl.digital import DigitalModule, Op
from hyflexpim.tb.layer_tb import LAYER_MODULE, LayerProgram, random_layer

COLOURS = {"analog": "#f6c89f", "digital PIM": "#a8d5ba", "SFU": "#b5c7ee", "bus": "#dddddd"}


def colour(units):
    for key in ("analog", "digital PIM", "SFU"):
        if key in units:
            return COLOURS[key]
    return COLOURS["SFU"] if "engine" in units else COLOURS["bus"]


def program():
    dig = DigitalModule(**LAYER_MODULE)
    dig._MustUse__silence = True
    fm = tr.ChipFormats(attention_engine="integer")
    return LayerProgram(random_layer(0, formats=fm), dig.make_engine(), 8, formats=fm)


def draw(lp):
    lay = lp.engine.instr
    ops = [Op(lay.from_bits(b).op).name for b in lp.program]
    cfg = lp.layer.config
    W, box_h, gap, top = 980, 62, 14, 70
    n = len(lp.phases)
    H = top + n * (box_h + gap) + 70
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="20" y="28" font-size="17" font-weight="bold">One post-LN encoder layer '
           f'on a PU: hidden {cfg.dim}, {cfg.heads} heads of {cfg.head_dim}, {lp.T} tokens, '
           f'FFN {cfg.ffn}</text>',
           f'<text x="20" y="48" fill="#444">{len(lp.program)} layer-engine instructions, '
           f'{sum(o == "SEND" for o in ops)} analog vectors, {lp.memory_words} words of data '
           f'memory (drawn from tb/layer_tb.py LayerProgram by benchmarks/layer_dataflow.py)'
           f'</text>',
           '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="4" refY="4" '
           'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>']
    for k, ph in enumerate(lp.phases):
        y = top + k * (box_h + gap)
        counts = Counter(ops[ph["first"]:ph["last"] + 1])
        instr = ", ".join(f"{c} {o}" for o, c in sorted(counts.items(), key=lambda t: -t[1]))
        out.append(f'<rect x="20" y="{y}" width="{W - 40}" height="{box_h}" rx="6" '
                   f'fill="{colour(ph["units"])}" stroke="#555"/>')
        out.append(f'<text x="32" y="{y + 19}" font-weight="bold">{escape(ph["name"])}</text>')
        out.append(f'<text x="250" y="{y + 19}">{escape(ph["units"])}</text>')
        out.append(f'<text x="{W - 32}" y="{y + 19}" text-anchor="end" font-weight="bold">'
                   f'-&gt; {escape(ph["format"])}</text>')
        out.append(f'<text x="32" y="{y + 37}">{escape(ph["operation"])}</text>')
        out.append(f'<text x="32" y="{y + 54}" fill="#333" font-size="11">instructions '
                   f'{ph["first"]}..{ph["last"]}: {escape(instr)}</text>')
        if k + 1 < n:
            out.append(f'<line x1="{W // 2}" y1="{y + box_h}" x2="{W // 2}" '
                       f'y2="{y + box_h + gap - 2}" stroke="#555" marker-end="url(#a)"/>')
    y = top + n * (box_h + gap) + 10
    x = 20
    for name, c in COLOURS.items():
        label = {"analog": "analog arrays (INT8 x INT8 -> INT32)",
                 "digital PIM": "digital PIM (attention products)",
                 "SFU": "engine: SFU operators (FP16)", "bus": "bus / memory"}[name]
        out.append(f'<rect x="{x}" y="{y}" width="16" height="16" fill="{c}" stroke="#555"/>')
        out.append(f'<text x="{x + 22}" y="{y + 13}">{escape(label)}</text>')
        x += 240
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/layer_dataflow.svg")
    args = ap.parse_args()
    svg = draw(program())
    Path(args.out).write_text(svg)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
