"""Digital PIM golden model: the SLC array model (writes, MAGIC NOR, reads, wear
counters, errors), the NOR-level matmul, the cycle accounting and the attention products."""

import itertools
import re

import numpy as np
import pytest

from hyflexpim.base import ParameterTypeError
from hyflexpim.models import digital_pim as D

SEED = 20261211


def rng_for(name):
    seed = SEED + sum(map(ord, name))
    print(f"{name}: seed {seed}")
    return np.random.default_rng(seed)


# ============================================================================ array model

def test_write_then_read_a_row_and_a_column_range():
    arr = D.DigitalArray(rows=4, cols=16)
    arr.write(2, 0, np.ones(16, dtype=int))
    arr.write(2, 5, [0, 1, 0])
    assert arr.read(2, 0, 16).tolist() == [1] * 5 + [0, 1, 0] + [1] * 8
    assert arr.read(2, 5, 3).tolist() == [0, 1, 0]
    assert arr.read(1, 0, 16).tolist() == [0] * 16          # never written: HRS reads 0
    assert arr.ops == 5 and arr.op_counts == {"write": 2, "nor": 0, "read": 3}


def test_nor_truth_table_in_one_row_column_parallel():
    arr = D.DigitalArray(rows=2, cols=12)
    a, b = [0, 0, 1, 1], [0, 1, 0, 1]
    arr.write(1, 0, a)
    arr.write(1, 4, b)
    arr.write(1, 8, [1, 1, 1, 1])                          # MAGIC: preset outputs to 1
    arr.nor(1, 0, 4, 8, 4)                                 # four gates in one cycle
    assert arr.read(1, 8, 4).tolist() == [1, 0, 0, 0]
    assert arr.read(1, 0, 8).tolist() == a + b             # operands are not disturbed


def test_nor_of_a_column_with_itself_is_not():
    arr = D.DigitalArray(rows=1, cols=8)
    arr.write(0, 0, [0, 1])
    arr.write(0, 4, [1, 1])
    arr.nor(0, 0, 0, 4, 2)
    assert arr.read(0, 4, 2).tolist() == [1, 0]


def test_write_and_flip_counters():
    arr = D.DigitalArray(rows=2, cols=8)
    arr.write(0, 0, [1, 1, 0])
    arr.write(0, 0, [1, 0, 0])
    assert arr.writes[0, 0, :4].tolist() == [2, 2, 2, 0]
    assert arr.flips[0, 0, :4].tolist() == [1, 2, 0, 0]
    arr.write(0, 4, [1, 1])
    arr.nor(0, 0, 1, 4, 2)                                 # NOR pulses count on outputs only
    assert arr.writes[0, 0].tolist() == [2, 2, 2, 0, 2, 2, 0, 0]
    assert arr.flips[0, 0].tolist() == [1, 2, 0, 0, 2, 1, 0, 0]
    assert arr.read(0, 4, 2).tolist() == [0, 1]


def test_lockstep_arrays_take_their_own_data_and_enable():
    bank = D.DigitalArray(rows=2, cols=8, arrays=3)
    bank.write(0, 0, [[1, 0], [0, 1], [1, 1]])
    bank.write(0, 0, [0, 0], en=[False, True, False])
    assert bank.read(0, 0, 2).tolist() == [[1, 0], [0, 0], [1, 1]]
    assert bank.writes[:, 0, 0].tolist() == [1, 2, 1]
    bank.write(0, 4, [1, 1])
    bank.nor(0, 0, 1, 4, 1, en=[True, True, False])
    assert bank.read(0, 4, 1)[:, 0].tolist() == [0, 1, 1]


