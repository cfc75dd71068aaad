"""Tests of the ``triton`` backend of ``mlp_memory`` against the float64 token-loop reference.

Without a GPU the kernels run under Triton's interpreter (conftest sets TRITON_INTERPRET=1), so
shapes are tiny: K = 16, F ∈ {16, 32}, chunk 16 (one case 32), T ≤ 40, B·H ≤ 4. Outputs are
NaN-poisoned (NESTED_KERNELS_POISON=1). Every case compares the outputs, the final state (W1, W2,
S1, S2, W1_chunk, W2_chunk, position) and the gradients of a random functional of all of them with
respect to every floating-point input (q, k, v, eta, gates, w1, w2 or the per-sequence initial
states, the resumed chunk-start copies) — SPEC §7 bounds: 2e-3 in float32, 2e-2 in bf16/fp16.
The reference sees the same (rounded) inputs as the kernel. Every test runs four times: without
and with the tile-parallel prep kernel (NESTED_KERNELS_MLP_TRITON_PREP = 0 / 1), and with the
prep kernel and the backward split into the adjoint chain and the token gradients
(NESTED_KERNELS_MLP_TRITON_BWD_SPLIT = 1), the latter by the kernel or by autograd over all tiles
(NESTED_KERNELS_MLP_TRITON_TOKENS = triton / torch; the latter also with the prep rows by torch,
NESTED_KERNELS_MLP_TRITON_PREP_ROWS = torch).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as Fn

from nested_kernels.ops.mlp_memory import MLPMemoryState, api, mlp_memory, triton_backend
from nested_kernels.testing import assert_run_close, projection_loss, rel_error, tolerance

pytest.importorskip("triton")

F64 = torch.float64
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ARGS = ("q", "k", "v", "eta", "w1", "w2", "log_alpha", "beta", "mu")
FIELDS = ("W1", "W2", "S1", "S2", "W1_chunk", "W2_chunk")


@pytest.fixture(autouse=True, params=[("0", "0", "triton"), ("1", "0", "triton"), ("1", "1", "triton"),
                                      ("1", "1", "torch")],
                ids=["prep0", "prep1", "prep1-split", "prep1-split-torchtok"])
def prep_knob(request, monkeypatch):
    prep, split, tokens = request.param
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PREP", prep)
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_BWD_SPLIT", split)
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_TOKENS", tokens)
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PREP_ROWS", tokens)     # the torch rows with the torch tokens
    if tokens == "torch":     # several autograd calls per backward, the last one short
        monkeypatch.setattr(triton_backend, "_tile_group", lambda a: 3)
    return prep


def bwd_launches(read: str) -> int:
    """Launches of ``_bwd_kernel`` per backward: one walk; split, the chain, the token gradients and
    read chunk's dq — or the chain alone when ``tile_grads`` takes the token gradients."""
    if not triton_backend._bwd_split() or triton_backend._token_parts() == "torch":
        return 1
    return 3 if read == "chunk" else 2


