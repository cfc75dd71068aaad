"""Tests of the ``triton`` backend of ``linear_memory`` against the float64 token-loop reference.

On a machine without a GPU the kernels run under Triton's interpreter (conftest sets
TRITON_INTERPRET=1; ~0.5 ms per program and per op, so shapes are tiny: B·H ≤ 2, T ≤ 40,
C = 16, K, V ∈ {16, 32}; chunk_size 1 on tiles of 16 tokens). Outputs are NaN-poisoned before the kernels run (conftest sets
NESTED_KERNELS_POISON=1). Every case compares outputs, final states (M, S, M_chunk, position) and
the gradients of a random functional of all of them with respect to every floating-point input
(q, k, v, eta, gates, M0, S0, M_chunk0) — SPEC §7 bounds: 2e-3 in float32, 2e-2 in float16. bf16 is
not tested under the interpreter (its bf16 arithmetic is broken); ``-m gpu`` runs a bf16 case.
"""
from __future__ import annotations

import pytest
import torch

from nested_kernels.ops.linear_memory import LinearMemoryState, linear_memory
from nested_kernels.ops.linear_memory import api, triton_backend
from nested_kernels.testing import assert_run_close, linear_memory_draw, projection_loss, rel_error, tolerance

pytest.importorskip("triton")
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from nested_kernels.core.triton_helpers import round_tf32  # noqa: E402

F64 = torch.float64
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make(B=1, T=37, H=1, K=16, V=16, *, gates="abm", N=None, seed=0, resume=None, C=16):
    """``testing.linear_memory_draw``: float64 inputs and an initial state (M0, S0) or, with
    ``resume`` (positions per sequence), one that resumes mid-chunk."""
    return linear_memory_draw(B, T, H, K, V, gates, N=N, resume=resume, seed=seed)


def run(backend, x, st, dtype, **kw):
    """(outputs dict, gradients dict) of a fixed random functional of o and the final state."""
    dev = "cpu" if backend in ("reference", "torch") else DEVICE
    dt = F64 if backend == "reference" else dtype
    leaves = {n: t.to(dev, dt).requires_grad_(True) for n, t in x.items() if t is not None}
    xx = {n: leaves.get(n) for n in x}
    sl = {n: t.to(dev, F64 if backend == "reference" else torch.float32).requires_grad_(True)
          for n, t in st.items() if t is not None and n != "position"}
    leaves.update({n + "0": t for n, t in sl.items()})
    if "position" in st:
        init = LinearMemoryState(sl["M"], sl.get("S"), sl["M_chunk"], st["position"].to(dev), kw["chunk_size"])
    else:
        init = (sl["M"], sl.get("S"))
    cu = kw.pop("cu_seqlens", None)
    o, fs = linear_memory(xx["q"], xx["k"], xx["v"], xx["eta"], xx["log_alpha"], xx["beta"], xx["mu"],
                          initial_state=init, output_final_state=True, backend=backend,
                          cu_seqlens=None if cu is None else cu.to(dev), **kw)
    outs = dict(o=o, M=fs.M, M_chunk=fs.M_chunk)
    if fs.S is not None:
        outs["S"] = fs.S
    grads = torch.autograd.grad(projection_loss(outs), list(leaves.values()))
    outs["position"] = fs.position
    return outs, dict(zip(leaves, grads))


def check(x, st, dtype=torch.float32, **kw):
    kw.setdefault("chunk_size", 16)
    tol = tolerance("triton", dtype)
    got, dgot = run("triton", x, st, dtype, **dict(kw))
    ref, dref = run("reference", x, st, dtype, **dict(kw))
    assert got["o"].dtype == dtype and got["M"].dtype == torch.float32
    assert_run_close(got, dgot, ref, dref, tol)


# pruned option grid: every gate set, target and read appears, in pairs
GRID = [
    # gates, target, read
    ("", "external", "after"),
    ("a", "external", "before"),
    ("ab", "external", "chunk"),
    ("abm", "external", "after"),
    ("m", "external", "before"),
    ("bm", "external", "after"),
    ("", "self", "chunk"),
    ("ab", "self", "after"),
    ("abm", "self", "before"),
    ("am", "self", "chunk"),
]


@pytest.mark.parametrize("gates,target,read", GRID)
def test_matches_reference(gates, target, read):
    x, st = make(T=37, gates=gates, seed=len(gates))
    check(x, st, target=target, read=read, scale=0.8)


@pytest.mark.parametrize("C,gates,target,read", [(64, "abm", "self", "after"), (128, "ab", "external", "before")])
def test_large_chunks(C, gates, target, read):
    x, st = make(B=2, H=2, T=40, gates=gates, seed=C)
    check(x, st, chunk_size=C, target=target, read=read)


@pytest.mark.parametrize("gates,target,read", [("abm", "external", "after"), ("ab", "self", "before")])
def test_resume_mid_chunk(gates, target, read):
    """A LinearMemoryState at positions 5 and 13 of a chunk: the first tile finishes that chunk
    with errors frozen at its M_chunk; gradients reach M_chunk0."""
    x, st = make(B=2, T=21, gates=gates, resume=[5, 13])
    check(x, st, target=target, read=read)


@pytest.mark.parametrize("gates,target", [("abm", "self"), ("m", "external")])
def test_resume_chunk_read(gates, target):
    """Resumed tile with the "chunk" read: its outputs and errors use M_chunk0 only (offsets of
    the factors), the other sequence starts at a boundary."""
    x, st = make(B=2, T=21, gates=gates, resume=[5, 0], seed=8)
    check(x, st, target=target, read="chunk")


def test_resume_ends_inside_chunk():
    """The call starts and ends inside one chunk (final M_chunk is the initial M_chunk)."""
    x, st = make(B=1, T=6, gates="abm", resume=[3])
    check(x, st, target="self", read="after")


def test_cu_seqlens_with_positions_and_empty_sequence():
    cu = torch.tensor([0, 9, 9, 30], dtype=torch.int32)
    x, st = make(B=1, T=30, N=3, gates="abm", resume=[0, 4, 11])
    check(x, st, cu_seqlens=cu, target="external", read="before")


def test_k_ne_v_with_two_v_blocks(monkeypatch):
    """K = 16, V = 32 split into two V blocks of 16: the gradient kernel accumulates dq, dk, the
    gate gradients and the n×n adjoints over its loop of V blocks."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BV", "16")
    x, st = make(T=20, K=16, V=32, gates="abm")
    check(x, st, target="external", read="after")


def test_self_target_two_v_blocks(monkeypatch):
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BV", "16")
    x, st = make(T=18, K=32, V=32, gates="ab")
    check(x, st, target="self", read="chunk")


def test_resumed_self_target_two_v_blocks(monkeypatch):
    """Resumed tiles (dM_chunk0 written block by block by the gradient kernel) with self targets
    and read "before" over two V blocks."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BV", "16")
    cu = torch.tensor([0, 13, 30])
    x, st = make(B=1, T=30, N=2, K=32, V=32, gates="abm", resume=[5, 0], seed=11)
    check(x, st, cu_seqlens=cu, target="self", read="before")


def test_chunk_32_and_short_sequence():
    x, st = make(T=40, gates="abm", seed=3)
    check(x, st, chunk_size=32, target="external", read="after")
    x, st = make(T=5, gates="abm", seed=4)
    check(x, st, chunk_size=16, target="self", read="before")


def test_mu_exactly_zero_and_negative_gates():
    x, st = make(T=20, gates="abm", seed=5)
    x["mu"][0, ::3] = 0.0
    x["mu"][0, 1::5] = -0.3
    check(x, st, target="external", read="after", scale=-0.5)


def test_float16_within_spec():
    x, st = make(T=24, gates="abm", seed=6)
    check(x, st, dtype=torch.float16, target="external", read="after")


