"""A model's call graph in topological order, with nested models inlined.

Functional models, Sequential models (built on an ``Input`` or by ``build``),
models used as layers inside another model (a keras.applications backbone
under a classifier head) and custom composite layers (a layer whose ``call``
uses only its sublayers and keras.ops: ``composite_graph``) all become one
flat sequence of operation calls: layers and keras.ops operation nodes. Where
a nested model or composite layer is entered or left, an ``Alias`` says which
outer tensors its inner inputs (outputs) stand for, so whoever walks the
graph can map tensors across the boundary.

Each call is named by its layer's own name when no other layer in the flat
graph has that name, and otherwise by its path through the nested models and
composite layers holding it (``transformer_layer_0/self_attention_layer``):
the blocks of keras-hub's transformers all name their sublayers alike. Names
in a plain functional model therefore stay as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import traceback
import weakref
from collections.abc import Iterator

import keras
from keras.src.layers import layer as layer_module
from keras.src.ops.node import Node

from tfprune.handlers import handler_for
from tfprune.handlers.channel_analysis import GraphError


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of a layer or operation in the graph.

    Attributes:
        operation: The layer or keras.ops operation.
        inputs: Its input tensors (symbolic), in call order.
        outputs: Its output tensors.
        node: The Keras node (``node.arguments`` rebuilds the call).
        name: The name tfprune knows it by: the operation's own name, or its
            path (``block_0/attention``) when another layer shares that name.
        path: The names of the nested models and composite layers holding it,
            outermost first (empty at the top level).
    """

    operation: object
    inputs: list
    outputs: list
    node: object
    name: str = ""
    path: tuple = ()


@dataclasses.dataclass(frozen=True)
class Alias:
    """``targets[i]`` is the same tensor as ``sources[i]`` (a nested model's boundary).

    Attributes:
        sources: The tensors on the side the walk comes from.
        targets: The same tensors on the side it goes to.
        container: The nested model or composite layer entered or left.
        node: The container's node in the outer graph.
        entering: True where the walk enters the container, False where it leaves.
        path: The names of the containers holding this one (outermost first).
        name: The container's name, or its path joined by ``/`` when another
            container shares its name (``slim`` names a rebuilt composite so).
    """

    sources: list
    targets: list
    container: object = None
    node: object = None
    entering: bool = True
    path: tuple = ()
    name: str = ""


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


def pack_like(model, which: str, tensors: list):
    """Flat ``tensors`` arranged the way ``model``'s inputs or outputs were given.

    A dict keeps its keys, a list stays a list, a single tensor stays single;
    ``tensors`` are in the order of ``model.inputs`` / ``model.outputs``.

    Args:
        model: A functional model.
        which: ``"inputs"`` or ``"outputs"``.
        tensors: One tensor per flat input or output of ``model``.
    """
    structure = getattr(model, f"_{which}_struct", None)
    if structure is None:
        return tensors[0] if len(tensors) == 1 else list(tensors)
    return keras.tree.pack_sequence_as(structure, list(tensors))


def is_nested_model(operation) -> bool:
    """Whether a graph node's operation is a model tfprune can look into."""
    return isinstance(operation, keras.Sequential) or (
        isinstance(operation, keras.Model) and getattr(operation, "_nodes_by_depth", None)
        is not None)


#: Custom layer -> {input shapes and dtypes: the functional model of its call, or None when
#: it cannot be traced}: each layer is traced once per input signature.
_COMPOSITES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Custom layer -> why tracing its call failed (the error, for the message).
_TRACE_ERRORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def composite_graph(operation, node=None) -> keras.Model | None:
    """The functional model of a custom composite layer's ``call``, or None.

    A custom layer without a handler and without weights of its own (all its
    weights, if any, are its sublayers'), is traced (once per input shape): its ``call``
    runs on symbolic inputs shaped like the node's, so its sublayers and
    keras.ops calls become a graph tfprune analyses, masks and slims as part
    of the model (``slim`` returns them inlined). A call that reads its
    inputs' unknown sizes is traced again with placeholder sizes
    (``TRACE_BATCH``, ``TRACE_LENGTH``; ``traced_concretely``), and ``slim``
    rebuilds such a layer in place instead. Anything else, or a call that
    cannot be traced either way, gives None: the layer then needs a handler
    or ``ignored_layers`` (keras-hub's are kept whole).

    Args:
        operation: A graph node's operation.
        node: The node (its tensors shape the symbolic inputs); the first
            inbound node when None.
    """
    if not _composite_candidate(operation):
        return None
    node = node or operation._inbound_nodes[0]
    signature = _signature(node)
    traces = _COMPOSITES.setdefault(operation, {})
    if signature in traces:
        return traces[signature]
    traced = _trace(operation, node, concrete=False)
    if traced is None:  # its call reads the batch size or sequence length: give it numbers
        traced = _trace(operation, node, concrete=True)
    traces[signature] = traced
    return traced