def make(B=1, T=37, H=1, K=16, V=16, F=32, *, gates="abm", N=None, init=False, resume=None, seed=0,
         eta_max=0.3):
    """Float64 inputs in the SPEC §7 range (‖k‖ = 1, η ∈ [0, eta_max), α ∈ [0.8, 1], β ≤ 0.4α, μ ∈
    [0, 0.9)) and, with ``init``/``resume``, an initial state (tuple, or an MLPMemoryState at chunk
    positions ``resume``). Longer sequences need smaller steps (``STEADY_ETA``): with η up to 0.3
    some configurations run away (|o| to 1e22 over 200 tokens, test_gpu_data_stay_bounded)."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    ru = lambda *s: torch.rand(*s, generator=g, dtype=F64)  # noqa: E731
    N = B if N is None else N
    alpha = 0.8 + 0.2 * ru(B, T, H)
    x = dict(q=rn(B, T, H, K), k=Fn.normalize(rn(B, T, H, K), dim=-1), v=rn(B, T, H, V), eta=eta_max * ru(B, T, H),
             w1=rn(H, V, F) / F ** 0.5, w2=2 * rn(H, F, K) / K ** 0.5,
             log_alpha=alpha.log() if "a" in gates else None,
             beta=0.4 * alpha * ru(B, T, H) if "b" in gates else None,
             mu=0.9 * ru(B, T, H) if "m" in gates else None)
    st = {}
    if init or resume is not None:
        st = dict(W1=rn(N, H, V, F) / F ** 0.5, W2=2 * rn(N, H, F, K) / K ** 0.5)
        if "m" in gates:
            st.update(S1=0.1 * rn(N, H, V, F) / F ** 0.5, S2=0.1 * rn(N, H, F, K) / K ** 0.5)
    if resume is not None:
        st.update(W1_chunk=rn(N, H, V, F) / F ** 0.5, W2_chunk=2 * rn(N, H, F, K) / K ** 0.5,
                  position=torch.tensor(resume, dtype=torch.int64))
    return x, st


STEADY_ETA = 0.1     # η range of the GPU tests' longer sequences: bounded dynamics (test_gpu_data_stay_bounded)
# (gates, target, read, C, K, F) of test_gpu_realistic
REALISTIC = [("abm", "self", "chunk", 64, 64, 256), ("ab", "external", "after", 32, 128, 256),
             ("am", "self", "before", 16, 32, 128), ("bm", "external", "after", 64, 32, 64)]


def realistic_inputs(gates, K, F):
    return make(B=2, T=203, H=2, K=K, V=K, F=F, gates=gates, init=True, seed=11, eta_max=STEADY_ETA)


def runaway_inputs(gates="bm"):
    """Inputs on which the self target without α runs away (η up to 0.3: |o| from 1e2 to 1e21 over
    192 tokens with β + μ; python/emulate_mlp_memory_conditioning.py, test_gpu_data_stay_bounded)."""
    return make(B=2, T=192, H=2, K=32, V=32, F=64, gates=gates, init=True, seed=21)


def run(backend, x, st, dtype, **kw):
    """(outputs, gradients) of a fixed random functional of o and the final state."""
    ref = backend == "reference"
    dev = "cpu" if ref else DEVICE
    leaves = {n: (t.to(dtype).to(F64) if ref else t.to(dtype)).to(dev).requires_grad_(True)
              for n, t in x.items() if t is not None}
    sl = {n: t.to(dev, F64 if ref else torch.float32).requires_grad_(True)
          for n, t in st.items() if n != "position"}
    init = None
    if "position" in st:
        init = MLPMemoryState(sl["W1"], sl["W2"], sl.get("S1"), sl.get("S2"), sl["W1_chunk"], sl["W2_chunk"],
                              st["position"].to(dev), kw["chunk_size"])
    elif sl:
        init = (sl["W1"], sl["W2"], sl.get("S1"), sl.get("S2"))
    leaves.update({n + "0": t for n, t in sl.items()})
    cu = kw.pop("cu_seqlens", None)
    o, fs = mlp_memory(*[leaves.get(n) for n in ARGS], initial_state=init, output_final_state=True,
                       backend=backend, cu_seqlens=None if cu is None else cu.to(dev), **kw)
    outs = dict(o=o, **{n: getattr(fs, n) for n in FIELDS if getattr(fs, n) is not None})
    grads = torch.autograd.grad(projection_loss(outs), list(leaves.values()))
    outs["position"] = fs.position
    return outs, dict(zip(leaves, grads))


def check(x, st, dtype=torch.float32, **kw):
    kw.setdefault("chunk_size", 16)
    tol = tolerance("triton", dtype)
    got, dgot = run("triton", x, st, dtype, **dict(kw))
    ref, dref = run("reference", x, st, dtype, **dict(kw))
    assert got["o"].dtype == dtype and got["W1"].dtype == torch.float32
    assert_run_close(got, dgot, ref, dref, tol)


# pruned option grid: every gate set, target, read and activation appears
GRID = [
    # gates, target, read, activation
    ("", "external", "after", "gelu"),
    ("a", "external", "before", "silu"),
    ("ab", "external", "chunk", "gelu"),
    ("abm", "external", "after", "silu"),
    ("m", "self", "before", "gelu"),
    ("bm", "self", "after", "gelu"),
    ("abm", "self", "chunk", "silu"),
    ("ab", "self", "before", "silu"),
]


@pytest.mark.parametrize("gates,target,read,activation", GRID)
def test_matches_reference(gates, target, read, activation):
    x, st = make(gates=gates, seed=len(gates))
    check(x, st, target=target, read=read, activation=activation, scale=0.8)


def test_two_f_blocks_initial_state_and_two_heads(monkeypatch):
    """F = 32 in two blocks of 16 (the passes over F blocks and the cross-block sums)."""
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_BF", "16")
    x, st = make(B=2, H=2, T=29, gates="abm", init=True, seed=1)
    check(x, st, target="self", read="after")


def test_no_residual_k_ne_v_and_f_equals_k():
    x, st = make(T=33, V=32, F=16, gates="abm", init=True, seed=2)
    check(x, st, residual=False, read="before", activation="silu")


@pytest.mark.parametrize("gates,target,read", [("abm", "external", "after"), ("ab", "self", "before")])
def test_resume_mid_chunk(gates, target, read):
    """An MLPMemoryState at positions 5 and 13: the first tile finishes that chunk with gradients
    and self targets at the state's chunk-start weights, which receive gradients."""
    x, st = make(B=2, T=21, gates=gates, resume=[5, 13], seed=3)
    check(x, st, target=target, read=read)


def test_resume_ends_inside_chunk():
    """The call starts and ends inside one chunk: the final chunk-start weights are the initial ones."""
    x, st = make(T=6, gates="abm", resume=[3], seed=4)
    check(x, st, target="self", read="chunk")


