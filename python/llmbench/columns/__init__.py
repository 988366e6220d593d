"""Columns added to a summary after the engine's own: GPU and server telemetry
(`telemetry`), KV-cache estimates (`kv`), and the client's load against this host's
calibration (`client_health`)."""