@pytest.mark.parametrize("call,message", [
    (lambda a: a.write(4, 0, [1]), r"^row must be an integer in 0\.\.3, not 4$"),
    (lambda a: a.write(-1, 0, [1]), r"^row must be an integer in 0\.\.3, not -1$"),
    (lambda a: a.write(0, 14, [1, 0, 1]), r"^count must be an integer in 1\.\.2, not 3$"),
    (lambda a: a.write(0, 16, [1]), r"^col must be an integer in 0\.\.15, not 16$"),
    (lambda a: a.write(0, 0, [0, 2]), r"^bits must be 0 or 1, not 2$"),
    (lambda a: a.write(0, 0, [-1]), r"^bits must be 0 or 1, not -1$"),
    (lambda a: a.write(0, 0, [0.5]), r"^bits must be 0 or 1, not float64 data$"),
    (lambda a: a.read(0, 10, 7), r"^count must be an integer in 1\.\.6, not 7$"),
    (lambda a: a.nor(0, 0, 4, 2, 3), r"^NOR output columns 2\.\.4 overlap operand columns "
                                     r"a = 0\.\.2$"),
    (lambda a: a.nor(0, 0, 4, 6, 3), r"^NOR output columns 6\.\.8 overlap operand columns "
                                     r"b = 4\.\.6$"),
    (lambda a: a.nor(0, 0, 4, 14, 3), r"^out must be an integer in 0\.\.15, not 14$|"
                                      r"^count must be an integer in 1\.\.2, not 3$"),
    (lambda a: a.write(0, 0, [1], en=[1, 1]), r"^en must be 1 booleans \(one per array\)"),
])
def test_bad_operations_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(D.DigitalArray(rows=4, cols=16))


def test_bad_row_type_is_a_type_error():
    with pytest.raises(ParameterTypeError, match=r"^row must be an integer in 0\.\.3, not 1\.0$"):
        D.DigitalArray(rows=4, cols=16).write(1.0, 0, [1])


def test_strict_nor_needs_written_operands_and_preset_outputs():
    arr = D.DigitalArray(rows=2, cols=12)
    arr.write(0, 0, [1, 0])
    arr.write(0, 8, [1, 1])
    with pytest.raises(ValueError, match=r"^NOR operand b: column 4 of row 0 was never written$"):
        arr.nor(0, 0, 4, 8, 2)
    arr.write(0, 4, [0, 0])
    arr.write(0, 8, [1, 0])
    with pytest.raises(ValueError, match=r"^NOR output column 9 of row 0 is not preset to 1"):
        arr.nor(0, 0, 4, 8, 2)
    loose = D.DigitalArray(rows=1, cols=8, strict=False)
    loose.nor(0, 0, 1, 4, 1)                               # unpreset output stays 0 (MAGIC)
    assert loose.read(0, 4, 1).tolist() == [0]


@pytest.mark.parametrize("kw,exc,message", [
    (dict(rows=0), ValueError, r"^rows must be an integer in 1\.\.65536, not 0$"),
    (dict(cols=True), ParameterTypeError, r"^cols must be an integer in 1\.\.65536, not True$"),
    (dict(arrays=0), ValueError, r"^arrays must be an integer in 1\.\.4096, not 0$"),
    (dict(strict=1), ParameterTypeError, r"^strict must be True or False, not 1$"),
])
def test_bad_array_geometry(kw, exc, message):
    with pytest.raises(exc, match=message):
        D.DigitalArray(**kw)


# ============================================================================ products

def test_product_weights_rebuild_every_int8_product():
    x = np.arange(-128, 128)
    bits = D._element_bits(x)                                        # (256, 8)
    w = D.product_weights()
    prod = np.einsum("ai,bj,ij->ab", bits.astype(np.int64), bits.astype(np.int64), w)
    assert np.array_equal(prod, np.outer(x, x))


CORNERS = [-128, -127, -1, 0, 1, 127]


def test_matmul_every_corner_pair_is_exact():
    x = np.array(CORNERS)
    a = np.repeat(x, len(x))[:, None]                                # every (a, b) pair
    b = np.tile(x, (1, 1))
    y = D.matmul(a, b, arrays=2, cols=64)
    assert np.array_equal(y, a @ b)
    assert y.min() == -128 * 127 and y.max() == 128 * 128


@pytest.mark.parametrize("value", [-128, 127, 0, -1])
@pytest.mark.parametrize("split", ["cols", "rows"])
def test_matmul_all_equal_operands(value, split):
    a = np.full((3, 40), value)
    b = np.full((40, 5), -128 if value != -128 else 127)
    assert np.array_equal(D.matmul(a, b, arrays=4, cols=128, split=split), a @ b)


