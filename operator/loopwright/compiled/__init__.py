"""Compiled models: a fitted scikit-learn model as plain arrays, evaluated with numpy alone.

:mod:`.container` is the file format (a JSON header and numeric arrays, sha256-checked before it
is parsed), :mod:`.program` evaluates a compiled model without scikit-learn, SciPy or pandas,
:mod:`.compiler` turns a fitted model into one, and :mod:`.rows` stores the hold-out rows the
verification Job checks a compiled model on. Shared by the trainer, the verifier and the
predictor, like :mod:`loopwright.artifacts`.
"""