def test_bf16_storage_and_output_block(monkeypatch):
    """Factors and per-tile states stored in bfloat16 (the default for bf16 inputs), checked with
    float16 inputs at their tolerance; output kernel on V blocks of 16."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_STORE", "bf16")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BV_OUT", "16")
    x, st = make(T=24, K=16, V=32, gates="abm", seed=9)
    check(x, st, dtype=torch.float16, target="external", read="before")


@pytest.mark.parametrize("gates,target,read", [("abm", "external", "after"), ("ab", "self", "before")])
def test_16bit_dot_operands(monkeypatch, gates, target, read):
    """NESTED_KERNELS_LM_TRITON_PRECISION=fp16: every product but the (I + A)⁻¹ levels rounds its
    operands to float16 (the path "bf16" takes on the GPU; the interpreter's bf16 dot is broken),
    checked with float16 inputs at their tolerance; gradient kernel on V blocks of 16."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "fp16")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BV_GRAD", "16")
    x, st = make(T=35, K=16, V=32 if target == "external" else 16, gates=gates, seed=10)
    check(x, st, dtype=torch.float16, target=target, read=read)


@pytest.mark.parametrize("gates,target,read", [("abm", "self", "after"), ("a", "external", "before")])
def test_rounded_tf32_operands(monkeypatch, gates, target, read):
    """NESTED_KERNELS_LM_TRITON_PRECISION=tf32r: every product (the (I + A)⁻¹ levels too) rounds its
    operands to tf32 to nearest before the dot, checked with float16 inputs at their tolerance
    (plain-tile kernels included for "a")."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "tf32r")
    x, st = make(T=35, K=16, V=16 if target == "self" else 32, gates=gates, seed=13)
    check(x, st, dtype=torch.float16, target=target, read=read)


@triton.jit
def _round_tf32_kernel(x, y, n: tl.constexpr):
    r = tl.arange(0, n)
    tl.store(y + r, round_tf32(tl.load(x + r)))


def test_round_tf32():
    """round_tf32 keeps 10 mantissa bits, rounds to nearest (ties away from zero), keeps the sign,
    and maps values already on the tf32 grid to themselves."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(256, generator=g) * 10.0 ** torch.randint(-20, 20, (256,), generator=g)
    ties = torch.tensor([1.0 + 2.0 ** -11, -(1.0 + 2.0 ** -11), 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -10], dtype=torch.float32)
    x = torch.cat([x, ties, torch.zeros(252)]).to(DEVICE)
    y = torch.empty_like(x)
    _round_tf32_kernel[(1,)](x, y, x.numel())
    bits = y.cpu().view(torch.int32)
    assert ((bits & 0x1FFF) == 0).all()
    err = (y - x).abs().cpu()
    assert (err <= x.abs().cpu() * 2.0 ** -11).all()
    assert torch.equal(torch.sign(y), torch.sign(x))
    assert y[256:260].cpu().tolist() == [1.0 + 2.0 ** -10, -(1.0 + 2.0 ** -10), 1.0 + 2.0 ** -9, 1.0 + 2.0 ** -10]


def test_without_initial_state_and_final_state():
    """No initial state, no final state: outputs and input gradients only."""
    x, _ = make(T=20, gates="ab", seed=7)
    leaves = {n: t.float().to(DEVICE).requires_grad_(True) for n, t in x.items() if t is not None}
    args = [leaves.get(n) for n in ("q", "k", "v", "eta", "log_alpha", "beta", "mu")]
    o, fs = linear_memory(*args, chunk_size=16, backend="triton")
    assert fs is None
    ref, _ = linear_memory(*[None if a is None else a.detach().double().cpu() for a in args],
                           chunk_size=16, backend="reference")
    assert rel_error(o, ref) <= 2e-3
    g = torch.autograd.grad(o.square().sum(), [a for a in args if a is not None])
    refl = [a.detach().double().cpu().requires_grad_(True) if a is not None else None for a in args]
    oref, _ = linear_memory(*refl, chunk_size=16, backend="reference")
    gref = torch.autograd.grad(oref.square().sum(), [a for a in refl if a is not None])
    for a, b in zip(g, gref):
        assert rel_error(a, b) <= 2e-3


def test_empty_sequence_returns_state():
    x, st = make(T=0, gates="abm")
    o, fs = linear_memory(*[None if x[n] is None else x[n].float() for n in
                            ("q", "k", "v", "eta", "log_alpha", "beta", "mu")],
                          initial_state=(st["M"].float(), st["S"].float()), chunk_size=16,
                          output_final_state=True, backend="triton")
    assert o.shape == (1, 0, 1, 16)
    assert torch.equal(fs.M, st["M"].float()) and torch.equal(fs.S, st["S"].float())
    assert torch.equal(fs.M_chunk, st["M"].float()) and fs.position.tolist() == [0]


# -- chunk_size 1: the exact online rule (DESIGN §4), external targets ---------------------------

EXACT_GRID = [("", "after"), ("a", "before"), ("b", "after"), ("m", "before"), ("ab", "chunk"),
              ("am", "after"), ("bm", "before"), ("abm", "after")]


@pytest.mark.parametrize("gates,read", EXACT_GRID)
def test_exact_rule(monkeypatch, gates, read):
    """chunk_size 1 on tiles of 16 tokens (T = 37: three tiles, the last partial), from (M0, S0);
    every gate set; "chunk" reads M_{t−1} like "before"."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_EXACT_TILE", "16")
    x, st = make(T=37, gates=gates, seed=20 + len(gates))
    check(x, st, chunk_size=1, target="external", read=read, scale=0.8)


@pytest.mark.parametrize("target", ["external", "self"])
def test_exact_rule_varlen_two_v_blocks(monkeypatch, target):
    """Packed sequences (one empty) on two V blocks (K = 16 ≠ V = 32 for external targets, K = V = 32
    for self targets), μ exactly 0 and negative."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_EXACT_TILE", "16")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BV", "16")
    T, K, read = (40, 16, "before") if target == "external" else (26, 32, "after")
    cu = torch.tensor([0, 9, 9, T], dtype=torch.int32)
    x, st = make(B=1, T=T, N=3, K=K, V=32, gates="abm", seed=21 if target == "external" else 61)
    x["mu"][0, ::4] = 0.0
    x["mu"][0, 1::7] = -0.3
    check(x, st, cu_seqlens=cu, chunk_size=1, target=target, read=read)


def test_exact_rule_default_tile_float16():
    """The default tile of 64 tokens (T = 70: two tiles), B = H = 2, float16 inputs."""
    x, st = make(B=2, H=2, T=70, gates="abm", seed=22)
    check(x, st, dtype=torch.float16, chunk_size=1, target="external", read="after")


@pytest.mark.parametrize("target", ["external", "self"])
def test_exact_rule_resumed_state(monkeypatch, target):
    """A second call continues from the LinearMemoryState of a first one (position 0, its M_chunk
    unused): outputs of both calls, the final state and every gradient through both calls."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_EXACT_TILE", "16")
    x, st = make(B=2, T=30, K=16, V=16, gates="abm", seed=23)

    def two_calls(backend):
        dev, dt = (DEVICE, torch.float32) if backend == "triton" else ("cpu", F64)
        leaves = {n: t.to(dev, dt).requires_grad_(True) for n, t in x.items() if t is not None}
        leaves.update({n + "0": st[n].to(dev, dt).requires_grad_(True) for n in ("M", "S")})
        state, outs = (leaves["M0"], leaves["S0"]), []
        for part in (slice(0, 19), slice(19, None)):
            args = [leaves[n][:, part] if n in leaves else None
                    for n in ("q", "k", "v", "eta", "log_alpha", "beta", "mu")]
            o, state = linear_memory(*args, chunk_size=1, target=target, initial_state=state,
                                     output_final_state=True, backend=backend)
            outs.append(o)
        res = dict(o=torch.cat(outs, 1), M=state.M, S=state.S, M_chunk=state.M_chunk)
        grads = torch.autograd.grad(projection_loss(res), list(leaves.values()))
        res["position"] = state.position
        return res, dict(zip(leaves, grads))

    got, dgot = two_calls("triton")
    ref, dref = two_calls("reference")
    assert_run_close(got, dgot, ref, dref, tolerance("triton", torch.float32))


# -- chunk_size 1 with self targets: the 2n×2n system in (r_t, s_t) of DESIGN §4 ------------------

EXACT_SELF_GRID = [("", "after"), ("a", "before"), ("b", "chunk"), ("m", "after"), ("ab", "before"),
                   ("am", "chunk"), ("bm", "after"), ("abm", "before")]


@pytest.mark.parametrize("gates,read", EXACT_SELF_GRID)
def test_exact_rule_self_target(monkeypatch, gates, read):
    """Self targets at chunk_size 1: tiles of max(16, EXACT_TILE / 2) = 16 tokens (T = 21: two tiles,
    the last partial), a 32×32 system per tile; every gate set and read; from (M0, S0)."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_EXACT_TILE", "16")
    x, st = make(T=21, gates=gates, seed=60 + len(gates))
    check(x, st, chunk_size=1, target="self", read=read, scale=0.8)


