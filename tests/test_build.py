"""The CUDA sources compile (nvcc, no GPU needed) and the built extension exposes its functions.

Runs on CPU-only CI: every csrc/**/*.cu and csrc/bindings.cpp is compiled with nvcc -c, with the
exact flags and default -gencode list of setup.py (sm_80 + sm_90a), in parallel. Skipped when nvcc
is absent. ~10 s on 2 cores.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load_setup_module():
    """setup.py's helpers (setup() itself only runs when setup.py is executed as __main__)."""
    spec = importlib.util.spec_from_file_location("nested_kernels_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_setup_module()
NVCC = build.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (PATH, $CUDA_HOME/bin): cannot test the CUDA build")


def _compile_command(source: Path, out_dir: Path, includes) -> list[str]:
    obj = out_dir / (str(source.relative_to(build.CSRC)).replace(os.sep, "__") + ".o")
    archs = build.parse_archs(build.DEFAULT_CUDA_ARCHS)
    return build.nvcc_compile_command(NVCC, source, obj, archs, includes, threads=2)


@needs_nvcc
def test_cuda_sources_compile(tmp_path):
    """Every source of the extension compiles, all in parallel. .cu files get csrc/ as their
    only include directory: kernels must not depend on pybind11, Python or torch headers."""
    pytest.importorskip("pybind11")
    cu_files = [p for p in build.cuda_sources() if p.suffix == ".cu"]
    assert cu_files, "no .cu files under csrc/"
    commands = [_compile_command(src, tmp_path, [str(build.CSRC)]) for src in cu_files]
    commands.append(_compile_command(build.CSRC / "bindings.cpp", tmp_path, build.include_dirs()))
    build.run_parallel(commands, jobs=max(1, min(os.cpu_count() or 1, 4)))
    for cmd in commands:
        assert Path(cmd[cmd.index("-o") + 1]).stat().st_size > 0


def test_default_arch_list():
    assert build.parse_archs(build.DEFAULT_CUDA_ARCHS) == ["80", "90a"]
    assert build.parse_archs("sm_80, 9.0a") == ["80", "90a"]
    assert build.gencode_flags(["80", "90a+ptx"]) == [
        "-gencode", "arch=compute_80,code=sm_80",
        "-gencode", "arch=compute_90a,code=[sm_90a,compute_90a]",
    ]
    with pytest.raises(SystemExit):
        build.parse_archs("volta")


def test_runs_on_matches_arch_kinds_to_capabilities():
    """Which GPUs the code of a NESTED_KERNELS_CUDA_ARCHS entry runs on (sm90_unavailable_reason
    refuses a GPU that no built sm_9x code runs on instead of failing at launch)."""
    from nested_kernels.core.extension import runs_on

    assert runs_on("90a", (9, 0)) and not runs_on("90a", (9, 1)) and not runs_on("90a", (10, 0))
    assert runs_on("90", (9, 0)) and runs_on("90", (9, 2)) and not runs_on("90", (10, 0))
    assert runs_on("100f", (10, 3)) and not runs_on("100f", (12, 0))
    assert runs_on("80", (8, 6)) and not runs_on("86", (8, 0))


def _extension_or_skip():
    if importlib.util.find_spec("nested_kernels._C") is None:
        pytest.skip("nested_kernels._C is not built (pip install --no-build-isolation -e .)")
    import nested_kernels._C as ext

    return ext


def test_extension_exports():
    ext = _extension_or_skip()
    assert callable(ext.outer_update) and callable(ext.linear_memory_step) and callable(ext.mlp_memory_walk)
    assert (ext.DTYPE_FLOAT32, ext.DTYPE_BFLOAT16, ext.DTYPE_FLOAT16) == (0, 1, 2)
    assert (ext.MLP_WALK_SLICE, ext.MLP_WALK_LD) == (64, 68)     # sizes the walk's exchange scratch
    info = ext.build_info()
    for key in ("cuda_archs", "gencode", "nvcc_version", "cuda_runtime_compiled", "cuda_driver"):
        assert key in info, key
    assert info["cuda_archs"] != "unknown"
    assert "release" in info["nvcc_version"]


def test_extension_rejects_bad_arguments_without_a_gpu():
    """Argument errors are ValueErrors raised before any CUDA call; empty work launches nothing."""
    ext = _extension_or_skip()
    args = dict(out=0, weight=0, left=0, right=0, eta=0, N=1, n_tok=1, P=1, Q=1, dtype=0,
                retention=1.0, stream=0)
    with pytest.raises(ValueError, match="dtype"):
        ext.outer_update(**{**args, "dtype": 7})
    with pytest.raises(ValueError, match="non-null"):
        ext.outer_update(**args)
    with pytest.raises(ValueError, match="non-negative"):
        ext.outer_update(**{**args, "P": -1})
    ext.outer_update(**{**args, "N": 0})  # nothing to do
    dims = dict(B=1, T=64, H=1, D=64, F=256, C=64, act=0, residual=1, has_beta=0, has_mu=0, self_target=1,
                read=2, save=0, token_dtype=1, eta_dtype=0, beta_dtype=0)
    with pytest.raises(ValueError, match="K = V"):
        ext.mlp_memory_walk({}, {**dims, "D": 48}, 1.0, 0)
    with pytest.raises(ValueError, match="multiple of chunk_size"):
        ext.mlp_memory_walk({}, {**dims, "T": 65}, 1.0, 0)
    with pytest.raises(ValueError, match="null input"):
        ext.mlp_memory_walk({}, dims, 1.0, 0)
    with pytest.raises(ValueError, match="mlp_memory_walk: eta dtype code"):
        ext.mlp_memory_walk({}, {**dims, "eta_dtype": 7}, 1.0, 0)
    with pytest.raises(ValueError, match="dims lacks"):
        ext.mlp_memory_walk({}, {n: x for n, x in dims.items() if n != "read"}, 1.0, 0)


def test_wrapper_validates_before_launch():
    from nested_kernels.ops.fast_mlp.cuda import outer_update

    N, T, P, Q = 2, 3, 5, 4
    w, left, right, eta = torch.zeros(N, P, Q), torch.zeros(N, T, P), torch.zeros(N, T, Q), torch.zeros(N, T)
    with pytest.raises(ValueError, match="CUDA"):
        outer_update(w, left, right, eta, 1.0)
    with pytest.raises(ValueError, match="right"):
        outer_update(w, left, torch.zeros(N, T, Q + 1), eta, 1.0)
    with pytest.raises(ValueError, match="same dtype"):
        outer_update(w, left, right.bfloat16(), eta, 1.0)
    with pytest.raises(ValueError, match="weight"):
        outer_update(w.double(), left, right, eta, 1.0)
    with pytest.raises(ValueError, match="retention"):
        outer_update(w, left, right, eta, torch.tensor(1.0))
