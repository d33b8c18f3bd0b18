"""The prediction server: one verified model behind the Open Inference Protocol v2.

Run it with ``loopwright-predictor`` (or ``python -m loopwright.serving``); the contract (environment,
endpoints, metric names) is in the team's CONTRACTS and the README. The request
path is a plain ASGI callable on uvicorn (httptools + uvloop) that predicts
in-process: a prediction server's latency is mostly framework overhead, so the
less framework the better.
"""