@pytest.mark.parametrize("p,q,r,arrays,cols", [
    (3, 5, 7, 4, 64), (2, 64, 33, 4, 1024), (4, 17, 3, 8, 32), (5, 40, 9, 3, 128),
    (1, 1, 1, 1, 16), (2, 130, 2, 5, 256),
])
@pytest.mark.parametrize("split", ["cols", "rows", "auto"])
def test_matmul_random_is_exact_and_counts_cycles(p, q, r, arrays, cols, split):
    rng = rng_for(f"matmul{p}{q}{r}{arrays}{cols}{split}")
    a = rng.integers(-128, 128, (p, q))
    b = rng.integers(-128, 128, (q, r))
    y, info = D.matmul(a, b, arrays=arrays, cols=cols, split=split, stats=True)
    assert y.dtype == np.int64 and np.array_equal(y, a @ b)
    assert info["cycles"] == D.cycles(p, q, r, arrays, cols=cols, split=split)
    bank = info["bank"]
    assert info["cycles"] == bank.op_counts["nor"] * D.STEP_CYCLES + (
        bank.op_counts["read"] - bank.op_counts["nor"])


def test_matmul_extremes_do_not_overflow_int32():
    a = np.full((1, 1024), -128)
    b = np.full((1024, 1), -128)
    y = D.matmul(a, b, arrays=16)
    assert y[0, 0] == 1024 * 16384 and y[0, 0] < 2 ** 31


@pytest.mark.parametrize("a,b,message", [
    (np.zeros((2, 3), int), np.zeros((4, 2), int), r"^a \(p x q\) and b \(q x r\) do not match"),
    (np.full((1, 1), 128), np.zeros((1, 1), int), r"^a must hold INT8 values in -128\.\.127, not 128\.\.128$"),
    (np.zeros((1, 1), int), np.full((1, 1), 0.5), r"^b must hold integers, not float64$"),
])
def test_matmul_bad_operands(a, b, message):
    with pytest.raises(ValueError, match=message):
        D.matmul(a.astype(a.dtype), b)


def test_matmul_bad_split():
    with pytest.raises(ValueError, match=r"^split must be one of 'auto', 'cols', 'rows', not 'x'$"):
        D.matmul(np.zeros((1, 1), int), np.zeros((1, 1), int), split="x")


# ============================================================================ cycles

def test_published_accounting():
    assert D.published_products_per_cycle() == pytest.approx(273.0667, abs=1e-4)
    lay = D.Layout()
    assert (lay.slots, lay.elements_per_row, lay.windows) == (341, 128, 7)
    # one GPT-2 query against 1024 keys: 4 tokens x 64 products per array
    assert D.run_cycles(256) == 5 * 49 + 2
    assert D.cycles(1, 64, 1024) == 247
    # steady state: 341 NORs per array per 5-cycle step
    big = D.cycles(1, 64, 1024 * 256, split="cols")
    assert 64 * 1024 * 256 / big == pytest.approx(256 * 341 / 64 / 5 * (1 - 1 / 121), rel=1e-3)


def test_cycles_scale_with_rows_of_a_and_auto_split():
    assert D.cycles(7, 64, 1024) == 7 * D.cycles(1, 64, 1024)
    assert D.cycles(0, 64, 1024) == 0
    # Q K^T (q = d, r = seq) stripes columns, P V (q = seq, r = d) stripes rows
    assert D.cycles(1, 64, 1024) == D.cycles(1, 64, 1024, split="cols")
    assert D.cycles(1, 1024, 64) == D.cycles(1, 1024, 64, split="rows")
    assert D.cycles(1, 1024, 64, split="cols") > D.cycles(1, 1024, 64)


