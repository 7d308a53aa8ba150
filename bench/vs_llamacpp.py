#!/usr/bin/env python3
"""Decode (tg) and prefill (pp) speed of tpinfer against llama.cpp's llama-bench
on the same GGUF files and thread counts, interleaved: each repetition runs
tpinfer then llama-bench for one (model, threads) cell, so a change of machine
load hits both sides of a ratio alike. The median of the repetitions is
reported, and the ratio tpinfer / llama.cpp.

llama.cpp is not part of this project: build it yourself outside the tree and
pass its llama-bench with --llama-bench.

  bench/vs_llamacpp.py --llama-bench PATH [--tpinfer build/tpinfer] [-p 512] [-n 128]
                       (-p 0 or -n 0 leaves that test out)
                       [-t 1,2] [-r 3] [--tp2] MODEL.gguf...

--tp2 adds, at 2 threads, tpinfer with -tp 2 and one thread per rank.
Prints a Markdown table.
"""
import argparse
import json
import statistics
import subprocess
import sys


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def tpinfer_speed(args, model, tp, threads_per_rank, what):
    p, n = (args.p, 0) if what == "pp" else (0, args.n)
    report = run_json([args.tpinfer, "bench", "-m", model, "-tp", str(tp), "--threads-per-rank",
                       str(threads_per_rank), "-p", str(p), "-n", str(n), "-r", "1", "--json"])
    return report["runs"][0][what]["tokens_per_second"]


def llama_speed(args, model, threads, what):
    p, n = (args.p, 0) if what == "pp" else (0, args.n)
    rows = run_json([args.llama_bench, "-m", model, "-t", str(threads), "-p", str(p), "-n", str(n), "-r", "1",
                     "-o", "json"])
    return rows[0]["avg_ts"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--tpinfer", default="build/tpinfer")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-t", default="1,2")
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("--tp2", action="store_true")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()

    print("| model | test | threads | tpinfer layout | tpinfer t/s | llama.cpp t/s | ratio |")
    print("|---|---|---:|---|---:|---:|---:|")
    for model in args.models:
        for threads in [int(t) for t in args.t.split(",")]:
            layouts = [(1, threads)]
            if args.tp2 and threads == 2:
                layouts.append((2, 1))
            for what in [w for w, size in (("tg", args.n), ("pp", args.p)) if size > 0]:
                ours = {layout: [] for layout in layouts}
                theirs = []
                for _ in range(args.r):
                    for layout in layouts:
                        ours[layout].append(tpinfer_speed(args, model, layout[0], layout[1], what))
                    theirs.append(llama_speed(args, model, threads, what))
                ref = statistics.median(theirs)
                test = f"{what}{args.p if what == 'pp' else args.n}"
                for layout in layouts:
                    mine = statistics.median(ours[layout])
                    print(f"| {model.split('/')[-1]} | {test} | {threads} | tp={layout[0]} x {layout[1]} "
                          f"| {mine:.2f} | {ref:.2f} | {mine / ref:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
