"""The soak (make soak): queued sweeps of several projects under every interruption at once."""
