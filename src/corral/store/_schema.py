"""The store's whole layout: every family's tables, the layout's version, and what upgrades an
older store in place (tables and a defaulted column were added over time, never changed)."""

from __future__ import annotations

from corral.store._batches import BATCH_TABLES
from corral.store._cache import CACHE_TABLE
from corral.store._db import Layout
from corral.store._documents import DOCUMENTS_TABLE
from corral.store._endpoints import ENDPOINTS_TABLE
from corral.store._jobs import JOBS_TABLES
from corral.store._timeline import SAMPLES_TABLE

__all__ = ["LAYOUT", "SCHEMA_VERSION"]

# 1: cache and items keyed by their own primary keys (slow random inserts); 2: no batch tables;
# 3: no timeline (samples) and no retried faults per run; 4: nothing remembered per endpoint;
# 5: no documents; 6: no count of requests answered by an identical one of the same run
SCHEMA_VERSION = 7

#: what version 3 lacked: the run's retried faults and its timeline
_TO_4 = "ALTER TABLE runs ADD COLUMN faults TEXT NOT NULL DEFAULT '{}';" + SAMPLES_TABLE
#: what version 6 lacked: the requests answered by an identical one of the same run
_TO_7 = "ALTER TABLE runs ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;"

LAYOUT = Layout(
    version=SCHEMA_VERSION,
    tables=JOBS_TABLES + CACHE_TABLE + BATCH_TABLES + SAMPLES_TABLE + ENDPOINTS_TABLE + DOCUMENTS_TABLE,
    upgrades={
        2: BATCH_TABLES + ENDPOINTS_TABLE + _TO_4 + DOCUMENTS_TABLE + _TO_7,
        3: _TO_4 + ENDPOINTS_TABLE + DOCUMENTS_TABLE + _TO_7,
        4: ENDPOINTS_TABLE + DOCUMENTS_TABLE + _TO_7,
        5: DOCUMENTS_TABLE + _TO_7,
        6: _TO_7,
    },
)
