"""Data structures of the dependency graph: channel ids, their union-find, layer members, groups."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn


@dataclass
class Val:
    """What we know about one tensor: channel ids along ``cdim`` (None: not tracked)."""

    shape: tuple[int, ...]
    ids: np.ndarray | None = None
    cdim: int = 1


class UnionFind:
    """Channel ids with union and a ``fixed`` flag (a fixed set is never pruned)."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.fixed: list[bool] = []

    def new(self, n: int, fixed: bool = False) -> np.ndarray:
        start = len(self.parent)
        self.parent += list(range(start, start + n))
        self.fixed += [fixed] * n
        return np.arange(start, start + n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[ry] = rx
                self.fixed[rx] = self.fixed[rx] or self.fixed[ry]

    def fix(self, ids: np.ndarray | None) -> None:
        if ids is not None:
            for x in ids.tolist():
                self.fixed[self.find(x)] = True

    def roots(self, ids: np.ndarray) -> np.ndarray:
        return np.array([self.find(x) for x in ids.tolist()], dtype=np.int64)


@dataclass
class Member:
    """One layer's share of the channel ids: ``role`` is out/in/dw/bn."""

    name: str
    module: nn.Module
    role: str
    ids: np.ndarray


@dataclass
class Graph:
    """The result of :func:`build_graph`: members, union-find, and the groups of units."""

    uf: UnionFind
    members: list[Member]
    groups: list[list[int]] = field(default_factory=list)  # each: sorted unit (root) ids
    group_producers: list[list[str]] = field(default_factory=list)
    unit_producers: dict[int, tuple[str, ...]] = field(default_factory=dict)  # root -> producer layers

    def prunable(self, root: int) -> bool:
        return not self.uf.fixed[root]
