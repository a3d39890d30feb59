"""Training speed against the raw speed of the environment, measured in one run.

For each script and variant: the raw environment's steps/s with random actions (one `gym.make` env,
reset when an episode ends, no learning), then the script's training steps/s (its own `summary.json`,
one torch thread), then the raw speed once more; the ratio is training / mean(raw before, raw after).
The record gives both raw measurements: where they differ much, the host's speed moved during the
run and its ratios are uncertain by about as much.
Beside it, the steps/s of every update after the first (the first pays for start-up and, with
--compile, for compiling, which starts from an empty cache and whose seconds are reported).
With --rounds K, every (script, variant) is measured K times, round by round (a slow spell of the
host falls on every row alike), and the record gives each row's median ratio with the range of the
rounds' ratios, then every round's measurement.

    python benchmarks/speed.py                       # Hopper-v4, every script present, CPU
    python benchmarks/speed.py --variants plain compile   # also with --compile (compile time included)
    python benchmarks/speed.py --variants plain compile --rounds 3   # each row 3 times: medians and ranges
    python benchmarks/speed.py --variants plain compile cuda cuda-compile cuda-cudagraphs   # on a GPU machine
    python benchmarks/speed.py --algos ppo --env-id HalfCheetah-v4 --timesteps 200000

Writes a table to stdout and to a new file (by default benchmarks/results/speed_<cpu>[_<gpu>]_<date>_<commit>.md,
with the commit, machine and date inside); an existing file is never overwritten.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import gymnasium as gym

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import commit, machine  # noqa: E402  (the harness beside this file)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGOS = ["ppo", "trpo", "reinforce"]
VARIANTS = {  # the flags of each variant, after the script's defaults
    "plain": ["--no-cuda"],
    "compile": ["--no-cuda", "--compile"],
    "cuda": ["--cuda"],
    "cuda-compile": ["--cuda", "--compile"],
    "cuda-cudagraphs": ["--cuda", "--compile", "--cudagraphs"],
}


def raw_env_sps(env_id: str, steps: int, seed: int = 0) -> float:
    """Steps/s of one environment driven by random actions, resets included."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def steady_sps(metrics_path: str) -> float | None:
    """Training steps/s after the first update (the one that pays for start-up and compiling): from
    the first and the last update's cumulative `charts/SPS`, which count training time only."""
    with open(metrics_path) as f:
        updates = [(row["global_step"], row["charts/SPS"]) for row in map(json.loads, f) if "charts/SPS" in row]
    if len(updates) < 2:
        return None
    (first_step, first_sps), (last_step, last_sps) = updates[0], updates[-1]
    return (last_step - first_step) / (last_step / last_sps - first_step / first_sps)


def training_sps(algo: str, env_id: str, timesteps: int, extra: list[str]) -> tuple[float, float | None, float]:
    """The script's own training steps/s (summary.json `sps`), its steady steps/s after the first
    update, and the seconds its compile lines report; one torch thread, an empty compile cache."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, os.path.join(ROOT, f"{algo}.py"), "--env-id", env_id,
               "--total-timesteps", str(timesteps), "--eval-episodes", "0",
               "--output-dir", os.path.join(out, "runs"), *extra]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TORCHINDUCTOR_CACHE_DIR=os.path.join(out, "cache"))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        (run,) = os.listdir(os.path.join(out, "runs"))
        with open(os.path.join(out, "runs", run, "summary.json")) as f:
            sps = float(json.load(f)["sps"])
        compile_s = sum(float(m) for m in re.findall(r"compiled in ([0-9.]+) s", proc.stdout))
        return sps, steady_sps(os.path.join(out, "runs", run, "metrics.jsonl")), compile_s


class Measurement(NamedTuple):
    """One script's measurement in one round: raw steps/s before and after its training, the training
    steps/s, those after the first update (None with one update only) and the seconds of compiling."""

    algo: str
    variant: str
    before: float
    after: float
    train: float
    steady: float | None
    compile_s: float


def raw_speed(before: float, after: float) -> float:
    """A row's raw speed: the mean of the measurements before and after its training."""
    return (before + after) / 2


def fmt(value: float | None, raw: float | None = None) -> str:
    """steps/s, or with `raw` the ratio to it; n/a without a value."""
    if value is None:
        return "n/a"
    return f"{value / raw:.2f}" if raw else f"{value:.0f}"


def table_row(m: Measurement) -> str:
    """One script's row of the record: the ratios divide by the mean of the two raw measurements."""
    raw = raw_speed(m.before, m.after)
    return (f"| {m.algo}.py | {m.variant} | {raw:.0f} | {m.before:.0f} / {m.after:.0f} | {m.train:.0f} "
            f"| {m.train / raw:.2f} | {fmt(m.steady)} | {fmt(m.steady, raw)} | {m.compile_s:.1f} |")


def ratio_range(ratios: list[float]) -> str:
    """The median of the rounds' ratios and their range: 0.66 (0.61–0.70)."""
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"


def summary_row(algo: str, variant: str, rounds: list[Measurement]) -> str:
    """One script's row over the rounds: medians, and each ratio's median with the rounds' range; every
    ratio is of one round's training to that round's raw speed."""
    raws = [raw_speed(m.before, m.after) for m in rounds]
    trains = [m.train for m in rounds]
    steadies = [(m.steady, raw) for m, raw in zip(rounds, raws) if m.steady is not None]  # None: one update only
    steady = (f"{statistics.median([s for s, _ in steadies]):.0f} | {ratio_range([s / raw for s, raw in steadies])}"
              if steadies else "n/a | n/a")
    return (f"| {algo}.py | {variant} | {len(rounds)} | {statistics.median(raws):.0f} | {min(raws):.0f}–{max(raws):.0f} "
            f"| {statistics.median(trains):.0f} | {ratio_range([t / raw for t, raw in zip(trains, raws)])} | {steady} "
            f"| {statistics.median([m.compile_s for m in rounds]):.1f} |")


