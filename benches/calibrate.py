"""The machine's speed, for benches/all.sh: a fixed single-core workload
(an interpreter loop over a dict a few MB large, about a second), printed
as its iterations per second. Its value means nothing alone; against its
best in benches/results it says whether this hour runs at the machine's
usual speed (some hours it runs at half or less, with no CPU busy or
stolen)."""
import time

N = 1_000_000
t = time.perf_counter()
d = {}
n = 0
for i in range(N):
    d[i * 7919 % 1_000_003] = i
    n += d.get(i, 0) & 1
print(round(N / (time.perf_counter() - t)))
