"""The abuse tests share the API tests' app: every role, two grids, SQLite and PostgreSQL."""

from tests.integration.api.conftest import api

__all__ = ["api"]
