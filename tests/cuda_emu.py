"""Run our CUDA kernels on the CPU: a stand-in for ``cupy`` whose ``RawKernel`` compiles the same
kernel source as C++ (g++) and launches it over the same grid and blocks.

It lets the CPU machine test what would otherwise only run on a GPU: kernel indexing and
arithmetic, launch geometry, argument types (a 64-bit array passed as ``int*`` shows up as wrong
output). Blocks that use ``__syncthreads`` run their threads as fibers (ucontext) on one OS thread,
each running to its next ``__syncthreads`` in turn, so every thread of the block reaches a barrier
before any passes it (OS threads cost a thread start per CUDA thread: minutes per clip); others run
thread by thread. It is not CUDA: memory-model and race bugs between blocks are not found here.
"""
from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np

SHIM = r"""
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <functional>
#include <vector>
#include <ucontext.h>
struct dim3_ { unsigned x, y, z; };
static thread_local dim3_ threadIdx, blockIdx, blockDim, gridDim;  // two host threads may launch at once
#define __global__
#define __shared__ static thread_local  // one block at a time per host thread; host threads may launch at once
#define __device__ static inline
using std::min; using std::max;
// fibers: one per CUDA thread of a block; __syncthreads hands control back to the scheduler
enum { READY, AT_BARRIER, DONE };
static thread_local ucontext_t scheduler;
static thread_local std::vector<ucontext_t> fibers;
static thread_local std::vector<int> state;
static thread_local std::vector<char> stacks;
static const size_t STACK = 64 * 1024;
static thread_local int current = 0;
static thread_local std::function<void(int)> run_thread;
static void fiber_entry() { const int i = current; run_thread(i); state[i] = DONE; }
static inline void __syncthreads() {
    state[current] = AT_BARRIER;
    swapcontext(&fibers[current], &scheduler);
}
static void run_block_as_fibers(int n, const std::vector<dim3_>& ids) {
    fibers.resize(n); state.assign(n, READY);
    if (stacks.size() < n * STACK) stacks.resize(n * STACK);
    for (int i = 0; i < n; ++i) {
        getcontext(&fibers[i]);
        fibers[i].uc_stack.ss_sp = stacks.data() + i * STACK;
        fibers[i].uc_stack.ss_size = STACK;
        fibers[i].uc_link = &scheduler;
        makecontext(&fibers[i], fiber_entry, 0);
    }
    for (bool alive = true; alive;) {  // one round = every live thread runs to its next barrier or its end
        alive = false;
        for (int i = 0; i < n; ++i) {
            if (state[i] == DONE) continue;
            state[i] = READY; current = i; threadIdx = ids[i];
            swapcontext(&scheduler, &fibers[i]);
            alive |= state[i] != DONE;
        }
    }
}
static inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
    const unsigned long long old = *a; *a += v; return old;
}
"""

LAUNCH = r"""
extern "C" void launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, {params}) {{
    gridDim = {{gx, gy, gz}}; blockDim = {{bx, by, bz}};
    for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x) {{
        blockIdx = {{x, y, z}};
        if ({sync}) {{
            std::vector<dim3_> ids;
            for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty)
                for (unsigned tx = 0; tx < bx; ++tx) ids.push_back({{tx, ty, tz}});
            run_thread = [&](int) {{ {name}({args}); }};
            run_block_as_fibers((int)ids.size(), ids);
        }} else {{
            for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty)
                for (unsigned tx = 0; tx < bx; ++tx) {{ threadIdx = {{tx, ty, tz}}; {name}({args}); }}
        }}
    }}
}}
"""

C_TYPES = {"int": ctypes.c_int, "float": ctypes.c_float}


def compiler() -> str | None:
    return shutil.which("g++")


class RawKernel:
    """``cupy.RawKernel(source, name)`` compiled for the CPU; called as ``kernel(grid, block, args)``."""

    build_dir: Path

    def __init__(self, source: str, name: str) -> None:
        params = re.search(rf'extern "C" __global__ void {name}\((.*?)\)\s*{{', source, re.DOTALL).group(1)
        params = " ".join(params.split())
        decls = [p.strip() for p in params.split(",")]
        names = [re.sub(r"[^\w]", "", d.split()[-1]) for d in decls]
        self.argtypes = [ctypes.c_void_p if "*" in d else C_TYPES[d.split()[-2]] for d in decls]
        code = SHIM + source + LAUNCH.format(params=params, name=name, args=", ".join(names),
                                             sync="true" if "__syncthreads" in source else "false")
        lib = self.build_dir / f"{name}-{hashlib.sha1(code.encode()).hexdigest()[:12]}.so"
        if not lib.exists():
            src = lib.with_suffix(".cpp")
            src.write_text(code)
            subprocess.run([compiler(), "-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", str(src), "-o", str(lib)],
                           check=True, capture_output=True, text=True)
        self.fn = ctypes.CDLL(str(lib)).launch
        self.fn.argtypes = [ctypes.c_uint] * 6 + self.argtypes

    def compile(self, log_stream=None) -> None:
        """``RawKernel.compile()``: compiled already, in ``__init__``."""

    def __call__(self, grid, block, args) -> None:
        grid, block = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        values = []
        for a, t in zip(args, self.argtypes, strict=True):
            if t is ctypes.c_void_p:
                assert isinstance(a, np.ndarray) and a.flags.c_contiguous, "kernel arrays must be C-contiguous"
                values.append(a.ctypes.data)
            else:
                assert isinstance(a, (np.int32, np.float32)), f"kernel scalar {a!r} must be np.int32/np.float32"
                values.append(t(a.item()))
        self.fn(*grid, *block, *values)


def fake_cupy(build_dir: Path) -> types.ModuleType:
    """CuPy as our GPU stages use it, on NumPy arrays: NumPy's functions, the emulated ``RawKernel``."""
    cp = types.ModuleType("cupy")
    cp.__getattr__ = lambda name: getattr(np, name)
    cp.asnumpy = np.asarray
    cp.RawKernel = type("RawKernel", (RawKernel,), {"build_dir": build_dir})
    return cp


def compiles_with_nvcc(source: str, tmp: Path) -> subprocess.CompletedProcess | None:
    """Compile the kernel source for Hopper with nvcc when the machine has it (a check that NVRTC's
    language, not just C++, accepts it); None where there is no nvcc."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    src = tmp / "k.cu"
    src.write_text(source)
    return subprocess.run([nvcc, "-c", "-arch=sm_90", str(src), "-o", str(tmp / "k.o")],
                          capture_output=True, text=True, check=False)
