"""Sinks: the last pipeline stage, writing finished documents somewhere.

A sink takes batches of serialized documents and never imports an earlier stage.
``ndjson.NdjsonSink`` writes rotating newline-delimited JSON files (or stdout);
``elasticsearch.ElasticsearchSink`` bulk-indexes through a disk spool.

Alert sinks follow ``alertsink.AlertSink`` and are opened from the ``alerts:`` config section
by ``alerts.open_alert_sinks``: NDJSON files, the Elasticsearch alert stream, syslog (RFC 5424),
webhook, e-mail and Zeek (``zeek.ZeekAlertSink``, with ``zeek.publish_detections``); the remote
ones but Zeek deliver through ``delivery.Deliverer`` (Zeek's transport queues by itself).
"""
