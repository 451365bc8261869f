"""The backend conformance suite: one job table, the same statuses and results on every backend.

To run it against another backend, add a :class:`~.targets.Target` for it in :mod:`.targets`
(Kubernetes: ``kubernetes_target.make_target(request, kubeconfig)``, used when
``TIDEWATER_TEST_KUBECONFIG`` is set)."""
