"""The ``cuda`` backend of ``mlp_memory``: the Triton backend with the forward walk of
csrc/mlp_memory/walk.cu (``ops/mlp_memory/cuda_walk.py``).

On the CPU: what it covers and refuses, and that ``auto`` does not pick it. On the GPU
(``pytest -m gpu``): outputs, final states and the gradients of a random functional of all of them
with respect to every input against the float64 reference (the backward is the Triton backend's,
fed by the walk's checkpoints, E and B Aᵀ rows), with and without residuals kept, and the walk's
outputs against the Triton walk's. Inputs are fresh random tensors; outputs NaN-poisoned.
"""
from __future__ import annotations

import pytest
import torch

from nested_kernels.ops.mlp_memory import api, cuda_walk, mlp_memory
from nested_kernels.testing import assert_run_close, rel_error, tolerance
from test_mlp_memory_triton import (ARGS, REALISTIC, STEADY_ETA, make, realistic_inputs,  # the Triton tests' data
                                    run, runaway_inputs)

pytest.importorskip("triton")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def cfg(**kw):
    return dict(dict(chunk_size=64, target="self", read="chunk", scale=1.0, activation="gelu", residual=True,
                     output_final_state=True), **kw)


def inputs(B=1, T=128, H=2, K=64, V=64, F=256, dtype=torch.bfloat16, device="cpu", **kw):
    """The op's input dict (``api.INPUTS``; no initial state) of ``make``'s tensors, then ``kw``."""
    x, _ = make(B=B, T=T, H=H, K=K, V=V, F=F)
    out = dict.fromkeys(api.INPUTS)
    out.update({n: None if t is None else t.to(device, dtype) for n, t in x.items()}, **kw)
    return out


def test_exchange_knob(monkeypatch):
    assert cuda_walk.exchange() == "auto"
    monkeypatch.setenv("NESTED_KERNELS_MLP_CUDA_EXCHANGE", "dsmem")
    with pytest.raises(ValueError, match="NESTED_KERNELS_MLP_CUDA_EXCHANGE"):
        cuda_walk.exchange()


def test_auto_order_takes_cuda_where_the_walk_runs_in_one_round(monkeypatch):
    """auto: cuda first where the walk's (F / 64)·B·H CTAs fit one per SM, else triton first."""
    from types import SimpleNamespace as NS
    from nested_kernels.core.extension import cuda_extension_unavailable_reason
    if cuda_extension_unavailable_reason() is not None:
        pytest.skip(cuda_extension_unavailable_reason())
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: NS(multi_processor_count=132))
    gpu = lambda B, H, F: dict(q=NS(device=torch.device("cuda", 0), shape=(B, 64, H, 64)),  # noqa: E731
                               w1=NS(shape=(H, 64, F)))
    assert api.auto_order(gpu(4, 8, 256))[0] == "cuda"          # issue 4's shape: 128 CTAs
    assert api.auto_order(gpu(4, 8, 512))[0] == "triton"        # 256 CTAs: clusters in rounds
    assert api.auto_order(inputs())[0] == "triton"              # CPU tensors


def test_registered_and_not_auto_on_cpu():
    assert "cuda" in api.BACKENDS
    why = cuda_walk.unsupported(inputs(), cfg())
    assert "CUDA tensors" in why
    x, _ = make(B=1, T=16, H=1, K=16, V=16, F=32)
    with pytest.raises(RuntimeError, match="CUDA"):
        mlp_memory(*[x[n] for n in ("q", "k", "v", "eta", "w1", "w2")], chunk_size=16, backend="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("change,what", [
    (dict(dtype=torch.float32), "bfloat16 / float16"),
    (dict(K=64, V=32, F=256), "K = V"),
    (dict(K=128, V=128, F=512), "K = V"),
    (dict(F=32, K=32, V=32), "F=32"),
    (dict(T=100), "multiple of chunk_size"),
])
def test_gpu_unsupported_reasons(change, what):
    assert what in cuda_walk.unsupported(inputs(device=DEVICE, **change), cfg())


@pytest.mark.gpu
def test_gpu_unsupported_chunk_and_varlen():
    assert "chunk_size" in cuda_walk.unsupported(inputs(device=DEVICE), cfg(chunk_size=128))
    assert cuda_walk.unsupported(inputs(device=DEVICE, log_alpha=None), cfg()) is None
    assert "precision='float32'" in cuda_walk.unsupported(inputs(device=DEVICE), cfg(precision="float32"))
    assert cuda_walk.unsupported(inputs(device=DEVICE, K=32, V=32, F=128), cfg()) is None
    cu = torch.tensor([0, 64, 128], device=DEVICE)
    x = inputs(device=DEVICE, cu_seqlens=cu)
    assert "fixed-length" in cuda_walk.unsupported(x, cfg())
    assert cuda_walk.unsupported(inputs(device=DEVICE), cfg()) is None


