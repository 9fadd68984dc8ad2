"""Handlers of attention layers: MultiHeadAttention loses whole heads; Attention joins spaces.

A head of ``MultiHeadAttention`` is its slices of the query, key and value
projections (kernels ``(dim, heads, key_dim)``, biases ``(heads, key_dim)``)
and of the output projection (kernel ``(heads, value_dim, out)``). A head
whose query, key and value slices are zero attends uniformly to values that
are zero, so it adds nothing to the output: masking those slices is exactly
removing the head, and ``slim`` rebuilds the layer with fewer ``num_heads``.
The heads are a channel space inside the layer (``analysis.new_inner_space``)
scored as ``<layer>/heads`` over all four projections' slices. The output
projection's columns are a channel space like a Dense layer's units, which
joins the residual stream it is added to. Query (and, in self-attention, key
and value) input channels are the projections' rows.

``keras.layers.Attention`` (dot-product or concat scores, no kernels) scores
a query against a key over their channels, so the query's and the key's
channels are one space (a channel removed from both leaves every score as it
was); its output is a weighted sum of the values, with the value's channels.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np

from tfprune.handlers.base import LayerHandler, axis_mask, block, take
from tfprune.handlers.channel_analysis import GraphError, Layout
from tfprune.layer_configs import layer_config

#: Per projection: (attribute, kernel axis indexing the heads, bias axis indexing them or None).
_PROJECTIONS = (("query_dense", 1, 0), ("key_dense", 1, 0), ("value_dense", 1, 0),
                ("output_dense", 0, None))


def kept_whole_because(layer, outputs) -> str | None:
    """Why an attention layer's heads are kept whole (gated, or scores returned), or None."""
    if len(outputs) > 1:
        return "its attention scores are an output, so its heads are kept"
    if getattr(layer, "_use_gate", False) or getattr(layer, "use_gate", False):
        return "gated heads (use_gate) are kept"
    return None


def attention_spaces(analysis, layer, inputs, outputs, unit: str, size: int,
                     why: str | None) -> int:
    """The channel rule of attention layers, whose heads are an inner unit.

    The query's channels are consumed (the projections' rows); other inputs
    (cross-attention keys and values, masks, caches) keep theirs; the output
    projection's columns are a new space; further outputs (attention scores,
    caches) are kept whole; the heads are the inner unit ``unit`` of ``size``
    channels, kept whole for ``why``. Returns the inner unit's space.
    """
    query = inputs[0]
    analysis.add_role(analysis.layout(query), "consumers", analysis.name_of(layer))
    for tensor in inputs[1:]:
        if tensor is not query:
            analysis.block(analysis.layout(tensor), f"{layer.name!r}: cross-attention keys "
                           "and values, attention masks and caches keep their channels")
    space = analysis.new_tensor_space(outputs[0])
    analysis.roles[space]["sources"].append(analysis.name_of(layer))
    for tensor in outputs[1:]:
        analysis.new_tensor_space(tensor, blocked=f"{layer.name!r}: attention scores or cache")
    return analysis.new_inner_space(layer, unit, size, blocked=why and f"{layer.name!r}: {why}")


def hidden_inputs(tensors, width: int) -> list:
    """The floating tensors ``width`` channels wide among ``tensors``: not the masks."""
    return [t for t in tensors if "float" in str(t.dtype) and t.shape[-1] == width]


def query_first(inputs: list, width: int) -> list:
    """``inputs`` with the query first: the first floating input ``width`` channels wide.

    Attention layers called with keyword arguments (keras-hub's blocks:
    ``query=x, value=x, attention_mask=mask``) may list their mask before
    their hidden states.
    """
    found = next(iter(hidden_inputs(inputs, width)), None)
    return inputs if found is None else [found, *(t for t in inputs if t is not found)]