def test_cu_seqlens_with_positions_and_empty_sequence():
    cu = torch.tensor([0, 9, 9, 30], dtype=torch.int32)
    x, st = make(T=30, N=3, gates="abm", resume=[0, 4, 11], seed=5)
    check(x, st, cu_seqlens=cu, target="external", read="before")


@pytest.mark.parametrize("read", ["after", "chunk"])
def test_backward_without_residuals(read, monkeypatch):
    """When the forward's residuals do not fit the budget (NESTED_KERNELS_MLP_BWD_BYTES) the forward
    keeps none and the backward re-runs it with SAVE: same results (varlen, resumed states)."""
    monkeypatch.setenv(triton_backend.BUDGET_ENV, "1")
    cu = torch.tensor([0, 9, 9, 30], dtype=torch.int32)
    x, st = make(T=30, N=3, gates="abm", resume=[0, 4, 11], seed=15)
    check(x, st, cu_seqlens=cu, target="self", read=read)


def test_residuals_are_kept_when_grad_is_taken():
    """The forward returns its residuals (checkpoints per tile, E and B Aᵀ per token, the prep
    kernel's rows or (I + A_β)⁻¹) only when a gradient will be taken; their shapes follow from the
    input shapes (the fake forward's)."""
    x, _ = make(B=2, T=20, H=3, gates="abm")
    leaves = {n: None if x[n] is None else x[n].float() for n in ARGS}
    cfg = dict(chunk_size=16, target="external", read="after", activation="gelu", residual=True, scale=1.0,
               output_final_state=False, backend="triton")
    inputs = dict({n: None for n in api.INPUTS}, **leaves)
    assert not triton_backend.keeps_residuals(inputs, cfg)
    leaves["q"].requires_grad_(True)
    assert triton_backend.keeps_residuals(inputs, cfg)
    shapes = triton_backend._residual_shapes(inputs, cfg)
    nt = 2 * 2                       # 2 sequences of 2 tiles of 16
    assert shapes == dict(W1=(nt, 3, 16, 32), W2=(nt, 3, 32, 16), S1=(nt, 3, 16, 32), S2=(nt, 3, 32, 16),
                          E=(40, 3, 16), BA=(40, 3, 16), Ai=(40, 3, 16),
                          **(dict(pv=(40, 3, 8), pk=(40, 3, 16), qp=(40, 3, 16), pm=(40, 3, 16), qg=(40, 3, 16))
                             if triton_backend._prep_on() else {}))
    out = api.OP(dict(cfg, keep_residuals=True), **inputs)
    assert out["saved"].numel() == sum(torch.Size(s).numel() for s in shapes.values())


def test_fake_residuals_follow_the_knobs_of_the_call(monkeypatch):
    """The registered op's config holds the knobs of its call (core.custom_op): its fake forward
    sizes the residuals by NESTED_KERNELS_MLP_TRITON_PREP as it was then, whatever the environment
    says later — 2026-12-06f's compiled graph, traced under one value, was served under another
    (torch.compile's caches are keyed by the config) and failed its size assertion."""
    from nested_kernels.core.custom_op import _pack
    x, _ = make(B=2, T=20, H=3, gates="abm")
    inputs = dict({n: None for n in api.INPUTS}, **{n: None if x[n] is None else x[n].float() for n in ARGS})
    cfg = dict(chunk_size=16, target="external", read="after", activation="gelu", residual=True, scale=1.0,
               output_final_state=False, backend="triton", keep_residuals=True)
    configs, sizes = {}, {}
    for prep in ("0", "1"):
        monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PREP", prep)
        tensors, configs[prep] = _pack(api.OP.name, api.OP.inputs, inputs, cfg)
        sizes[prep] = triton_backend._numel(triton_backend._residual_shapes(inputs, cfg))
    assert sizes["1"] > sizes["0"] and configs["1"] != configs["0"]
    for prep in ("0", "1"):       # the environment now says PREP=1
        assert api.OP._fake(tensors, configs[prep])[-1].numel() == sizes[prep]


@pytest.mark.parametrize("read", ["after", "before", "chunk"])
def test_prep_rows_by_torch_equal_the_kernels(read, monkeypatch):
    """The prep rows of prep_torch (NESTED_KERNELS_MLP_TRITON_PREP_ROWS=torch) equal those of
    _prep_kernel on every valid row: packed sequences (one empty, odd lengths), all gates."""
    cu = torch.tensor([0, 5, 5, 37, 40], dtype=torch.int64)
    x, _ = make(T=40, N=4, H=2, gates="abm", seed=21)
    inputs = dict({n: None for n in api.INPUTS}, **{n: None if x[n] is None else x[n].float() for n in ARGS},
                  cu_seqlens=cu)
    cfg = dict(chunk_size=16, target="external", read=read, activation="gelu", residual=True, scale=0.7,
               output_final_state=False)
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PREP", "1")
    rows = {}
    for src in ("triton", "torch"):
        monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PREP_ROWS", src)
        rows[src] = triton_backend._Args(inputs, cfg).prep_rows()
    assert rows["torch"].keys() == rows["triton"].keys() >= {"pv", "Ai", "pk"}
    for n, want in rows["triton"].items():
        assert rel_error(rows["torch"][n], want) < 1e-5, n


