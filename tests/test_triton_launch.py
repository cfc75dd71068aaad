"""core.triton_launch.tile_plan (the cached plan of a fixed-length batch is the general plan cut to
its exact tile count; batches with cu_seqlens or resumed positions get the sync-free bound) and
core.env.getenv, mma_sync."""
import os

import pytest
import torch

from nested_kernels.core import triton_launch as tl_


def test_fixed_plan_is_the_general_plan_cut_to_its_tiles():
    B, T, BT, C = 3, 37, 16, 16
    plan = tl_.tile_plan(B, T, BT, C, None, None, "cpu")
    assert plan is tl_.tile_plan(B, T, BT, C, None, None, torch.device("cpu"))     # cached
    assert plan.n_tiles == B * 3
    general = tl_._plan(B, T, BT, C, torch.tensor([0, T, 2 * T, 3 * T]), torch.zeros(B, dtype=torch.int64), "cpu")
    assert general.n_tiles == B * T // BT + 2 * B
    for name in ("lengths", "pos", "tile_base", "final_pos"):
        assert torch.equal(getattr(plan, name), getattr(general, name)), name
    assert torch.equal(plan.tile_seq, general.tile_seq[:plan.n_tiles])
    assert torch.equal(plan.tile_idx, general.tile_idx[:plan.n_tiles])
    assert plan.tile_seq.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and plan.tile_idx.tolist() == [0, 1, 2] * 3
    assert (general.tile_seq[plan.n_tiles:] == -1).all()
    assert plan.final_pos.tolist() == [T % C] * B


def test_varlen_and_resumed_plans():
    cu = torch.tensor([0, 5, 5, 40])
    plan = tl_.tile_plan(1, 40, 16, 16, cu, None, "cpu")
    assert plan.n_tiles == 40 // 16 + 2 * 3
    assert plan.lengths.tolist() == [5, 0, 35] and plan.tile_base.tolist() == [0, 1, 1]
    assert plan.tile_seq.tolist()[:4] == [0, 2, 2, 2] and plan.tile_idx.tolist()[:4] == [0, 0, 1, 2]
    pos = torch.tensor([10, 3])
    plan = tl_.tile_plan(2, 20, 16, 16, None, pos, "cpu")
    assert plan.n_tiles == 2 * 20 // 16 + 4
    assert plan.tile_base.tolist() == [0, 2] and plan.final_pos.tolist() == [30 % 16, 23 % 16]
    assert tl_.tile_plan(2, 0, 16, 16, None, None, "cpu").n_tiles == 4    # empty sequences: the bound


def test_getenv_follows_os_environ(monkeypatch):
    """core.env.getenv reads os.environ's own dictionary: it must see every change made through
    os.environ (set, change, delete, monkeypatch) exactly as os.environ.get does."""
    import os

    from nested_kernels.core.env import getenv
    name = "NESTED_KERNELS_TEST_GETENV"
    monkeypatch.delenv(name, raising=False)
    assert getenv(name) is None and getenv(name, "d") == "d"
    monkeypatch.setenv(name, "é1")
    assert getenv(name) == os.environ.get(name) == "é1"
    os.environ[name] = ""
    assert getenv(name, "d") == ""
    del os.environ[name]
    assert getenv(name, "d") == "d"


def test_frozen_knobs_answer_for_the_environment(monkeypatch):
    """core.env.frozen_knobs: while open, NESTED_KERNELS_* names come from the snapshot (set or
    not), other names from the environment; knob_snapshot holds the knobs getenv sees, sorted."""
    from nested_kernels.core.env import frozen_knobs, getenv, knob_snapshot
    monkeypatch.setenv("NESTED_KERNELS_TEST_B", "2")
    monkeypatch.setenv("NESTED_KERNELS_TEST_A", "1")
    monkeypatch.setenv("NK_TEST_OTHER", "o")
    snap = knob_snapshot()
    assert [p for p in snap if p[0].startswith("NESTED_KERNELS_TEST_")] == [("NESTED_KERNELS_TEST_A", "1"),
                                                                          ("NESTED_KERNELS_TEST_B", "2")]
    with frozen_knobs([["NESTED_KERNELS_TEST_A", "x"]]):
        assert getenv("NESTED_KERNELS_TEST_A") == "x" and getenv("NESTED_KERNELS_TEST_B", "d") == "d"
        assert getenv("NK_TEST_OTHER") == "o"
        assert knob_snapshot() == (("NESTED_KERNELS_TEST_A", "x"),) == knob_snapshot("NESTED_KERNELS_TEST")
    with frozen_knobs(None):
        assert getenv("NESTED_KERNELS_TEST_B") == "2"
    assert getenv("NESTED_KERNELS_TEST_A") == "1"


def test_mma_sync_sets_and_restores_disable_mma_v3(monkeypatch):
    mma_sync = tl_.mma_sync
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.delenv("DISABLE_MMA_V3", raising=False)
    with mma_sync():
        assert os.environ["DISABLE_MMA_V3"] == "1"
    assert "DISABLE_MMA_V3" not in os.environ
    with mma_sync(False):
        assert "DISABLE_MMA_V3" not in os.environ
    monkeypatch.setenv("DISABLE_MMA_V3", "0")
    with pytest.raises(RuntimeError):
        with mma_sync():
            assert os.environ["DISABLE_MMA_V3"] == "1"
            raise RuntimeError("a failed launch")
    assert os.environ["DISABLE_MMA_V3"] == "0"
    monkeypatch.setenv("TRITON_INTERPRET", "1")        # the interpreter never compiles: unchanged
    with mma_sync():
        assert os.environ["DISABLE_MMA_V3"] == "0"


def test_knob_key_is_the_snapshot_kept_while_unchanged(monkeypatch):
    """core.env.knob_key: knob_snapshot's value, the same tuple while neither the environment nor
    the frozen knobs changed, a new one as soon as either does."""
    from nested_kernels.core.env import frozen_knobs, knob_key, knob_snapshot
    monkeypatch.setenv("NESTED_KERNELS_TEST_A", "1")
    key = knob_key()
    assert key == knob_snapshot() and knob_key() is key
    monkeypatch.setenv("NESTED_KERNELS_TEST_A", "2")
    assert knob_key() == knob_snapshot() != key
    monkeypatch.setenv("NK_TEST_OTHER", "o")     # any change forms it again, with the same value
    assert knob_key() == knob_snapshot()
    with frozen_knobs([["NESTED_KERNELS_TEST_A", "x"]]):
        assert knob_key() == (("NESTED_KERNELS_TEST_A", "x"),)
    monkeypatch.delenv("NESTED_KERNELS_TEST_A")
    assert knob_key() == knob_snapshot() and ("NESTED_KERNELS_TEST_A", "2") not in knob_key()
