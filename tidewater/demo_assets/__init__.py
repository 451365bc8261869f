"""Files the demo publishes: the algorithm script the job container runs."""
