"""Sinks: the last pipeline stage, writing finished documents somewhere.

A sink takes batches of serialized documents and never imports an earlier stage.
``ndjson.NdjsonSink`` writes rotating newline-delimited JSON files (or stdout).
"""