#: Per MultiHeadAttention layer, whether the analysis saw it called on one tensor as query,
#: key and value.
_SELF_ATTENTION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class MultiHeadAttentionHandler(LayerHandler):
    """MultiHeadAttention: whole heads, output channels and query input channels.

    Heads are kept whole when the layer returns its attention scores (their
    head axis is an output) or gates its heads (``use_gate``). In
    cross-attention (key or value another tensor than the query) the key and
    value inputs' channels are kept whole.
    """

    scored_kernel = "output_dense.kernel"
    kernel_attributes = ("query_dense.kernel", "key_dense.kernel", "value_dense.kernel",
                         "output_dense.kernel")

    def analyse(self, analysis, layer, inputs, outputs):
        width = layer.query_dense.kernel.shape[0]
        inputs = query_first(inputs, width)
        _SELF_ATTENTION[layer] = all(tensor is inputs[0]
                                     for tensor in hidden_inputs(inputs[1:], width))
        attention_spaces(analysis, layer, inputs, outputs, "heads", layer.num_heads,
                         kept_whole_because(layer, outputs))

    def main_input(self, layer, inputs):
        """The query (called with keywords, the mask may come first)."""
        return query_first(inputs, layer.query_dense.kernel.shape[0])[0]

    def inner_units(self, layer):
        parts = tuple((f"{name}.kernel", axis) for name, axis, _ in _PROJECTIONS)
        return {"heads": (layer.num_heads, parts)}

    @staticmethod
    def _self_attention(layer) -> bool:
        """Whether key and value read the query tensor (their rows follow the query's).

        As the analysis saw the layer called (a sublayer of a composite layer
        has no call of its own in the model's graph), else from its first call.
        """
        if layer in _SELF_ATTENTION:
            return _SELF_ATTENTION[layer]
        node = layer._inbound_nodes[0] if layer._inbound_nodes else None
        tensors = hidden_inputs([] if node is None else node.input_tensors,
                                layer.query_dense.kernel.shape[0])
        return bool(tensors) and all(tensor is tensors[0] for tensor in tensors)

    def variable_masks(self, layer, in_mask, out_mask):
        pairs = []
        if in_mask is not None:
            names = ("query_dense", "key_dense", "value_dense") if self._self_attention(
                layer) else ("query_dense",)
            pairs += [(getattr(layer, n).kernel, axis_mask(getattr(layer, n).kernel.shape,
                                                           in_mask, 0)) for n in names]
        if out_mask is not None:
            output = layer.output_dense
            pairs.append((output.kernel, axis_mask(output.kernel.shape, out_mask, -1)))
            if output.bias is not None:
                pairs.append((output.bias, np.asarray(out_mask, np.float32)))
        return pairs

    def inner_masks(self, layer, masks):
        heads = masks.get("heads")
        if heads is None:
            return []
        pairs = []
        for name, kernel_axis, bias_axis in _PROJECTIONS:
            dense = getattr(layer, name)
            pairs.append((dense.kernel, axis_mask(dense.kernel.shape, heads, kernel_axis)))
            if bias_axis is not None and dense.bias is not None:
                pairs.append((dense.bias, axis_mask(dense.bias.shape, heads, bias_axis)))
        return pairs

    def slim(self, layer, context):
        config = layer.get_config()
        heads = context.inner_index(layer, "heads")
        in_index, out_index = context.input_index(layer), context.output_index(layer)
        rows = ("query_dense", "key_dense", "value_dense") if self._self_attention(
            layer) else ("query_dense",)
        sliced = {}
        for name, kernel_axis, bias_axis in _PROJECTIONS:
            dense = getattr(layer, name)
            kernel = take(np.asarray(dense.kernel), heads, kernel_axis)
            if name in rows:
                kernel = take(kernel, in_index, 0)
            if name == "output_dense":
                kernel = take(kernel, out_index, -1)
            sliced[id(dense.kernel)] = kernel
            if dense.bias is not None:
                bias = np.asarray(dense.bias)
                sliced[id(dense.bias)] = (take(bias, heads, bias_axis) if bias_axis is not None
                                          else take(bias, out_index, 0))
        if heads is not None:
            config["num_heads"] = int(heads.size)
        if out_index is not None:
            config["output_shape"] = int(out_index.size)
        return config, [sliced.get(id(v), np.asarray(v)) for v in layer.weights]

    def flops(self, call, kept):
        """Projections (2 per kept kernel entry per position) and the attention products.

        The attention products (query-key scores and the weighted values) cost
        ``2 x query positions x key positions x heads x (key_dim + value_dim)``;
        the kept heads are read from the query bias (without one, from the
        query kernel, exact while the query's input channels are all kept).
        """
        layer = call.operation
        query, key, value, output = (getattr(layer, n) for n, _, _ in _PROJECTIONS)
        inputs = query_first(list(call.inputs), query.kernel.shape[0])
        values = hidden_inputs(inputs[1:], value.kernel.shape[0]) or inputs
        # an axis of unknown size (a sequence of any length) counts once, as in GQA below
        query_positions = int(np.prod([size or 1 for size in inputs[0].shape[1:-1]]))
        key_positions = int(np.prod([size or 1 for size in values[0].shape[1:-1]]))
        reference = query.bias if query.bias is not None else query.kernel
        heads = layer.num_heads * kept(reference) / int(np.prod(reference.shape))
        key_dim, value_dim = query.kernel.shape[-1], value.kernel.shape[-1]
        projections = (query_positions * (kept(query.kernel) + kept(output.kernel))
                       + key_positions * (kept(key.kernel) + kept(value.kernel)))
        products = query_positions * key_positions * heads * (key_dim + value_dim)
        return int(round(2 * (projections + products)))


