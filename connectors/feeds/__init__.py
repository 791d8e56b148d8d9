"""Live venues and publishers, one module each (streams: Kraken, ccxt.pro, OANDA; polls: NY Fed,
FRED, Treasury).
"""