def test_cu_seqlens_shared_initial_weights():
    """Without an initial state every sequence starts from w1, w2: their gradients sum over sequences."""
    cu = torch.tensor([0, 17, 17, 40], dtype=torch.int64)
    x, st = make(T=40, N=3, gates="ab", seed=6)
    check(x, st, cu_seqlens=cu, target="self", read="after", chunk_size=32)


def test_mu_zero_and_negative():
    x, st = make(T=20, gates="abm", seed=7)
    x["mu"][0, ::3] = 0.0
    x["mu"][0, 1::5] = -0.3
    check(x, st, read="after", scale=-0.5)


@pytest.mark.parametrize("dtype,prec", [(torch.bfloat16, None), (torch.float16, "fp16"), (torch.bfloat16, "fp16"),
                                        (torch.bfloat16, "tf32r")])
def test_half_precision_within_spec(dtype, prec, monkeypatch):
    """The default products (ieee under the interpreter), float16 dot operands
    (NESTED_KERNELS_MLP_TRITON_PRECISION = fp16) and operands rounded to tf32 (tf32r, the GPU's
    default for 16-bit inputs)."""
    if prec:
        monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PRECISION", prec)
    x, st = make(T=24, gates="abm", init=True, seed=8)
    check(x, st, dtype=dtype, target="self", read="after")


def test_precision_keyword_sets_the_products(monkeypatch):
    """The op's ``precision`` reaches the launcher's product precision (off the interpreter): "auto"
    tf32r for 16-bit inputs whatever the configuration, "float32" tf32x3, "tf32" tf32r."""
    x, _ = make(T=8, gates="bm")
    monkeypatch.setattr(triton_backend, "_interpreting", lambda: False)
    monkeypatch.delenv("NESTED_KERNELS_MLP_TRITON_PRECISION", raising=False)
    full = dict({n: None for n in api.INPUTS}, **{n: None if x[n] is None else x[n].to(torch.bfloat16) for n in ARGS})
    cfg = dict(chunk_size=4, target="self", read="after", activation="gelu", residual=True, scale=1.0,
               output_final_state=False, backend="triton")
    prec = lambda **kw: triton_backend._Args(full, dict(cfg, **kw)).prec  # noqa: E731
    assert prec() == prec(precision="tf32") == prec(target="external") == "tf32r"
    assert prec(precision="float32") == "tf32x3"


def test_default_precisions_and_split(monkeypatch):
    """Off the interpreter: tf32r operands for bfloat16 / float16 inputs, tf32x3 for float32, gate
    products tf32x3; the split backward's token parts bf16 for bfloat16 inputs unless the
    precision knob is set, else as the rest; the knobs override, a bad value is a ValueError
    naming it; the split backward is on unless NESTED_KERNELS_MLP_TRITON_BWD_SPLIT = 0."""
    monkeypatch.setattr(triton_backend, "_interpreting", lambda: False)
    monkeypatch.delenv("NESTED_KERNELS_MLP_TRITON_PRECISION", raising=False)
    prec = triton_backend._precision
    assert [prec(d) for d in (torch.bfloat16, torch.float16, torch.float32)] == [
        ("tf32r", "tf32x3"), ("tf32r", "tf32x3"), ("tf32x3", "tf32x3")]
    assert prec(torch.bfloat16, "float32") == ("tf32x3", "tf32x3")                      # the op's precision=
    assert prec(torch.float32, "tf32") == prec(torch.bfloat16, "tf32") == ("tf32r", "tf32x3")
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PRECISION", "bf16")
    assert prec(torch.float32) == ("bf16", "tf32x3")
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PRECISION", "fp8")
    with pytest.raises(ValueError, match="NESTED_KERNELS_MLP_TRITON_PRECISION"):
        prec(torch.bfloat16)
    tok = triton_backend._tokens_precision
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PRECISION", "tf32x3")
    assert tok("tf32x3", torch.bfloat16) == "tf32x3"          # PRECISION chose the operands: as the rest
    monkeypatch.delenv("NESTED_KERNELS_MLP_TRITON_PRECISION")
    assert [tok("tf32r", torch.bfloat16), tok("tf32r", torch.float16), tok("tf32x3", torch.float32)] == [
        "bf16", "tf32r", "tf32x3"]
    assert tok("tf32x3", torch.bfloat16) == "tf32x3"      # precision="float32" keeps tf32x3
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION", "tf32r")
    assert tok("tf32r", torch.bfloat16) == "tf32r"
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION", "half")
    with pytest.raises(ValueError, match="NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION"):
        tok("tf32r", torch.bfloat16)
    monkeypatch.delenv("NESTED_KERNELS_MLP_TRITON_BWD_SPLIT")
    assert triton_backend._bwd_split()
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_BWD_SPLIT", "0")
    assert not triton_backend._bwd_split()


