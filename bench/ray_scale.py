"""What scales on Ray: one job on 1 and on 2 workers of a local Ray, against a high-latency simulator.

    python bench/ray_scale.py                  # ~1 minute: Ray start-up, then three runs
    python bench/ray_scale.py --latency-ms 2000 --items 640

Against a provider that answers slowly, a worker's throughput is its requests in flight divided by
the latency (16 / 0.5 s = 32 items/s), so a second worker doubles what the job can have in flight;
the fixed cost is Ray's start-up and the pipeline's first batches. The third run gives the two
workers a requests-per-minute limit below what they could send: they keep it together (one budget,
in the LimitsKeeper actor), so the rate is the limit, not twice it. Ratios are against the 1-worker
run of the same process.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import ray

from corral.jobs import ExtractOptions, JobSpec, RayOptions
from corral.jobs._ray import run_job_on_ray
from corral.sim import SimConfig, SimulatorThread

PERSON = str(Path(__file__).resolve().parent.parent / "examples" / "person.py") + ":Person"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=640)
    parser.add_argument("--latency-ms", type=float, default=500.0)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per worker")
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    config = SimConfig(latency_ms=args.latency_ms, latency_dist="fixed")
    with SimulatorThread(config) as sim, tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.txt"
        source.write_text(
            "".join(f"My name is Person{n} and I am {20 + n % 60} years old\n" for n in range(args.items))
        )
        ideal = args.concurrency / (args.latency_ms / 1000)
        print(f"{args.items} items, {args.latency_ms:g} ms per answer, {args.concurrency} in flight "
              f"per worker (ideal {ideal:.0f} items/s per worker)\n")  # fmt: skip
        print(f"{'run':<28}{'seconds':>9}{'items/s':>9}{'req/min':>9}{'vs 1 worker':>13}")
        base = limit = 0.0
        for workers, limited in ((1, False), (2, False), (2, True)):
            # The limit: three quarters of what the two workers sent unlimited, so that it binds.
            rpm = round(limit) if limited else None
            label = f"{workers} worker{'s' if workers > 1 else ''}" + (f", rpm {rpm:,}" if rpm else "")
            out = Path(folder) / f"out-{workers}-{rpm}.jsonl"
            before = sim.stats.requests
            started = time.perf_counter()
            store = Path(folder) / f"{workers}-{rpm}.db"
            extract = ExtractOptions(base_url=sim.url, model="sim-1", concurrency=args.concurrency, rpm=rpm)
            on_ray = RayOptions(workers=workers)
            spec = JobSpec(
                schema=PERSON,
                input=str(source),
                output=str(out),
                store=str(store),
                extract=extract,
                ray=on_ray,
            )
            run_job_on_ray(spec)
            seconds = time.perf_counter() - started
            rate = args.items / seconds
            base = base or rate
            per_minute = (sim.stats.requests - before) / seconds * 60
            if workers == 2 and not limited:
                limit = 0.75 * per_minute
            print(f"{label:<28}{seconds:>9.1f}{rate:>9.1f}{per_minute:>9,.0f}{rate / base:>12.2f}×")
        print(f"\nthe limited run: {per_minute:,.0f} requests/min against a limit of {limit:,.0f}"
              " (start-up included, so a little under it)")  # fmt: skip
    ray.shutdown()


if __name__ == "__main__":
    main()