def platform_text() -> str:
    import platform

    return f"{platform.system()} {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=[a for a in ALGOS if os.path.exists(os.path.join(ROOT, f"{a}.py"))],
                        help="the scripts to measure (default: every one present)")
    parser.add_argument("--env-id", default="Hopper-v4", help="the environment, raw and trained")
    parser.add_argument("--timesteps", type=int, default=100_000, help="training steps per script")
    parser.add_argument("--raw-steps", type=int, default=50_000,
                        help="random-action steps per raw measurement (~10 s on Hopper-v4: the host's speed moves "
                        "within seconds, so a longer one says more about the minute of training beside it)")
    parser.add_argument("--variants", nargs="+", default=["plain"], choices=sorted(VARIANTS),
                        help="plain: default flags on the CPU; compile: --compile (its one-time compile is in the "
                        "time); cuda, cuda-compile, cuda-cudagraphs: --cuda, with --compile, with --cudagraphs too")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every (script, variant) this many times, round by round; the record gives "
                        "medians and ranges, then every round")
    parser.add_argument("--out", default=None,
                        help="where the table goes (markdown; a new file: an existing one is refused); default: "
                        "benchmarks/results/speed_<cpu>[_<gpu>]_<date>_<commit>.md")
    parser.add_argument("extra", nargs="*", help="flags passed to every script (after --)")
    args = parser.parse_args()
    if args.rounds < 1:
        print(f"error: --rounds {args.rounds}: must be at least 1", file=sys.stderr)
        sys.exit(2)
    args.algos, args.variants = list(dict.fromkeys(args.algos)), list(dict.fromkeys(args.variants))  # each once

    import torch

    torch.set_num_threads(1)
    on_gpu = [v for v in args.variants if "--cuda" in VARIANTS[v]]
    if on_gpu and not torch.cuda.is_available():
        print(f"error: --variants {' '.join(on_gpu)}: CUDA is not available on this machine", file=sys.stderr)
        sys.exit(2)
    device = f"GPU: {torch.cuda.get_device_name(0)}, " if on_gpu else ""
    if args.out is None:
        names = [machine().split(",")[0]] + ([torch.cuda.get_device_name(0)] if on_gpu else [])
        slug = "_".join(re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") for name in names)
        args.out = os.path.join(ROOT, "benchmarks", "results", f"speed_{slug}_{datetime.date.today().isoformat()}_{commit()}.md")
    if os.path.exists(args.out):
        print(f"error: --out {args.out} exists: a record is never overwritten; give another --out", file=sys.stderr)
        sys.exit(2)
    rows: list[Measurement] = []
    pairs = [(algo, variant) for algo in args.algos for variant in args.variants]  # a round's order
    for round_ in range(1, args.rounds + 1):
        for algo, variant in pairs:
            before = raw_env_sps(args.env_id, args.raw_steps)
            train, steady, compile_s = training_sps(algo, args.env_id, args.timesteps, [*VARIANTS[variant], *args.extra])
            after = raw_env_sps(args.env_id, args.raw_steps)
            raw = raw_speed(before, after)
            rows.append(Measurement(algo, variant, before, after, train, steady, compile_s))
            print(f"{f'round {round_}: ' if args.rounds > 1 else ''}{algo:10s} {variant:15s} raw env {raw:8.0f} steps/s ({before:.0f} before, {after:.0f} after) "
                  f"| training {train:8.0f} steps/s "
                  f"| ratio {train / raw:.2f} | after the first update {fmt(steady)} steps/s, ratio {fmt(steady, raw)} "
                  f"| compiling {compile_s:.1f} s", flush=True)

    lines = [
        "# Training speed vs. raw environment speed",
        "",
        f"- env: `{args.env_id}`; training: {args.timesteps} steps per script with its default flags"
        + (f" plus `{' '.join(args.extra)}`" if args.extra else "") + ", one torch thread",
        "- variants: " + "; ".join(f"{v} = `{' '.join(VARIANTS[v])}`" for v in args.variants),
        f"- raw: one `gym.make` env, random actions, resets included, mean of a measurement of {args.raw_steps} steps"
        " before and one after training",
        *([f"- rounds: {args.rounds}, each measuring every row once in this order; a row's ratio in a round is that"
           " round's training over that round's raw speed; the summary gives the median of the rounds' ratios and"
           " their range (min–max), and the median of each other figure"] if args.rounds > 1 else []),
        f"- commit `{commit()}`, {datetime.date.today().isoformat()}, {machine()}, {device}{platform_text()}",
        f"- command: `python benchmarks/speed.py {' '.join(sys.argv[1:])}`".rstrip() + "",
        "- ratio: training / raw; after the first update: the steps/s of every update but the first, which"
        " holds start-up and, with --compile, the compiling (an empty compile cache: the seconds are the last column)",
        "",
        *([] if args.rounds == 1 else [
            "| script | variant | rounds | raw env steps/s | raw, range | training steps/s | ratio (range) "
            "| after the first update: steps/s | ratio (range) | compiling, s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *[summary_row(algo, variant, [m for m in rows if (m.algo, m.variant) == (algo, variant)])
              for algo, variant in pairs],
            "",
            "Every round, in the order measured:",
            "",
        ]),
        "| script | variant | raw env steps/s | raw before / after | training steps/s | ratio "
        "| after the first update: steps/s | ratio | compiling, s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[table_row(m) for m in rows],
        "",
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
