"""Composition roots: the live service and replay wire engine, store, connectors and notifiers."""
