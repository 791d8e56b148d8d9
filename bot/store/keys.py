"""Key names: every key stressbot writes is ``{base}:{name}``, built by :func:`key_base` and
:meth:`bot.store.redis_store.Store.key` alone (the engine, the ledger, the command bot and the
connectors all ask their store for their keys).

On Redis Cluster the base is the prefix in braces, ``{stressbot}``: a *hash tag*. A cluster
hashes only the part of a key between the first ``{`` and the next ``}`` into its slot, so
every key of a prefix lands in one slot, on one node, and the multi-key MULTI/EXEC
transactions and Lua scripts the store and the ledger use stay valid there (Redis Cluster
specification, "Hash tags": multi-key operations and scripts need all their keys in one slot,
else the server answers CROSSSLOT). On one server or behind Sentinel the base is the bare
prefix, ``stressbot``, as it always was, so existing data keeps its names.
"""

from __future__ import annotations


def key_base(prefix: str, hash_tag: bool) -> str:
    """The part every key starts with: ``{prefix}`` on a cluster, ``prefix`` elsewhere. A
    prefix that already holds a hash tag (``app:{stressbot}``) is used as it is."""
    if not hash_tag or _has_tag(prefix):
        return prefix
    return "{" + prefix + "}"


def _has_tag(prefix: str) -> bool:
    start = prefix.find("{")
    return start >= 0 and prefix.find("}", start + 2) > start