def test_token_parts_and_prep_rows_knobs(monkeypatch):
    """NESTED_KERNELS_MLP_TRITON_TOKENS and NESTED_KERNELS_MLP_TRITON_PREP_ROWS: torch (default) or
    triton; anything else is a ValueError naming the variable."""
    for name, fn, default in (("NESTED_KERNELS_MLP_TRITON_TOKENS", triton_backend._token_parts, "torch"),
                              ("NESTED_KERNELS_MLP_TRITON_PREP_ROWS", triton_backend._prep_source, "torch")):
        monkeypatch.delenv(name)
        assert fn() == default
        monkeypatch.setenv(name, "cuda")
        with pytest.raises(ValueError, match=name):
            fn()


def test_token_gradients_by_autograd_through_cases(monkeypatch):
    """tile_grads differentiates inside the custom op's backward, where the autograd dispatch keys
    are excluded (python/profile_kernels.py's call, gradients of o alone with β = η, failed with
    "does not require grad" before the guard): its gradients equal the kernel's PARTs 2 and 3."""
    from nested_kernels import cases as nk_cases
    case = nk_cases.Case("mlp_memory", dict(B=1, T=20, H=1, K=16, V=16, F=16), torch.float32,
                         dict(chunk_size=16, target="self", read="chunk"),
                         dict(gates=("log_alpha", "beta", "mu"), beta="eta"), "t")
    fn, _ = nk_cases.load_op("mlp_memory")
    got = {}
    for tokens in ("triton", "torch"):
        monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_TOKENS", tokens)
        t = nk_cases.make_inputs(case, DEVICE, 0)
        leaves = {n: x.requires_grad_() for n, x in t.items() if isinstance(x, torch.Tensor) and x.is_floating_point()}
        o = nk_cases.flatten_result(case, nk_cases.call_op(fn, case, t, "triton"))["o"]
        got[tokens] = torch.autograd.grad(o, list(leaves.values()), torch.ones_like(o), allow_unused=True)
    for a, b in zip(*got.values()):
        assert (a is None) == (b is None) and (a is None or rel_error(b, a) < 1e-4)


def test_tile_grads_compile_failure_runs_eagerly(monkeypatch):
    """When torch.compile of the tile algebra fails, tile_grads warns once and differentiates the
    eager tile algebra from then on (same gradients)."""
    from nested_kernels.ops.mlp_memory import tile_grads as tg
    monkeypatch.setattr(tg._Tile, "compiled", None)
    monkeypatch.setattr(tg._Tile, "broken", False)
    compiles = []

    def failing_compile(fn, **kw):
        compiles.append(fn)

        def run(*args, **kwargs):
            raise RuntimeError("inductor failed")
        return run
    monkeypatch.setattr(torch, "compile", failing_compile)
    monkeypatch.setattr(tg.chunk, "_tile", lambda x, scale: (scale * x, x * x))
    x = torch.randn(5, requires_grad=True)
    cuda = torch.device("cuda")          # only the device type is looked at
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        (g,) = tg._Tile.vjp(cuda, (x,), dict(scale=2.0), [torch.ones(5), torch.ones(5)], [x], 2)
    assert torch.allclose(g, 2.0 + 2 * x)
    (g,) = tg._Tile.vjp(cuda, (x,), dict(scale=3.0), [torch.ones(5), torch.zeros(5)], [x], 2)
    assert torch.allclose(g, torch.full_like(x, 3.0)) and len(compiles) == 1


def test_token_parts_precision(prep_knob, monkeypatch):
    """NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION=bf16: the split backward's token parts (2, 3) run
    with bf16 operands (rounded and multiplied in float32 under the interpreter), the chain (1)
    and the forward as before; bf16 inputs stay within SPEC §7's 2e-2."""
    from nested_kernels.ops.mlp_memory import triton_bwd
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION", "bf16")
    precs = []
    kernel = triton_bwd._bwd_kernel

    class Spy:
        __name__ = kernel.__name__

        def __getitem__(self, grid):
            def launch(*args, **kw):
                precs.append((kw["PART"], kw["PREC"]))
                return kernel[grid](*args, **kw)
            return launch
    monkeypatch.setattr(triton_bwd, "_bwd_kernel", Spy())
    x, st = make(T=24, gates="abm", init=True, seed=8)
    check(x, st, dtype=torch.bfloat16, target="self", read="chunk")
    if triton_backend._bwd_split() and triton_backend._token_parts() == "torch":
        assert precs == [(1, "ieee")], precs         # the token gradients come from tile_grads
    elif triton_backend._bwd_split():
        assert precs == [(1, "ieee"), (2, "bf16_emu"), (3, "bf16_emu")], precs
    else:
        assert precs == [(0, "ieee")], precs


