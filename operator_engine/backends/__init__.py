"""Where algorithms run: the seam (:mod:`.base`) and its backends (Docker, a fake for tests,
Kubernetes). See ``docs/engine.md`` ("The backend seam")."""