@pytest.mark.parametrize("call,exc,message", [
    (lambda: D.cycles(-1, 1, 1), ValueError, r"^p must be an integer >= 0, not -1$"),
    (lambda: D.cycles(1, 0, 1), ValueError, r"^q must be a positive integer, not 0$"),
    (lambda: D.cycles(1, 1, 1, arrays=0), ValueError, r"^arrays must be an integer in 1\.\.1024, not 0$"),
    (lambda: D.cycles(1, 1, 1, cols=48), ValueError, r"^cols must be a power of two in 16\.\.4096, not 48$"),
    (lambda: D.cycles(1.5, 1, 1), ParameterTypeError, r"^p must be an integer >= 0, not 1\.5$"),
])
def test_cycles_bad_parameters(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


# ============================================================================ layout, module

@pytest.mark.parametrize("kw,message", [
    (dict(cols=48), r"^cols must be a power of two in 16\.\.4096, not 48$"),
    (dict(arrays=0), r"^arrays must be an integer in 1\.\.1024, not 0$"),
    (dict(head_dim=6), r"^head_dim must be an integer in 7\.\.1024, not 6$"),
    (dict(max_seq=0), r"^max_seq must be an integer in 1\.\.65536, not 0$"),
    (dict(heads=65), r"^heads must be an integer in 1\.\.64, not 65$"),
    (dict(rows=4), r"^rows must be an integer in 5\.\.65536, not 4$"),
])
def test_layout_bad_parameters(kw, message):
    with pytest.raises(ValueError, match=message):
        D.Layout(**kw)


def test_layout_regions():
    lay = D.Layout(arrays=4, rows=40, cols=32, head_dim=4, max_seq=16, heads=2)
    assert (lay.slots, lay.elements_per_row, lay.windows) == (10, 4, 2)
    assert (lay.tokens_per_array, lay.region_rows, lay.storage_rows) == (4, 4, 16)
    assert [lay.k_base(1), lay.v_base(1), lay.compute_rows] == [8, 12, 24]


def _module(**kw):
    return D.DigitalPimModule(**{**dict(arrays=4, rows=64, cols=64, head_dim=4,
                                        max_seq=24, heads=2), **kw})


def test_module_scores_and_context_with_causal_limits():
    rng = rng_for("module")
    mod = _module()
    k = rng.integers(-128, 128, (11, 4))
    v = rng.integers(-128, 128, (11, 4))
    mod.append(k[:5], v[:5], head=1)                 # encoder: a sequence at once
    for t in range(5, 11):                           # decoder: one token at a time
        mod.append(k[t], v[t], head=1)
    q = rng.integers(-128, 128, 4)
    p = rng.integers(-128, 128, 11)
    for n in (1, 3, 4, 5, 8, 11):
        ops = mod.bank.ops
        s = mod.scores(q, n_keys=n, head=1)
        assert mod.bank.ops - ops == mod.scores_cycles(n)
        assert np.array_equal(s[:n], k[:n] @ q) and (s[n:] == D.MASKED).all()
        ops = mod.bank.ops
        assert np.array_equal(mod.context(p, n_keys=n, head=1), p[:n] @ v[:n])
        assert mod.bank.ops - ops == mod.scores_cycles(n)
    assert mod.lengths == [0, 11]


def test_module_stale_cache_rows_never_leak_into_products():
    rng = rng_for("stale")
    mod = _module(heads=1)
    mod.append(rng.integers(-128, 128, (24, 4)), np.full((24, 4), 127))
    mod.clear()
    k, v = rng.integers(-128, 128, (6, 4)), rng.integers(-128, 128, (6, 4))
    mod.append(k, v)
    p = np.full(6, -128)
    assert np.array_equal(mod.context(p), p @ v)
    assert np.array_equal(mod.scores(k[0]), k @ k[0])


@pytest.mark.parametrize("call,message", [
    (lambda m: m.append(np.zeros((25, 4), int), np.zeros((25, 4), int)),
     r"^KV cache of head 0 holds at most 24 tokens: 0 \+ 25 do not fit$"),
    (lambda m: m.append(np.zeros((2, 3), int), np.zeros((2, 3), int)),
     r"^k and v must both have shape \(n, 4\)"),
    (lambda m: m.scores(np.zeros(4, int)), r"^KV cache of head 0 is empty$"),
    (lambda m: m.clear(head=2), r"^head must be an integer in 0\.\.1, not 2$"),
])
def test_module_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(_module())


def test_module_n_keys_range():
    mod = _module()
    mod.append(np.ones((3, 4), int), np.ones((3, 4), int))
    with pytest.raises(ValueError, match=r"^n_keys must be an integer in 1\.\.3, not 4$"):
        mod.scores(np.ones(4, int), n_keys=4)
    with pytest.raises(ValueError, match=r"^p must have shape \(3,\), not \(4,\)$"):
        mod.context(np.ones(4, int))


# ============================================================================ attention

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seq,d,n_q", [(9, 8, 9), (20, 7, 3), (33, 16, 1)])
def test_attention_head_products(causal, seq, d, n_q):
    rng = rng_for(f"head{causal}{seq}{d}{n_q}")
    q = rng.integers(-128, 128, (n_q, d))
    k = rng.integers(-128, 128, (seq, d))
    v = rng.integers(-128, 128, (seq, d))
    s_exact = q @ k.T
    pos = np.arange(seq - n_q, seq)
    mask = np.arange(seq)[None, :] > pos[:, None] if causal else np.zeros((n_q, seq), bool)

    def probs(s):
        assert ((s == D.MASKED) == mask).all()
        return np.where(mask, 0, np.clip(s >> 10, -128, 127))

    s, p, o = D.attention_head(q, k, v, probs, causal, arrays=4, cols=64)
    assert np.array_equal(s, np.where(mask, D.MASKED, s_exact))
    assert np.array_equal(o, np.where(mask, 0, p) @ v)
    assert D.scores_cycles(n_q, seq, d, causal, arrays=4, cols=64) == sum(
        D.run_cycles(-(-(int(x) + 1 if causal else seq) // 4) * d, cols=64) for x in pos)


def test_context_ignores_masked_probabilities():
    rng = rng_for("masked p")
    p = rng.integers(-128, 128, (4, 4))
    v = rng.integers(-128, 128, (4, 8))
    o = D.context(p, v, causal=True, arrays=2, cols=64)
    assert np.array_equal(o, np.tril(p) @ v)


def test_non_causal_head_cycles_equal_matmul_cycles():
    assert D.scores_cycles(128, 128, 64) == D.cycles(128, 64, 128, split="cols")
    assert D.context_cycles(128, 128, 64) == D.cycles(128, 128, 64, split="rows")


# ============================================================================ commands

PUBLISHED = dict(arrays=256, cols=1024, head_dim=64, lanes=64, max_seq=1024)


def test_command_cycles_published_size_by_hand():
    """BERT-Base sizes worked out by hand: run_cycles(64) = 5 ceil(4096 / 341) + 1 = 66."""
    assert D.command_cycles("clear", **PUBLISHED) == 1
    assert D.command_cycles("append", 0, 5, **PUBLISHED) == 1
    # 128 tokens of 64 elements, all in local slot 0 of their arrays: 1 row each, 1 beat
    assert D.command_cycles("append", 128, 0, **PUBLISHED) == 1 + 128 * (2 + 2)
    # header, 1 q beat, run 66, drain 3, TAIL: 1 beat of keys (all computed) -> 1 check
    assert D.command_cycles("scores", 0, 128, **PUBLISHED) == 1 + 1 + 66 + 3 + 1
    # header, 2 p beats, run, drain, reduction 8 + 1, one result beat (64 <= 256 lanes)
    assert D.command_cycles("context", 0, 128, **PUBLISHED) == 1 + 2 + 66 + 3 + 9 + 1
    # causal: 1 key of 1024 -> one local token, three masked beats after it
    assert D.command_cycles("scores", 1, 1024, **PUBLISHED) == 1 + 1 + 66 + 3 + (4 - 1 + 1)
    # empty cache: no run, no drain of the S&A
    assert D.command_cycles("scores", 0, 0, **PUBLISHED) == 1 + 1 + 1 + 1
    assert D.command_cycles("context", 0, 0, **PUBLISHED) == 1 + 1 + 9 + 1


def test_append_cycles_count_the_storage_rows_touched():
    kw = dict(arrays=2, cols=32, head_dim=3, lanes=1, max_seq=9)     # E = 4 per row
    # token t sits at local slot t // 2: elements at 0, 0, 3, 3, 6 -> rows 1, 1, 2, 2, 2
    per_token = [2 * 3 + 2 * r for r in (1, 1, 2, 2, 2)]
    assert D.command_cycles("append", 5, 0, **kw) == 1 + sum(per_token)
    assert D.command_cycles("append", 1, 2, **kw) == 1 + per_token[2]
    # a full cache takes the beats and drops the token: one cycle per row
    assert D.command_cycles("append", 2, 9, **kw) == 1 + 2 * (2 * 3 + 2)


def test_head_command_cycles_sum_the_commands():
    kw = dict(arrays=4, cols=64, lanes=2)
    c = lambda cmd, arg, length: D.command_cycles(cmd, arg, length, head_dim=8, max_seq=10, **kw)
    per_query = c("scores", 0, 10) + c("context", 0, 10)
    assert D.head_command_cycles(10, 10, 8, **kw) == c("append", 10, 0) + 10 * per_query
    # decode step: one new token over a cache of 9
    assert D.head_command_cycles(1, 10, 8, **kw) == c("append", 1, 9) + per_query
    causal = c("append", 10, 0) + sum(c("scores", i + 1, 10) + c("context", i + 1, 10)
                                      for i in range(10))
    assert D.head_command_cycles(10, 10, 8, True, **kw) == causal
    assert D.head_command_cycles(0, 10, 8, **kw) == 0


@pytest.mark.parametrize("bad, match", [
    (dict(cmd="run"), "cmd must be one of"),
    (dict(cmd=2), "cmd must be one of"),
    (dict(arrays=3), "arrays"),
    (dict(length=1025), "length"),
    (dict(arg=-1), "arg"),
    (dict(lanes=0), "lanes"),
])
def test_command_cycles_refuses_bad_input(bad, match):
    kw = dict(cmd="scores", arg=0, length=4, **PUBLISHED)
    kw.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        D.command_cycles(kw.pop("cmd"), kw.pop("arg"), kw.pop("length"), **kw)


# ============================================================================ wear

def test_writes_per_inference_bound_holds_on_the_model():
    rng = rng_for("wear")
    kw = dict(arrays=4, rows=24, cols=64, head_dim=4, max_seq=12, heads=1)
    mod = D.DigitalPimModule(**kw)
    seq = 12
    k, v = rng.integers(-128, 128, (seq, 4)), rng.integers(-128, 128, (seq, 4))
    mod.append(k, v)
    for i in range(seq):                         # causal: query i sees keys 0..i
        mod.scores(k[i], n_keys=i + 1)
        mod.context(rng.integers(-128, 128, seq), n_keys=i + 1)
    w = D.writes_per_inference(heads=1, head_dim=4, seq=seq, causal=True, modules=1,
                               arrays=4, rows=24, cols=64)
    lay = mod.layout
    S = lay.slots
    assert w["steps"] == mod.bank.op_counts["nor"]
    compute = mod.bank.writes[:, lay.storage_rows:]
    assert compute[:, :, 2 * S:3 * S].max() <= w["out_writes"]
    assert compute[:, :, :2 * S].max() <= w["operand_writes"]
    assert compute[0, :, 2 * S:3 * S].max() >= w["out_writes"] - 2
    assert mod.bank.writes[:, :lay.storage_rows].max() == w["kv_writes"]


def test_writes_per_inference_published_cases():
    bert = D.writes_per_inference(heads=12, head_dim=64, seq=128, causal=False)
    gpt2 = D.writes_per_inference(heads=12, head_dim=64, seq=1024, causal=True)
    assert (bert["steps"], bert["compute_rows"], bert["out_writes"]) == (6656, 1020, 14)
    assert (gpt2["steps"], gpt2["compute_rows"], gpt2["out_writes"]) == (126976, 1016, 250)
