"""tidewater: a compute-to-data provider speaking the Ocean Protocol V4 provider API."""

__version__ = "0.1.0"
