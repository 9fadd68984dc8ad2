"""The model's graph: its calls in order and the channel groups they share.

``model_graph`` walks the calls; ``channels`` holds ``ChannelGraph``, built once per
model and ignored layers.
"""

from tfprune.graph.channels import ChannelGraph, ChannelGroup, GraphError, channel_groups

__all__ = ["ChannelGraph", "ChannelGroup", "GraphError", "channel_groups"]
