"""The fused Triton ``mlp_memory_step`` (under TRITON_INTERPRET=1 on CPU, tiny shapes): decode
streams crossing chunk boundaries against one float64 call of the full op, every SPEC §3 option and
dtype, several F blocks, in-place state semantics, fallbacks and errors."""
from __future__ import annotations

import pytest
import torch

from nested_kernels import MLPMemoryState, mlp_memory_step
from nested_kernels.cases import Case
from nested_kernels.step_check import assert_step_in_place, step_inputs
from nested_kernels.step_check import assert_stream_close as check
from nested_kernels.testing import assert_close_rel

ALL = ("log_alpha", "beta", "mu")
OP = "mlp_memory"


def case(dtype=torch.float32, *, gates=ALL, C=4, T=10, B=2, H=2, K=8, V=8, F=24, init=True, **kw):
    return Case(OP, dict(B=B, T=T, H=H, K=K, V=V, F=F), dtype, dict(chunk_size=C, **kw),
                dict(gates=gates, initial_state=init))


GRID = [  # gates, target, read, activation, residual, C
    ((), "external", "after", "gelu", True, 4),
    (("log_alpha",), "external", "before", "silu", False, 3),
    (("log_alpha", "beta"), "external", "chunk", "gelu", False, 4),
    (ALL, "external", "after", "silu", True, 1),
    (("mu",), "self", "before", "gelu", True, 4),
    (("beta", "mu"), "self", "chunk", "silu", True, 3),
    (ALL, "self", "after", "gelu", False, 4),
    (("log_alpha", "mu"), "self", "chunk", "silu", False, 2),
]


@pytest.mark.parametrize("gates,target,read,activation,residual,C", GRID)
def test_stream_matches_full_op(gates, target, read, activation, residual, C):
    check(case(gates=gates, target=target, read=read, activation=activation, residual=residual, C=C,
               scale=0.8))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    check(case(dtype, target="self", read="after"))


def test_several_f_blocks_odd_sizes_k_ne_v(monkeypatch):
    """F = 40 in blocks of 16 (last one partial), K = 12, V = 20 (no residual, external target)."""
    monkeypatch.setenv("NESTED_KERNELS_MM_STEP_BF", "16")
    check(case(K=12, V=20, F=40, residual=False, read="before"))


@pytest.mark.parametrize("prefix", [3, 4, 5])      # C = 4: the last token of a chunk, a chunk start, mid-chunk
def test_equals_torch_step_in_place(prefix):
    c = case(T=8, target="self")
    st, tok = step_inputs(c, prefix)
    if prefix == 4:          # a stale chunk-start copy at a boundary is refreshed, as by the torch step
        st.W1_chunk.normal_()
        st.W2_chunk.normal_()
    assert_step_in_place(c, tok, st)


def test_from_weights_state_without_momentum():
    N, H, K, F = 3, 2, 8, 16
    w1, w2 = torch.randn(H, K, F) * F ** -0.5, torch.randn(H, F, K) * K ** -0.5
    st = MLPMemoryState.from_weights(w1, w2, N, chunk_size=2)
    ref = st.clone()
    q, k, v = torch.randn(N, H, K), torch.nn.functional.normalize(torch.randn(N, H, K), dim=-1), torch.randn(N, H, K)
    eta = 0.1 * torch.rand(N, H)
    for _ in range(3):
        o = mlp_memory_step(q, k, v, eta, state=st, backend="triton")
        assert_close_rel(o, mlp_memory_step(q, k, v, eta, state=ref, backend="torch"), 1e-5, "o")
    assert_close_rel(st.W2, ref.W2, 1e-5, "W2")
    assert_close_rel(st.W1_chunk, ref.W1_chunk, 1e-5, "W1_chunk")
    assert torch.equal(st.position, ref.position)


def test_unsupported_states_and_inputs_are_refused_with_a_reason():
    c = case(gates=(), T=3)
    st, tok = step_inputs(c, 2)
    args = (tok["q"], tok["k"], tok["v"], tok["eta"])
    with pytest.raises(RuntimeError, match="float64"):
        mlp_memory_step(*(a.double() for a in args), state=st, backend="triton")
    st.W1 = st.W1.transpose(-1, -2).contiguous().transpose(-1, -2)
    with pytest.raises(RuntimeError, match="contiguous"):
        mlp_memory_step(*args, state=st, backend="triton")
    with pytest.raises(ValueError, match="activation"):
        mlp_memory_step(*args, state=st, activation="relu", backend="triton")
    assert mlp_memory_step(*args, state=st) is not None          # auto: the torch step on CPU
