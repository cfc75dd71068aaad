"""core.fast_launch: the launch signature on the CPU; on a GPU, kept kernels against Triton's
own launches (the same results for aligned and misaligned views, every keyword and default)."""
import pytest
import torch

from nested_kernels.core import fast_launch
from nested_kernels.core.fast_launch import _key


def test_signature_separates_what_triton_specializes_on():
    x = torch.zeros(64)
    base = _key("k", 0, (x, 8, 1.0, None, True), dict(BLOCK=16, num_warps=4))
    assert base == _key("k", 0, (torch.ones(64), 8, 2.5, None, True), dict(BLOCK=16, num_warps=4))
    assert base != _key("k", 0, (x[1:], 8, 1.0, None, True), dict(BLOCK=16, num_warps=4))        # alignment
    assert base != _key("k", 0, (x.double(), 8, 1.0, None, True), dict(BLOCK=16, num_warps=4))    # dtype
    assert base != _key("k", 0, (x, 16, 1.0, None, True), dict(BLOCK=16, num_warps=4))           # int value
    assert base != _key("k", 0, (x, 8, 1.0, x, True), dict(BLOCK=16, num_warps=4))               # None vs tensor
    assert base != _key("k", 0, (x, 8, 1.0, None, 1), dict(BLOCK=16, num_warps=4))               # bool vs int
    assert base != _key("k", 0, (x, 8, 1.0, None, True), dict(BLOCK=32, num_warps=4))            # constexpr
    assert base != _key("k", 0, (x, 8, 1.0, None, True), dict(BLOCK=16, num_warps=8))            # option
    assert base != _key("k", 1, (x, 8, 1.0, None, True), dict(BLOCK=16, num_warps=4))            # device
    assert base != _key("j", 0, (x, 8, 1.0, None, True), dict(BLOCK=16, num_warps=4))            # kernel


def test_signature_refuses_other_arguments(monkeypatch):
    assert _key("k", 0, (object(),), {}) is None
    assert _key("k", 0, (), dict(x=torch.zeros(2))) is None     # a tensor by keyword
    # an unhashable keyword value: Triton's path, nothing kept
    kernel = stand_in_launches(monkeypatch)
    fast_launch.launch(kernel, (1,), 1.0, opts=[1])
    fast_launch.launch(kernel, (1,), 1.0, opts=[1])
    assert kernel.calls == 2 and not any(k[0] is kernel for k in fast_launch._KEPT)


def test_kept_launch_hands_the_launcher_every_parameter_in_order(monkeypatch):
    """The second launch of a signature calls the kept kernel's launcher with the grid padded to
    three, the stream, no metadata or hooks, then every parameter in the kernel's order: the
    positional arguments, the keyword constexprs, the defaults of those not given."""
    kernel = stand_in_launches(monkeypatch)
    x = torch.zeros(4)
    fast_launch.launch(kernel, (3,), x, 5, BLOCK=16, num_warps=4)
    assert kernel.calls == 1
    fast_launch.launch(kernel, (7, 2), x, 5, BLOCK=16, num_warps=4)
    assert kernel.calls == 1
    assert kernel.compiled.got == [(7, 2, 1, "stream0", "fn", "meta", None, None, None, x, 5, 16, 0.5)]


def stand_in_launches(monkeypatch) -> "Launched":
    """Fast launch on, with ``Launched`` as the JITFunction type and a driver whose device is 0 and
    whose stream is "stream0"; returns a fresh stand-in kernel."""
    monkeypatch.setattr(fast_launch, "enabled", lambda: True)
    monkeypatch.setattr(fast_launch, "_runtime", lambda: (Launched, None))
    monkeypatch.setattr(fast_launch, "_driver", lambda: (lambda: 0, lambda device: "stream0"))
    return Launched()


class Param:
    def __init__(self, name, default=None):
        self.name, self.has_default, self.default = name, default is not None, default


class Compiled:
    function, packed_metadata = "fn", "meta"

    def __init__(self):
        self.got = []

    def run(self, *args):
        self.got.append(args)


class Launched:
    """Stands in for a JITFunction (x, n, BLOCK: constexpr, SHIFT: constexpr = 0.5): counts the
    launches that reach ``kernel[grid](...)``, which return its compiled kernel."""
    calls = 0
    params = [Param("x"), Param("n"), Param("BLOCK"), Param("SHIFT", 0.5)]

    def __init__(self):
        self.compiled = Compiled()

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.calls += 1
            return self.compiled
        return run


def test_on_by_default_and_off_under_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("NESTED_KERNELS_FAST_LAUNCH", "0")
    assert not fast_launch.enabled()
    monkeypatch.delenv("NESTED_KERNELS_FAST_LAUNCH", raising=False)
    assert fast_launch.enabled()
    from triton import knobs
    hooks = knobs.runtime.launch_enter_hook
    if hasattr(hooks, "add"):             # a HookChain (Triton 3.6): a profiler's hook turns it off
        hooks.add(print)
        try:
            assert not fast_launch.enabled()
        finally:
            hooks.remove(print)
    monkeypatch.setattr(knobs.runtime, "launch_exit_hook", print)
    assert not fast_launch.enabled()
    monkeypatch.setattr(knobs.runtime, "launch_exit_hook", None)
    assert fast_launch.enabled()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not fast_launch.enabled()


@pytest.mark.gpu
def test_kept_kernels_match_triton_launches(monkeypatch):
    import triton
    import triton.language as tl

    @triton.jit
    def _axpb(x, y, n, a, b_ptr, ADD_B: tl.constexpr, BLOCK: tl.constexpr, SHIFT: tl.constexpr = 0.0):
        r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        v = tl.load(x + r, mask=r < n) * a + SHIFT
        if ADD_B:
            v += tl.load(b_ptr)
        tl.store(y + r, v, mask=r < n)

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("NESTED_KERNELS_FAST_LAUNCH", "1")
    assert fast_launch.enabled()
    through_triton = []
    run = _axpb.run
    monkeypatch.setattr(_axpb, "run", lambda *a, **kw: through_triton.append(1) or run(*a, **kw))
    x = torch.randn(1000, device="cuda")
    b = torch.randn(1, device="cuda")
    for xs in (x, x[1:], x[3:]):                  # aligned, then views 4 and 12 bytes off
        n = xs.numel()
        for add_b in (False, True):
            for a in (0.5, 1.5, 2.5):             # the first call goes through Triton, the others are kept
                y = torch.full((n + 7,), float("nan"), device="cuda")[:n]
                fast_launch.launch(_axpb, (triton.cdiv(n, 128),), xs, y, n, a, b if add_b else None,
                                   ADD_B=add_b, BLOCK=128, num_warps=4)
                torch.testing.assert_close(y, xs * a + (b if add_b else 0))
    assert len(through_triton) == 6