def test_exact_rule_self_target_default_tile_float16():
    """The default self tile of 32 tokens (a 64×64 system; T = 40: two tiles), B = H = 2, float16
    inputs (with β: the split gradient kernels)."""
    x, st = make(B=2, H=2, T=40, gates="ab", seed=62)
    check(x, st, dtype=torch.float16, chunk_size=1, target="self", read="before")


# -- NESTED_KERNELS_LM_TRITON_GRAD_SPLIT: token gradients in two kernels -------------------------

GRAD_KERNELS = ("_grad_kernel", "_grad_rows_kernel", "_grad_nn_kernel", "_grad_epilogue_kernel", "_grad_dk_kernel",
                "_plain_dv_kernel", "_plain_dqk_kernel", "_plain_d_kernel")


def record_launches(monkeypatch, names=GRAD_KERNELS, what=lambda name, kw: name) -> list:
    """``what(name, launch keywords)`` of every launch of the kernels among ``names`` (of triton_fwd /
    triton_bwd / triton_bwd_plain), in order (they still run): by default the names of the gradient
    kernels launched."""
    from nested_kernels.ops.linear_memory import triton_bwd, triton_bwd_plain, triton_fwd
    launched = []

    class Recorded:
        def __init__(self, name, fn):
            self.name, self.fn = name, fn

        def __getitem__(self, grid):
            def launch(*args, **kw):
                launched.append(what(self.name, kw))
                return self.fn[grid](*args, **kw)
            return launch

    for n in names:
        module = next(m for m in (triton_fwd, triton_bwd, triton_bwd_plain) if hasattr(m, n))
        monkeypatch.setattr(module, n, Recorded(n, getattr(module, n)))
    return launched


SPLIT = ["_grad_nn_kernel", "_grad_dk_kernel"]
SPLIT_CASES = {
    # name: (make kwargs, linear_memory kwargs, other knobs)
    "eta_only_resumed_chunk_read": (dict(T=37, gates="", resume=[5], seed=30),
                                    dict(chunk_size=16, target="external", read="chunk", scale=0.8), {}),
    "abm_external_fp16_operands": (dict(T=35, K=16, V=32, gates="abm", seed=31),
                                   dict(chunk_size=16, target="external", read="after"),
                                   dict(PRECISION="fp16", BV_GRAD="16")),
    "ab_self_before": (dict(T=37, K=32, V=32, gates="ab", seed=32),
                       dict(chunk_size=16, target="self", read="before"), dict(BV_GRAD="16")),
    "ab_external_nn_blocks": (dict(T=35, K=16, V=32, gates="ab", seed=37),
                              dict(chunk_size=16, target="external", read="after"),
                              dict(PRECISION="fp16", BV_GRAD_NN="16")),
    "exact_mu": (dict(T=37, gates="abm", seed=33), dict(chunk_size=1, target="external", read="before"),
                 dict(EXACT_TILE="16", PRECISION="fp16")),
    "exact_self_abm": (dict(T=21, gates="abm", seed=36), dict(chunk_size=1, target="self", read="after"),
                       dict(EXACT_TILE="16", PRECISION="fp16")),
    "varlen_resumed_abm_self_before": (dict(B=1, T=30, N=3, K=32, V=32, gates="abm", resume=[0, 4, 11], seed=34),
                                       dict(chunk_size=16, target="self", read="before",
                                            cu_seqlens=torch.tensor([0, 9, 9, 30], dtype=torch.int32)),
                                       dict(BV_GRAD="16")),
}


@pytest.mark.parametrize("name", SPLIT_CASES)
def test_grad_split(monkeypatch, name):
    """NESTED_KERNELS_LM_TRITON_GRAD_SPLIT=1: _grad_nn_kernel then _grad_dk_kernel instead of
    _grad_kernel, float16 inputs (the split never runs for float32; "fp16" operands stand for the
    GPU's bf16 path): outputs and every gradient against the float64 reference at the float16
    bound, and against the fused kernel (the same arithmetic but for the order of the dq, dk sums).
    Tiles with μ (not resumed) run _grad_rows_kernel first (GRAD_ROWS' default); BV_GRAD_NN sets
    the first kernel's V blocks alone."""
    make_kw, kw, knobs = SPLIT_CASES[name]
    for knob, value in knobs.items():
        monkeypatch.setenv(f"NESTED_KERNELS_LM_TRITON_{knob}", value)
    rows = ["_grad_rows_kernel"] if "m" in make_kw["gates"] and "resume" not in make_kw else []
    o1 = check_kernel_knob(monkeypatch, "GRAD_SPLIT", rows + SPLIT, make(**make_kw), torch.float16, kw)
    assert o1["o"].dtype == torch.float16



ROWS_CASES = {
    # name: (make kwargs, linear_memory kwargs, other knobs)
    "abm_external_after_two_v_blocks": (dict(T=35, K=16, V=32, gates="abm", seed=90),
                                        dict(chunk_size=16, target="external", read="after"),
                                        dict(PRECISION="fp16", BV_GRAD="16", BV_ROWS="16")),
    "ab_self_before": (dict(T=37, K=32, V=32, gates="ab", seed=91), dict(chunk_size=16, target="self", read="before"),
                       dict(BV_GRAD="16")),
    "abm_self_after": (dict(T=33, gates="abm", seed=92), dict(chunk_size=16, target="self", read="after"), {}),
    "am_chunk_read": (dict(T=37, K=16, V=32, gates="am", seed=93), dict(chunk_size=16, target="external", read="chunk"),
                      dict(BV_ROWS="16")),
    "exact_mu": (dict(T=37, gates="abm", seed=94), dict(chunk_size=1, target="external", read="before"),
                 dict(EXACT_TILE="16", PRECISION="fp16")),
    "exact_self_abm": (dict(T=21, gates="abm", seed=95), dict(chunk_size=1, target="self", read="after"),
                       dict(EXACT_TILE="16", PRECISION="fp16")),
    "varlen_abm_before": (dict(B=1, T=30, N=3, K=16, V=16, gates="abm", seed=96),
                          dict(chunk_size=16, target="external", read="before",
                               cu_seqlens=torch.tensor([0, 9, 9, 30], dtype=torch.int32)), {}),
}


@pytest.mark.parametrize("mode", ["1", "2"])
@pytest.mark.parametrize("name", ROWS_CASES)
def test_grad_rows(monkeypatch, name, mode):
    """NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1: _grad_rows_kernel stores the products with the tile
    states, and _grad_nn_kernel reads them instead of loading the states (2: _grad_dk_kernel too,
    in place of its products): outputs and every gradient against the float64 reference at the
    float16 bound and against the split without it."""
    make_kw, kw, knobs = ROWS_CASES[name]
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_SPLIT", "1")
    for knob, value in knobs.items():
        monkeypatch.setenv(f"NESTED_KERNELS_LM_TRITON_{knob}", value)
    check_kernel_knob(monkeypatch, "GRAD_ROWS", ["_grad_rows_kernel"] + SPLIT, make(**make_kw), torch.float16, kw,
                      off=SPLIT, on=mode)


EPILOGUE_CASES = {n: c for n, c in ROWS_CASES.items() if n != "exact_self_abm"}
EPILOGUE_CASES["resumed_ab_self_chunk"] = (dict(T=37, K=16, V=16, gates="ab", resume=[5], seed=98),
                                           dict(chunk_size=16, target="self", read="chunk"), {})


