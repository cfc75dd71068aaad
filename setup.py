"""Build script of nested_kernels: pure-Python package + the CUDA extension nested_kernels._C.

The extension is built from csrc/ with nvcc alone: the sources use raw device pointers and
pybind11, never torch's C++ API, so no torch is needed at build time and the build works on a
machine whose torch is a CPU build (torch.utils.cpp_extension would refuse there). The CUDA
runtime is linked statically, so importing the module works without a GPU or driver.

Environment variables (docs/building.md says more):
  NESTED_KERNELS_CUDA        "auto" (default): build _C when nvcc is found, else pure Python.
                             "1": build _C, a missing nvcc is an error. "0": never build _C.
  NESTED_KERNELS_CUDA_ARCHS  ';'-separated architectures, default "80;90a" (sm_80 and sm_90a).
                             "90a+PTX" also embeds PTX for compute_90a.
  CUDA_HOME / CUDA_PATH      where to look for bin/nvcc before PATH.
  MAX_JOBS                   parallel nvcc processes, default min(cpu count, 4).
  NVCC_THREADS               value of nvcc --threads (parallel gencode targets within one file),
                             default 2.

The helpers above `main()` are imported by tests/test_build.py so that the test compiles with the
exact flags of the build; `setup()` only runs when this file is executed (as pip and
setuptools.build_meta do, with __name__ == "__main__").
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Optional, Sequence

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
EXTENSION_NAME = "nested_kernels._C"
DEFAULT_CUDA_ARCHS = "80;90a"
HEADER_SUFFIXES = (".h", ".cuh", ".hpp")
SOURCE_SUFFIXES = (".cu", ".cpp")
CONFIG_HEADER = "nested_kernels_build_config.h"  # generated into the build folder

# Flags of every nvcc compile (.cu and .cpp alike; nvcc hands .cpp files to the host compiler).
NVCC_FLAGS = [
    "-O3",
    "-std=c++17",
    "-Xcompiler", "-fPIC",
    "-Xcompiler", "-fvisibility=hidden",
    "--expt-relaxed-constexpr",
    "-lineinfo",  # source lines for ncu / compute-sanitizer; no effect on speed
    "-DNDEBUG",
]


# ----------------------------------------------------------------------------- helpers


def find_nvcc() -> Optional[str]:
    """nvcc from $CUDA_HOME/bin (or $CUDA_PATH/bin), else PATH, else /usr/local/cuda/bin."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


def cuda_mode() -> str:
    """'auto', 'on' or 'off', from NESTED_KERNELS_CUDA."""
    value = os.environ.get("NESTED_KERNELS_CUDA", "auto").strip().lower()
    modes = {"": "auto", "auto": "auto", "1": "on", "0": "off"}
    if value not in modes:
        raise SystemExit(f"NESTED_KERNELS_CUDA must be '0', '1' or 'auto', got {value!r}")
    return modes[value]


def parse_archs(spec: Optional[str] = None) -> list[str]:
    """'80;90a' -> ['80', '90a']. Accepts ';', ',' or spaces, '8.0', 'sm_90a', and '+PTX'."""
    if spec is None:
        spec = os.environ.get("NESTED_KERNELS_CUDA_ARCHS") or DEFAULT_CUDA_ARCHS
    archs = []
    for item in re.split(r"[;,\s]+", spec.strip()):
        if not item:
            continue
        arch = re.sub(r"^(sm_|compute_)", "", item.strip().lower()).replace(".", "")
        if not re.fullmatch(r"\d{2,3}[af]?(\+ptx)?", arch):
            raise SystemExit(
                f"NESTED_KERNELS_CUDA_ARCHS: cannot read {item!r} (expected e.g. '80;90a' or '90a+PTX')"
            )
        archs.append(arch)
    if not archs:
        raise SystemExit("NESTED_KERNELS_CUDA_ARCHS is empty")
    return archs


