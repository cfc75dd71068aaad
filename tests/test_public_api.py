"""The package's public names (README): every op, its decode step, its state and the modules."""
import inspect

import torch

import nested_kernels as nk


def test_public_names_resolve():
    for name in nk.__all__:
        assert getattr(nk, name) is not None, name
    for op in ("linear_memory", "mlp_memory", "fast_mlp", "self_modifying_titans"):
        for fn in (getattr(nk, op), getattr(nk, op + "_step")):
            assert "backend" in inspect.signature(fn).parameters, fn.__name__
    for module in ("CMS", "SelfModifyingTitans", "HopeBlock", "HopeLM"):
        assert issubclass(getattr(nk, module), torch.nn.Module)
