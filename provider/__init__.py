"""The provider: the Ocean Protocol V4 provider API for compute, as a Flask application."""
