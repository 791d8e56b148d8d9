"""Persistence in Redis: the store (ticks, checkpoints, outbox, feed status) and its connection,
with the embedded in-process fallback.
"""
