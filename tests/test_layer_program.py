# amaranth: UnusedElaboratable=no
"""The program of one transformer layer on a PU's layer engine (tb/layer_tb.py:
LayerProgram) run on the engine's reference model (EngineModel), the analog vectors
answered by the golden model's own programmed arrays: every output word equal to
models.transformer.ChipLayer.forward, bit for bit (small configuration: hidden 32, 2
heads, 8 tokens, FFN 64), noise off and on, causal, SVD-factored linears, a KV-cache
capacity that needs the P V guard shift; the layers it refuses."""

import os

import numpy as np
import pytest

from hyflexpim.models import transformer as tr
from hyflexpim.rtl.digital import LayerEngine, Op
from hyflexpim.tb.layer_tb import (EngineModel, LayerProgram, random_input, random_layer,
                                   reset_vectors)

SEED = int(os.environ.get("HYFLEXPIM_SEED", "1"))
FORMATS = tr.ChipFormats(attention_engine="integer")
NOISY = tr.Noise(ber=0.0404, seed=7)
T, D = 8, 32


def engine(**kw):
    return LayerEngine(port=3, addr_width=2, data_width=32, tag_width=6, degree=4,
                       n_arrays=4, arrays_per_module=2, word_bits=2, engine=kw)


def decode(words, dim, bpw=4):
    """INT8 rows and scales of the OUT words (per token: dim / bpw packed words, then
    s | e << 16), written out here independently of the code under test."""
    per = dim // bpw + 1
    assert len(words) % per == 0
    q, s, e = [], [], []
    for t in range(len(words) // per):
        row = words[t * per:(t + 1) * per]
        q.append([((w >> (8 * b)) & 0xFF) - (256 if (w >> (8 * b)) & 0x80 else 0)
                  for w in row[:-1] for b in range(bpw)])
        s.append(row[-1] & 0xFFFF)
        hi = row[-1] >> 16
        e.append(hi - 65536 if hi & 0x8000 else hi)
    return np.array(q), np.array(s), np.array(e)


def run_program(layer, x, eng, tokens=T):
    lp = LayerProgram(layer, eng, tokens, formats=FORMATS)
    em = EngineModel(eng, lp.analog_model())
    for addr, words in lp.image.items():
        em.write(addr, words)
    em.in_words = lp.in_words
    em.input_rows(lp.input_words(x))
    em.run(lp.program)
    return lp, em


def check_layer(seed, noise=None, **kw):
    print(f"seed {seed}")
    layer = random_layer(seed, noise=noise, formats=FORMATS, **kw)
    x = random_input(seed + 1, T, D)
    gold = layer.forward(x, tr.Run(FORMATS))
    reset_vectors(layer)
    lp, em = run_program(layer, x, engine())
    assert all(d == 0 and k.name == "ACTIVATION" for d, k, _, _ in em.out)
    tags = [t for _, _, t, _ in em.out]
    assert tags == list(range(lp.in_words)) * T
    q, s, e = decode([v for *_, v in em.out], D)
    np.testing.assert_array_equal(q, gold.q[0])
    np.testing.assert_array_equal(s, gold.s[0].astype(np.int64))
    np.testing.assert_array_equal(e, gold.e[0])
    # not a trivial output: the rows use the INT8 range
    assert np.abs(q).max() == 127 and len(np.unique(q)) > 100
    return lp, em, gold


def test_encoder_layer_bit_exact_noise_off():
    lp, em, _ = check_layer(SEED)
    assert len(lp.program) < lp.engine.params["prog_depth"]
    assert lp.memory_words <= lp.engine.params["mem_depth"]


def test_encoder_layer_bit_exact_noise_on():
    """Programming noise of the default device at 4.04 % MLC BER: the same arrays answer
    the golden model and the program, so the outputs still agree word for word; and
    they differ from the ideal layer's (the noise is really there)."""
    _, _, gold = check_layer(SEED + 10, noise=NOISY)
    ideal = random_layer(SEED + 10, formats=FORMATS)
    clean = ideal.forward(random_input(SEED + 11, T, D), tr.Run(FORMATS))
    assert (clean.q != gold.q).any()


def test_causal_layer_and_factored_linears():
    """Causal mask (query t sees keys 0..t) and V, FFN1 stored as SVD factors A then B
    (requantised between them on the engine)."""
    check_layer(SEED + 20, causal=True, factored=("v", "fc1"))


def test_pv_guard_shift():
    """A KV-cache capacity of 512 makes the P V dequantisation shift 2 (LDEXP by -2 of
    the scale, +2 on the exponent)."""
    assert tr.guard_shift(512, 2.0 / tr.QMAX * 1.001, 1.0 / tr.QMAX * 0.999) == 2
    check_layer(SEED + 30, max_seq=512)


def decoder_steps(seed, steps, noise=None, causal=True):
    """A decoder: a prompt of ``steps[0]`` tokens (``past = 0``: the cache starts), then
    one program per later entry appending that many tokens to the KV cache the digital
    PIM and the data memory kept, on one engine model; every step's output words equal
    to ``ChipLayer.forward`` with a ``KVCache`` run over the same steps."""
    print(f"seed {seed}")
    layer = random_layer(seed, noise=noise, formats=FORMATS, causal=causal,
                         factored=("fc1",))
    xs = [random_input(seed + 1 + i, n, D) for i, n in enumerate(steps)]
    cache = tr.KVCache(layer.config.max_seq)
    golds = [layer.forward(x, tr.Run(FORMATS), cache=cache) for x in xs]
    reset_vectors(layer)
    eng = engine()
    em, past, sends = None, 0, {}
    for x, n, gold in zip(xs, steps, golds):
        lp = LayerProgram(layer, eng, n, formats=FORMATS, past=past)
        assert lp.keys == past + n
        if em is None:
            em = EngineModel(eng, lp.analog_model())
            kv = lp.kv_scales
        assert lp.kv_scales == kv           # the same region in every step's program
        instrs = list(map(eng.instr.from_bits, lp.program))
        ops = [(Op(i.op), int(i.aux) & 3) for i in instrs]
        assert ops.count((Op.PIM, 0)) == (2 if past == 0 else 0)     # CLEAR per head
        # each matrix's vectors alternate parity across the programs, as its arrays count
        for i in instrs:
            if Op(i.op) == Op.SEND and int(i.n_w):
                sends.setdefault(int(i.imm), []).append(int(i.flags.parity))
        for addr, words in lp.image.items():
            assert not kv[0] <= addr < kv[3] + layer.config.max_seq * layer.config.heads
            em.write(addr, words)
        em.in_words = lp.in_words
        em.out = []
        em.input_rows(lp.input_words(x))
        em.run(lp.program)
        assert [len(em.pim[h][0]) for h in range(2)] == [past + n] * 2
        q, s, e = decode([v for *_, v in em.out], D)
        np.testing.assert_array_equal(q, gold.q[0])
        np.testing.assert_array_equal(s, gold.s[0].astype(np.int64))
        np.testing.assert_array_equal(e, gold.e[0])
        past += n
    assert len(sends) == len(lp.groups)
    for first, parities in sends.items():
        assert parities == [t % 2 for t in range(past)], f"matrix at chunk {first}"
    return layer, xs, golds


def test_decoder_steps_append_to_the_kv_cache():
    """A 5-token prompt, then three one-token steps (8 = max_seq keys
    at the end), causal; the last step's outputs differ from those of the same tokens
    run without the cached ones (the cache is really read)."""
    layer, xs, golds = decoder_steps(SEED + 40, [5, 1, 1, 1])
    alone = layer.forward(xs[-1], tr.Run(FORMATS))
    assert (alone.q != golds[-1].q).any()


def test_decoder_steps_noise_on_not_causal():
    """Programming noise at 4.04 % MLC BER, and a non-causal layer (every query sees every
    cached key)."""
    decoder_steps(SEED + 50, [3, 2, 1], noise=NOISY, causal=False)


def test_decoder_step_bounds():
    layer = random_layer(SEED, formats=FORMATS, causal=True)
    with pytest.raises(ValueError, match=r"^past must be an integer in 0\.\.7, not 8$"):
        LayerProgram(layer, engine(), 1, formats=FORMATS, past=8)
    with pytest.raises(ValueError, match=r"^tokens must be an integer in 1\.\.2, not 3$"):
        LayerProgram(layer, engine(), 3, formats=FORMATS, past=6)


def test_the_program_uses_the_engine_units():
    """Every operator the layer needs is in the program: the analog SENDs (one per token
    and vector group: Q, K and V side by side, then proj, fc1, fc2), the digital PIM,
    the SFU's row units."""
    layer = random_layer(SEED, formats=FORMATS)
    lp = LayerProgram(layer, engine(), T, formats=FORMATS)
    instrs = [lp.engine.instr.from_bits(b) for b in lp.program]
    ops = [Op(i.op) for i in instrs]
    assert ops.count(Op.SEND) == T * 4
    qkv = lp.groups[0]
    assert [(nm, off) for nm, _, _, off in qkv[2]] == [("q", 0), ("k", 32), ("v", 64)]
    assert [g[0] for g in lp.groups] == [0, 2, 4, 6] and lp.chunks == 10
    # one SEND a token to the shared chunks of Q, K, V binds all 96 results
    assert [(int(i.imm), int(i.n_w)) for i in instrs if Op(i.op) == Op.SEND][:2] == \
        [(0, 96), (0, 96)]
    assert ops.count(Op.SOFTMAX) == 2 and ops.count(Op.LNORM) == 2
    assert ops.count(Op.GELU) == 1 and ops.count(Op.PIM) == 2 * 4
    assert ops[-1] == Op.END and ops.count(Op.OUT) == 1


@pytest.mark.parametrize("change, msg", [
    (dict(post_ln=False), r"^the layer program runs post-LN layers only \(post_ln=True\)$"),
    (dict(heads=4), r"^engine head_dim must be 8 for this layer, not 16$"),
    (dict(eps=1e-3), r"^engine ln_eps must be \d+ for this layer, not \d+$"),
])
def test_layers_it_refuses(change, msg):
    layer = random_layer(SEED, formats=FORMATS)
    cfg = tr.LayerConfig(**{**dict(dim=32, heads=2, ffn=64, max_seq=8), **change})
    other = tr.ChipLayer(cfg, layer.linears, layer.ln[0][:2], layer.ln[1][:2])
    with pytest.raises(ValueError, match=msg):
        LayerProgram(other, engine(), T, formats=FORMATS)


def test_bad_tokens_and_formats():
    layer = random_layer(SEED, formats=FORMATS)
    with pytest.raises(ValueError, match=r"^tokens must be an integer in 1\.\.8, not 9$"):
        LayerProgram(layer, engine(), 9, formats=FORMATS)
    with pytest.raises(ValueError, match=r"^the layer program runs every operation in the "
                                         r"chip's formats \(float_ops must be empty"):
        LayerProgram(layer, engine(), T, formats=FORMATS.with_float("gelu"))
    with pytest.raises(ValueError, match=r"^engine sfu_lanes must be 2 for this layer, not 4$"):
        LayerProgram(layer, engine(), T, formats=tr.ChipFormats(lanes=2, slots=8))
    with pytest.raises(ValueError, match=r"^engine mem_depth|data memory"):
        LayerProgram(layer, engine(mem_depth=2048), T, formats=FORMATS)
