"""The laptop: the `orch` command (cli.py) and the targets it can send a sweep to (targets/: this
machine, a login node over ssh, slurmrestd, a queue). Everything here runs where the user types; it
reaches the login node only through `orchestrator.login.wire` (never its library) and the adaptors."""
