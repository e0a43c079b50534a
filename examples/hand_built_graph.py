"""Build a small graph by hand, compile it and check it against plain numpy.

    python examples/hand_built_graph.py

A per-pixel linear layer on a channels-last image, then a move to channels-first, a coarser map
added after 2x upsampling, and a halving: the same steps as one level of the SAM 2 neck. The graph
is printed as textual IR, run on the interpreter and checked against numpy, then compiled to native
code, where the default pipeline fuses the five steps into one kernel.
"""

import numpy as np

import rlxpy
from rlxpy import GraphBuilder

b = GraphBuilder("block")
x = b.input("x", (2, 8, 12, 16))                  # BHWC
coarse = b.input("coarse", (2, 32, 4, 6))         # NCHW, half the resolution
w = b.param("proj.weight", (16, 32))
bias = b.param("proj.bias", (32,))
y = b.bias_add(b.matmul(x, w), bias)              # [2, 8, 12, 32]
y = b.transpose(y, perm=(0, 3, 1, 2))             # NCHW
y = b.upsample_add(y, coarse, mode="bilinear")
b.output("y", b.scale(y, factor=0.5))
b.output("pe", b.pos_encoding(batch=2, dim=32, height=8, width=12))
graph = b.build()                                 # verified: shapes and types are inferred
print(rlxpy.print_graph(graph))                   # textual IR; rlxpy.parse_graph reads it back

rng = np.random.default_rng(0)
params = {"proj.weight": rng.standard_normal((16, 32), dtype=np.float32),
          "proj.bias": rng.standard_normal(32, dtype=np.float32)}
inputs = {"x": rng.standard_normal((2, 8, 12, 16), dtype=np.float32),
          "coarse": rng.standard_normal((2, 32, 4, 6), dtype=np.float32)}
out = rlxpy.compile(graph, params=params, target="interp")(**inputs)

# The same computation in plain numpy (bilinear x2 with align_corners=False, written out).
def up2(a, axis):
    n = a.shape[axis]
    lo = np.take(a, np.clip(np.arange(2 * n) // 2 - (np.arange(2 * n) % 2 == 0), 0, n - 1), axis=axis)
    hi = np.take(a, np.clip(np.arange(2 * n) // 2 + (np.arange(2 * n) % 2 == 1), 0, n - 1), axis=axis)
    shape = [1] * a.ndim
    shape[axis] = 2 * n
    return np.where((np.arange(2 * n) % 2 == 0).reshape(shape), 0.25 * lo + 0.75 * hi, 0.75 * lo + 0.25 * hi)

lin = (inputs["x"] @ params["proj.weight"] + params["proj.bias"]).transpose(0, 3, 1, 2)
expected = 0.5 * (lin + up2(up2(inputs["coarse"], 2), 3))
error = np.abs(out["y"] - expected).max()
print(f"y {list(out['y'].shape)}, pe {list(out['pe'].shape)}; max |rlxpy - numpy| = {error:.2e}")
assert error < 1e-5, error

# Native code: the default pipeline fuses matmul, bias_add, transpose, upsample_add and scale into
# one fused_matmul and folds the position encoding into a constant; the report says where each
# node runs.
native = rlxpy.compile(graph, params=params, target="llvm")
print("after the passes:", ", ".join(node.op for node in native.graph))
print(native.report())
got = native(**inputs)
diff = max(float(np.abs(got[k] - out[k]).max() / np.abs(out[k]).max()) for k in out)
print(f"max |llvm - interp| / max |interp| = {diff:.2e}")
assert diff < 1e-5, diff
