"""The domain: ticks, alerts, symbols, errors, durations, time zones and shared config types.

No I/O. Every other package may import it; it imports none of them.
"""
