"""``kubectl loopwright``: the kubectl plugin (console script ``kubectl-loopwright``).

Its own layer on top of the API: it talks to the API server with the user's kubeconfig and RBAC,
deploys nothing, and imports neither pydantic nor the kubernetes package (start-up time).
Rendering (views, tables, tree, style) is pure; kubeconfig and kubeapi are the thin I/O.
"""
