"""The program a compiled graph runs on every call: its buffers and steps.

Storage. Every value lives in the storage of its root: itself, or for an alias (a reshape) the root
of its operand. Roots are inputs (the checked caller arrays), constants (read-only, made
contiguous once here), per-call outputs (a fresh array, or the caller's `out=` array, written in
place by the kernel that computes it), and intermediates. Intermediates live in a buffer set whose
slots are shared by values with disjoint lifetimes (greedy, in step order); one set is allocated
when the program is made, and concurrent calls each take a set from a pool (a new one only when all
are busy), so calls from several threads never share scratch memory.

Steps. A native step calls its kernel through ctypes (which releases the GIL) with the addresses
of its result and operands; when `threads` > 1 and the kernel has enough work, its [begin, end)
range is split into one chunk per thread. An interpreter step evaluates the node's numpy rule and
copies the result into the node's storage. Every array handed to a kernel has the shape the kernel
was compiled for: inputs and `out=` arrays are checked before the first call, everything else is
allocated here.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ...interp import evaluate_node
from ...ir.graph import Graph
from ...memory import allocating
from ..jit import CompiledModule
from ..kernel import Step
from .buffers import aligned_empty, assign_slots
from .compare import check_node

# Below this much work (Kernel.cost x extent, roughly flops) a kernel runs on one thread: handing a
# chunk to another thread costs tens of microseconds.
PARALLEL_MIN_WORK = 1 << 20


@dataclass
class _BufferSet:
    slots: list[np.ndarray]
    views: dict[str, np.ndarray]          # intermediate root -> its view of a slot
    addresses: dict[str, int]


class Layout:
    """Where every value of a program lives (see the module's notes), decided before any allocation,
    so that what a call needs is known at compile time."""

    def __init__(self, graph: Graph, steps: list[Step]):
        self.graph = graph
        self.steps = steps
        self.types = {n.name: n.type for n in graph.nodes}
        self.root = {n.name: n.name for n in graph.nodes}
        for s in steps:
            if s.kind == "alias":
                self.root[s.node.name] = self.root[s.node.operands[s.operand]]
        self.inputs = {n.name: n.attrs["name"] for n in graph.nodes if n.op == "input"}
        self.const_names = {n.name for n in graph.nodes if n.op == "const"}
        computed = {s.node.name for s in steps if s.kind != "alias"}
        # outputs whose storage is made per call: the first output name of a computed root owns it
        self.output_roots: dict[str, list[str]] = {}
        for name, value in graph.outputs.items():
            r = self.root[value]
            if r in computed:
                self.output_roots.setdefault(r, []).append(name)
        self.intermediates = [s.node.name for s in steps
                              if s.kind != "alias" and s.node.name not in self.output_roots]
        self.slot_of, self.slot_capacity = assign_slots(steps, self.root, self.types, self.intermediates)

    def call_bytes(self) -> dict[str, int]:
        """What one call (without out= arrays) holds besides the constants: its inputs, the fresh
        outputs (and copies for a second name of a value, or an input returned as an output) and
        one scratch buffer set."""
        outputs = sum(self.types[r].nbytes for r in self.output_roots)
        for name, v in self.graph.outputs.items():
            r = self.root[v]
            if self.output_roots.get(r, [None])[0] != name and r not in self.const_names:
                outputs += self.types[v].nbytes
        inputs = sum(self.types[n].nbytes for n in self.inputs)
        return {"inputs": inputs, "outputs": outputs, "scratch": self.buffer_bytes}

    @property
    def buffer_bytes(self) -> int:
        """Bytes of intermediate storage in one buffer set."""
        return 4 * sum(self.slot_capacity)


class Program(Layout):
    def __init__(self, graph: Graph, steps: list[Step], module: CompiledModule, threads: int):
        super().__init__(graph, steps)
        self.module = module                  # keeps the engine (and so the code) alive
        self.threads = threads
        self.consts: dict[str, np.ndarray] = {}
        for n in graph.nodes:
            if n.op == "const":
                value = np.require(n.value, dtype=np.float32, requirements=("C", "A"))
                if value.shape != n.type.shape:
                    raise ValueError(f"const %{n.name} holds shape {value.shape}, typed {n.type}")
                if value.flags.writeable:
                    with allocating(f"a read-only copy of const %{n.name} {n.type}", n.type.nbytes):
                        value = value.copy()
                    value.setflags(write=False)
                self.consts[n.name] = value
        self._functions = {}
        for s in steps:
            if s.kind == "native":
                n_ptr = 1 + len(s.node.operands) + len(s.constants)
                proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * n_ptr), ctypes.c_int64, ctypes.c_int64)
                self._functions[s.node.name] = proto(module.addresses[s.symbol])
        self._const_addresses = {name: a.ctypes.data for name, a in self.consts.items()}
        # a rule's compile-time arrays (packed weights), kept alive with the program
        self._step_constants = {
            s.node.name: [np.require(c, dtype=np.float32, requirements=("C", "A")) for c in s.constants]
            for s in steps if s.kind == "native"
        }
        self._kernel_constants = {k: [c.ctypes.data for c in v] for k, v in self._step_constants.items()}
        self._pool_lock = threading.Lock()
        self._free: list[_BufferSet] = [self._new_buffer_set()]
        self._buffer_sets = 1
        self._executor: ThreadPoolExecutor | None = None

    def _new_buffer_set(self) -> _BufferSet:
        slots = []
        for j, c in enumerate(self.slot_capacity):
            tenants = [f"%{r}" for r, k in self.slot_of.items() if k == j]
            more = f" and {len(tenants) - 3} more" if len(tenants) > 3 else ""
            with allocating(f"scratch buffer {j} of @{self.graph.name} (for {', '.join(tenants[:3])}{more})", 4 * c):
                slots.append(np.empty(c, np.float32))
        views = {r: slots[j][:self.types[r].numel].reshape(self.types[r].shape) for r, j in self.slot_of.items()}
        addresses = {r: v.ctypes.data for r, v in views.items()}
        addresses.update(self._const_addresses)
        return _BufferSet(slots, views, addresses)

    @property
    def buffer_sets(self) -> int:
        return self._buffer_sets

    def _acquire(self) -> _BufferSet:
        with self._pool_lock:
            if self._free:
                return self._free.pop()
            self._buffer_sets += 1
        return self._new_buffer_set()

    def _release(self, bufs: _BufferSet) -> None:
        with self._pool_lock:
            self._free.append(bufs)

    # -- running ---------------------------------------------------------------------------------

    def run(self, inputs: dict[str, np.ndarray], out: dict[str, np.ndarray], compare: bool = False,
            observe=None) -> dict[str, np.ndarray]:
        """One call. `observe(name, array)`, if given, sees every value as the program computed it,
        right after its step (the array is scratch memory: copy what you keep)."""
        bufs = self._acquire()
        try:
            arrays: dict[str, np.ndarray] = dict(self.consts)
            arrays.update(bufs.views)
            for node_name, input_name in self.inputs.items():
                arrays[node_name] = inputs[input_name]
            for r, names in self.output_roots.items():
                owner = names[0]
                if owner in out:
                    arrays[r] = out[owner].reshape(self.types[r].shape)
                    continue
                with allocating(f"output '{owner}' {self.types[r]} of @{self.graph.name}", self.types[r].nbytes):
                    arrays[r] = aligned_empty(self.types[r].shape)
            addresses = dict(bufs.addresses)
            for r in self.output_roots:
                addresses[r] = arrays[r].ctypes.data
            for node_name in self.inputs:
                addresses[node_name] = arrays[node_name].ctypes.data

            def view(v: str) -> np.ndarray:
                a = arrays[self.root[v]]
                shape = self.types[v].shape
                return a if a.shape == shape else a.reshape(shape)

            for s in self.steps:
                node = s.node
                if s.kind == "native":
                    args = [addresses[node.name]] + [addresses[self.root[o]] for o in node.operands]
                    args += self._kernel_constants[node.name]
                    self._call(s, args)
                    if compare:
                        operands = [view(o) for o in node.operands]
                        ref = evaluate_node(node, operands)
                        check_node(self.graph, node, s.symbol, view(node.name), ref, operands)
                elif s.kind == "interp":
                    np.copyto(view(node.name), evaluate_node(node, [view(o) for o in node.operands]))
                if observe is not None:
                    observe(node.name, view(node.name))
            return self._results(arrays, view, out)
        finally:
            self._release(bufs)

    def _results(self, arrays, view, out) -> dict[str, np.ndarray]:
        results = {}
        for name, v in self.graph.outputs.items():
            r = self.root[v]
            if name in out and self.output_roots.get(r, [None])[0] == name:
                results[name] = out[name]                   # written in place by its kernel
            elif r in self.output_roots and self.output_roots[r][0] == name:
                results[name] = view(v)                     # this call's fresh array
            elif r in self.consts and name not in out:
                results[name] = view(v)                     # read-only constant, no copy
            else:                                           # an input, or a second name of a value
                with allocating(f"output '{name}' {self.types[v]} of @{self.graph.name}", self.types[v].nbytes):
                    dst = out[name] if name in out else np.empty(self.types[v].shape, np.float32)
                np.copyto(dst, view(v))
                results[name] = dst
        return results

    def _call(self, step: Step, args: list[int]) -> None:
        fn = self._functions[step.node.name]
        extent = step.extent
        parts = min(self.threads, extent)
        if parts < 2 or step.cost * extent < PARALLEL_MIN_WORK:
            fn(*args, 0, extent)
            return
        bounds = [extent * i // parts for i in range(parts + 1)]
        pool = self._pool()
        futures = [pool.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, parts)]
        fn(*args, bounds[0], bounds[1])
        for f in futures:
            f.result()

    def _pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.threads - 1, thread_name_prefix="rlxpy-kernel")
                weakref.finalize(self, self._executor.shutdown, wait=False)
            return self._executor
