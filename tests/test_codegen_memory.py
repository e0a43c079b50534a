"""Memory over many compiles in one process: cold compiles, cache hits and dropped executables give
back what they took. Bounds on memory, never on time (benchmarks/compile_leak.py measures the
figures over hundreds of compiles).

The readings are the C heap in use (glibc's mallinfo2), which counts every byte LLVM allocated and
did not free and, unlike the resident set, does not hide a leak behind memory freed earlier; and the
number of memory mappings, where each JIT engine's code lives.
"""

import gc

import numpy as np

import rlxpy
from rlxpy.benchmark.memory import heap_mb, mappings, rss_mb


def small_graph(rng) -> rlxpy.Graph:
    """Two small kernels, quick to compile (a matmul's micro-kernel, an upsample or a bias over odd
    shapes would take most of the test's time in lowering or the vectorizers)."""
    b = rlxpy.GraphBuilder("small")
    x = b.input("x", (3, 16))
    b.output("y", b.transpose(b.scale(x, factor=float(rng.uniform(0.5, 2.0))), perm=(1, 0)))
    return b.build()


def growth_mb(compile_once, n: int, warmup: int = 5) -> float:
    """How much the C heap (or, without mallinfo2, the resident set) grew over n compiles."""
    read = heap_mb if heap_mb() is not None else rss_mb
    for _ in range(warmup):
        compile_once()
    gc.collect()
    before = read()
    for _ in range(n):
        compile_once()
    gc.collect()
    return read() - before


def test_cold_compiles_give_back_their_memory(rng):
    """Every cold compile leaked its O3 pipeline, the passes and the maps they grew (~90 KB for this
    graph, 3.5 MB over these 40), because llvmlite never frees a pass manager; now ~1.5 KB of
    llvmlite's pass builder stays behind per compile."""
    graph = small_graph(rng)
    inputs = {"x": rng.standard_normal((3, 16)).astype(np.float32)}
    expected = rlxpy.compile(graph)(**inputs)["y"]

    def cold():
        exe = rlxpy.compile(graph, target="llvm", cache=False)
        assert exe.cache_status == "off" and "interp" not in exe.placement.values()
        np.testing.assert_allclose(exe(**inputs)["y"], expected, rtol=1e-6)

    assert growth_mb(cold, 40) < 1.5


def test_cache_hits_give_back_their_memory(tmp_path, rng):
    graph = small_graph(rng)
    rlxpy.compile(graph, target="llvm", cache=tmp_path)

    def hit():
        assert rlxpy.compile(graph, target="llvm", cache=tmp_path).cache_status == "hit"

    assert growth_mb(hit, 40) < 1.0


def test_dropped_executables_free_their_engines(rng):
    """Each executable owns one JIT engine, which maps its code; dropping the executables unmaps it
    and frees the engine's heap."""
    graph = small_graph(rng)
    rlxpy.compile(graph, target="llvm", cache=False)
    gc.collect()
    maps, heap = mappings(), heap_mb()
    held = [rlxpy.compile(graph, target="llvm", cache=False) for _ in range(16)]
    gc.collect()
    assert mappings() - maps >= 16                  # the readings see the engines at all
    live_heap = heap_mb()
    del held
    gc.collect()
    assert mappings() - maps <= 4
    if heap is not None:
        assert live_heap - heap > 16 * 0.02         # each engine, its target machine, the plan: ~50 KB
        assert heap_mb() - heap < 0.5


def test_memory_readings():
    """The heap reading counts an allocation made through malloc, and forgets it once freed."""
    import ctypes
    assert heap_mb() is not None, "no glibc mallinfo2: the tests above fall back on the resident set"
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    before = heap_mb()
    p = libc.malloc(8 << 20)
    assert heap_mb() - before >= 8
    libc.free(ctypes.c_void_p(p))
    assert abs(heap_mb() - before) < 1
    assert rss_mb() > 10 and mappings() > 10
