"""A live web view of a running closed-loop session and of any recording.

The loop publishes telemetry without ever blocking (:mod:`controller.monitor.telemetry`); a
separate process (:mod:`controller.monitor_cli`) folds it, or a recording, into per-tick columns
(:mod:`controller.monitor.fold`), decimates them for display (:mod:`controller.monitor.decimate`)
and pushes them to browsers over WebSockets (:mod:`controller.monitor.app`). See
``docs/monitor.md``.
"""
