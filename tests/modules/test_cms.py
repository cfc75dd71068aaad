"""CMS (SPEC §4): a chain of fast_mlp levels; streaming; from_mlp; errors."""
import pytest
import torch
from torch import nn

from nested_kernels.modules import CMS, CMSState
from nested_kernels.ops.fast_mlp import fast_mlp
from nested_kernels.testing import assert_close_rel

D, FH = 6, 12
LEVELS = [(4, 0.1), (2, 0.2), (1, 0.05)]


def make_cms(mlp="gelu", **kw):
    return CMS(D, FH, LEVELS, mlp=mlp, **kw).double()


def flat(state: CMSState):
    return [t for st in state.levels for t in st.tensors().values() if t is not None]


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("teach", [None, "one", "per_level"])
def test_chain_equals_manual_composition(mlp, teach):
    cms = make_cms(mlp, retention=0.9)
    assert [lv.chunk_size for lv in cms.levels] == [1, 2, 4]          # fast_first
    x = 0.5 * torch.randn(2, 7, D, dtype=torch.float64)
    teaches = [torch.randn(2, 7, D, dtype=torch.float64) for _ in LEVELS]
    arg = None if teach is None else teaches[0] if teach == "one" else teaches
    y, state = cms(x, teach=arg)
    h, manual_states = x, []
    for i, lv in enumerate(cms.levels):
        signal = dict(target=h) if teach is None else dict(teach=teaches[0] if teach == "one" else teaches[i])
        h, st = fast_mlp(h, lv.weights, lv.eta().expand(2, 7), chunk_size=lv.chunk_size, mlp=mlp,
                         retention=0.9, output_final_state=True, **signal)
        manual_states.append(st)
    assert_close_rel(y, h, 1e-14)
    for a, b in zip(flat(state), [t for st in manual_states for t in st.tensors().values() if t is not None]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("streamed", [False, True])
def test_without_final_state(streamed):
    """output_final_state=False: the same output and parameter gradients, no state (also when
    resuming from one)."""
    cms = make_cms("gelu", retention=0.9)
    x = 0.5 * torch.randn(2, 7, D, dtype=torch.float64)
    with torch.no_grad():
        state = cms(x[:, :3])[1] if streamed else None
    y, st = cms(x, state.clone() if streamed else None)
    y0, st0 = cms(x, state, output_final_state=False)
    assert st0 is None and st is not None
    assert_close_rel(y0, y, 1e-14)
    params = list(cms.parameters())      # resumed: the initial weights are unused (None gradients)
    g = torch.autograd.grad(y.square().sum(), params, allow_unused=True)
    g0 = torch.autograd.grad(y0.square().sum(), params, allow_unused=True)
    assert sum(a is not None for a in g0) >= len(cms.levels)
    for a, b in zip(g0, g):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close_rel(a, b, 1e-12)


def test_order_given_and_fixed_eta():
    cms = CMS(D, FH, LEVELS, order="given", learn_eta=False)
    assert [lv.chunk_size for lv in cms.levels] == [4, 2, 1]
    assert [lv.eta() for lv in cms.levels] == [0.1, 0.2, 0.05]
    assert not any("eta" in n for n, _ in cms.named_parameters())


@pytest.mark.parametrize("varlen", [False, True])
def test_streaming_in_pieces_equals_one_call(varlen):
    cms = make_cms("silu", retention=0.95)
    T = 11
    if varlen:          # two packed sequences of 6 and 5 tokens, streamed in pieces (3+2, 2+3, 1+0)
        x = 0.5 * torch.randn(1, T, D, dtype=torch.float64)
        seq = [x[:, :6], x[:, 6:]]
        pieces = [[(0, 3), (0, 2)], [(3, 5), (2, 5)], [(5, 6), (5, 5)]]
        y_full, st_full = cms(x, cu_seqlens=torch.tensor([0, 6, 11]))
        state, outs = None, [[], []]
        for piece in pieces:
            xs = torch.cat([s[:, a:b] for s, (a, b) in zip(seq, piece)], 1)
            lens = [b - a for a, b in piece]
            y, state = cms(xs, state, cu_seqlens=torch.tensor([0, lens[0], sum(lens)]))
            outs[0].append(y[:, :lens[0]])
            outs[1].append(y[:, lens[0]:])
        y_pieces = torch.cat([torch.cat(o, 1) for o in outs], 1)
    else:
        x = 0.5 * torch.randn(2, T, D, dtype=torch.float64)
        y_full, st_full = cms(x)
        state, ys = None, []
        for a, b in [(0, 3), (3, 8), (8, 11)]:
            y, state = cms(x[:, a:b], state)
            ys.append(y)
        y_pieces = torch.cat(ys, 1)
    assert_close_rel(y_pieces, y_full, 1e-12)
    for a, b in zip(flat(state), flat(st_full)):
        if a.is_floating_point():
            assert_close_rel(a, b, 1e-12)
        else:
            assert torch.equal(a, b)


def test_bf16_weights_stream_and_halve_state():
    """CMS(weight_dtype=bf16) in float32: every level's state holds bf16 weights, streaming in
    pieces equals one call, and each level equals fast_mlp with weight_dtype=bf16."""
    cms = CMS(D, FH, LEVELS, weight_dtype=torch.bfloat16)
    x = 0.5 * torch.randn(2, 9, D)
    y_full, st_full = cms(x)
    assert all(w.dtype == torch.bfloat16 for st in st_full.levels for w in st.weights)
    state, ys = None, []
    for a, b in [(0, 3), (3, 9)]:
        y, state = cms(x[:, a:b], state)
        ys.append(y)
    assert_close_rel(torch.cat(ys, 1), y_full, 1e-6)
    for a, b in zip(flat(state), flat(st_full)):
        assert a.dtype == b.dtype
        if a.is_floating_point():
            assert_close_rel(a, b, 1e-6)
        else:
            assert torch.equal(a, b)
    lv = cms.levels[0]
    h, st = fast_mlp(x, lv.weights, lv.eta().expand(2, 9), chunk_size=lv.chunk_size, target=x,
                     output_final_state=True, weight_dtype=torch.bfloat16)
    assert torch.equal(st.w0, st_full.levels[0].w0)
    with pytest.raises(ValueError, match="^weight_dtype"):
        CMS(D, FH, LEVELS, weight_dtype=torch.float16)


def test_gradients_reach_every_parameter():
    cms = make_cms("swiglu")
    x = (0.5 * torch.randn(2, 9, D, dtype=torch.float64)).requires_grad_(True)
    y, state = cms(x)
    (y.square().sum() + sum(st.w0.sum() for st in state.levels)).backward()
    for name, p in cms.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert x.grad is not None


class _Llama(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


@pytest.mark.parametrize("style", ["gelu", "silu", "llama"])
def test_from_mlp_reproduces_the_module_before_the_first_update(style):
    if style == "llama":
        src = _Llama(D, FH)
    else:
        act = nn.GELU() if style == "gelu" else nn.SiLU()
        src = nn.Sequential(nn.Linear(D, FH, bias=False), act, nn.Linear(FH, D, bias=False))
    C = 4
    cms = CMS.from_mlp(src, C, 0.5)
    assert cms.levels[0].mlp == ("swiglu" if style == "llama" else style)
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        want = src(x)
        y, _ = cms(x)
    assert_close_rel(y[:, :C], want[:, :C], 1e-6, "first chunk")
    assert (y[:, C:] - want[:, C:]).abs().max() > 1e-4          # the level has learnt after chunk 1
    res, _ = CMS.from_mlp(src, C, 0.5, residual=True)(x)
    assert_close_rel(res[:, :C], (x + want)[:, :C], 1e-6, "residual first chunk")


def test_from_mlp_errors():
    with pytest.raises(ValueError, match="bias"):
        CMS.from_mlp(nn.Sequential(nn.Linear(D, FH), nn.GELU(), nn.Linear(FH, D, bias=False)), 4, 0.1)
    with pytest.raises(ValueError, match="GELU or nn.SiLU"):
        CMS.from_mlp(nn.Sequential(nn.Linear(D, FH, bias=False), nn.ReLU(), nn.Linear(FH, D, bias=False)), 4, 0.1)
    with pytest.raises(ValueError, match="approximate"):
        CMS.from_mlp(nn.Sequential(nn.Linear(D, FH, bias=False), nn.GELU("tanh"),
                                   nn.Linear(FH, D, bias=False)), 4, 0.1)
    with pytest.raises(ValueError, match="Linear"):
        CMS.from_mlp(nn.Sequential(nn.Linear(D, FH, bias=False), nn.GELU()), 4, 0.1)
    llama = _Llama(D, FH)
    llama.up_proj = nn.Linear(D, FH, bias=True)
    with pytest.raises(ValueError, match="bias"):
        CMS.from_mlp(llama, 4, 0.1)


def test_constructor_and_forward_errors():
    with pytest.raises(ValueError, match="^levels"):
        CMS(D, FH, [])
    with pytest.raises(ValueError, match=r"^levels\[0\]"):
        CMS(D, FH, [(0, 0.1)])
    with pytest.raises(ValueError, match="^order"):
        CMS(D, FH, LEVELS, order="slow_first")
    with pytest.raises(ValueError, match="^mlp"):
        CMS(D, FH, LEVELS, mlp="relu")
    cms = CMS(D, FH, LEVELS)
    x = torch.randn(1, 3, D)
    with pytest.raises(ValueError, match="^state"):
        cms(x, state=CMSState([]))
    with pytest.raises(ValueError, match="^teach"):
        cms(x, teach=[x])
