"""Do the scripts as they are now reproduce a suite's records? Compare runs made again with the records.

    python benchmarks/run.py --suite mujoco --algos trpo --seeds 1 --runs-dir /tmp/replay/runs --results-dir /tmp/replay/results
    python benchmarks/replay.py --suite mujoco --replayed /tmp/replay/results/mujoco/runs.jsonl
    python benchmarks/replay.py --suite quick --recorded-at c70920b --replayed benchmarks/results/quick/runs.jsonl

run.py, pointed at an empty results directory, runs the chosen (algo, env, seed) again with the
current scripts. This script compares each of those records with the record of the same run in
`--recorded` (by default the suite's committed runs.jsonl; `--recorded-at COMMIT`: as it was at
that commit, for a suite run again in place) on everything the run learned and
measured apart from time: the steps, the episodes, the final training return, the final evaluation's
mean and std, the binned training curve and the evaluation curve (keep the replayed records beside
the report, as benchmarks/results/mujoco/replay_runs.jsonl is, so that the replay can be checked). It writes
benchmarks/results/{suite}/replay.md and replay.json: which recorded runs, made by which version of
each script, the replayed version reproduces to the last digit. The same code gives different
trajectories on different CPUs, so a replay says something only on the machine class of the records
(each row names both). On another machine, a change can still be shown to leave a script's runs as
they were: run the previous file (a worktree at its commit) and the current one there, and compare
the two (`--recorded` the previous file's runs.jsonl). Where the previous file is the one that made
the records, the README then says that the two files make the same runs on that machine, not that
the records were made again; keep both files' runs beside the report (replay_elsewhere_previous.jsonl,
replay_elsewhere_current.jsonl). `--add` keeps the rows already in replay.json for other runs
(each row keeps the date and command that made it). Exit code 0 when every replayed run is
identical, 1 otherwise, 2 on bad input.

    git worktree add /tmp/previous COMMIT
    (cd /tmp/previous && python benchmarks/run.py --suite quick --algos trpo --seeds 1 --runs-dir /tmp/previous/runs --results-dir /tmp/previous/results)
    python benchmarks/run.py --suite quick --algos trpo --seeds 1 --runs-dir /tmp/current/runs --results-dir /tmp/current/results
    python benchmarks/replay.py --suite quick --add --recorded /tmp/previous/results/quick/runs.jsonl --replayed /tmp/current/results/quick/runs.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
_spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "benchmarks", "run.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
LEARNED = ("global_step", "episodes", "final_return_mean", "eval_return_mean", "eval_return_std", "train_curve",
           "eval_curve")  # what must be identical; not wall_time_s, sps, commit, command


def run_key(record: dict) -> tuple:
    """run.py's record key, and a variant's flags: a variant's run is not the defaults' run."""
    return (*bench.record_key(record), tuple(record.get("flags") or ()))


def compare(recorded: list[dict], replayed: list[dict], made_by: dict) -> list[dict]:
    """One row per replayed run that has a recorded counterpart: both versions and the fields that
    differ; `made_by` (date, command, and `against`: "records" or "other runs") goes into every row."""
    by_key = {run_key(r): r for r in recorded}
    rows = []
    for new in sorted(replayed, key=bench.record_key):
        old = by_key.get(run_key(new))
        if old is None:
            continue
        rows.append({
            "algo": new["algo"], "env_id": new["env_id"], "seed": new["seed"], "timesteps": new["timesteps"],
            "recorded": {k: old.get(k) for k in ("sha256", "commit", "machine")},
            "replayed": {k: new.get(k) for k in ("sha256", "commit", "machine")},
            "differs": [k for k in LEARNED if old.get(k) != new.get(k)],
            "final_return_mean": new.get("final_return_mean"), "eval_return_mean": new.get("eval_return_mean"),
            **({"flags": new["flags"]} if new.get("flags") else {}), **made_by,
        })
    return rows


def merged(kept: list[dict], rows: list[dict]) -> list[dict]:
    """The rows of an earlier replay.json that this comparison does not replace (same run, same
    recorded version, made on the same machine, compared as records or as other runs alike), then
    this comparison's rows."""
    def key(row):
        return (*run_key(row), row["recorded"]["sha256"], row["recorded"].get("machine"), row.get("against", "records"))
    new = {key(r) for r in rows}
    return [r for r in kept if key(r) not in new] + rows


