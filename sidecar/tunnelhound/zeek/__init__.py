"""Talking to Zeek: the events both sides declare, and two transports that carry them.

``events`` declares the events (the Zeek package in ``zeek-scripts/`` declares the same ones;
a test holds them equal); ``brokerjson`` is Broker's JSON data model; ``transport`` is the
interface the Zeek source (``sources/zeek.py``) and sink (``sinks/zeek.py``) use;
``websocket`` (default, Zeek's WebSocket API) and ``native`` (Broker's Python bindings)
implement it; ``connect`` opens the configured one; ``collect`` wires conn events to the flow
sinks for ``tunnelhound zeek``.  See ``docs/zeek.md``.
"""