def _signature(node) -> tuple:
    return tuple((tuple(t.shape), str(t.dtype)) for t in node.input_tensors)


def _refuse_trace(operation, node, why: str) -> None:
    """Forgets a trace that cannot stand for the layer here; ``why`` is its opaque reason."""
    _COMPOSITES.setdefault(operation, {})[_signature(node)] = None
    _TRACE_ERRORS[operation] = why


#: The sizes a composite layer's call sees for its inputs' unknown axes when it reads them
#: (``ops.shape(x)[0]``): the batch, then every other unknown axis (sequence lengths).
TRACE_BATCH, TRACE_LENGTH = 2, 8


def _trace(operation, node, concrete: bool) -> keras.Model | None:
    """The layer's call traced on symbolic inputs shaped like the node's, or None.

    With ``concrete``, unknown axes get ``TRACE_BATCH`` / ``TRACE_LENGTH``:
    the trace then describes the layer's channels exactly, but its shapes only
    for those sizes (the model itself is left as it is). The error of the last
    failed trace is kept for ``opaque_reason``.
    """
    inputs = {}
    for tensor in node.input_tensors:
        shape = tuple(tensor.shape)
        if concrete:
            shape = tuple((TRACE_BATCH if axis == 0 else TRACE_LENGTH) if size is None else size
                          for axis, size in enumerate(shape))
        inputs.setdefault(id(tensor), keras.Input(batch_shape=shape, dtype=tensor.dtype))
    try:
        args, kwargs = node.arguments.fill_in(inputs)
        with _none_left_out():
            outputs = operation.call(*args, **kwargs)
        flat = tensors_only(outputs)
        symbolic = [i for i, tensor in enumerate(flat) if isinstance(tensor, keras.KerasTensor)]
        if len(symbolic) != len(flat):  # constants (DeiT's empty tensors): not graph outputs
            outputs = [flat[i] for i in symbolic]
        elif len(flat) != len(keras.tree.flatten(outputs)):
            outputs = flat
        traced = keras.Model(list(inputs.values()), outputs, name=f"{operation.name}_call")
        if not concrete and _empty_axes(traced):  # sizes it read became 0: give it numbers
            raise ValueError("a size read from its input became an axis of size 0")
    except Exception as error:  # noqa: BLE001 - any failure means "not traceable": reported
        _TRACE_ERRORS[operation] = _trace_failure(operation, error)
        return None
    _TRACE_ERRORS.pop(operation, None)
    traced._tfprune_concrete = concrete
    traced._tfprune_symbolic_outputs = symbolic if len(symbolic) != len(flat) else None
    return traced


def _empty_axes(traced: keras.Model) -> bool:
    """Whether a tensor of the trace has an axis of size 0.

    A call that builds a mask from a size it reads (T5Gemma's
    ``ops.arange(length)``) gets 0 for an unknown size when traced
    symbolically; replayed at run time, that mask would not fit.
    """
    return any(0 in tuple(tensor.shape) for node in _nodes(traced)
               for tensor in node.output_tensors)


