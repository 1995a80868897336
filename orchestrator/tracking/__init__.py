"""MLflow integration: the run layout contract, the tracking target and the Tune callback."""
