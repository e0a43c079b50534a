"""Hypothesis strategies over random graphs (hypothesis is in the test extra, not a runtime need).

    from hypothesis import given
    from rlxpy.difftest.strategies import cases

    @given(cases(max_nodes=10))
    def test_something(case): ...

The generator's every decision is drawn from hypothesis, so a failing graph shrinks: fewer ops,
smaller dimensions, simpler choices.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .generate import Case, random_case


class _DrawChooser:
    def __init__(self, draw):
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def choice(self, options):
        return self.draw(st.sampled_from(list(options)))

    def chance(self, p: float) -> bool:
        return self.draw(st.floats(0, 1, exclude_max=True)) < p

    def seed(self) -> int:
        return self.draw(st.integers(0, 2**31 - 1))


@st.composite
def cases(draw, max_nodes: int = 12) -> Case:
    """A random valid graph with its params and inputs."""
    return random_case(_DrawChooser(draw), draw(st.integers(2, max_nodes)), name="hypothesis")


@st.composite
def graphs(draw, max_nodes: int = 12):
    """Just the graph (with params unbound)."""
    return draw(cases(max_nodes)).graph