@contextlib.contextmanager
def _none_left_out():
    """Sublayer calls inside a trace leave out None: keyword arguments and outputs.

    A block passes its attention layer ``cache=None`` (keras-hub's
    ``TransformerDecoder``); on symbolic inputs Keras hands every keyword to
    the layer's ``compute_output_spec``, which may not take it
    (``MultiHeadAttention``'s). None is each argument's default, so leaving
    it out changes nothing else. A sublayer returning ``(x, None)`` (no cache,
    no attention scores: GPT-NeoX's attention, DeiT's blocks) gets a node of
    its tensors only. A sublayer whose own ``compute_output_shape`` fails
    gets its output spec from its call (``output_specs_from_call``). Only
    while a composite layer is traced.
    """
    originals = {cls: cls.__dict__["symbolic_call"] for cls in (keras.Operation,
                                                               keras.layers.Layer)}

    def leaving_out_none(original):
        def symbolic_call(self, *args, **kwargs):
            return original(self, *args, **{k: v for k, v in kwargs.items() if v is not None})
        return symbolic_call

    for cls, original in originals.items():
        cls.symbolic_call = leaving_out_none(original)
    try:
        with output_specs_from_call():
            yield
    finally:
        for cls, original in originals.items():
            cls.symbolic_call = original


@contextlib.contextmanager
def output_specs_from_call():
    """Layers whose ``compute_output_shape`` fails get their output spec from their call.

    And a layer returning ``(x, None)`` (an absent cache) gets a node of its
    tensors only.

    keras-hub's SmolLM 3 attention and rotary embedding expect a list of
    shapes where Keras hands them one: called on symbolic tensors (while a
    composite is traced, or while ``slim`` builds a rebuilt block's
    sublayers), their output spec comes from running their call symbolically
    instead, as for a layer without ``compute_output_shape``.
    """
    output_spec = keras.layers.Layer.__dict__["compute_output_spec"]

    def output_spec_from_call(self, *args, **kwargs):
        try:
            return output_spec(self, *args, **kwargs)
        except (TypeError, ValueError, IndexError, KeyError):
            return keras.Operation.compute_output_spec(self, *args, **kwargs)

    keras.layers.Layer.compute_output_spec = output_spec_from_call
    layer_module.Node = _NodeOfTensors
    try:
        yield
    finally:
        keras.layers.Layer.compute_output_spec = output_spec
        layer_module.Node = Node


class _NodeOfTensors(Node):
    """A Keras node whose None outputs (an absent cache) are left out."""

    def __init__(self, operation, call_args=None, call_kwargs=None, outputs=None):
        kept = tensors_only(outputs)
        if len(kept) != len(keras.tree.flatten(outputs)):
            outputs = kept
        call_kwargs = {k: v for k, v in (call_kwargs or {}).items() if v is not None}
        super().__init__(operation, call_args, call_kwargs, outputs)


def tensors_only(outputs) -> list:
    """The outputs' tensors, flat, without the Nones (an absent cache or attention scores)."""
    return [tensor for tensor in keras.tree.flatten(outputs) if tensor is not None]


def _trace_failure(operation, error: Exception) -> str:
    """The error, with the line of the layer's own code where it was raised."""
    message = f"{type(error).__name__}: {error}"
    try:
        own_file = inspect.getsourcefile(type(operation))
    except TypeError:
        own_file = None
    frames = traceback.extract_tb(error.__traceback__)
    for position, frame in reversed(list(enumerate(frames))):
        if own_file and frame.filename == own_file:
            failed = frames[position + 1].name if position + 1 < len(frames) else None
            where = f"{type(operation).__name__}.{frame.name}, line {frame.lineno}: " \
                    f"{(frame.line or '').strip()}"
            return f"{message[:300]} at {where}" + (f" (in {failed})" if failed else "")
    return message[:300]


def traced_concretely(graph) -> bool:
    """Whether a composite layer's trace needed concrete sizes for unknown axes."""
    return getattr(graph, "_tfprune_concrete", False)


def _composite_candidate(operation) -> bool:
    """A custom layer (not Keras's own) with no weights of its own and no handler."""
    return _custom_layer(operation) and not _own_weights(operation)


def _custom_layer(operation) -> bool:
    return (isinstance(operation, keras.layers.Layer) and not isinstance(operation, keras.Model)
            and not type(operation).__module__.startswith("keras.")
            and handler_for(operation) is None)


def _own_weights(operation) -> list:
    return operation._trainable_variables + operation._non_trainable_variables