@pytest.mark.parametrize("rows", ["0", "1"])
@pytest.mark.parametrize("name", EPILOGUE_CASES)
def test_nn_epilogue(monkeypatch, name, rows):
    """NESTED_KERNELS_LM_TRITON_NN_EPILOGUE=1: _grad_nn_kernel hands its accumulators and row sums to
    _grad_epilogue_kernel, which does the after-loop n×n algebra (with and without GRAD_ROWS):
    outputs and every gradient against the float64 reference and the split without it."""
    make_kw, kw, knobs = EPILOGUE_CASES[name]
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_SPLIT", "1")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_ROWS", rows)
    for knob, value in knobs.items():
        monkeypatch.setenv(f"NESTED_KERNELS_LM_TRITON_{knob}", value)
    first = ["_grad_rows_kernel"] if rows == "1" and "resume" not in make_kw else []
    check_kernel_knob(monkeypatch, "NN_EPILOGUE", first + ["_grad_nn_kernel", "_grad_epilogue_kernel", "_grad_dk_kernel"],
                      make(**make_kw), torch.float16, kw, off=first + SPLIT)


def test_nn_epilogue_not_for_self_exact(monkeypatch):
    """Self targets with chunk_size 1 (a 2n×2n system) keep the n×n algebra in _grad_nn_kernel."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_NN_EPILOGUE", "1")
    launched = record_launches(monkeypatch)
    x, st = make(T=21, gates="abm", seed=99)
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_EXACT_TILE", "16")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "fp16")
    run("triton", x, st, torch.float16, chunk_size=1, target="self", read="after")
    assert launched == ["_grad_rows_kernel"] + SPLIT


@pytest.mark.parametrize("value", ["3", "yes"])
def test_grad_rows_bad_value(monkeypatch, value):
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_ROWS", value)
    with pytest.raises(ValueError, match="NESTED_KERNELS_LM_TRITON_GRAD_ROWS"):
        run("triton", *make(T=20, gates="ab"), torch.float16, chunk_size=16)


def test_grad_rows_not_for_resumed_tiles(monkeypatch):
    """A resumed chunk (errors at its chunk-start memory) keeps the split without the rows."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_SPLIT", "1")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_ROWS", "2")
    launched = record_launches(monkeypatch)
    x, st = make(T=37, gates="ab", resume=[5], seed=97)
    ref, dref = run("reference", x, st, torch.float16, chunk_size=16)
    o, d = run("triton", x, st, torch.float16, chunk_size=16)
    assert launched == SPLIT
    assert_run_close(dict(o), d, ref, dref, tolerance("triton", torch.float16))


def check_kernel_knob(monkeypatch, knob, kernels, inputs, dtype, kw, off=("_grad_kernel",),
                      recorded=GRAD_KERNELS, on="1") -> dict:
    """NESTED_KERNELS_LM_TRITON_<knob>=``on`` launches ``kernels`` instead of ``off`` (=0; by default the
    fused _grad_kernel), counting the launches of ``recorded``: its outputs and every gradient
    against the float64 reference at ``dtype``'s bound and against the knob off (the same arithmetic
    up to summation order). Returns the outputs with the knob on."""
    x, st = inputs
    launched = record_launches(monkeypatch, recorded)
    got = {}
    for value, expected in ((on, list(kernels)), ("0", list(off))):
        monkeypatch.setenv(f"NESTED_KERNELS_LM_TRITON_{knob}", value)
        launched.clear()
        got[value] = run("triton", x, st, dtype, **dict(kw))
        assert launched == expected
    ref, dref = run("reference", x, st, dtype, **dict(kw))
    (o1, d1), (o0, d0) = got[on], got["0"]
    assert_run_close(dict(o1), d1, ref, dref, tolerance("triton", dtype))
    assert_run_close(o1, d1, o0, d0, 1e-5)
    return o1


FUSE_CASES = {
    # name: (make kwargs, linear_memory kwargs, other knobs)
    "eta_only_after": (dict(T=37, gates="", seed=60), dict(chunk_size=16, target="external", read="after"), {}),
    "abm_before_two_v_blocks": (dict(T=35, K=16, V=32, gates="abm", seed=61),
                                dict(chunk_size=16, target="external", read="before"), dict(BV="16")),
    "m_chunk_read": (dict(T=33, gates="m", seed=62), dict(chunk_size=16, target="external", read="chunk"), {}),
    "varlen_resumed_ab_self": (dict(B=1, T=30, N=3, K=16, V=16, gates="ab", resume=[0, 4, 11], seed=63),
                               dict(chunk_size=16, target="self", read="after",
                                    cu_seqlens=torch.tensor([0, 9, 9, 30], dtype=torch.int32)), {}),
    "exact_abm_after": (dict(T=21, gates="abm", seed=64), dict(chunk_size=1, target="external", read="after"),
                        dict(EXACT_TILE="16")),
}


@pytest.mark.parametrize("name", FUSE_CASES)
def test_fused_outputs(monkeypatch, name):
    """NESTED_KERNELS_LM_TRITON_FUSE_OUT=1: the forward walk writes the outputs (no _out_kernel):
    outputs and every gradient against the float64 reference and against the unfused kernels."""
    make_kw, kw, knobs = FUSE_CASES[name]
    for knob, value in knobs.items():
        monkeypatch.setenv(f"NESTED_KERNELS_LM_TRITON_{knob}", value)
    check_kernel_knob(monkeypatch, "FUSE_OUT", ["_state_fwd_kernel"], make(**make_kw), torch.float32, kw,
                      off=("_state_fwd_kernel", "_out_kernel"), recorded=("_state_fwd_kernel", "_out_kernel"))


PLAIN_A_CASES = {
    # name: (make kwargs, linear_memory kwargs, other knobs)
    "eta_only_after": (dict(T=37, gates="", seed=70), dict(chunk_size=16, read="after"), {}),
    "alpha_before_two_v_blocks_scaled": (dict(T=35, K=16, V=32, gates="a", seed=71),
                                         dict(chunk_size=16, read="before", scale=0.7), dict(BV="16")),
    "alpha_chunk_read": (dict(T=33, gates="a", seed=72), dict(chunk_size=16, read="chunk"), {}),
    "varlen_alpha_after_c32": (dict(B=1, T=70, N=3, K=32, V=16, gates="a", seed=73),
                               dict(chunk_size=32, read="after",
                                    cu_seqlens=torch.tensor([0, 29, 29, 70], dtype=torch.int32)), {}),
}


@pytest.mark.parametrize("name", PLAIN_A_CASES)
def test_plain_a_outputs(monkeypatch, name):
    """NESTED_KERNELS_LM_TRITON_PLAIN_A=1 (plain external tiles, fused outputs): the prep stores
    each tile's n×n A instead of per-token Qw and ou, both walks take it (their PLAIN_A is on);
    outputs, final states and every gradient against the float64 reference and against the knob
    off."""
    from nested_kernels.ops.linear_memory import triton_bwd, triton_fwd
    make_kw, kw, knobs = PLAIN_A_CASES[name]
    for knob, value in knobs.items():
        monkeypatch.setenv(f"NESTED_KERNELS_LM_TRITON_{knob}", value)
    flags = []
    for mod, kernel in ((triton_fwd, "_prep_kernel"), (triton_fwd, "_state_fwd_kernel"),
                        (triton_bwd, "_state_bwd_kernel")):
        real = getattr(mod, kernel)
        monkeypatch.setattr(mod, kernel, type("Spy", (), {"__getitem__": lambda self, grid, real=real, kernel=kernel:
                            lambda *a, **k: flags.append((kernel, k["PLAIN_A"])) or real[grid](*a, **k)})())
    x, st = make(**make_kw)
    kw = dict(kw, target="external")
    got = {}
    for value in ("1", "0"):
        monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PLAIN_A", value)
        flags.clear()
        got[value] = run("triton", x, st, torch.float32, **dict(kw))
        assert {on for _, on in flags} == {value == "1"} and len(flags) == 3, flags
    ref, dref = run("reference", x, st, torch.float32, **dict(kw))
    (o1, d1), (o0, d0) = got["1"], got["0"]
    assert_run_close(dict(o1), d1, ref, dref, tolerance("triton", torch.float32))
    assert_run_close(o1, d1, o0, d0, 1e-5)