def test_without_initial_or_final_state():
    x, _ = make(T=20, gates="ab", seed=9)
    leaves = [None if x[n] is None else x[n].float().to(DEVICE).requires_grad_(True) for n in ARGS]
    o, fs = mlp_memory(*leaves, chunk_size=16, backend="triton")
    assert fs is None
    refl = [None if a is None else a.detach().double().cpu().requires_grad_(True) for a in leaves]
    oref, _ = mlp_memory(*refl, chunk_size=16, backend="reference")
    assert rel_error(o, oref) <= 2e-3
    g = torch.autograd.grad(o.square().sum(), [a for a in leaves if a is not None])
    gref = torch.autograd.grad(oref.square().sum(), [a for a in refl if a is not None])
    for a, b in zip(g, gref):
        assert rel_error(a, b) <= 2e-3


@pytest.mark.parametrize("value", ["2", "on"])
def test_prep_knob_rejects_other_values(value, monkeypatch):
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PREP", value)
    x, _ = make(T=4, gates="ab")
    args = [None if x[n] is None else x[n].float().to(DEVICE) for n in ARGS]
    with pytest.raises(ValueError, match="NESTED_KERNELS_MLP_TRITON_PREP"):
        mlp_memory(*args, chunk_size=16, backend="triton")


def test_empty_sequence_returns_state():
    x, st = make(T=0, gates="abm", init=True)
    args = [None if x[n] is None else x[n].float() for n in ARGS]
    init = tuple(st[n].float() for n in ("W1", "W2", "S1", "S2"))
    o, fs = mlp_memory(*args, initial_state=init, chunk_size=16, output_final_state=True, backend="triton")
    assert o.shape == (1, 0, 1, 16)
    for name, want in zip(("W1", "W2", "S1", "S2", "W1_chunk", "W2_chunk"), init + init[:2]):
        assert torch.equal(getattr(fs, name), want), name
    assert fs.position.tolist() == [0]


# -- fallbacks -------------------------------------------------------------------------------------

def _inputs(K=16, V=16, F=32, dtype=torch.float32):
    x, _ = make(T=4, K=K, V=V, F=F, gates="")
    d = {n: None if t is None else t.to(dtype) for n, t in x.items()}
    return dict(d, w1_0=None, w2_0=None, s1_0=None, s2_0=None, w1_chunk0=None, w2_chunk0=None,
                position0=None, cu_seqlens=None)


@pytest.mark.parametrize("C,K,V,F,dtype,what", [
    (1, 16, 16, 32, torch.float32, "chunk_size=1"),
    (8, 16, 16, 32, torch.float32, "chunk_size=8"),
    (256, 16, 16, 32, torch.float32, "chunk_size=256"),
    (16, 8, 16, 32, torch.float32, "K=8"),
    (16, 16, 48, 32, torch.float32, "V=48"),
    (16, 16, 16, 1024, torch.float32, "F=1024"),
    (16, 16, 16, 48, torch.float32, "F=48"),
    (16, 16, 16, 32, torch.float64, "float64"),
])
def test_unsupported_reasons(C, K, V, F, dtype, what):
    cfg = dict(chunk_size=C, target="external", read="after")
    why = triton_backend.unsupported(_inputs(K, V, F, dtype), cfg)
    assert why is not None and what in why


def test_supported_configs_have_no_reason():
    for C in triton_backend.SUPPORTED_CHUNK:
        for K in (32, 64, 128):
            for F in (K, 2 * K, 4 * K):
                cfg = dict(chunk_size=C, target="external", read="after")
                assert triton_backend.unsupported(_inputs(K, K, F), cfg) is None


def test_registered_auto_and_forced_fallback_message():
    assert api.BACKENDS["triton"] is triton_backend.BACKEND
    x, _ = make(T=4, gates="")
    args = [None if x[n] is None else x[n].float().to(DEVICE) for n in ARGS]
    with pytest.raises(RuntimeError, match="chunk_size=8"):
        mlp_memory(*args, chunk_size=8, backend="triton")
    o, _ = mlp_memory(*args, chunk_size=8)          # "auto" takes a backend that accepts them
    ref, _ = mlp_memory(*[None if a is None else a.double().cpu() for a in args], chunk_size=8,
                        backend="reference")
    assert rel_error(o, ref) <= 1e-5
    if DEVICE == "cpu":   # Triton is never chosen automatically on the CPU
        cfg = dict(chunk_size=16, target="external", read="after", scale=1.0, activation="gelu",
                   residual=True, output_final_state=False)
        assert api.select_backend("mlp_memory", "auto", api.BACKENDS, torch.device("cpu"),
                                  _inputs(), cfg) != "triton"


