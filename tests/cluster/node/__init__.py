"""The local cluster's node agent: pods as local processes (see nodeagent.py, the entry point)."""