def test_plain_a_needs_fused_outputs_and_plain_tiles(monkeypatch):
    """PLAIN_A applies to plain external tiles of at most 64 tokens with fused outputs on the
    Triton walks only."""
    from nested_kernels.ops.linear_memory.triton_backend import _plain_a
    x, _ = make(T=20, gates="a", seed=74)
    inputs = dict(x, m0=None, s0=None, m_chunk0=None, position0=None, cu_seqlens=None, beta=None, mu=None)
    cfg = dict(chunk_size=16, target="external", read="after", backend="triton")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PLAIN_A", "1")
    assert _plain_a(inputs, cfg, "triton")
    assert not _plain_a(inputs, cfg, "cuda")
    assert not _plain_a(dict(inputs, beta=inputs["eta"]), cfg, "triton")
    assert not _plain_a(inputs, dict(cfg, target="self"), "triton")
    assert not _plain_a(inputs, dict(cfg, chunk_size=1), "triton")
    assert not _plain_a(inputs, dict(cfg, chunk_size=128), "triton")
    keep = dict(cfg, keep_factors=True, scale=1.0, output_final_state=False)
    tiles = -(-20 // 16)
    assert triton_backend.residuals(inputs, keep)[2].shape == (tiles * 1 * 16 * 16,)   # A per tile
    # PLAIN_D keeps the rows D too, unless _plain_d_kernel's K block is all of K and it forms D
    # itself (PLAIN_D_FORM=1)
    x32, _ = make(T=20, K=32, V=16, gates="", seed=74)
    wide = dict(inputs, **x32)
    with_d = (tiles * 1 * 16 * 16 + 20 * 1 * 16,)
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PLAIN_D", "1")
    for block, form, shape in (("16", "0", with_d), ("16", "1", with_d), ("32", "0", with_d),
                               ("32", "1", (tiles * 1 * 16 * 16,))):
        monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", block)
        monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM", form)
        assert triton_backend.residuals(wide, keep)[2].shape == shape, (block, form)
    assert triton_backend.residuals(wide, dict(keep, keep_factors=False))[2].numel() == 0
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM")
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PLAIN_D", "0")
    # the forward of the CUDA walks passes its walk (the config need not name the backend)
    assert triton_backend.residuals(inputs, keep, "cuda")[2].shape == (1, 20, 1, 16)   # Qw rows
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_FUSE_OUT", "0")
    assert not _plain_a(inputs, cfg, "triton")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_FUSE_OUT", "1")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PLAIN_A", "0")
    assert not _plain_a(inputs, cfg, "triton")


PLAIN = ["_plain_dv_kernel", "_plain_dqk_kernel"]


@pytest.mark.parametrize("read", ["after", "before", "chunk"])
@pytest.mark.parametrize("target", ["external", "self"])
@pytest.mark.parametrize("gates", ["", "a"])
def test_plain_gradients(monkeypatch, gates, target, read):
    """Plain tiles (no β, no μ, chunk_size > 1, no resumed chunk) take _plain_dv_kernel then
    _plain_dqk_kernel: two V and two K blocks (NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=16, K = V = 32),
    a varlen batch with an empty sequence and partial tiles; outputs and every gradient against the
    float64 reference and against _grad_kernel (NESTED_KERNELS_LM_TRITON_GRAD_PLAIN=0)."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", "16")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PLAIN_D", "0")     # these kernels, not _plain_d_kernel
    kw = dict(chunk_size=16, target=target, read=read, scale=0.7,
              cu_seqlens=torch.tensor([0, 17, 17, 40], dtype=torch.int32))
    check_kernel_knob(monkeypatch, "GRAD_PLAIN", PLAIN,
                      make(B=1, T=40, N=3, K=32, V=32, gates=gates, seed=40 + len(gates)), torch.float32, kw)


PLAIN_D_CASES = {
    # name: (make kwargs, linear_memory kwargs, NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN or None: unset)
    "eta_only_after_two_k_blocks": (dict(B=1, T=40, N=3, K=32, V=32, gates="", seed=80),
                                    dict(chunk_size=16, read="after", scale=0.7,
                                         cu_seqlens=torch.tensor([0, 17, 17, 40], dtype=torch.int32)), "16"),
    "alpha_before_two_k_blocks": (dict(B=1, T=40, N=3, K=32, V=16, gates="a", seed=81),
                                  dict(chunk_size=16, read="before", scale=0.7,
                                       cu_seqlens=torch.tensor([0, 17, 17, 40], dtype=torch.int32)), "16"),
    # BLOCK_PLAIN 16 < K/2: with log α the kernel takes BK = K/2 (two atomic shares of d log α)
    "alpha_after_k64_block_floor": (dict(T=37, K=64, V=16, gates="a", seed=82),
                                    dict(chunk_size=32, read="after"), "16"),
    "alpha_chunk_read_one_k_block": (dict(T=35, K=16, V=32, gates="a", seed=83),
                                     dict(chunk_size=16, read="chunk"), None),
    "eta_only_chunk_read": (dict(T=33, gates="", seed=84), dict(chunk_size=16, read="chunk"), "16"),
    # one K block (BK = K) and PLAIN_D_FORM=1: the kernel forms D = V − K M0 itself, the forward
    # keeps no D
    "eta_only_before_d_formed": (dict(B=1, T=40, N=3, K=32, V=32, gates="", seed=86),
                                 dict(chunk_size=16, read="before", scale=0.7,
                                      cu_seqlens=torch.tensor([0, 17, 17, 40], dtype=torch.int32)), "32"),
    "alpha_after_d_formed": (dict(T=37, K=32, V=32, gates="a", seed=87), dict(chunk_size=16, read="after"), "32"),
}


def test_plain_d_one_k_block_forming_d(monkeypatch):
    """NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM=1: one K block forms D instead of reading the D the
    forward kept: the same values (up to summation order) as reading it, and the float64 reference."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PLAIN_D", "1")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", "32")
    check_kernel_knob(monkeypatch, "PLAIN_D_FORM", ["_plain_d_kernel"], make(T=37, K=32, V=32, gates="", seed=88),
                      torch.float32, dict(chunk_size=16, target="external", read="after"), off=["_plain_d_kernel"])


@pytest.mark.parametrize("name", PLAIN_D_CASES)
def test_plain_d_gradients(monkeypatch, name):
    """NESTED_KERNELS_LM_TRITON_PLAIN_D=1 (PLAIN_A tiles, factors kept): the forward walk keeps
    D = V − K M0, the backward walk stores dW, and _plain_d_kernel alone forms every token gradient
    (varlen batches with an empty sequence, partial tiles, one or two K blocks, every read):
    outputs and every gradient against the float64 reference and against the two plain kernels."""
    make_kw, kw, block = PLAIN_D_CASES[name]
    if block:
        monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", block)
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM", "1" if name.endswith("_d_formed") else "0")
    check_kernel_knob(monkeypatch, "PLAIN_D", ["_plain_d_kernel"], make(**make_kw), torch.float32,
                      dict(kw, target="external"), off=PLAIN)


MATRIX_CASES = {
    # name: (make kwargs, linear_memory kwargs, other knobs)
    "ab_after": (dict(T=37, K=16, V=32, gates="ab", seed=90), dict(chunk_size=16, read="after"), {}),
    "abm_before_varlen": (dict(B=1, T=40, N=3, gates="abm", seed=91),
                          dict(chunk_size=16, read="before", scale=0.7,
                               cu_seqlens=torch.tensor([0, 17, 17, 40], dtype=torch.int32)), {}),
    "abm_chunk_read": (dict(T=35, K=32, V=16, gates="abm", seed=92), dict(chunk_size=16, read="chunk"), {}),
    # K = V = 64: two column blocks of 32 in every loop
    "bm_after_two_column_blocks": (dict(T=45, K=64, V=64, gates="bm", seed=93), dict(chunk_size=32, read="after"),
                                   {}),
    # the backward recomputes the factors without offsets
    "abm_after_factors_not_kept": (dict(T=37, gates="abm", seed=94), dict(chunk_size=16, read="after"),
                                   dict(KEEP_FACTORS="0")),
}


