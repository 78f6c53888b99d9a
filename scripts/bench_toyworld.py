"""Toy-world throughput on one core: render, make_reference and full training pairs (images/s).

Usage: OMP_NUM_THREADS=1 python scripts/bench_toyworld.py [--n 2000]
The target is >= 500 images/s for `render`, so data never bottlenecks CPU training.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target is stated

from dreamcache_lite import toyworld as tw  # noqa: E402


def rate(fn, items):
    t = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - t)


def main(n=2000):
    jobs = [(tw.training_identity(i), tw.random_scene(i)) for i in range(n)]  # not timed
    rate(lambda j: tw.render(*j), jobs[:50])  # warm-up
    print(f"render: {rate(lambda j: tw.render(*j), jobs):.0f} images/s")
    print(f"make_reference: {rate(lambda j: tw.make_reference(j[0], j[1].seed), jobs):.0f} images/s")
    print(f"sample_training_pair: {rate(tw.sample_training_pair, list(range(n // 2))):.0f} pairs/s")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    main(p.parse_args().n)
