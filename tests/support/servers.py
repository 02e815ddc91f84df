"""The local servers the tests and benchmarks start: Mosquitto, InfluxDB, PostgreSQL (127.0.0.1)."""

from __future__ import annotations

from carewatch.localstack import HOST, InfluxDB, LocalStackError, Mosquitto, PostgreSQL, free_port

__all__ = ["HOST", "InfluxDB", "LocalStackError", "Mosquitto", "PostgreSQL", "free_port"]