def test_out_of_resources_falls_back_to_torch(monkeypatch):
    """A kernel Triton cannot launch (shared memory) makes that call warn and run on torch."""
    from triton.runtime.errors import OutOfResources
    run_forward = triton_backend._Args.run_forward

    def refuse_when_saving(self, *args, **kw):
        if kw.get("saved") is not None:
            raise OutOfResources(300000, 232448, "shared memory")
        return run_forward(self, *args, **kw)
    monkeypatch.setattr(triton_backend._Args, "run_forward", refuse_when_saving)
    x, st = make(T=20, gates="abm", init=True, seed=10)
    from nested_kernels.core.backends import BackendFallbackWarning
    with pytest.warns(BackendFallbackWarning, match="using the torch backend"):
        check(x, st, read="after")


def test_out_of_resources_retries_larger_f_blocks(prep_knob, monkeypatch):
    """A launch refused at BF = 16 is retried at BF = 32 (no fallback, no warning), and the block
    that launched is remembered for the configuration (H100: tf32x3 at K = 64, F = 256 needs more
    than 227 KB of shared memory with BF = 16, and fits with BF = 64)."""
    import warnings
    from triton.runtime.errors import OutOfResources
    from nested_kernels.core.backends import BackendFallbackWarning
    run_forward = triton_backend._Args.run_forward
    blocks = []

    def refuse_small_blocks(self, *args, **kw):
        blocks.append(self.BF)
        if self.BF < 32:
            raise OutOfResources(237568, 232448, "shared memory")
        return run_forward(self, *args, **kw)
    monkeypatch.setattr(triton_backend._Args, "run_forward", refuse_small_blocks)
    monkeypatch.setattr(triton_backend, "_F_BLOCKS", {})
    x, st = make(T=20, F=64, gates="abm", init=True, seed=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BackendFallbackWarning)
        check(x, st, read="after")
        assert blocks == [16, 32], blocks      # the forward: 16 refused, 32 ran (the backward reuses its residuals)
        blocks.clear()
        check(x, st, read="after")
    assert blocks == [32], blocks                       # the next call starts at the block that ran
    assert set(triton_backend._F_BLOCKS.values()) == {32}
    monkeypatch.setenv("NESTED_KERNELS_MLP_TRITON_PREP", "1" if prep_knob == "0" else "0")
    blocks.clear()
    check(x, st, read="after")
    assert blocks == [16, 32], blocks                   # other kernels (knobs): nothing remembered
    monkeypatch.setenv(triton_backend.BUDGET_ENV, "1")  # no residuals: the backward re-runs the forward
    blocks.clear()
    check(x, st, read="after")
    assert blocks == [16, 32, 16, 32], blocks           # forward, then the backward's re-run


@pytest.mark.parametrize("ns", [1, 2, 4])
def test_every_launch_runs_all_f_slices(ns, prep_knob, monkeypatch):
    """Both kernels run on the grid (N·H, NS) with NS as compiled, cooperatively when NS > 1 (the
    slices of a (sequence, head) wait for each other once per tile). The backward once ran on
    (N·H,) with NS = 8: slice 0 waited forever for the other seven (H100 hang, 2026-11-26). The
    interpreter cannot run NS > 1 (its programs run one after another), so the kernels are
    replaced by recorders here; the slice arithmetic is checked by python/check_mlp_memory_triton.py.
    With the prep kernel: one launch on (tiles, H) before the forward (its rows are kept with the
    forward's residuals, so the backward does not launch it again); with the backward split, three backward launches (one with
    NESTED_KERNELS_MLP_TRITON_TOKENS=torch)."""
    from nested_kernels.ops.mlp_memory import triton_bwd, triton_fwd, triton_prep
    seen = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kw: seen.append((self.name, tuple(grid), kw.get("NS"),
                                                    kw.get("launch_cooperative_grid", False)))
    monkeypatch.setattr(triton_fwd, "_fwd_kernel", Recorder("fwd"))
    monkeypatch.setattr(triton_bwd, "_bwd_kernel", Recorder("bwd"))
    monkeypatch.setattr(triton_prep, "_prep_kernel", Recorder("prep"))
    monkeypatch.setattr(triton_backend, "_slices", lambda F, BF, NH, device: ns)
    x, st = make(B=2, T=20, H=3, gates="abm", init=True)
    run("triton", x, st, torch.float32, chunk_size=16, read="chunk")
    kernel_prep = prep_knob == "1" and triton_backend._prep_source() == "triton"
    prep = [("prep", (2 * 2, 3), None, False)] if kernel_prep else []    # 2 sequences of 2 tiles
    bwd = ("bwd",) * bwd_launches("chunk")
    assert seen == prep + [("fwd", (6, ns), ns, ns > 1)] + [(n, (6, ns), ns, ns > 1) for n in bwd]



