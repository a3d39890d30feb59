"""Run the scripts on a suite of environments over several seeds and check their learning curves.

    python benchmarks/run.py --suite quick  --algos ppo --seeds 3 --workers 2
    python benchmarks/run.py --suite mujoco --algos ppo trpo reinforce --seeds 3 --workers 16
    python benchmarks/run.py --suite mujoco --report-only      # aggregate what has run so far
    python benchmarks/run.py --suite mujoco --algos trpo --seeds 10 --keep-other-algos   # rerun one script only

Every (algo, env, seed) is its own process with one torch thread, `--workers` at a time. Runs go to
`--runs-dir/{suite}/{algo}/{env}/seed{N}/`; a finished run is not run again, and a run that Ctrl-C
or a kill stopped is continued from its checkpoint (`--resume`), so an interrupted suite resumes
where it stopped. Budgets and thresholds come from benchmarks/thresholds.json.

Writes benchmarks/results/{suite}/: report.md (mean +- std across seeds of final_return_mean, next to
the threshold and the reference figures), curves.json (the binned curves behind the plots) and one
learning-curve PNG per env. Exit code 1 when a threshold is missed, 0 otherwise. With
--keep-other-algos the rows of the scripts not in --algos are kept from the existing curves.json,
with the code and machine they were measured on, so one script's rows can be renewed alone.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
CURVE_POINTS = 100  # points on each learning curve's step grid
ALGO_COLORS = {"ppo": "tab:blue", "trpo": "tab:orange", "reinforce": "tab:green"}


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------
def load_thresholds(path: str = os.path.join(BENCH, "thresholds.json")) -> dict:
    with open(path) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def plan_jobs(config: dict, algos: list[str], seeds: list[int], runs_dir: str) -> list[dict]:
    """One job per (env, algo, seed) that the suite's config defines for that algo."""
    jobs = []
    for env_id, per_algo in config.items():
        for algo in algos:
            if algo not in per_algo:
                continue
            for seed in seeds:
                out = os.path.join(runs_dir, algo, env_id.replace(":", "_").replace("/", "_"), f"seed{seed}")
                cmd = [sys.executable, os.path.join(ROOT, f"{algo}.py"), "--env-id", env_id, "--seed", str(seed),
                       "--total-timesteps", str(per_algo[algo]["timesteps"]), "--no-cuda", "--output-dir", out]
                jobs.append({"algo": algo, "env_id": env_id, "seed": seed, "out": out, "cmd": cmd})
    return jobs


def completed_run(out: str) -> str | None:
    """The newest run directory under `out` that finished (summary.json, not interrupted), or None."""
    done = [path for path in glob.glob(os.path.join(out, "*", "summary.json")) if not read_json(path).get("interrupted")]
    return os.path.dirname(max(done, key=os.path.getmtime)) if done else None


def resumable_run(out: str) -> str | None:
    """The newest run directory under `out` that a stop or a kill left unfinished with a checkpoint
    (model.pt, config.json, no finished summary.json), or None: the harness continues it with --resume."""
    unfinished = [os.path.dirname(path) for path in glob.glob(os.path.join(out, "*", "model.pt"))
                  if os.path.exists(os.path.join(os.path.dirname(path), "config.json"))
                  and not (os.path.exists(os.path.join(os.path.dirname(path), "summary.json"))
                           and not read_json(os.path.join(os.path.dirname(path), "summary.json")).get("interrupted"))]
    return max(unfinished, key=os.path.getmtime) if unfinished else None


def job_command(job: dict) -> list[str]:
    """The job's command; `--resume RUN_DIR` instead when a stopped or killed run of it can continue."""
    run = resumable_run(job["out"])
    return job["cmd"] if run is None else [job["cmd"][0], job["cmd"][1], "--resume", run]


def run_jobs(jobs: list[dict], workers: int) -> None:
    todo = [j for j in jobs if completed_run(j["out"]) is None]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done; running {len(todo)} with {workers} workers", flush=True)
    if not todo:
        return
    lock, start, finished = threading.Lock(), time.time(), [0]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    code_version = commit()

    def work(job):
        os.makedirs(job["out"], exist_ok=True)
        with open(os.path.join(job["out"], "commit.txt"), "w") as f:
            f.write(code_version + "\n")
        with open(os.path.join(job["out"], "stdout.log"), "a") as log:
            proc = subprocess.run(job_command(job), env=env, stdout=log, stderr=subprocess.STDOUT)
        with lock:
            finished[0] += 1
            elapsed = time.time() - start
            eta = elapsed / finished[0] * (len(todo) - finished[0])
            run = completed_run(job["out"])
            result = "FAILED (see stdout.log)" if proc.returncode or run is None else (
                f"final_return_mean {read_json(os.path.join(run, 'summary.json'))['final_return_mean']:.1f}")
            print(f"[{finished[0]}/{len(todo)}] {job['algo']} {job['env_id']} seed {job['seed']}: {result} "
                  f"| elapsed {elapsed / 60:.1f} min | ETA {eta / 60:.1f} min", flush=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, todo))


