#!/usr/bin/env python3
"""Mutation fuzz of `flowsentry replay` (a dev tool, not a test).

Takes the small captures of ../shared/pcaps and fixtures/pcaps, mutates one at a time
(bit flips, truncation, inserted garbage, a splice from another capture, header bytes),
replays it with the default model (0, default or 3 workers, sometimes with --bpf) and
reports any run that panics, hangs (60 s) or exits with a code other than the
documented 0-3. Failing inputs are kept in OUT_DIR.

    make release && scripts/fuzz-replay.py [SEED] [ITERATIONS] [OUT_DIR]   (defaults 1, 500, target/fuzz)
"""
import glob
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/flowsentry")
SHARED = os.path.join(ROOT, "..", "shared", "pcaps")


def inputs():
    files = [f for f in glob.glob(os.path.join(SHARED, "**", "*"), recursive=True)
             if os.path.isfile(f) and os.path.getsize(f) < 300_000 and not f.endswith(".md")]
    return files + glob.glob(os.path.join(ROOT, "fixtures", "pcaps", "*.pcap"))


def mutate(rng, data, files):
    kind = rng.choice(["flip", "trunc", "garbage", "splice", "hdr"])
    if kind == "flip":
        for _ in range(rng.randint(1, 20)):
            p = rng.randrange(len(data))
            data[p] ^= 1 << rng.randrange(8)
    elif kind == "trunc":
        data = data[:rng.randrange(len(data))]
    elif kind == "garbage":
        p = rng.randrange(len(data))
        data[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    elif kind == "splice":
        other = bytearray(open(rng.choice(files), "rb").read())
        p, q = rng.randrange(len(data)), rng.randrange(max(1, len(other)))
        data = data[:p] + other[q:q + rng.randint(1, 5000)] + data[p:]
    else:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(min(64, len(data)))] = rng.randrange(256)
    return kind, data


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    out = sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "target", "fuzz")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(seed)
    files = inputs()
    bad = 0
    for i in range(iters):
        src = rng.choice(files)
        data = bytearray(open(src, "rb").read())
        if not data:
            continue
        kind, data = mutate(rng, data, files)
        case = os.path.join(out, "case.pcap")
        open(case, "wb").write(data)
        args = [BIN, "replay", case, "--out", "/dev/null"]
        r = rng.random()
        if r < 0.3:
            args += ["--workers", "0"]
        elif r < 0.5:
            args += ["--workers", "3"]
        if rng.random() < 0.2:
            args += ["--bpf", "tcp or udp"]
        try:
            p = subprocess.run(args, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            bad += 1
            os.rename(case, os.path.join(out, f"timeout-{i}.pcap"))
            print("TIMEOUT", src, kind)
            continue
        err = p.stderr.decode(errors="replace")
        if p.returncode not in (0, 1, 2, 3) or "panicked" in err:
            bad += 1
            os.rename(case, os.path.join(out, f"bad-{i}.pcap"))
            print("BAD exit", p.returncode, src, kind, args[4:], err[:300])
    print("done", iters, "bad", bad)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