# (gates, target, read, activation, residual, C, K, F): every gate set, target, read, activation
GRID = [
    ("abm", "self", "chunk", "gelu", True, 64, 64, 256),     # issue 4's configuration
    ("abm", "external", "after", "silu", True, 32, 64, 256),
    ("ab", "self", "before", "gelu", True, 16, 32, 128),
    ("am", "external", "after", "gelu", False, 64, 64, 64),
    ("m", "external", "chunk", "silu", True, 16, 64, 512),
    ("", "external", "before", "silu", True, 32, 32, 128),
    ("bm", "external", "after", "gelu", True, 64, 32, 256),
    ("abm", "self", "after", "gelu", True, 64, 32, 256),
]


def grid_inputs(gates, C, K, F):
    return make(B=2, T=3 * C, H=2, K=K, V=K, F=F, gates=gates, init=True, seed=21, eta_max=STEADY_ETA)


def walk_inputs():
    return make(B=2, T=256, H=4, K=64, V=64, F=256, gates="abm", init=True, seed=22, eta_max=STEADY_ETA)


def largest_output(x, st, **cfg) -> float:
    """max |o| of the float64 torch backend on these inputs."""
    o, _ = mlp_memory(*[x[n] for n in ARGS],
                      initial_state=(st["W1"], st["W2"], st.get("S1"), st.get("S2")), backend="torch", **cfg)
    return o.abs().max().item()


def test_gpu_data_stay_bounded():
    """The GPU tests' inputs keep the memory's outputs bounded (|o| ≤ 1e3, float64): runaway data
    (|o| growing to 1e22 over 200 tokens with η up to 0.3) made tf32 kernels look wrong and leave
    float32's range (2026-12-06h, docs/mlp_memory_triton.md "Where tf32 is too coarse")."""
    cases = [(realistic_inputs(g, K, F), dict(chunk_size=C, target=t, read=r)) for g, t, r, C, K, F in REALISTIC]
    cases += [(grid_inputs(g, C, K, F), dict(chunk_size=C, target=t, read=r, activation=a, residual=res))
              for g, t, r, a, res, C, K, F in GRID]
    cases.append((walk_inputs(), dict(chunk_size=64, target="self", read="after")))
    for (x, st), cfg in cases:
        assert largest_output(x, st, **cfg) <= 1e3, cfg
    x, st = runaway_inputs()
    assert largest_output(x, st, chunk_size=64, target="self", read="after") > 1e15     # the runaway case


@pytest.mark.gpu
@pytest.mark.parametrize("gates,target,read,activation,residual,C,K,F,dtype",
                         [g + (torch.bfloat16,) for g in GRID] + [GRID[0] + (torch.float16,), GRID[1] + (torch.float16,)])
def test_gpu_matches_reference(dtype, gates, target, read, activation, residual, C, K, F):
    x, st = grid_inputs(gates, C, K, F)
    kw = dict(chunk_size=C, target=target, read=read, activation=activation, residual=residual)
    got, dgot = run("cuda", x, st, dtype, **dict(kw))
    ref, dref = run("reference", x, st, dtype, **dict(kw))
    assert_run_close(got, dgot, ref, dref, tolerance("triton", dtype))


@pytest.mark.gpu
@pytest.mark.parametrize("keep,exchange", [("1", "auto"), ("0", "auto"), ("1", "cluster")])
def test_gpu_walk_equals_triton_walk(keep, exchange, monkeypatch):
    """Forward outputs and final states of the two walks agree to tf32 rounding; the backward
    works from the CUDA walk's residuals and from its re-run (no residuals kept); both ways of
    exchanging the partial sums (here "auto" is the cooperative launch: 16 CTAs fit any GPU)."""
    monkeypatch.setenv("NESTED_KERNELS_MLP_CUDA_EXCHANGE", exchange)
    if keep == "0":
        monkeypatch.setenv("NESTED_KERNELS_MLP_BWD_BYTES", "0")
    x, st = walk_inputs()
    kw = dict(chunk_size=64, target="self", read="after")
    got, dgot = run("cuda", x, st, torch.bfloat16, **dict(kw))
    tri, dtri = run("triton", x, st, torch.bfloat16, **dict(kw))
    for n in ("o", "W1", "W2", "S1", "S2"):
        assert rel_error(got[n].float(), tri[n].float()) < 5e-3, n
    for n in dgot:
        assert rel_error(dgot[n].float(), dtri[n].float()) < 1e-2, n