# ---------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------
def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def read_episodes(run_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(global_step, episodic_return) of every training episode in metrics.jsonl."""
    steps, returns = [], []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("charts/episodic_return") is not None:
                steps.append(record["global_step"])
                returns.append(record["charts/episodic_return"])
    return np.asarray(steps, dtype=np.float64), np.asarray(returns, dtype=np.float64)


def binned_curve(steps: np.ndarray, returns: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean return of the episodes that ended in (g - width, g] for each grid point g; where a
    window holds no episode, the last value is carried forward (NaN before the first episode)."""
    width = grid[1] - grid[0] if len(grid) > 1 else grid[0]
    curve = np.full(len(grid), np.nan)
    last = np.nan
    for i, g in enumerate(grid):
        inside = (steps > g - width) & (steps <= g)
        last = returns[inside].mean() if inside.any() else last
        curve[i] = last
    return curve


def aggregate(config: dict, jobs: list[dict]) -> list[dict]:
    """One row per (env, algo): the completed seeds' summaries and binned curves."""
    rows, here = {}, machine()
    for job in jobs:
        key = (job["env_id"], job["algo"])
        spec = config[job["env_id"]][job["algo"]]
        row = rows.setdefault(key, {"env_id": job["env_id"], "algo": job["algo"], "spec": spec, "machine": here,
                                    "seeds": [], "final": [], "wall": [], "sps": [], "curves": []})
        run = completed_run(job["out"])
        if run is None:
            continue
        summary = read_json(os.path.join(run, "summary.json"))
        grid = np.linspace(0, spec["timesteps"], CURVE_POINTS + 1)[1:]
        commit_file = os.path.join(job["out"], "commit.txt")
        row.setdefault("commits", []).append(open(commit_file).read().strip() if os.path.exists(commit_file) else "not recorded")
        row["seeds"].append(job["seed"])
        row["final"].append(summary["final_return_mean"])
        row["wall"].append(summary["wall_time_s"])
        row["sps"].append(summary["sps"])
        row["curves"].append(binned_curve(*read_episodes(run), grid).tolist())
        row["grid"] = grid.tolist()
    return list(rows.values())


def verdict(row: dict) -> str:
    """PASS / FAIL against the threshold, '-' where there is none, 'missing' without runs."""
    finals = [f for f in row["final"] if f is not None]
    threshold = row["spec"].get("threshold")
    if not row["seeds"]:
        return "missing"
    if threshold is None:
        return "-"
    if len(finals) < len(row["final"]):
        return "FAIL"  # a run without a single finished episode
    value = min(finals) if row["spec"].get("rule") == "each" else float(np.mean(finals))
    return "PASS" if value >= threshold else "FAIL"


# ---------------------------------------------------------------------------------------------
# Report and plots
# ---------------------------------------------------------------------------------------------
def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "*.py"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def fmt(values: list, digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def kept_rows(out_dir: str, algos: list[str]) -> list[dict]:
    """The rows of scripts not in `algos` from an existing curves.json in out_dir (none if absent);
    a row written before rows recorded their machine gets the machine of the old report's header."""
    path = os.path.join(out_dir, "curves.json")
    if not os.path.exists(path):
        return []
    old_machine = "not recorded"
    report = os.path.join(out_dir, "report.md")
    if os.path.exists(report):
        match = re.search(r"^- commit `[^`]*`, [0-9-]+, (.+?), one torch thread", open(report).read(), re.M)
        old_machine = match.group(1) if match else old_machine
    return [dict(r, machine=r.get("machine", old_machine)) for r in read_json(path) if r["algo"] not in algos]


def write_report(suite: str, rows: list[dict], out_dir: str, command: str) -> str:
    machines = collections.defaultdict(set)
    for r in rows:
        machines[r["machine"]].add(r["algo"])
    lines = [
        f"# Benchmark: {suite} suite",
        "",
        f"- commit `{commit()}`, {datetime.date.today().isoformat()}, {machine()}, one torch thread per run, CPU",
        f"- command: `{command}`",
        "- code of the runs: " + (", ".join(f"`{c}` ({n} runs)" for c, n in sorted(
            collections.Counter(c for r in rows for c in r.get("commits", [])).items())) or "no runs"),
        "- machine of the runs: " + "; ".join(f"{m} ({', '.join(sorted(a))})" for m, a in sorted(machines.items())),
        "- final return: `final_return_mean` of each run (mean raw return of its last 100 training episodes), "
        "mean ± std across seeds; rule `each` = every seed must reach the threshold, `mean` = their mean",
        "",
        "| env | algo | steps | seeds | final return | threshold | rule | result | reference | wall time / run | steps/s |",
        "| --- | --- | ---: | --- | ---: | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for row in sorted(rows, key=lambda r: (r["env_id"], r["algo"])):
        spec = row["spec"]
        seeds = ",".join(map(str, row["seeds"])) or "none"
        wall = f"{np.mean(row['wall']) / 60:.1f} min" if row["wall"] else "n/a"
        sps = f"{np.mean(row['sps']):.0f}" if row["sps"] else "n/a"
        threshold = "-" if spec.get("threshold") is None else f"{spec['threshold']}"
        lines.append(f"| {row['env_id']} | {row['algo']} | {spec['timesteps']:,} | {seeds} | {fmt(row['final'])} | "
                     f"{threshold} | {spec.get('rule', 'mean')} | {verdict(row)} | {spec.get('reference', '')} | {wall} | {sps} |")
    lines += ["", "Per seed:", ""]
    for row in sorted(rows, key=lambda r: (r["env_id"], r["algo"])):
        per_seed = ", ".join(f"seed {s}: {f:.1f}" if f is not None else f"seed {s}: n/a"
                             for s, f in zip(row["seeds"], row["final"]))
        lines.append(f"- {row['env_id']} {row['algo']}: {per_seed or 'no completed runs'}")
    envs = sorted({r["env_id"] for r in rows})
    lines += ["", *[f"![{e}]({e}.png)" for e in envs], ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def plot_curves(rows: list[dict], out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for env_id in sorted({r["env_id"] for r in rows}):
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
        for row in sorted((r for r in rows if r["env_id"] == env_id and r["curves"]), key=lambda r: r["algo"]):
            grid = np.asarray(row["grid"])
            curves = np.asarray(row["curves"], dtype=np.float64)
            with warnings.catch_warnings():  # grid points before any seed's first episode are all-NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
            color = ALGO_COLORS.get(row["algo"])
            ax.plot(grid, mean, color=color, label=f"{row['algo']} ({len(row['seeds'])} seeds)")
            ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            threshold = row["spec"].get("threshold")
            if threshold is not None:
                ax.axhline(threshold, color=color, linestyle=":", linewidth=1)
        ax.set_title(f"{env_id}: training episodic return (mean ± std over seeds)")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("episodic return")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
        fig.tight_layout()
        path = os.path.join(out_dir, f"{env_id.replace(':', '_').replace('/', '_')}.png")
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["quick", "mujoco"], required=True)
    parser.add_argument("--algos", nargs="+", default=["ppo", "trpo", "reinforce"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N")
    parser.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1))
    parser.add_argument("--runs-dir", default=os.path.join(BENCH, "runs"))
    parser.add_argument("--results-dir", default=os.path.join(BENCH, "results"))
    parser.add_argument("--thresholds", default=os.path.join(BENCH, "thresholds.json"))
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    parser.add_argument("--report-only", action="store_true", help="aggregate the runs that exist, run nothing")
    parser.add_argument("--keep-other-algos", action="store_true",
                        help="keep the rows of the scripts not in --algos from the existing report's curves.json")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        parser.error("--seeds and --workers must be >= 1")
    missing = [a for a in args.algos if not os.path.exists(os.path.join(ROOT, f"{a}.py"))]
    if missing and not args.report_only:
        parser.error(f"no such script: {', '.join(a + '.py' for a in missing)}")

    config = load_thresholds(args.thresholds)[args.suite]
    jobs = plan_jobs(config, args.algos, list(range(1, args.seeds + 1)), os.path.join(args.runs_dir, args.suite))
    if args.dry_run:
        for job in jobs:
            print(" ".join(job["cmd"]))
        return 0
    if not args.report_only:
        run_jobs(jobs, args.workers)

    rows = aggregate(config, jobs)
    out_dir = os.path.join(args.results_dir, args.suite)
    os.makedirs(out_dir, exist_ok=True)
    if args.keep_other_algos:
        rows += kept_rows(out_dir, args.algos)
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = write_report(args.suite, rows, out_dir, command)
    with open(os.path.join(out_dir, "curves.json"), "w") as f:
        json.dump([{k: v for k, v in r.items()} for r in rows], f)
    plot_curves(rows, out_dir)
    print(f"wrote {report}")
    failed = [r for r in rows if verdict(r) in ("FAIL", "missing") and r["spec"].get("threshold") is not None]
    for row in rows:
        print(f"{row['env_id']:22s} {row['algo']:10s} {fmt(row['final']):>20s}  {verdict(row)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
