#!/usr/bin/env python3
"""M/M/c in SimPy: the anchor that kfsim's simulator is timed against.

The same model as scenarios/bench-mmc.toml (Poisson arrivals, exponential
handle times, c agents, first come first served, nobody leaves). Prints
`RESULT simpy customers_per_s=N` plus the wait probability, so a reader can
see that both simulate the same queue.
"""
import argparse
import random
import time

import simpy


def run(lam_per_min, aht_min, c, customers, seed):
    rng = random.Random(seed)
    env = simpy.Environment()
    agents = simpy.Resource(env, capacity=c)
    served = [0, 0]  # customers, of whom waited
    finished = env.event()

    def customer():
        arrived = env.now
        with agents.request() as req:
            yield req
            served[0] += 1
            served[1] += env.now > arrived
            if served[0] == customers and not finished.triggered:
                finished.succeed()
            yield env.timeout(rng.expovariate(1.0 / aht_min))

    def arrivals():
        while True:
            yield env.timeout(rng.expovariate(lam_per_min))
            env.process(customer())

    env.process(arrivals())
    start = time.perf_counter()
    env.run(until=finished)
    return served, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lam", type=float, default=10.0, help="arrivals per minute")
    p.add_argument("--aht", type=float, default=4.0, help="mean handle time [min]")
    p.add_argument("--c", type=int, default=44)
    p.add_argument("--customers", type=int, default=500_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    (n, waited), wall = run(a.lam, a.aht, a.c, a.customers, a.seed)
    print(f"RESULT simpy customers_per_s={n / wall:.0f} wait_probability={waited / n:.4f} wall_s={wall:.2f}")


if __name__ == "__main__":
    main()