class DotAttention(LayerHandler):
    """``keras.layers.Attention``: query and key channels joined, the output the value's."""

    def analyse(self, analysis, layer, inputs, outputs):
        """Joins the query's and the key's spaces; the output takes the value's layout."""
        tensors = [tensor for tensor in inputs if tensor.dtype != "bool"]  # not the masks
        if len(outputs) > 1 or len(tensors) not in (2, 3):
            block(analysis, layer, inputs, outputs,
                  "returns its attention scores" if len(outputs) > 1 else
                  "called with inputs other than [query, value(, key)]")
            return
        query, value = tensors[0], tensors[1]
        key = tensors[2] if len(tensors) == 3 else value
        query_layout, key_layout = analysis.layout(query), analysis.layout(key)
        if not (query_layout.plain and key_layout.plain):
            block(analysis, layer, inputs, outputs, "its query or key is a concatenation or "
                  "flattening")
            return
        analysis.union(query_layout.spaces[0][0], key_layout.spaces[0][0], analysis.name_of(layer))
        analysis.set_layout(outputs[0], analysis.layout(value))

    def slim(self, layer, context):
        """The layer as it is: its only weights are scalars (``use_scale``, concat scores)."""
        return layer.get_config(), layer.get_weights()


class GroupedQueryAttention(LayerHandler):
    """Grouped-query attention (Keras', keras-hub's decoders): whole query groups.

    Its projections are EinsumDense layers: query ``(hidden, query heads,
    head_dim)``, key and value ``(hidden, key/value heads, head_dim)``, output
    ``(query heads, head_dim, hidden)``. Query head ``h`` reads key/value head
    ``h // (query heads / key/value heads)`` (grouped-query attention; one
    group per head in plain multi-head attention). A query group, the unit
    ``query_groups``, is one key/value head with its query heads: zeroing its
    slices of all four projections removes exactly its contribution to the
    output, and ``slim`` rebuilds the layer with fewer heads of each kind.
    With the graph's ``gqa="heads"``, the unit is ``query_heads`` instead: the
    query heads, the same count removed from every group (the query and
    output projections' slices), the key/value heads kept; ``slim`` rebuilds
    the layer with fewer query heads. Both units are scored.

    ``keras.layers.GroupQueryAttention``'s biases (``use_bias=True``) follow:
    the query's, key's and value's per head, the output's per hidden channel.
    The query groups are kept whole when the layer gates its heads or returns
    its attention scores; in cross-attention the key and value inputs keep
    their channels.

    Attributes:
        projections: Attribute names of the query, key, value and output projections.
        head_keys: Config keys of the query and key/value head counts.
        head_attributes: The layer's attributes holding those counts (None: the
            config keys).
        reads_query_only: The key and value always read the query's input (the
            layer's other inputs are masks and caches).
    """

    projections = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
    head_keys = ("num_query_heads", "num_key_value_heads")
    head_attributes: tuple[str, str] | None = None
    reads_query_only = False

    @property
    def scored_kernel(self):
        """The output projection's kernel: its last axis writes the hidden channels."""
        return f"{self.projections[3]}.kernel"

    @property
    def kernel_attributes(self):
        """The four projections' kernels."""
        return tuple(f"{name}.kernel" for name in self.projections)

    def _dense(self, layer):
        return [getattr(layer, name) for name in self.projections]

    def _heads(self, layer, kind: int) -> int:
        """The layer's query (``kind`` 0) or key/value (1) head count."""
        return getattr(layer, (self.head_attributes or self.head_keys)[kind])

    @staticmethod
    def _axes(dense, output_projection: bool) -> tuple[int, int]:
        """``(head axis, hidden axis)`` of a projection's kernel, read from its equation.

        A query, key or value projection (``btd,ndh->btnh``) contracts the
        input's last axis (hidden) and makes the output's head axis (second to
        last); the output projection (``btnh,nhd->btd``) contracts the input's
        head axis and makes the output's last (hidden).
        """
        inputs, rest = dense.equation.replace(" ", "").split(",")
        kernel, output = rest.split("->")
        if output_projection:
            return kernel.index(inputs[-2]), kernel.index(output[-1])
        return kernel.index(output[-2]), kernel.index(inputs[-1])

    def _kernel_axes(self, layer) -> list[tuple[int, int]]:
        dense = self._dense(layer)
        return [self._axes(d, i == 3) for i, d in enumerate(dense)]

    def analyse(self, analysis, layer, inputs, outputs):
        """Consumes the hidden channels, makes the output's, and holds the query groups.

        (Or, with the graph's ``gqa="heads"``, the query heads, in equal parts per group.)
        """
        why = kept_whole_because(layer, outputs)
        inputs = self._query_first(layer, inputs)
        groups = self._heads(layer, 1)
        if getattr(analysis, "gqa", "groups") == "groups":
            attention_spaces(analysis, layer, inputs, outputs, "query_groups", groups, why)
            return
        heads = self._heads(layer, 0)
        space = attention_spaces(analysis, layer, inputs, outputs, "query_heads", heads, why)
        analysis.constrain(Layout.single(space, heads), analysis.name_of(layer), parts=groups)

    def main_input(self, layer, inputs):
        """The hidden states (Llama's attention is called with its mask first)."""
        return self._query_first(layer, inputs)[0]

    def _query_first(self, layer, inputs: list) -> list:
        """``inputs`` with the query first: the floating input as wide as the query's rows.

        Llama's attention is called with its attention mask before its hidden
        states (keyword arguments, in the order the block passes them).
        """
        query = self._dense(layer)[0]
        return query_first(inputs, query.kernel.shape[self._kernel_axes(layer)[0][1]])

    def _rows_follow(self, layer) -> tuple:
        """Which projections' rows are the query input's channels (all three in self-attention)."""
        if self.reads_query_only:
            return (0, 1, 2)
        node = layer._inbound_nodes[0] if layer._inbound_nodes else None
        tensors = [] if node is None else [t for t in node.input_tensors if t.dtype != "bool"]
        return (0, 1, 2) if tensors and all(t is tensors[0] for t in tensors) else (0,)

    def inner_units(self, layer):
        """The scored units: ``query_groups`` and ``query_heads``.

        A query group is a key/value head and its query heads, over all four
        kernels; a query head is its slices of the query and output kernels.
        """
        axes = [head for head, _ in self._kernel_axes(layer)]
        parts = tuple((f"{name}.kernel", axis) for name, axis in zip(self.projections, axes,
                                                                    strict=True))
        return {"query_groups": (self._heads(layer, 1), parts),
                "query_heads": (self._heads(layer, 0), (parts[0], parts[3]))}

    def _group_size(self, layer) -> int:
        return self._heads(layer, 0) // self._heads(layer, 1)

    def inner_masks(self, layer, masks):
        """The kept groups' slices of the four kernels (query heads repeated per group)."""
        groups, heads = masks.get("query_groups"), masks.get("query_heads")
        if groups is None and heads is None:
            return []
        if groups is None:  # query heads alone: the key/value heads stay
            kept = np.ones(self._heads(layer, 1), bool)
            per_head, groups = np.asarray(heads, bool), kept
        else:
            per_head = np.repeat(np.asarray(groups, bool), self._group_size(layer))
        masks = (per_head, groups, groups, per_head)
        pairs = [(dense.kernel, axis_mask(dense.kernel.shape, mask, head))
                 for dense, mask, (head, _) in zip(self._dense(layer), masks,
                                                   self._kernel_axes(layer), strict=True)]
        for dense, mask in zip(self._dense(layer)[:3], masks[:3], strict=True):
            if dense.bias is not None:  # (heads, head_dim)
                pairs.append((dense.bias, axis_mask(dense.bias.shape, mask, 0)))
        return pairs

    def variable_masks(self, layer, in_mask, out_mask):
        """Input channels: the query, key and value rows; output channels: the output's."""
        dense, axes = self._dense(layer), self._kernel_axes(layer)
        pairs = []
        if in_mask is not None:
            pairs += [(dense[i].kernel, axis_mask(dense[i].kernel.shape, in_mask, axes[i][1]))
                      for i in self._rows_follow(layer)]
        if out_mask is not None:
            output = dense[3]
            pairs.append((output.kernel, axis_mask(output.kernel.shape, out_mask, axes[3][1])))
            if output.bias is not None:
                pairs.append((output.bias, np.asarray(out_mask, np.float32)))
        return pairs

    def slim(self, layer, context):
        """Fewer query and key/value heads; the kept hidden rows and output columns."""
        config = layer_config(layer)
        heads, groups = self.kept_heads(layer, context)
        in_index, out_index = context.input_index(layer), context.output_index(layer)
        sliced, rows = {}, self._rows_follow(layer)
        for i, (dense, (head, hidden)) in enumerate(zip(self._dense(layer),
                                                         self._kernel_axes(layer), strict=True)):
            kept_heads = heads if i in (0, 3) else groups
            kept_hidden = out_index if i == 3 else in_index if i in rows else None
            sliced[id(dense.kernel)] = take(take(np.asarray(dense.kernel), kept_heads, head),
                                            kept_hidden, hidden)
            if dense.bias is not None:
                sliced[id(dense.bias)] = take(np.asarray(dense.bias),
                                              out_index if i == 3 else kept_heads, 0)
        if heads is not None:
            config[self.head_keys[0]] = int(heads.size)
        if groups is not None:
            config[self.head_keys[1]] = int(groups.size)
        return config, [sliced.get(id(v), np.asarray(v)) for v in layer.weights]

    def kept_heads(self, layer, context) -> tuple:
        """``(kept query heads, kept query groups)``, indices (None: all kept).

        Raises:
            GraphError: If a ``gqa="heads"`` plan keeps unequal counts in the groups.
        """
        groups = context.inner_index(layer, "query_groups")
        heads = context.inner_index(layer, "query_heads")  # gqa="heads": even per group
        size = self._group_size(layer)
        if groups is not None:
            heads = (groups[:, None] * size + np.arange(size)).ravel()
        elif heads is not None:
            per_group = np.bincount(heads // size, minlength=self._heads(layer, 1))
            if len(set(per_group.tolist())) > 1:
                raise GraphError(f"{layer.name!r}: the plan keeps {per_group.tolist()} query "
                                 "heads in its groups; a grouped-query layer needs the same "
                                 "count in every group (make_plan with gqa='heads' rounds to "
                                 "it)")
        return heads, groups

    def flops(self, call, kept):
        """The four projections at every position, and the attention products.

        The products cost ``2 x positions^2 x kept query heads x 2 head_dim``;
        a trace's unknown sequence length counts as ``TRACE_LENGTH`` positions.
        """
        layer = call.operation
        hidden = self._query_first(layer, list(call.inputs))[0]  # not the mask
        positions = int(np.prod([size or 1 for size in hidden.shape[1:-1]]))
        query, key, value, output = self._dense(layer)
        projections = sum(kept(dense.kernel) for dense in (query, key, value, output))
        head_dim = query.kernel.shape[-1]
        heads = self._heads(layer, 0) * kept(query.kernel) / int(
            np.prod(query.kernel.shape))
        products = positions * positions * heads * 2 * head_dim
        return int(round(2 * (positions * projections + products)))


#: Built-in attention handlers: layer classes -> handler.
ATTENTION_HANDLERS = {(keras.layers.MultiHeadAttention,): MultiHeadAttentionHandler(),
                      (keras.layers.Attention,): DotAttention(),
                      (keras.layers.GroupQueryAttention,): GroupedQueryAttention()}