def record_prep_matrix(monkeypatch) -> list:
    """The MATRIX flag of every _prep_kernel launch, in order (the kernels still run)."""
    return record_launches(monkeypatch, ("_prep_kernel",), lambda name, kw: kw["MATRIX"])


@pytest.mark.parametrize("name", MATRIX_CASES)
def test_prep_matrix(monkeypatch, name):
    """NESTED_KERNELS_LM_TRITON_PREP_MATRIX=1: tiles with external targets and β take their factors
    from n×n matrices formed once (_matrix_factors): outputs and every gradient against the float64
    reference and against the column-block form (the same values up to rounding)."""
    make_kw, kw, knobs = MATRIX_CASES[name]
    for knob, value in knobs.items():
        monkeypatch.setenv(f"NESTED_KERNELS_LM_TRITON_{knob}", value)
    x, st = make(**make_kw)
    flags = record_prep_matrix(monkeypatch)
    got = {}
    for value in ("1", "0"):
        monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PREP_MATRIX", value)
        flags.clear()
        got[value] = run("triton", x, st, torch.float32, target="external", **kw)
        assert flags and set(flags) == {value == "1"}
    ref, dref = run("reference", x, st, torch.float32, target="external", **kw)
    (o1, d1), (o0, d0) = got["1"], got["0"]
    assert_run_close(dict(o1), d1, ref, dref, tolerance("triton", torch.float32))
    assert_run_close(o1, d1, o0, d0, 1e-5)


def check_float16_operands(monkeypatch, knob, inputs, kw):
    """NESTED_KERNELS_LM_TRITON_<knob>=1 with float16 inputs, "fp16" operands (the interpreter's
    stand-in for the GPU's 16-bit products) and bf16 storage: at the float16 bound of the float64
    reference."""
    for name, value in (("PRECISION", "fp16"), ("STORE", "bf16"), (knob, "1")):
        monkeypatch.setenv(f"NESTED_KERNELS_LM_TRITON_{name}", value)
    x, st = inputs
    o, d = run("triton", x, st, torch.float16, **kw)
    assert_run_close(dict(o), d, *run("reference", x, st, torch.float16, **kw), tolerance("triton", torch.float16))


def test_prep_matrix_float16_operands(monkeypatch):
    """PREP_MATRIX with 16-bit operands (the n×n matrices formed at tf32, ``mm_solve``)."""
    flags = record_prep_matrix(monkeypatch)
    check_float16_operands(monkeypatch, "PREP_MATRIX", make(T=45, K=32, V=32, gates="abm", seed=95),
                           dict(chunk_size=32, target="external", read="before"))
    assert flags and all(flags)


@pytest.mark.parametrize("make_kw,kw", [
    (dict(T=21, gates="abm", seed=96), dict(chunk_size=16, target="self", read="after")),
    (dict(T=21, gates="abm", seed=97), dict(chunk_size=1, target="external", read="after")),
    (dict(B=1, T=30, N=2, gates="ab", resume=[3, 5], seed=98),
     dict(chunk_size=16, target="external", read="after", cu_seqlens=torch.tensor([0, 12, 30], dtype=torch.int32))),
    (dict(T=21, gates="am", seed=99), dict(chunk_size=16, target="external", read="after")),
])
def test_prep_matrix_only_external_beta_tiles(monkeypatch, make_kw, kw):
    """Self targets, chunk_size 1, resumed chunks and tiles without β keep the column-block form."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PREP_MATRIX", "1")
    flags = record_prep_matrix(monkeypatch)
    x, st = make(**make_kw)
    run("triton", x, st, torch.float32, **kw)
    assert flags and not any(flags)


def test_plain_d_block_defaults(monkeypatch):
    """_plain_d_kernel's K block: all of K up to 128 without log α (one program per tile and head),
    64 with it but never below K/2, and NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN over both."""
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", raising=False)
    assert [triton_backend._plain_d_block(K, 128, False) for K in (32, 64, 128, 256)] == [32, 64, 128, 128]
    assert [triton_backend._plain_d_block(K, 128, True) for K in (32, 64, 128, 256)] == [32, 64, 64, 128]
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", "32")
    assert triton_backend._plain_d_block(128, 128, False) == 32
    assert triton_backend._plain_d_block(128, 128, True) == 64


def test_plain_d_float16_operands(monkeypatch):
    """PLAIN_D with 16-bit operands (the GPU's bf16 path, whose D, dW and products are 16-bit)."""
    launched = record_launches(monkeypatch)
    check_float16_operands(monkeypatch, "PLAIN_D", make(T=45, K=64, V=64, gates="a", seed=85),
                           dict(chunk_size=32, target="external", read="after"))
    assert launched == ["_plain_d_kernel"]


def test_plain_not_for_beta_mu_or_resumed(monkeypatch):
    """β, μ, chunk_size 1 or a resumed chunk keep _grad_kernel (the plain kernels have no solve,
    no momentum and no chunk-start memory); a bad knob value is a ValueError."""
    launched = record_launches(monkeypatch)
    for gates, kw, resume in (("b", dict(chunk_size=16), None), ("m", dict(chunk_size=16), None),
                              ("", dict(chunk_size=1), None), ("", dict(chunk_size=16), [5])):
        x, st = make(T=20, gates=gates, resume=resume, seed=50)
        launched.clear()
        run("triton", x, st, torch.float32, **kw)
        assert launched == ["_grad_kernel"], (gates, kw, resume)
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_PLAIN", "yes")
    with pytest.raises(ValueError, match="GRAD_PLAIN"):
        run("triton", *make(T=20, gates=""), torch.float32, chunk_size=16)


def test_grad_split_never_for_float32(monkeypatch):
    """float32 inputs run the fused kernel whatever the knob says (the split's _grad_dk_kernel does
    not fit an H100 block with float32 operands)."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_SPLIT", "1")
    launched = record_launches(monkeypatch)
    x, st = make(T=37, gates="ab", seed=35)
    check(x, st, target="self", read="before")
    assert launched == ["_grad_kernel"]
    split = triton_backend._grad_split
    assert split(torch.float16, "tf32", False) and not split(torch.float32, "tf32", True)
    assert not split(torch.float16, "tf32x3", True)     # tf32x3 products: fused
    assert split(torch.float16, "tf32r", True)          # float16's default precision: split with β or μ
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_SPLIT", "0")
    assert not split(torch.float16, "fp16", True)
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_GRAD_SPLIT")     # default: split with β or μ
    assert split(torch.bfloat16, "bf16", True) and not split(torch.bfloat16, "bf16", False)


def test_default_precisions(monkeypatch):
    """Off the interpreter: bf16 operands for bfloat16 inputs, tf32r (rounded tf32) for float16,
    tf32x3 for float32; the knob overrides, and a bad value is a ValueError naming it."""
    monkeypatch.setattr(triton_backend, "_interpreting", lambda: False)
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_PRECISION", raising=False)
    prec = triton_backend._precision
    assert (prec(torch.bfloat16), prec(torch.float16), prec(torch.float32)) == ("bf16", "tf32r", "tf32x3")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "tf32")
    assert prec(torch.float16) == "tf32"
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "fp8")
    with pytest.raises(ValueError, match="NESTED_KERNELS_LM_TRITON_PRECISION"):
        prec(torch.float16)


def test_bv_grad_nn_default(monkeypatch):
    """The n×n kernel's V block: 16 where BV_GRAD is 32 by default with bf16 operands and tiles ≤ 64
    (what the H100 timed faster), else BV_GRAD; BV_GRAD or BV_GRAD_NN set by the user win; a bad
    value names the variable."""
    bv = triton_backend._bv_grad_nn
    assert bv(128, 128, 32, True) == 16
    assert bv(128, 128, 32, False) == 32
    assert bv(64, 64, 64, True) == 64
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BV_GRAD", "32")
    assert bv(128, 128, 32, True) == 32
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BV_GRAD_NN", "64")
    assert bv(128, 128, 32, True) == 64
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_BV_GRAD_NN", "24")
    with pytest.raises(ValueError, match="NESTED_KERNELS_LM_TRITON_BV_GRAD_NN"):
        bv(128, 128, 32, True)


@pytest.mark.parametrize("value", ["2", "yes", "true"])
def test_grad_split_bad_value(monkeypatch, value):
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_GRAD_SPLIT", value)
    for dtype in (torch.float16, torch.float32):
        with pytest.raises(ValueError, match="NESTED_KERNELS_LM_TRITON_GRAD_SPLIT"):
            triton_backend._grad_split(dtype, "tf32", True)
    x, _ = make(T=4, gates="")
    args = [x[n].float().to(DEVICE) for n in ("q", "k", "v", "eta")]
    with pytest.raises(ValueError, match="NESTED_KERNELS_LM_TRITON_GRAD_SPLIT"):
        linear_memory(*args, chunk_size=16, backend="triton")


# -- fallbacks ---------------------------------------------------------------------------------

def _inputs(K=16, V=16, dtype=torch.float32):
    x, _ = make(T=4, K=K, V=V, gates="")
    d = {n: None if t is None else t.to(dtype) for n, t in x.items()}
    return dict(d, m0=None, s0=None, m_chunk0=None, position0=None, cu_seqlens=None)


@pytest.mark.parametrize("C,K,V,dtype,target,what", [
    (1, 8, 8, torch.float32, "self", "K=8"),
    (8, 16, 16, torch.float32, "external", "chunk_size"),
    (256, 16, 16, torch.float32, "external", "chunk_size"),
    (16, 8, 16, torch.float32, "external", "K=8"),
    (16, 16, 48, torch.float32, "external", "V=48"),
    (16, 16, 16, torch.float64, "external", "float64"),
])
def test_unsupported_reasons(C, K, V, dtype, target, what):
    cfg = dict(chunk_size=C, target=target, read="after", scale=1.0, output_final_state=False)
    why = triton_backend.unsupported(_inputs(K, V, dtype), cfg)
    assert why is not None and what in why


def test_bf16_operands_refuse_exact_self_targets_with_beta(monkeypatch):
    """chunk_size 1, self targets and β with the bf16 operands of bfloat16 inputs (the GPU default;
    forced here) go to the torch backend: their final M missed the 2e-2 bound on the H100
    (2026-12-07c). Without β, with float16 inputs or with tf32r operands the kernels still run."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "bf16")
    cfg = dict(chunk_size=1, target="self", read="before", scale=1.0, output_final_state=True)
    x = _inputs(dtype=torch.bfloat16)
    with_beta = dict(x, beta=torch.rand_like(x["eta"]))
    assert "bfloat16" in triton_backend.unsupported(with_beta, cfg)
    assert triton_backend.unsupported(x, cfg) is None
    assert triton_backend.unsupported(with_beta, dict(cfg, chunk_size=16)) is None
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_PRECISION", "tf32r")
    assert triton_backend.unsupported(with_beta, cfg) is None


def test_exact_self_targets_with_mu_need_the_knob_on_a_gpu(monkeypatch):
    """chunk_size 1, self targets and μ on a CUDA device go to the torch backend in the dtypes
    their kernels have not been GPU-verified in (bfloat16; float16 and float32 passed), unless
    NESTED_KERNELS_LM_TRITON_C1_SELF_MU=1 (CPU tensors — the interpreter tests — always run them)."""
    cfg = dict(chunk_size=1, target="self", read="after", scale=1.0, output_final_state=True)
    x = _inputs()
    with_mu = dict(x, mu=torch.rand_like(x["eta"]))
    assert triton_backend.unsupported(with_mu, cfg) is None          # CPU tensors
    fake_cuda = dict(with_mu, q=torch.empty(x["q"].shape, device="meta", dtype=torch.bfloat16))
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda t: t.device.type == "meta"))
    assert "mu" in triton_backend.unsupported(fake_cuda, cfg)
    assert triton_backend.unsupported(fake_cuda, dict(cfg, chunk_size=16)) is None
    for dtype in (torch.float16, torch.float32):
        verified = dict(fake_cuda, q=torch.empty(x["q"].shape, device="meta", dtype=dtype))
        assert triton_backend.unsupported(verified, cfg) is None
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_C1_SELF_MU", "1")
    assert triton_backend.unsupported(fake_cuda, cfg) is None


