"""``tunnelhound run`` as a service: worker processes, analysis, signals, reload, metrics.

Process layout (docs/operations.md says why)::

    worker 0 ─┐  receive → allowlist → decode → normalize → stitch → flow sinks
    worker 1 ─┤  (SO_REUSEPORT: the kernel keeps each exporter on one worker)
      ...     │  stitched frames (only when an analysis stage is registered)
              ▼
    main: Analysis (detections: per-host state in one place) · /metrics · signals

With ``service.workers: 1`` the worker runs inside the main process and frames reach the
analysis by a function call.  SIGTERM/SIGINT: every worker drains what the kernel already
accepted, flushes stitcher and sinks and persists its templates; then the analysis stages
persist.  SIGHUP: the config file is read again; if valid, its safe parts are applied
between two batches (sockets stay open, so no datagram is lost).

Entry point: :func:`tunnelhound.service.runner.run_service`.
"""
