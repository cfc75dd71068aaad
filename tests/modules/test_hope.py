"""Tests of the HOPE modules: SelfModifyingTitans (layer around the SPEC §5 core), HopeBlock (+ CMS)
and HopeLM — forward/backward, streaming in pieces == one call, packed sequences, the causal
convolution against torch's conv1d, argument errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nested_kernels.modules.hope import HopeBlock, HopeBlockState, HopeLM
from nested_kernels.modules.titans import SelfModifyingTitans, TitansLayerState, causal_conv
from nested_kernels.testing import assert_close_rel

F64 = torch.float64
SMALL = dict(chunk_size_other=2, chunk_size_memory=4, eta_scale=0.2)
PIECES = [(0, 3), (3, 4), (4, 9), (9, 13)]           # splits inside chunks of both grids


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pieces(module, x, pieces=PIECES):
    outs, st = [], None
    for a, b in pieces:
        y, st = module(x[:, a:b], st)
        outs.append(y)
    return torch.cat(outs, 1), st


def test_causal_conv_matches_conv1d():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 9, 5, generator=g, dtype=F64)
    w = torch.randn(5, 4, generator=g, dtype=F64)
    want = F.conv1d(F.pad(u.transpose(1, 2), (3, 0)), w[:, None, :], groups=5).transpose(1, 2)
    got, cache = causal_conv(u, w, None, None)
    assert_close_rel(got, want, 1e-14, "conv")
    assert torch.equal(cache, u[:, -3:])
    # in pieces, and packed with an empty and a short segment
    y1, c1 = causal_conv(u[:, :2], w, None, None)
    y2, c2 = causal_conv(u[:, 2:], w, c1, None)
    assert_close_rel(torch.cat([y1, y2], 1), want, 1e-14, "conv pieces")
    assert torch.equal(c2, cache)
    packed = torch.cat([u[0, :2], u[1]])[None]
    cu = torch.tensor([0, 2, 2, 11])
    yp, cp = causal_conv(packed, w, None, cu)
    w0 = F.conv1d(F.pad(u[:1, :2].transpose(1, 2), (3, 0)), w[:, None, :], groups=5).transpose(1, 2)
    assert_close_rel(yp[0, :2], w0[0], 1e-14, "packed seq 0")
    assert_close_rel(yp[0, 2:], want[1], 1e-14, "packed seq 2")
    assert torch.equal(cp[0, 1:], u[0, :2]) and (cp[0, 0] == 0).all() and (cp[1] == 0).all()
    assert torch.equal(cp[2], u[1, -3:])


@pytest.mark.parametrize("memory,read", [("mlp", "chunk"), ("linear", "before")])
def test_titans_forward_backward(memory, read):
    torch.manual_seed(0)
    m = SelfModifyingTitans(16, 2, memory=memory, read=read, mu=0.5, **SMALL)
    x = torch.randn(2, 9, 16)
    y, st = m(x)
    assert y.shape == x.shape and isinstance(st, TitansLayerState)
    assert st.conv.shape == (2, 3, m.x_channels + 16)
    y.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for n, p in m.named_parameters() if n.startswith("mem_"))


@pytest.mark.parametrize("memory", ["mlp", "linear"])
def test_titans_streaming_equals_one_call(memory):
    torch.manual_seed(0)
    m = SelfModifyingTitans(16, 2, memory=memory, read="before", mu=0.5, **SMALL).double()
    x = torch.randn(2, 13, 16, dtype=F64)
    y, st = m(x)
    y2, st2 = _pieces(m, x)
    assert_close_rel(y2, y, 1e-12, "y")
    assert_close_rel(st2.conv, st.conv, 1e-14, "conv cache")
    for n, t in st.core.tensors().items():
        if t is not None:
            assert_close_rel(st2.core.tensors()[n], t, 1e-12, n)


def test_titans_cu_seqlens_equals_separate_calls():
    torch.manual_seed(0)
    m = SelfModifyingTitans(16, 2, **SMALL).double()
    x = torch.randn(2, 7, 16, dtype=F64)
    packed = torch.cat([x[0, :4], x[1]])[None]
    y, st = m(packed, cu_seqlens=torch.tensor([0, 4, 4, 11]))
    y0, _ = m(x[:1, :4])
    y1, s1 = m(x[1:])
    assert_close_rel(y[0, :4], y0[0], 1e-12, "seq 0")
    assert_close_rel(y[0, 4:], y1[0], 1e-12, "seq 2")
    assert st.core.num_sequences == 3 and torch.equal(st.conv[2], s1.conv[0])


def test_titans_initialisation():
    """At initialisation the retention is ≈ sigmoid(alpha_bias_init) and the core's x has unit norm."""
    m = SelfModifyingTitans(16, 2, alpha_bias_init=6.0)
    x_unit = torch.zeros(2, 8)
    x_unit[:, -1] = m.bias_value
    skip = m.memory_params()["alpha"][2]
    assert torch.allclose((skip[:, 0] * x_unit).sum(-1), torch.full((2,), 6.0))
    with pytest.raises(ValueError, match="head_dim"):
        SelfModifyingTitans(4, 4)
    with pytest.raises(ValueError, match="x must have shape"):
        m(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="state must be None or a TitansLayerState"):
        m(torch.randn(1, 3, 16), state=(1, 2))


def test_hope_block_streaming_and_backward():
    torch.manual_seed(0)
    b = HopeBlock(16, 2, [(2, 1e-2), (4, 1e-3)], cms_hidden=32, mu=0.5, read="before", **SMALL).double()
    x = torch.randn(2, 13, 16, dtype=F64)
    y, st = b(x)
    assert isinstance(st, HopeBlockState)
    y2, _ = _pieces(b, x)
    assert_close_rel(y2, y, 1e-12, "block pieces")
    y.square().mean().backward()
    for name, p in b.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_hope_block_bf16_cms_weights():
    """cms_weight_dtype reaches every CMS level: the block's CMS state holds bf16 fast weights."""
    torch.manual_seed(1)
    b = HopeBlock(16, 2, [(2, 1e-2), (4, 1e-3)], cms_hidden=32, cms_weight_dtype=torch.bfloat16, **SMALL)
    assert all(level.weight_dtype == torch.bfloat16 for level in b.cms.levels)
    y, st = b(torch.randn(2, 9, 16))
    assert torch.isfinite(y).all()
    weights = [t for lv in st.cms.levels for t in lv.weights]
    assert weights and all(t.dtype == torch.bfloat16 for t in weights)


def test_hope_lm():
    torch.manual_seed(0)
    lm = HopeLM(11, 16, 2, 2, [(2, 1e-2), (4, 1e-3)], cms_hidden=32, **SMALL).double()
    tok = torch.randint(0, 11, (2, 13))
    logits, st = lm(tok)
    assert logits.shape == (2, 13, 11) and len(st.blocks) == 2
    outs, s = [], None
    for a, b in PIECES:
        lg, s = lm(tok[:, a:b], s)
        outs.append(lg)
    assert_close_rel(torch.cat(outs, 1), logits, 1e-12, "lm pieces")
    F.cross_entropy(logits.reshape(-1, 11), tok.reshape(-1)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lm.parameters())
    out = lm.generate(tok[:, :3], 4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 7) and torch.equal(out[:, :3], tok[:, :3])
    with pytest.raises(ValueError, match="tokens"):
        lm(tok.float())
