#!/usr/bin/env python3
"""gen_tree.py DIR FILES MIB: a deterministic tree of FILES files (MIB MiB in all), 500 per folder,
of compressible text (hex of seeded random bytes, ~2:1 with zstd), sizes varying 1x..3x the mean.
Run twice with the same arguments, it writes identical trees (for side-by-side benchmarks)."""
import os
import random
import sys

root, files, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
pool = rng.randbytes(16 << 20).hex().encode()  # 32 MiB of text
total = mib << 20
mean = total // files
sizes = [rng.randint(mean // 2, mean * 3 // 2) for _ in range(files)]
scale = total / sum(sizes)
for i, s in enumerate(sizes):
    d = os.path.join(root, f"d{i // 500:03d}")
    if i % 500 == 0:
        os.makedirs(d, exist_ok=True)
    n = max(1, int(s * scale))
    off = (i * 7919 * 4099) % (len(pool) - n)
    with open(os.path.join(d, f"f{i:05d}.txt"), "wb") as f:
        f.write(pool[off:off + n])
    if i % 97 == 0:
        os.chmod(os.path.join(d, f"f{i:05d}.txt"), 0o755)
