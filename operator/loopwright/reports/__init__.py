"""Reports people would rather look at than read: self-contained HTML pages (with a JSON twin) of a
drift check and of a training run, rendered by pure functions from the numbers behind them.

Imported by the operator (drift), the trainer (training) and the kubectl plugin (number formats
only: :mod:`loopwright.reports.html` needs nothing but the standard library).
"""
