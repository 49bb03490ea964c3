"""Local stand-ins for the vendors the senders talk to (``activities.senders``), speaking
their real protocols: ``goldenroute dev`` runs them for newcomers and the tests run each
on a free port (``async with StandIn(...) as server: server.url``). Each keeps in memory
what it received, per idempotency key or reference, and can be told to fail.
"""
