# amaranth: UnusedElaboratable=no
"""A whole encoder layer on a processing unit (tb/pu_layer_tb.py): the layer engine in the
PU's digital module, the Q/K/V, output and FFN projections on the PU's own analog arrays
(64 x 128, the golden model's programmed cells answering the comparators), partial sums
through the aggregator; every output word equal to models.transformer.ChipLayer.forward.
Slow: the arrays convert column by column (about 6,000-7,000 cycles per vector).
Placement and configuration checks run in the default suite."""

import os

import pytest

from hyflexpim.sim.blocks import get_block
from hyflexpim.sim.cocotb_runner import run_block
from hyflexpim.tb import pu_layer_tb as T
from hyflexpim.tb.layer_tb import LayerProgram, layer_case

#: 2 analog modules x 12 arrays of 64 x 128 (the published array), the layer engine,
#: quick crossbar reads, 2-bit global addresses.
PU_LAYER = dict(get_block("pu").resolve(False, n_modules=2, arrays_per_module=12,
                                        read_cycles=2, max_parts=4, ext_addr_width=2),
                engine={})


#: The same PUs, two of them on the chip's global bus.
CHIP_LAYERS = dict(get_block("chip").resolve(False, n_pus=2, n_modules=2, arrays_per_module=12,
                                             read_cycles=2, max_parts=4), engine={})


def _pu():
    return get_block("pu").factory(**PU_LAYER)


def _run(tb_params, report=None, chip=False):
    seed = int(os.environ.get("HYFLEXPIM_SEED", "1"))
    print(f"cocotb seed: HYFLEXPIM_SEED={seed}")
    env = {"HYFLEXPIM_SEED": seed}
    if report:
        env["HYFLEXPIM_PU_REPORT"] = report
    return run_block("chip" if chip else "pu", test_module="hyflexpim.tb.pu_layer_tb",
                     params=CHIP_LAYERS if chip else PU_LAYER, small=False,
                     tb_params=tb_params, extra_env=env,
                     testcase=["chip_two_layers" if chip else "pu_layer"])


def test_placement_and_configuration():
    """Every tile on its own array, in the matrix's row chunk; the masks cover exactly the
    arrays of each chunk; every array's table names the tile's output columns."""
    from hyflexpim.rtl.analog import Mode
    from hyflexpim.rtl.bus import Kind
    from hyflexpim.rtl.digital import DigReg
    from hyflexpim.rtl.pu import ArrayReg, ENTRY_USED
    pu = _pu()
    eng = pu.digital_module(0).make_engine()
    for seed in (1, 2, 3):
        print(f"seed {seed}")
        layer, _, _, fm = layer_case(seed, True, tokens=2)
        lp = LayerProgram(layer, eng, 2, formats=fm)
        placed = T.place(lp, pu)
        tiles = [t for *_, mat, _, _ in lp.matrices for t in mat.programs[0].tiles]
        assert [t for _, t, _, _ in placed] == tiles
        assert [a for a, *_ in placed] == list(range(len(tiles)))
        # each vector group's outputs (Q, K, V side by side at offsets 0, 32, 64) are
        # covered once per row chunk by its tiles
        for first, k, members in lp.groups:
            n = sum(mat.n for *_, mat, _ in members)
            for c in range(first, first + k):
                cols = sorted(off + int(j) for _, t, cc, off in placed if cc == c
                              for j in t.out_idx)
                assert cols == list(range(n)), (members[0][0], c)
        assert [off for *_, off in lp.groups[0][2]] == [0, 32, 64]
        cfg = T.layer_config(lp, pu, placed)
        dig = pu.digital_port(0)
        masks, tables, modes = {}, {}, {}
        for dest, kind, tag, word in cfg:
            assert dest == T.PU_DEST and kind == Kind.CONFIG
            value, reg, target = word & 0xFFFF, word >> 16 & 0xFF, word >> 24 & 0xFF
            j = reg - DigReg.MASK.value
            if target == dig and 0 <= j < -(-pu.n_arrays // 16):
                masks[tag] = masks.get(tag, 0) | value << (16 * j)
            if 1 <= target <= pu.n_modules:
                a = (target - 1) * PU_LAYER["arrays_per_module"] + tag
                if reg == ArrayReg.MODE.value:
                    modes[a] = value
                elif value & ENTRY_USED:
                    assert reg - ArrayReg.TABLE.value == len(tables.get(a, []))
                    tables.setdefault(a, []).append(value & ~ENTRY_USED)
        want = {}
        for a, t, c, off in placed:
            want[c] = want.get(c, 0) | 1 << a
            assert tables[a] == [off + int(j) for j in t.out_idx]
            assert modes[a] == (Mode.MLC if t.mode == "mlc" else Mode.SLC).value
        assert masks == want
        assert set(tables) == set(modes) == set(range(len(placed)))


def test_placement_refuses_what_does_not_fit():
    pu = get_block("pu").factory(**dict(PU_LAYER, arrays_per_module=4))
    eng = pu.digital_module(0).make_engine()
    layer, _, _, fm = layer_case(1, False, tokens=2)
    lp = LayerProgram(layer, eng, 2, formats=fm)
    with pytest.raises(ValueError, match=r"^the layer needs \d+ arrays; the PU has 8$"):
        T.place(lp, pu)


@pytest.mark.slow
def test_encoder_layer_on_the_pu_noise_on():
    passed, _ = _run(dict(tokens=2, noise=True))
    assert passed == 1


@pytest.mark.slow
def test_two_encoder_layers_on_two_pus_of_the_chip():
    passed, _ = _run(dict(tokens=1, noise=True), chip=True)
    assert passed == 1