def gencode_flags(archs: Sequence[str]) -> list[str]:
    """['80', '90a+ptx'] -> -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=[sm_90a,compute_90a]."""
    flags = []
    for arch in archs:
        base = arch.replace("+ptx", "")
        code = f"[sm_{base},compute_{base}]" if arch.endswith("+ptx") else f"sm_{base}"
        flags += ["-gencode", f"arch=compute_{base},code={code}"]
    return flags


def nvcc_version(nvcc: str) -> str:
    """The 'Cuda compilation tools, release X.Y, VX.Y.Z' line of nvcc --version."""
    text = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    lines = [line for line in text.splitlines() if "release" in line]
    return lines[-1].strip() if lines else text.strip().splitlines()[-1]


def cuda_sources() -> list[Path]:
    return sorted(p for p in CSRC.rglob("*") if p.suffix in SOURCE_SUFFIXES)


def cuda_headers() -> list[Path]:
    return sorted(p for p in CSRC.rglob("*") if p.suffix in HEADER_SUFFIXES)


def include_dirs(extra: Sequence[str] = ()) -> list[str]:
    """csrc/, pybind11's headers, Python's headers (and any extra, e.g. the generated config)."""
    import pybind11  # a build requirement; imported late so NESTED_KERNELS_CUDA=0 needs none

    paths = sysconfig.get_paths()
    dirs = [str(CSRC), *extra, pybind11.get_include(), paths["include"], paths["platinclude"]]
    return list(dict.fromkeys(dirs))  # drop duplicates, keep order


def nvcc_compile_command(nvcc: str, source: Path, output: Path, archs: Sequence[str],
                         includes: Sequence[str], threads: Optional[int] = None) -> list[str]:
    cmd = [nvcc, "-c", str(source), "-o", str(output), *NVCC_FLAGS, *gencode_flags(archs)]
    cmd += [f"-I{d}" for d in includes]
    if threads and threads > 1:
        cmd += ["--threads", str(threads)]
    return cmd


def nvcc_link_command(nvcc: str, objects: Sequence[Path], output: Path) -> list[str]:
    # Static cudart: the module depends on libcuda.so only through dlopen at first CUDA call.
    return [nvcc, "-shared", *map(str, objects), "-o", str(output), "-cudart", "static"]


def max_jobs() -> int:
    value = os.environ.get("MAX_JOBS")
    return max(1, int(value)) if value else max(1, min(os.cpu_count() or 1, 4))


def nvcc_threads() -> int:
    return max(1, int(os.environ.get("NVCC_THREADS", "2")))


