#!/usr/bin/env python3
"""Differential fuzz of the two file readers (a dev tool, not a test).

Mutates small captures of ../shared/pcaps (legacy pcap, or pcapng with --pcapng),
replays each with `--reader native` and `--reader libpcap` (--no-detect, one thread) and
reports the cases whose flow events differ, or whose errors are of the same kind at
different packet numbers. Known, accepted differences: libpcap refuses some files or
blocks the native reader reads (stricter IDB checks, interfaces of different link types),
and it does not report pcapng byte offsets. Differing inputs are kept in OUT_DIR.

    make release && scripts/fuzz-readers.py [SEED] [ITERATIONS] [--pcapng] [OUT_DIR]
"""
import glob
import os
import random
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/flowsentry")
SHARED = os.path.join(ROOT, "..", "shared", "pcaps")


def run(path, reader):
    p = subprocess.run([BIN, "replay", path, "--no-detect", "--reader", reader,
                        "--out", "-", "--workers", "0"], capture_output=True, timeout=60)
    lines = [l for l in p.stdout.decode(errors="replace").splitlines()
             if '"event_type":"stats"' not in l]
    err = p.stderr.decode(errors="replace")
    kind = "truncated" if "truncated" in err else "corrupt" if "corrupt" in err else "other"
    return p.returncode, lines, re.findall(r"packet (\d+)", err), kind, err.strip()


def main():
    args = [a for a in sys.argv[1:] if a != "--pcapng"]
    pcapng = "--pcapng" in sys.argv
    seed = int(args[0]) if args else 1
    iters = int(args[1]) if len(args) > 1 else 500
    out = args[2] if len(args) > 2 else os.path.join(ROOT, "target", "fuzz-readers")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(seed)
    ext = "*.pcapng" if pcapng else "*.pcap"
    files = [f for f in glob.glob(os.path.join(SHARED, "**", ext), recursive=True)
             if os.path.getsize(f) < 300_000]
    diff = 0
    for i in range(iters):
        src = rng.choice(files)
        data = bytearray(open(src, "rb").read())
        if len(data) < 25:
            continue
        kind = rng.choice(["flip", "trunc", "bytes"])
        if kind == "flip":
            for _ in range(rng.randint(1, 5)):
                data[rng.randrange(24, len(data))] ^= 1 << rng.randrange(8)
        elif kind == "trunc":
            data = data[:rng.randrange(24, len(data))]
        else:
            for _ in range(rng.randint(1, 30)):
                data[rng.randrange(24, len(data))] = rng.randrange(256)
        case = os.path.join(out, "case.pcap")
        open(case, "wb").write(data)
        a, b = run(case, "native"), run(case, "libpcap")
        same_kind_elsewhere = a[0] == b[0] == 3 and a[3] == b[3] and a[2] != b[2]
        if a[1] != b[1] or same_kind_elsewhere:
            diff += 1
            kept = os.path.join(out, f"diff-{i}.pcap")
            os.rename(case, kept)
            print("DIFF", kept, src, kind, "exit", a[0], b[0], "flow lines", len(a[1]), len(b[1]))
            print("  native: ", a[4][:250])
            print("  libpcap:", b[4][:250])
    print("done", iters, "diff", diff)


if __name__ == "__main__":
    main()