def test_supported_configs_have_no_reason():
    for C in triton_backend.SUPPORTED_CHUNK:
        for K, V in [(16, 16), (128, 128), (32, 128), (128, 16)]:
            cfg = dict(chunk_size=C, target="external", read="after", scale=1.0, output_final_state=False)
            assert triton_backend.unsupported(_inputs(K, V), cfg) is None
            if K == V:
                assert triton_backend.unsupported(_inputs(K, V), dict(cfg, target="self")) is None


def test_registered_and_forced_fallback_message():
    assert api.BACKENDS["triton"] is triton_backend.BACKEND
    x, _ = make(T=4, gates="")
    args = [None if x[n] is None else x[n].float().to(DEVICE) for n in ("q", "k", "v", "eta")]
    with pytest.raises(RuntimeError, match="chunk_size=8"):
        linear_memory(*args, chunk_size=8, target="self", backend="triton")
    # "auto" never picks a backend that refuses the inputs
    o, _ = linear_memory(*args, chunk_size=8, target="self")
    ref, _ = linear_memory(*[a.double().cpu() for a in args], chunk_size=8, target="self", backend="reference")
    assert rel_error(o, ref) <= 1e-5


# -- GPU only ----------------------------------------------------------------------------------

def test_backward_reuses_the_forward_tile_states(monkeypatch):
    """The forward returns its tile-start states as residual outputs; the backward runs the state
    recurrence again only when they are missing (here: when its ``outputs`` lack them), and only
    then has the prep kernel write the offsets (xu, yu, ou), which the backward's own walk never
    reads."""
    runs, offsets = [], []
    states, prep = triton_backend._Args.states, triton_backend._Args.prep
    monkeypatch.setattr(triton_backend._Args, "states", lambda self, *a: runs.append(1) or states(self, *a))

    def recorded_prep(self, *a, **kw):
        f = prep(self, *a, **kw)
        offsets.append(tuple(f[n] is not None for n in ("xu", "yu", "ou")))
        return f
    monkeypatch.setattr(triton_backend._Args, "prep", recorded_prep)
    x, st = make(T=40, gates="abm", seed=21)
    check(x, st, read="before")
    assert len(runs) == 1, runs               # forward only
    runs.clear()
    with torch.no_grad():
        x, st = make(T=20, gates="am", seed=22)
        t = {n: None if v is None else v.float() for n, v in x.items()}
        inputs = dict(t, m0=st["M"].float(), s0=st["S"].float(), m_chunk0=None, position0=None, cu_seqlens=None)
        cfg = dict(chunk_size=16, target="external", read="after", scale=1.0, output_final_state=False)
        outs = dict(zip(api.OP.outputs, triton_backend.forward(inputs, cfg)))
        grads = {"o": torch.randn_like(outs["o"])}
        with_tiles = triton_backend.backward(inputs, outs, grads, cfg)
        without = triton_backend.backward(inputs, dict(outs, tile_m=outs["o"].new_empty(0)), grads, cfg)
    assert len(runs) == 2                     # the forward, and the backward without residuals
    assert offsets[-3:] == [(True, True, True), (False, False, False), (True, True, True)]
    for n, g in with_tiles.items():
        assert torch.equal(g, without[n]), n


@pytest.mark.parametrize("gates,kw", [("abm", dict(read="before")), ("", dict(read="after")),
                                      ("am", dict(chunk_size=1, read="chunk"))])
