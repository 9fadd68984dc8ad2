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

import keras
import numpy as np

from tfprune.handlers.base import LayerHandler, axis_mask, block, take

#: Per projection: (attribute, kernel axis indexing the heads, bias axis indexing them or None).
_PROJECTIONS = (("query_dense", 1, 0), ("key_dense", 1, 0), ("value_dense", 1, 0),
                ("output_dense", 0, None))


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
        query = inputs[0]
        analysis.add_role(analysis.layout(query), "consumers", layer.name)
        for tensor in inputs[1:]:
            if tensor is not query:
                analysis.block(analysis.layout(tensor), f"{layer.name!r}: cross-attention "
                               "keys, values and masks keep their channels")
        space = analysis.new_tensor_space(outputs[0])
        analysis.roles[space]["sources"].append(layer.name)
        for tensor in outputs[1:]:
            analysis.new_tensor_space(tensor, blocked=f"{layer.name!r}: attention scores")
        why = self._heads_kept(layer, outputs)
        analysis.new_inner_space(layer, "heads", layer.num_heads, blocked=why and
                                 f"{layer.name!r}: {why}")

    @staticmethod
    def _heads_kept(layer, outputs) -> str | None:
        if len(outputs) > 1:
            return "its attention scores are an output, so its heads are kept"
        if getattr(layer, "_use_gate", False):
            return "gated heads (use_gate) are kept"
        return None

    def inner_units(self, layer):
        parts = tuple((f"{name}.kernel", axis) for name, axis, _ in _PROJECTIONS)
        return {"heads": (layer.num_heads, parts)}

    @staticmethod
    def _self_attention(layer) -> bool:
        """Whether key and value read the query tensor (their rows follow the query's)."""
        node = layer._inbound_nodes[0] if layer._inbound_nodes else None
        tensors = [] if node is None else list(node.input_tensors)
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
        query_positions = int(np.prod(call.inputs[0].shape[1:-1]))
        key_positions = int(np.prod(call.inputs[1 if len(call.inputs) > 1 else 0]
                                    .shape[1:-1]))
        query, key, value, output = (getattr(layer, n) for n, _, _ in _PROJECTIONS)
        reference = query.bias if query.bias is not None else query.kernel
        heads = layer.num_heads * kept(reference) / int(np.prod(reference.shape))
        key_dim, value_dim = query.kernel.shape[-1], value.kernel.shape[-1]
        projections = (query_positions * (kept(query.kernel) + kept(output.kernel))
                       + key_positions * (kept(key.kernel) + kept(value.kernel)))
        products = query_positions * key_positions * heads * (key_dim + value_dim)
        return int(round(2 * (projections + products)))


#: Built-in attention handlers: layer classes -> handler.
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
        analysis.union(query_layout.spaces[0][0], key_layout.spaces[0][0], layer.name)
        analysis.set_layout(outputs[0], analysis.layout(value))

    def slim(self, layer, context):
        """The layer as it is: its only weights are scalars (``use_scale``, concat scores)."""
        return layer.get_config(), layer.get_weights()


ATTENTION_HANDLERS = {(keras.layers.MultiHeadAttention,): MultiHeadAttentionHandler(),
                      (keras.layers.Attention,): DotAttention()}
