"""A model's call graph in topological order, with nested models inlined.

Functional models, Sequential models (built on an ``Input`` or by ``build``)
and models used as layers inside another model (a keras.applications backbone
under a classifier head) all become one flat sequence of operation calls:
layers and keras.ops operation nodes. Where a nested model is entered or
left, an ``Alias`` says which outer tensors its inner inputs (outputs) stand
for, so whoever walks the graph can map tensors across the boundary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import keras

from tfprune.handlers.analysis import GraphError


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of a layer or operation in the graph.

    Attributes:
        operation: The layer or keras.ops operation.
        inputs: Its input tensors (symbolic), in call order.
        outputs: Its output tensors.
        node: The Keras node (``node.arguments`` rebuilds the call).
    """

    operation: object
    inputs: list
    outputs: list
    node: object

    @property
    def name(self) -> str:
        """The operation's name."""
        return self.operation.name


@dataclasses.dataclass(frozen=True)
class Alias:
    """``targets[i]`` is the same tensor as ``sources[i]`` (a nested model's boundary)."""

    sources: list
    targets: list


def functional_graph(model) -> keras.Model:
    """The functional model whose nodes describe ``model``'s computation.

    Raises:
        GraphError: For an unbuilt Sequential or a subclassed model.
    """
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise GraphError(
                f"Sequential model {model.name!r} has no graph yet: start it with keras.Input"
                "(shape) or call model.build(input_shape) before pruning it."
            )
        return functional
    if getattr(model, "_nodes_by_depth", None) is None:
        raise GraphError(
            f"model {model.name!r} ({type(model).__name__}) is a subclassed model, whose call "
            "tfprune cannot see; rebuild it as a functional or Sequential model."
        )
    return model


def is_nested_model(operation) -> bool:
    """Whether a graph node's operation is a model tfprune can look into."""
    return isinstance(operation, keras.Sequential) or (
        isinstance(operation, keras.Model) and getattr(operation, "_nodes_by_depth", None)
        is not None)


def _nodes(graph: keras.Model):
    by_depth = graph._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def walk(model) -> Iterator[Call | Alias]:
    """Every call of ``model``'s graph in topological order; nested models inlined.

    Raises:
        GraphError: For a model without a graph (see ``functional_graph``).
    """
    graph = functional_graph(model)
    for node in _nodes(graph):
        operation = node.operation
        if node.is_input or isinstance(operation, keras.layers.InputLayer):
            continue
        inputs, outputs = list(node.input_tensors), list(node.output_tensors)
        if is_nested_model(operation):
            inner = functional_graph(operation)
            yield Alias(inputs, list(inner.inputs))
            yield from walk(inner)
            yield Alias(list(inner.outputs), outputs)
        else:
            yield Call(operation, inputs, outputs, node)


def calls(model) -> list[Call]:
    """The ``Call``s of ``walk(model)`` (no aliases)."""
    return [step for step in walk(model) if isinstance(step, Call)]


def producers(model) -> dict[int, Call]:
    """``id(tensor) -> Call`` producing it, across nested models' boundaries."""
    found: dict[int, Call] = {}
    for step in walk(model):
        if isinstance(step, Alias):
            for source, target in zip(step.sources, step.targets, strict=True):
                if id(source) in found:
                    found[id(target)] = found[id(source)]
        else:
            for tensor in step.outputs:
                found[id(tensor)] = step
    return found


def operation_order(model) -> list[str]:
    """Names of the model's layers and ops in the model's own order.

    For a flat functional model that is ``model.layers``' order; a nested
    model's contents stand in its place.
    """
    names = []
    for operation in functional_graph(model).operations:
        if isinstance(operation, keras.layers.InputLayer):
            continue
        if is_nested_model(operation):
            names += operation_order(operation)
        else:
            names.append(operation.name)
    return names
