"""MLflow and S3, on every machine: the MLflow adaptor (client.py, the only module that imports mlflow),
the S3 adaptor (s3.py), the sweep's parent run (sweep_run.py), the Tune callback that records trials
(tune_callback.py), metric logging off the training thread with its spool. Imports the kernel and
trainables' runtime contract only."""
