from __future__ import annotations

import corral
from corral.sim import SimulatorThread
from tests._support import ARTICLE_TEXTS, Person


def test_sync_run_returns_outcomes_in_input_order() -> None:
    with SimulatorThread() as sim:
        outcomes = corral.run(ARTICLE_TEXTS, Person, base_url=sim.url, model="sim-1", concurrency=3)
    assert [o.id for o in outcomes] == [str(n) for n in range(1, 8)]
    assert [o.unwrap().age for o in outcomes] == list(range(20, 27))
    assert outcomes[0].to_record()["output"] == {"name": "John", "age": 20}