def markdown(suite: str, rows: list[dict]) -> str:
    made_by = list(dict.fromkeys((r.get("date", "?"), r.get("command", "?")) for r in rows))
    lines = [f"# Replay: {suite} suite", "",
             *[f"- written {date} by `{command}`" for date, command in made_by],
             "- compared, to the last digit: " + ", ".join(f"`{k}`" for k in LEARNED),
             f"- {sum(not r['differs'] for r in rows)} of {len(rows)} replayed runs identical to the runs they are compared with "
             "(the records; or, on another machine, the previous file's runs there)", "",
             "| algo | env | seed | steps | compared with: made by (sha256, commit, machine) | replayed by (sha256, commit, machine) "
             "| final return / eval | result |",
             "| --- | --- | ---: | ---: | --- | --- | ---: | --- |"]
    for r in rows:
        old, new = r["recorded"], r["replayed"]
        lines.append(f"| {r['algo']} | {r['env_id']} | {r['seed']} | {r['timesteps']:,} "
                     f"| {old['sha256'][:12]}, {old['commit']}, {old['machine']} "
                     f"| {new['sha256'][:12]}, {new['commit']}, {new['machine']} "
                     f"| {r['final_return_mean']:.1f} / {r['eval_return_mean']:.1f} "
                     f"| {'identical' if not r['differs'] else 'differs: ' + ', '.join(r['differs'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", required=True, help="the suite whose records are compared (quick, mujoco)")
    parser.add_argument("--replayed", required=True, help="runs.jsonl of the runs made again")
    parser.add_argument("--recorded", help="runs.jsonl of the records (default: the suite's committed one)")
    parser.add_argument("--recorded-at", help="a git commit: the suite's runs.jsonl as it was there")
    parser.add_argument("--results-dir", default=RESULTS, help="where replay.md and replay.json go, under {suite}/")
    parser.add_argument("--add", action="store_true",
                        help="keep the rows of the existing replay.json that this comparison does not replace")
    args = parser.parse_args(argv)
    suite_records = os.path.join(RESULTS, args.suite, "runs.jsonl")
    recorded_path = args.recorded or suite_records
    for path in ([] if args.recorded_at else [recorded_path]) + [args.replayed]:
        if not os.path.isfile(path):
            print(f"error: no such records file: {path}", file=sys.stderr)
            return 2
    if args.recorded_at:
        recorded_path = f"{args.recorded_at}:benchmarks/results/{args.suite}/runs.jsonl"
        proc = subprocess.run(["git", "-C", ROOT, "show", recorded_path], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"error: --recorded-at: git show {recorded_path}: {proc.stderr.strip()}", file=sys.stderr)
            return 2
        recorded = bench.parse_records(proc.stdout)  # the file as `git show` prints it
    else:
        recorded = bench.read_records(recorded_path)
    command = "python benchmarks/replay.py " + " ".join(argv if argv is not None else sys.argv[1:])
    against_records = args.recorded_at is not None or os.path.realpath(recorded_path) == os.path.realpath(suite_records)
    rows = compare(recorded, bench.read_records(args.replayed), {
        "date": datetime.date.today().isoformat(), "command": command,
        "against": "records" if against_records else "other runs"})
    if not rows:
        print(f"error: no replayed run of {args.replayed} has a record in {recorded_path}", file=sys.stderr)
        return 2
    out = os.path.join(args.results_dir, args.suite)
    os.makedirs(out, exist_ok=True)
    kept = []
    if args.add and os.path.exists(os.path.join(out, "replay.json")):
        with open(os.path.join(out, "replay.json")) as f:
            earlier = json.load(f)
        kept = [{"date": earlier.get("date"), "command": earlier.get("command"), **r} for r in earlier["runs"]]
    written = merged(kept, rows)
    with open(os.path.join(out, "replay.json"), "w") as f:
        json.dump({"runs": written}, f, indent=1)
    with open(os.path.join(out, "replay.md"), "w") as f:
        f.write(markdown(args.suite, written))
    identical = sum(not r["differs"] for r in rows)
    print(f"{identical} of {len(rows)} replayed runs identical to the runs they were compared with; "
          f"{os.path.join(out, 'replay.md')}")
    return 0 if identical == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
