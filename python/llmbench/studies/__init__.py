"""Studies built on sweeps: the GPU memory and KV-cache study (`kv_cache`), capacity
search against an SLO (`capacity`), and the client's own calibration (`calibrate`)."""
