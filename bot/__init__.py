"""stressbot: real-time market-stress alerts."""

__version__ = "0.1.0"
