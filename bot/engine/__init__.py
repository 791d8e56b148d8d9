"""The rule engine: rule language, rule files, series, sessions and the engine itself.

Pure computation on event time: importing it loads no network, Redis or notifier code.
"""
