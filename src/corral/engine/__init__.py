"""One item's way through, in call order.

- :mod:`._strategies`: the article's strategies (sequential, gather, as_completed) on a bounded
  pipeline: :func:`run_strategy`;
- :mod:`._extract`: prompt → request → validate → re-ask (validation re-asks live here);
- :mod:`._scheduler`: retries, backoff, cool-down, the budget's hold, the cache (transport retries
  live here, so a 429 never reaches a re-ask prompt);
- :mod:`._limits`, :mod:`._pace`, :mod:`._adaptive`: RPM/TPM pacing, slots, the adaptive rate;
- :mod:`._tokens`: token estimates for the TPM limit;
- :mod:`._stats`: the counters of a run.
"""

from corral.engine._strategies import ORDERS, STRATEGIES, Order, Process, Strategy, run_strategy

__all__ = ["ORDERS", "STRATEGIES", "Order", "Process", "Strategy", "run_strategy"]