def test_split_compile_failure_retries_with_fewer_slices(prep_knob, monkeypatch):
    """A kernel variant Triton fails to compile with NS > 1 F slices ("PassManager::run failed":
    TritonGPURemoveLayoutConversions, H100 2026-11-26c, varlen forward at NS = 8) is retried with NS
    halved down to 1, with a RuntimeWarning and correct results; the NS that compiled is remembered
    for the variant, so later calls start there. The failing compile is simulated (the interpreter
    runs no NS > 1: its programs cannot wait for each other), then the real kernels run at NS = 1."""
    from nested_kernels.ops.mlp_memory import triton_bwd, triton_fwd
    tried = []

    class FailsWithSlices:
        def __init__(self, kernel):
            self.kernel, self.__name__ = kernel, kernel.__name__

        def __getitem__(self, grid):
            def launch(*args, **kw):
                tried.append((self.__name__, kw["NS"]))
                if kw["NS"] > 1:
                    raise RuntimeError("PassManager::run failed")
                return self.kernel[grid](*args, **kw)
            return launch
    monkeypatch.setattr(triton_fwd, "_fwd_kernel", FailsWithSlices(triton_fwd._fwd_kernel))
    monkeypatch.setattr(triton_bwd, "_bwd_kernel", FailsWithSlices(triton_bwd._bwd_kernel))
    monkeypatch.setattr(triton_backend, "_slices", lambda F, BF, NH, device: 4)
    monkeypatch.setattr(triton_backend, "_NS_CAPS", {})
    x, st = make(T=20, gates="abm", init=True, seed=14)
    with pytest.warns(RuntimeWarning, match="retrying with fewer F slices"):
        check(x, st, read="before")
    # forward 4, 2 (refused), 1; the backward (the forward's residuals) starts at the remembered 1
    bwd = [("_bwd_kernel", 1)] * bwd_launches("before")
    assert tried == [("_fwd_kernel", 4), ("_fwd_kernel", 2), ("_fwd_kernel", 1)] + bwd, tried
    assert list(triton_backend._NS_CAPS.values()) == [1]
    tried.clear()
    check(x, st, read="before")
    assert tried == [("_fwd_kernel", 1)] + bwd, tried
    # other failures are not swallowed
    monkeypatch.setattr(triton_backend, "_NS_CAPS", {})
    monkeypatch.setattr(triton_backend, "_slices", lambda F, BF, NH, device: 1)

    class Broken(FailsWithSlices):
        def __getitem__(self, grid):
            def launch(*args, **kw):
                raise RuntimeError("PassManager::run failed")
            return launch
    monkeypatch.setattr(triton_fwd, "_fwd_kernel", Broken(triton_fwd._fwd_kernel))
    with pytest.raises(RuntimeError, match="PassManager"):
        check(x, st, read="before")


# -- GPU only --------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("gates,target,read,C,K,F", REALISTIC)
def test_gpu_realistic(dtype, gates, target, read, C, K, F):
    x, st = realistic_inputs(gates, K, F)
    check(x, st, dtype=dtype, chunk_size=C, target=target, read=read)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_runaway_dynamics_with_precision_float32(dtype):
    """The self target without decay on these inputs runs away (|o| from 1e2 to 1e21 over 192
    tokens; python/emulate_mlp_memory_conditioning.py): tf32 products miss the bound there (H100
    2026-12-06g: gradients 1.2e-1 to 4.4e-1), precision="float32" meets it."""
    x, st = runaway_inputs()
    check(x, st, dtype=dtype, chunk_size=64, target="self", read="after", precision="float32")


@pytest.mark.gpu
def test_gpu_torch_compile_of_the_op_with_the_compiled_tile_vjp():
    """The op under torch.compile(fullgraph=True) with the triton backend: its backward (an opaque
    custom op at run time) runs tile_grads, which compiles the tile algebra itself; loss and
    gradients equal the eager call's. Dynamo's cache is reset first: the residual buffer's size
    depends on NESTED_KERNELS_MLP_TRITON_PREP, which the fixture changes between the runs of this
    test and which a compiled graph does not guard on (knobs are read while tracing)."""
    torch._dynamo.reset()
    x, st = make(B=2, T=150, H=2, K=64, V=64, F=256, gates="abm", init=True, seed=12)
    leaves = [x[n].to(DEVICE, torch.bfloat16).requires_grad_(True) for n in ("q", "k", "v", "eta")]
    rest = [x[n].to(DEVICE, torch.bfloat16) for n in ("w1", "w2", "log_alpha", "mu")]

    def f(q, k, v, eta):
        w1, w2, la, mu = rest
        o, fs = mlp_memory(q, k, v, eta, w1, w2, la, eta, mu, chunk_size=64, target="self", read="chunk",
                           output_final_state=True, backend="triton")
        return o.float().square().sum() + fs.W2.sum()

    loss = f(*leaves)
    eager = torch.autograd.grad(loss, leaves)
    got = torch.compile(f, fullgraph=True)(*leaves)
    assert rel_error(got, loss) < 1e-3
    for g, e in zip(torch.autograd.grad(got, leaves), eager):
        assert rel_error(g.float(), e.float()) < 1e-3