def opaque_reason(operation) -> str:
    """Why tfprune cannot analyse a layer without a handler (for the error message)."""
    if not _custom_layer(operation):
        return "tfprune has no handler for this type"
    if _own_weights(operation):
        return ("a custom layer with weights of its own, whose channels tfprune cannot "
                "infer; register a handler for it")
    error = _TRACE_ERRORS.get(operation, "it uses other functions")
    return ("a custom layer whose call could not be traced as sublayers and keras.ops "
            f"({error}); register a handler for it")


def _nodes(graph: keras.Model):
    by_depth = graph._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def walk(model) -> Iterator[Call | Alias]:
    """Every call of ``model``'s graph in topological order; nested models inlined.

    Raises:
        GraphError: For a model without a graph (see ``functional_graph``).
    """
    steps = list(_walk(model, ()))
    names = qualified_names((step.path, step.operation) for step in steps
                            if isinstance(step, Call))
    containers = qualified_names((step.path, step.container) for step in steps
                                 if isinstance(step, Alias) and step.container is not None)
    for step in steps:
        if isinstance(step, Call):
            yield dataclasses.replace(step, name=names[id(step.operation)])
        elif step.container is not None:
            yield dataclasses.replace(step, name=containers[id(step.container)])
        else:
            yield step


def _walk(model, path: tuple) -> Iterator[Call | Alias]:
    graph = functional_graph(model)
    nodes = list(_nodes(graph))
    used = {id(t) for n in nodes for t in n.input_tensors} | {id(t) for t in graph.outputs}
    for node in nodes:
        operation = node.operation
        if node.is_input or isinstance(operation, keras.layers.InputLayer):
            continue
        inputs, outputs = list(node.input_tensors), list(node.output_tensors)
        inner = functional_graph(operation) if is_nested_model(operation) else (
            composite_graph(operation, node))
        symbolic = getattr(inner, "_tfprune_symbolic_outputs", None)
        if symbolic is not None and any(id(t) in used for i, t in enumerate(outputs)
                                        if i not in symbolic):
            _refuse_trace(operation, node, "its call returns values made from constants, not "
                          "from its inputs, and the model uses them")
            inner = None
        if inner is not None:
            unique = list({id(tensor): tensor for tensor in inputs}.values())
            yield Alias(unique if len(unique) == len(inner.inputs) else inputs,
                        list(inner.inputs), operation, node, entering=True, path=path)
            yield from _walk(inner, (*path, operation.name))
            if symbolic is not None:  # the call's constant outputs are no tensors of the graph
                outputs = [outputs[i] for i in symbolic]
            yield Alias(list(inner.outputs), outputs, operation, node, entering=False,
                        path=path)
        else:
            yield Call(operation, inputs, outputs, node, operation.name, path)


def qualified_names(placed) -> dict[int, str]:
    """``{id(operation): name}``: its own name if unique, else its path joined by ``/``.

    Args:
        placed: ``(path, operation)`` pairs, the path being the names of the
            containers holding the operation (outermost first); an operation
            listed twice (a shared layer) keeps its first path.
    """
    first: dict[int, tuple] = {}
    for path, operation in placed:
        first.setdefault(id(operation), (path, operation))
    owners: dict[str, set] = {}
    for _, operation in first.values():
        owners.setdefault(operation.name, set()).add(id(operation))
    return {key: operation.name if len(owners[operation.name]) == 1
            else "/".join((*path, operation.name))
            for key, (path, operation) in first.items()}


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
    """Names of the model's layers and ops (as ``Call.name``) in the model's own order.

    For a flat functional model that is ``model.layers``' order; a nested
    model's contents stand in its place.
    """
    names = {id(call.operation): call.name for call in calls(model)}
    return [names[id(operation)] for operation in _ordered_operations(model)
            if id(operation) in names]


def _ordered_operations(model) -> Iterator:
    for operation in functional_graph(model).operations:
        if isinstance(operation, keras.layers.InputLayer):
            continue
        inner = functional_graph(operation) if is_nested_model(operation) else (
            composite_graph(operation))
        if inner is not None:
            yield from _ordered_operations(inner)
        else:
            yield operation