def test_backward_reuses_the_forward_factors(monkeypatch, gates, kw):
    """With a gradient to take, the forward keeps its tile factors, (I + A)⁻¹ and tile-end scalars
    as residuals and the backward runs no prep kernel; NESTED_KERNELS_LM_TRITON_KEEP_FACTORS=0 (or
    no_grad) keeps none and the backward recomputes them. Both give the same gradients."""
    launched = record_launches(monkeypatch, ("_prep_kernel",))
    kept = []
    prep = triton_backend._Args.prep
    monkeypatch.setattr(triton_backend._Args, "prep",
                        lambda self, *a, **k: kept.append(k.get("keep") is not None) or prep(self, *a, **k))
    x, st = make(T=37, gates=gates, seed=23)
    kw = dict(dict(chunk_size=16, target="external"), **kw)
    if kw["chunk_size"] == 1:
        monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_EXACT_TILE", "16")
    got = {}
    for keep, preps in (("1", [True]), ("0", [False, False])):
        monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_KEEP_FACTORS", keep)
        launched.clear()
        kept.clear()
        got[keep] = run("triton", x, st, torch.float32, **dict(kw))
        assert kept == preps and len(launched) == len(preps), (keep, kept, launched)
    assert_run_close(*got["1"], *got["0"], 1e-6)
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_KEEP_FACTORS", "1")
    kept.clear()
    with torch.no_grad():
        linear_memory(*(None if v is None else v.float() for v in x.values()), backend="triton", **kw)
    assert kept == [False]


def test_per_kernel_warps(monkeypatch):
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_WARPS", "16")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_WARPS_GRAD", "4")
    assert [triton_backend._warps(64, k) for k in ("prep", "state", "out", "grad")] == [16, 16, 16, 4]
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_WARPS")
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_WARPS_GRAD")
    assert [triton_backend._warps(64, k) for k in ("prep", "state", "out", "grad")] == [4, 4, 8, 8]
    assert (triton_backend._warps(64, "grad", heavy=True), triton_backend._warps(32, "out")) == (4, 4)


def test_launch_configuration_follows_the_knobs(monkeypatch):
    """The launch configuration is cached per set of knobs, shapes and options
    (triton_backend._config): a knob set, changed, made invalid or removed between calls takes
    effect at the next call, and frozen knobs (core.env.frozen_knobs) answer instead of the
    environment."""
    from nested_kernels.core.env import frozen_knobs
    from nested_kernels.ops.linear_memory import triton_fwd
    warps = []

    class Stub:
        def __getitem__(self, grid):
            return lambda *a, **kw: warps.append(kw["num_warps"])
    monkeypatch.setattr(triton_fwd, "_prep_kernel", Stub())
    monkeypatch.setattr(triton_fwd, "_state_fwd_kernel", Stub())
    x, _ = make(T=20, gates="a")
    args = [x[n].float().to(DEVICE) for n in ("q", "k", "v", "eta")]

    def prep_warps():
        warps.clear()
        with torch.no_grad():
            linear_memory(*args, chunk_size=16, backend="triton")
        return warps[0]
    for name in ("NESTED_KERNELS_LM_TRITON_WARPS", "NESTED_KERNELS_LM_TRITON_WARPS_PREP"):
        monkeypatch.delenv(name, raising=False)
    assert prep_warps() == 4
    for value in ("2", "8"):
        monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_WARPS_PREP", value)
        assert prep_warps() == int(value)
    with frozen_knobs([["NESTED_KERNELS_LM_TRITON_WARPS_PREP", "1"]]):
        assert prep_warps() == 1
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_WARPS_PREP", "x")
    with pytest.raises(ValueError):
        prep_warps()
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_WARPS_PREP")
    assert prep_warps() == 4


def test_stages_knob(monkeypatch):
    """The pipelining depth of the sequential walks: 0..4 per walk, always 0 (the while loop)
    under the interpreter; anything else is a ValueError naming the variable."""
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_STAGES", "3")
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_STAGES_ADJOINT", "1")
    assert triton_backend._stages("state", torch.bfloat16) == 0
    monkeypatch.setattr(triton_backend, "_interpreting", lambda: False)
    assert [triton_backend._stages(k, torch.float32) for k in ("state", "adjoint")] == [3, 1]
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_STAGES")
    monkeypatch.delenv("NESTED_KERNELS_LM_TRITON_STAGES_ADJOINT")
    assert [triton_backend._stages("state", d) for d in (torch.bfloat16, torch.float32)] == [2, 0]
    assert triton_backend._stages("adjoint", torch.bfloat16) == 0
    assert [triton_backend._stages("adjoint", d, plain_a=True) for d in (torch.bfloat16, torch.float32)] == [2, 0]
    monkeypatch.setenv("NESTED_KERNELS_LM_TRITON_STAGES_STATE", "5")
    with pytest.raises(ValueError, match="NESTED_KERNELS_LM_TRITON_STAGES"):
        triton_backend._stages("state", torch.bfloat16)


@pytest.mark.parametrize("gates", ["abm", "a", ""])
def test_opcheck_with_residual_outputs(gates):
    """The registered op with the Triton backend: fake shapes (residual tile states included; with
    η and α only the tiles keep their n×n A: the walks form the rest themselves; with η only also
    the rows D of PLAIN_D), autograd registration and schema (torch.library.opcheck), under the
    interpreter."""
    from nested_kernels.core.custom_op import _pack
    x, st = make(T=20, gates=gates, seed=23)
    inputs = {n: None if t is None else t.float().requires_grad_(True) for n, t in x.items()}
    s0 = None if st["S"] is None else st["S"].float().requires_grad_(True)
    inputs.update(m0=st["M"].float().requires_grad_(True), s0=s0, m_chunk0=None, position0=None, cu_seqlens=None)
    plain = triton_backend._plain_x(inputs, dict(chunk_size=16, target="external"))
    assert plain == (gates in ("a", ""))
    res = triton_backend.residuals(inputs, dict(chunk_size=16, target="external", read="after", keep_factors=True))
    # plain (PLAIN_A): the tiles' n×n A, flat, and without log α (PLAIN_D) the rows D; else the
    # K-wide factor rows
    flat = 2 * 16 * 16 + (20 * 16 if gates == "" else 0)
    assert res[2].shape == ((flat,) if plain else (len(triton_backend._factor_names(True, True, False, 0)), 20, 1, 16))
    for keep in (False, True):      # keep_factors: the API's choice when a gradient will be taken
        cfg = dict(chunk_size=16, target="external", read="after", scale=1.0, output_final_state=True,
                   backend="triton", keep_factors=keep)
        tensors, config = _pack("linear_memory", api.INPUTS, inputs, cfg)
        torch.library.opcheck(api.OP.op, (tensors, config))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("gates,target,read,C,K,V", [("abm", "external", "after", 64, 64, 64),
                                                     ("ab", "self", "before", 64, 128, 128),
                                                     ("am", "external", "chunk", 32, 64, 128),
                                                     ("abm", "external", "after", 1, 128, 128),
                                                     ("bm", "external", "before", 1, 64, 128)])
def test_gpu_realistic(dtype, gates, target, read, C, K, V):
    x, st = make(B=2, T=203, H=2, K=K, V=V, gates=gates, seed=11)
    check(x, st, dtype=dtype, chunk_size=C, target=target, read=read)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("gates,target,read,C,K,V", [("", "external", "after", 64, 128, 128),
                                                     ("a", "self", "before", 32, 64, 64),
                                                     ("a", "external", "chunk", 64, 64, 128),
                                                     ("", "external", "before", 16, 32, 32)])
def test_gpu_plain(dtype, gates, target, read, C, K, V):
    """Plain tiles on the GPU: the plain-tile gradient kernels on wgmma (64-wide blocks) and on
    mma.sync (K = V = 32), with a varlen batch."""
    x, st = make(B=1, T=300, N=3, H=2, K=K, V=V, gates=gates, seed=12)
    check(x, st, dtype=dtype, chunk_size=C, target=target, read=read,
          cu_seqlens=torch.tensor([0, 67, 67, 300], dtype=torch.int32))
