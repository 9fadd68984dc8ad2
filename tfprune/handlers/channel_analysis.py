"""The channel analysis handlers write into: channel spaces, their union, tensor layouts.

Every tensor's last axis is made of channel spaces (a ``Layout``). A handler
creates spaces (a conv's output), joins them (an Add), passes them on (a
ReLU), or blocks them (a layer that mixes channels in a way masks cannot
reproduce). ``ChannelAnalysis`` is the union-find that records all of this;
``tfprune.pruning.ChannelGraph`` drives it over a model's graph.
"""

from __future__ import annotations

import dataclasses
import math


class GraphError(ValueError):
    """The graph has a layer or op the dependency analysis cannot handle."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a tensor's last axis is made of channel spaces.

    ``spaces`` lists ``(space, size)`` in order (several after a Concatenate),
    and the whole is repeated ``tiles`` times (Flatten of an (H, W, C) tensor:
    index ``p * C + c``, ``tiles = H * W``).
    """

    spaces: tuple
    tiles: int = 1

    @classmethod
    def single(cls, space: int, size: int) -> Layout:
        """One plain space."""
        return cls(((space, int(size)),))

    @property
    def plain(self) -> bool:
        """One space, not tiled."""
        return len(self.spaces) == 1 and self.tiles == 1


class ChannelAnalysis:
    """Union-find over channel spaces, filled by the handlers.

    Attributes:
        parent: Union-find parents, one per space.
        sizes: Channel count of each space.
        roles: Per space, ``{"sources", "followers", "consumers"}`` layer names.
        blocked: Per space, why it may not be pruned (None: prunable).
        splits: Per space, ``(parts, atom)``: its channels fall into ``parts``
            equal contiguous parts that must each keep the same number of
            channels (a grouped convolution's groups), and into atoms of
            ``atom`` contiguous channels kept or removed whole
            (GroupNormalization's groups); ``(1, 1)`` when unconstrained.
        gqa: How grouped-query attention loses heads: ``"groups"`` (whole
            query groups) or ``"heads"`` (query heads, evenly in every group).
        tensors: ``id(tensor) -> Layout``.
        inner: ``{layer name: {unit: space}}``: channel spaces inside layers
            that no tensor shows (attention heads).
        names: ``{id(layer): name}``: the name each layer is known by in the
            graph (its path when several layers share its own name); see
            ``name_of``.
        shared: ``{id(layer): space}``: a space a handler keeps for a layer
            across its calls (the table columns of a ``ReversibleEmbedding``,
            called forward on token ids and in reverse on hidden states).
    """

    def __init__(self):
        self.parent: list[int] = []
        self.sizes: list[int] = []
        self.roles: list[dict] = []
        self.blocked: list[str | None] = []
        self.splits: list[tuple[int, int]] = []
        self.tensors: dict[int, Layout] = {}
        self.inner: dict[str, dict[str, int]] = {}
        self.names: dict[int, str] = {}
        self.shared: dict[int, int] = {}
        self.gqa = "groups"

    def name_of(self, layer) -> str:
        """The name ``layer`` is known by in the graph: handlers record roles under it."""
        return self.names.get(id(layer), layer.name)

    def new_space(self, size: int, blocked: str | None = None) -> int:
        """A fresh space of ``size`` channels; ``blocked`` says why it is not prunable."""
        self.parent.append(len(self.parent))
        self.sizes.append(int(size))
        self.roles.append({"sources": [], "followers": [], "consumers": []})
        self.blocked.append(blocked)
        self.splits.append((1, 1))
        return len(self.parent) - 1

    def find(self, space: int) -> int:
        """The root of a space's union."""
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def union(self, a: int, b: int, where: str) -> None:
        """Joins two spaces (they must have the same size)."""
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.sizes[a] != self.sizes[b]:
            raise GraphError(f"{where!r} joins {self.sizes[a]} and {self.sizes[b]} channels; "
                             "joined tensors need equal channel counts.")
        self.parent[b] = a
        for role, names in self.roles[b].items():
            self.roles[a][role] += [name for name in names if name not in self.roles[a][role]]
        self.blocked[a] = self.blocked[a] or self.blocked[b]
        self._split(a, *self.splits[b], where)

    def constrain(self, layout: Layout, where: str, parts: int = 1, atom: int = 1) -> None:
        """Requires ``layout``'s channels to be removed in equal parts and whole atoms.

        Args:
            layout: A plain layout (one space, not tiled).
            where: The layer imposing it (named when the split is impossible).
            parts: Equal contiguous parts that must keep the same channel count.
            atom: Contiguous channels kept or removed together.

        Raises:
            GraphError: If the layout is a concatenation or flattening.
        """
        if not layout.plain:
            raise GraphError(f"{where!r} splits its channels into groups but its input is a "
                             "concatenation or flattening.")
        self._split(self.find(layout.spaces[0][0]), parts, atom, where)

    def _split(self, root: int, parts: int, atom: int, where: str) -> None:
        """Combines a split into a root's; blocks the root when none can hold both."""
        old_parts, old_atom = self.splits[root]
        parts, atom = math.lcm(parts, old_parts), math.lcm(atom, old_atom)
        size = self.sizes[root]
        if size % parts or (size // parts) % atom:
            self.blocked[root] = self.blocked[root] or (
                f"{where!r}: {size} channels cannot be split into {parts} equal parts of whole "
                f"groups of {atom}")
            return
        self.splits[root] = (parts, atom)

    def layout(self, tensor) -> Layout:
        """The layout of a tensor already analysed."""
        return self.tensors[id(tensor)]

    def set_layout(self, tensor, layout: Layout) -> None:
        """Records a tensor's layout."""
        self.tensors[id(tensor)] = layout

    def new_tensor_space(self, tensor, blocked: str | None = None) -> int:
        """A fresh space for a tensor's channels, recorded as its layout.

        A last axis of unknown size (the timesteps of a variable-length mask)
        holds no channels: its space is empty and blocked.
        """
        size = tensor.shape[-1]
        if size is None:
            size, blocked = 0, blocked or "its last axis has no fixed size"
        space = self.new_space(size, blocked)
        self.set_layout(tensor, Layout.single(space, size))
        return space

    def new_inner_space(self, layer, unit: str, size: int, blocked: str | None = None) -> int:
        """A space of ``size`` channels inside ``layer`` (its heads), scored as ``layer/unit``."""
        space = self.new_space(size, blocked)
        self.roles[space]["sources"].append(f"{self.name_of(layer)}/{unit}")
        self.inner.setdefault(self.name_of(layer), {})[unit] = space
        return space

    def add_role(self, layout: Layout, role: str, name: str) -> None:
        """Records ``name`` as a source, follower or consumer of every space in ``layout``."""
        for space, _ in layout.spaces:
            names = self.roles[self.find(space)][role]
            if name not in names:
                names.append(name)

    def block(self, layout: Layout, reason: str) -> None:
        """Makes every space in ``layout`` unprunable, for ``reason``."""
        for space, _ in layout.spaces:
            root = self.find(space)
            self.blocked[root] = self.blocked[root] or reason
