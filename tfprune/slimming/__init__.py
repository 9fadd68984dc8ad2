"""Physically slimmed models: rebuild a functional graph with only the kept channels."""

from tfprune.slimming.slim import SLIM_HANDLERS, SlimContext, register_slim_handler, slim

__all__ = ["SLIM_HANDLERS", "SlimContext", "register_slim_handler", "slim"]
