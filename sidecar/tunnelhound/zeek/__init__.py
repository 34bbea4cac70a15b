"""Talking to Zeek: the events both sides declare, and two transports that carry them.

``events`` declares the events (the Zeek package in ``zeek-scripts/`` declares the same ones;
a test holds them equal); ``transport`` is the interface the Zeek source and sink use;
``websocket`` (default, Zeek's WebSocket API) and ``native`` (Broker's Python bindings)
implement it.
"""