def run_parallel(commands: Sequence[list[str]], jobs: int) -> None:
    """Run the commands, `jobs` at a time; raise with the compiler output on the first failure."""

    def run(cmd: list[str]) -> tuple[list[str], subprocess.CompletedProcess]:
        return cmd, subprocess.run(cmd, capture_output=True, text=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        failures = []
        for cmd, result in pool.map(run, commands):
            output = (result.stdout + result.stderr).strip()
            if result.returncode != 0:
                failures.append(f"$ {' '.join(cmd)}\n{output}")
            elif output:
                print(output, flush=True)
    if failures:
        raise RuntimeError("nvcc failed:\n" + "\n\n".join(failures))


# ----------------------------------------------------------------------------- build_ext


class NvccBuildExt(build_ext):
    """Builds Extension objects whose sources are .cu/.cpp files with nvcc (compile + link)."""

    def build_extension(self, ext: Extension) -> None:
        nvcc = find_nvcc()
        if nvcc is None:
            raise RuntimeError("nvcc not found ($CUDA_HOME/bin, PATH, /usr/local/cuda/bin): cannot build " + ext.name)
        archs = parse_archs()
        jobs, threads = max_jobs(), nvcc_threads()
        build_temp = Path(self.build_temp).resolve() / "nested_kernels_cuda"
        generated = build_temp / "generated"
        includes = include_dirs([str(generated)])
        version = nvcc_version(nvcc)
        self._write_build_config(generated, archs, version)

        # Objects live in a folder named by a hash of everything that changes them, so changing
        # the arch list or nvcc never reuses a stale object; unchanged sources are not recompiled.
        key = json.dumps([nvcc, version, NVCC_FLAGS, gencode_flags(archs), includes])
        obj_dir = build_temp / hashlib.sha1(key.encode()).hexdigest()[:12]
        newest_header = max((h.stat().st_mtime for h in cuda_headers()), default=0.0)
        newest_header = max(newest_header, (generated / CONFIG_HEADER).stat().st_mtime)

        sources = [ROOT / s for s in ext.sources]
        objects, commands = [], []
        for source in sources:
            obj = obj_dir / (str(source.relative_to(ROOT)).replace(os.sep, "__") + ".o")
            objects.append(obj)
            up_to_date = obj.exists() and obj.stat().st_mtime >= max(source.stat().st_mtime, newest_header)
            if self.force or not up_to_date:
                commands.append(nvcc_compile_command(nvcc, source, obj, archs, includes, threads))
        obj_dir.mkdir(parents=True, exist_ok=True)

        output = Path(self.get_ext_fullpath(ext.name))
        output.parent.mkdir(parents=True, exist_ok=True)
        print(f"nested_kernels: building {ext.name} with {nvcc} ({version}); archs {';'.join(archs)}; "
              f"{len(commands)}/{len(sources)} files to compile, MAX_JOBS={jobs}, NVCC_THREADS={threads}",
              flush=True)
        start = time.perf_counter()
        for cmd in commands:
            print(" ".join(cmd), flush=True)
        run_parallel(commands, jobs)
        link = nvcc_link_command(nvcc, objects, output)
        print(" ".join(link), flush=True)
        run_parallel([link], 1)
        print(f"nested_kernels: built {output} in {time.perf_counter() - start:.1f} s", flush=True)

    @staticmethod
    def _write_build_config(folder: Path, archs: Sequence[str], version: str) -> None:
        """csrc/bindings.cpp reports these strings from _C.build_info()."""
        text = (
            "// Generated by setup.py; read by csrc/bindings.cpp (build_info).\n"
            "#pragma once\n"
            f"#define NK_BUILD_CUDA_ARCHS {json.dumps(';'.join(archs))}\n"
            f"#define NK_BUILD_GENCODE {json.dumps(' '.join(gencode_flags(archs)))}\n"
            f"#define NK_BUILD_NVCC_VERSION {json.dumps(version)}\n"
        )
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CONFIG_HEADER
        if not path.exists() or path.read_text() != text:  # keep the mtime when nothing changed
            path.write_text(text)


# ----------------------------------------------------------------------------- setup()


def extensions() -> list[Extension]:
    """[the CUDA extension] or [] (pure-Python install), following NESTED_KERNELS_CUDA."""
    mode = cuda_mode()
    if mode == "off":
        print("nested_kernels: NESTED_KERNELS_CUDA=0, not building the CUDA extension", flush=True)
        _warn_if_stale_extension()
        return []
    nvcc = find_nvcc()
    if nvcc is None:
        if mode == "on":
            raise SystemExit(
                "NESTED_KERNELS_CUDA=1 but nvcc was found neither in $CUDA_HOME/bin, on PATH nor in /usr/local/cuda/bin"
            )
        print("nested_kernels: note: nvcc not found ($CUDA_HOME/bin, PATH, /usr/local/cuda/bin); installing pure Python "
              "without the CUDA extension nested_kernels._C", flush=True)
        _warn_if_stale_extension()
        return []
    sources = [str(p.relative_to(ROOT)) for p in cuda_sources()]
    depends = [str(p.relative_to(ROOT)) for p in cuda_headers()]
    return [Extension(EXTENSION_NAME, sources=sources, depends=depends)]


def _warn_if_stale_extension() -> None:
    stale = sorted((ROOT / "nested_kernels").glob("_C*.so"))
    if stale:
        print(f"nested_kernels: note: an earlier in-place build {stale[0]} remains and will still be "
              "imported by an editable install; delete it to get a pure-Python package", flush=True)


def main() -> None:
    setup(
        packages=find_packages(include=["nested_kernels*"]),
        ext_modules=extensions(),
        cmdclass={"build_ext": NvccBuildExt},
        zip_safe=False,
    )


if __name__ == "__main__":
    main()
