"""``tunnelhound run`` as a service: worker processes, analysis, signals, reload, metrics.

Process layout (docs/operations.md says why)::

    worker 0 ─┐  receive → allowlist → decode → normalize → stitch → features → flow sinks
    worker 1 ─┤  (SO_REUSEPORT: the kernel keeps each exporter on one worker)
      ...     │  stitched frames, analysis columns only (only when an analysis stage is
              │  registered; through a bounded outbox thread, :mod:`.outbox`, :mod:`.wire`)
              ▼
    main: Analysis (detections: per-host state in one place) · /metrics · signals

The layout is the same with ``service.workers: 1`` when an analysis stage is registered (rules
are loaded): the worker and the rules then use two cores.  Only with no analysis stage does
the one worker run inside the main process.  ``TUNNELHOUND_PROFILE=DIR`` profiles every
process (:mod:`.profiling`).  SIGTERM/SIGINT: every worker drains what the kernel already
accepted, flushes stitcher and sinks and persists its templates; then the analysis stages
persist.  SIGHUP: the config file is read again; if valid, its safe parts are applied
between two batches (sockets stay open, so no datagram is lost).

Entry point: :func:`tunnelhound.service.runner.run_service`.
"""
