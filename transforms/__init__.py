"""Beam transforms and the plain functions behind them, one concern per module.

read -> parse -> ecs -> hunts -> (correlate) -> elasticsearch / files. The per-event functions are
plain Python so they can run fused over a chunk of lines inside one DoFn (see ``process``).
"""
