"""The Triton ``fast_mlp_step`` (under TRITON_INTERPRET=1 on CPU, tiny shapes): decode streams
crossing chunk boundaries against one float64 call of the full op (gelu / silu / swiglu, target or
teach, η per token or a number, retention, residual), dtypes, several blocks, in-place state
semantics, fallbacks and errors."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from nested_kernels import fast_mlp_step
from nested_kernels.cases import Case
from nested_kernels.step_check import assert_step_in_place, step_inputs
from nested_kernels.step_check import assert_stream_close as check
from nested_kernels.testing import assert_close_rel

OP = "fast_mlp"


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    """Tiles of 16 × 16: several blocks along D and F at the tiny test sizes."""
    monkeypatch.setenv("NESTED_KERNELS_FM_STEP_BLOCKS", "16,16")


def case(dtype=torch.float32, *, mlp="gelu", C=3, T=9, B=2, D=24, F=40, signal="target", eta_kind="tensor", **kw):
    return Case(OP, dict(B=B, T=T, D=D, F=F), dtype, dict(mlp=mlp, chunk_size=C, **kw),
                dict(signal=signal, eta_kind=eta_kind))


GRID = [  # mlp, F, signal, eta kind, residual, retention, C
    ("gelu", 40, "target", "tensor", True, 1.0, 3),
    ("silu", 40, "teach", "float", False, 0.9, 2),
    ("swiglu", 36, "target", "float", True, 0.95, 3),
    ("swiglu", 36, "teach", "tensor", False, 1.0, 1),
    ("gelu", 33, "teach", "tensor", False, 0.8, 4),
]


@pytest.mark.parametrize("mlp,F,signal,eta_kind,residual,retention,C", GRID)
def test_stream_matches_full_op(mlp, F, signal, eta_kind, residual, retention, C):
    check(case(mlp=mlp, F=F, signal=signal, eta_kind=eta_kind, residual=residual, retention=retention, C=C))


@pytest.mark.parametrize("dtype,mlp", [(torch.float16, "swiglu"), (torch.bfloat16, "gelu")])
def test_half_precision_inputs(dtype, mlp):
    check(case(dtype, mlp=mlp, F=36))


@pytest.mark.parametrize("prefix", [2, 3, 4])      # C = 3: the last token of a chunk, a chunk start, mid-chunk
@pytest.mark.parametrize("mlp", ["silu", "swiglu"])
def test_equals_torch_step_in_place(prefix, mlp):
    c = case(mlp=mlp, T=6, retention=0.9)
    st, tok = step_inputs(c, prefix)
    assert_step_in_place(c, tok, st)


def test_strided_inputs():
    """x and target as rows of larger tensors (row stride ≠ D)."""
    c = case(T=4)
    st, tok = step_inputs(c, 3, seed=3)
    ref = st.clone()
    both = torch.cat([tok["x"], tok["target"]], dim=1)
    y = fast_mlp_step(both[:, :24], tok["eta"], state=st, target=both[:, 24:], backend="triton")
    assert_close_rel(y, fast_mlp_step(tok["x"], tok["eta"], state=ref, target=tok["target"], backend="torch"),
                     1e-5, "y")
    assert_close_rel(st.u0, ref.u0, 1e-5, "u0")


def test_unsupported_states_and_inputs_are_refused_with_a_reason():
    c = case(T=3)
    st, tok = step_inputs(c, 2)
    with pytest.raises(RuntimeError, match="float64"):
        fast_mlp_step(tok["x"].double(), tok["eta"], state=st, target=tok["target"], backend="triton")
    st.u1 = st.u1.t().contiguous().t() if st.u1.dim() == 2 else st.u1.transpose(1, 2).contiguous().transpose(1, 2)
    with pytest.raises(RuntimeError, match="contiguous"):
        fast_mlp_step(tok["x"], tok["eta"], state=st, target=tok["target"], backend="triton")
    with pytest.raises(ValueError, match="x"):
        fast_mlp_step(tok["x"][:, :5], tok["eta"], state=st, target=tok["target"], backend="triton")
    assert fast_mlp_step(tok["x"], tok["eta"], state=st, target=tok["target"]) is not None   # auto: torch on CPU


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_bf16_weights_equal_torch_step(mlp):
    """weight_dtype=bf16: a bf16 state (float32 pending update) stepped across two chunk ends by the
    Triton and the torch step: the same bf16 weights (one rounding per update, to nearest even) up
    to an element whose float32 sums differ across a rounding boundary (≤ 1 bf16 ulp each)."""
    c = case(mlp=mlp, F=36, T=7, retention=0.9)
    st, _ = step_inputs(c, 2)
    st = dataclasses.replace(st, **{f"w{i}": w.to(torch.bfloat16) for i, w in enumerate(st.weights)})
    ref = st.clone()
    g = torch.Generator().manual_seed(4)
    for _ in range(5):                                 # C = 3 from position 2: updates at steps 1 and 4
        x, sig = torch.randn(2, 24, generator=g), torch.randn(2, 24, generator=g)
        kw = dict(target=sig, mlp=mlp, retention=0.9, weight_dtype=torch.bfloat16)
        y = fast_mlp_step(x, 0.1, state=st, backend="triton", **kw)
        assert_close_rel(y, fast_mlp_step(x, 0.1, state=ref, backend="torch", **kw), 1e-5, "y")
    for name, t in st.tensors().items():
        if t is not None:
            assert t.dtype == ref.tensors()[name].dtype
            assert_close_rel(t, ref.tensors()[name], 1e-5, name)
