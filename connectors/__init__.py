"""Market data in: history files for replay, live streams and polled sources."""
