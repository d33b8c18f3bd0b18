"""The controller runtime every controller runs on (issue 13): one API client, one keyed work queue
per controller fed by kopf's watch events, one status writer, one event recorder, bounded caches.

- :mod:`.client`: the aiohttp API client on kopf's credentials;
- :mod:`.queue`: the keyed work queue and a reconcile's :class:`Result`;
- :mod:`.status`: the status writer (optimistic, merging on conflict);
- :mod:`.events`: the event recorder (repeats aggregated);
- :mod:`.cache`: a bounded LRU cache;
- :mod:`.controller`: the Controller protocol, the Context of a reconcile, the Manager.
"""
