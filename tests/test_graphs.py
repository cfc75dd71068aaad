"""core.graphs.GraphCache's policy (CPU: the capture is replaced by a recording stand-in): a key's
first call runs eagerly, the second captures, later ones replay on copies of the new inputs; at
most ``size`` graphs, the least recently used dropped first; ``clear`` forgets everything."""
from types import SimpleNamespace

import torch

from nested_kernels.core.graphs import GraphCache


def test_graph_cache_policy(monkeypatch):
    captures = []

    def capture(fn, inputs):
        static = [t.clone() for t in inputs]
        out = torch.empty_like(static[0])
        captures.append(fn)
        return SimpleNamespace(replay=lambda: out.copy_(fn(*static)[0])), static, (out,)

    monkeypatch.setattr(GraphCache, "_capture", staticmethod(capture))
    cache = GraphCache(size=2)
    double = lambda x: (2 * x,)  # noqa: E731
    for i in range(4):
        x = torch.full((3,), float(i))
        assert torch.equal(cache.run("a", double, (x,))[0], 2 * x)
    assert len(captures) == 1 and list(cache.entries) == ["a"]          # eager, captured, replayed ×2
    for key in ("b", "b", "c", "c"):
        cache.run(key, double, (torch.ones(3),))
    assert list(cache.entries) == ["b", "c"] and len(captures) == 3      # "a" was the least recent
    cache.run("b", double, (torch.ones(3),))
    cache.run("a", double, (torch.ones(3),))                              # seen before: captured again
    assert list(cache.entries) == ["b", "a"] and len(captures) == 4
    cache.clear()
    assert not cache.entries and not cache.seen
