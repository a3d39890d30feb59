"""Run the scripts on a grid of (algo, env, seed) and report how they learn, with reliable statistics.

    python benchmarks/run.py --suite quick --seeds 10 --workers 2
    python benchmarks/run.py --suite mujoco --seeds 10 --backend ray --address auto   # on a Ray cluster
    python benchmarks/run.py --envs Acrobot-v1 --algos ppo trpo --steps 200000 --seeds 5   # a custom grid
    python benchmarks/run.py --suite mujoco --report-only     # the report again, from the committed records
    python benchmarks/run.py --suite mujoco --algos trpo --flags "--cg-iters 25"   # a variant against the defaults

Every (algo, env, seed) is one run of the script, in its own process with one torch thread, with
`--eval-every` and `--checkpoint-every` at a tenth of its budget, so that it leaves a
deterministic-evaluation curve beside the training one and a kill loses at most a tenth of it.
Backends: `local` (default, no Ray needed) runs `--workers` processes at a time on this machine;
`ray` runs each run as a Ray task (one CPU) on the cluster at `--address`, or on a local Ray instance
without one; the task returns the run directory's files, which the driver writes under the runs
directory (no shared filesystem). Either way a finished run is not run again, a run that Ctrl-C or a
kill stopped continues from its checkpoint (`--resume`), Ctrl-C keeps the finished runs (locally the
running scripts save and stop; Ray's runs in flight are lost and start again from the state they
were sent with), and a failed run is reported while the others go on. A suite is reported whole (`--envs`, `--algos` pick
what to run of it); a custom grid (`--envs ... --steps N`) has no thresholds.

Each finished run becomes a compact record (summary, binned training and evaluation curves, the
commit and script sha256 it ran, the harness command, the machine) in
benchmarks/results/{suite}/runs.jsonl, which is committed: `--report-only` rebuilds the report and
plots from the repository alone, and a run recorded there by the script as it is now is not run
again, so a suite can be worked through in several goes on several machines. A report aggregates
the runs of one version of each script only (by the script's sha256; the commits are listed),
unless `--allow-mixed` is given (the report then says so at the top).

A variant (`--flags "--cg-iters 25"`: script flags added to every run of the suite) has its own runs,
records and report under {suite}/variants/{name}/ (name: the flags, e.g. `cg-iters_25`); its report
also sets each row beside the suite's own records (the default flags) with the probability of
improvement P(variant > defaults) and its 95% CI, per env and per algo over the envs: the evidence
on which a default is changed or kept.

Statistics (rliable, Agarwal et al. 2021): per (algo, env), over seeds, the interquartile mean (IQM)
with a 95% stratified-bootstrap confidence interval, mean +- std and median, of the training return
(`final_return_mean`, the last 100 training episodes: CleanRL's figure) and of the deterministic
evaluation return (`eval_return_mean`: SB3 / RL-Zoo's figure); per algo, the IQM [CI] of normalized
scores over the suite's envs (0 = a uniform-random policy's return, measured by the harness and
recorded in random.json; 1 = the reference figure in thresholds.json, on the metric that reference
reports). Thresholds (thresholds.json) are checked on the training return: rule `iqm` = the IQM
across seeds, rule `each` = every seed. Exit code 1 when a threshold is missed or a run of a row with
a threshold is missing; 2 on bad input (one `error:` line).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import functools
import glob
import hashlib
import importlib.util
import io
import shlex
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
ALGOS = ("ppo", "trpo", "reinforce")
CURVE_POINTS = 100  # points on each training curve's step grid
EVAL_POINTS = 10  # evaluations per run (--eval-every = steps / EVAL_POINTS), the last one the final evaluation
BOOTSTRAP_REPS = 5000  # stratified-bootstrap resamples per confidence interval (rliable loops in Python: ~1 s each)
RANDOM_EPISODES = 100  # episodes of the uniform-random policy that defines the normalized score's 0
ALGO_COLORS = {"ppo": "tab:blue", "trpo": "tab:orange", "reinforce": "tab:green"}
METRICS = {"train": ("final_return_mean", "training return: final_return_mean, the mean raw return of the last 100 training episodes"),
           "eval": ("eval_return_mean", "deterministic evaluation return: eval_return_mean, the final evaluation's mean")}


HARNESS_FLAGS = ("--env-id", "--seed", "--total-timesteps", "--no-cuda", "--cuda", "--eval-every",
                 "--checkpoint-every", "--output-dir", "--resume")  # set by the harness for every run


class HarnessError(Exception):
    """Bad input to the harness: one `error:` line, exit code 2."""


# ---------------------------------------------------------------------------------------------
# The grid: suites from thresholds.json, or any --envs x --algos x --seeds at --steps
# ---------------------------------------------------------------------------------------------
def load_suites(path: str = os.path.join(BENCH, "thresholds.json")) -> dict:
    with open(path) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def parse_seeds(text: str) -> list[int]:
    """'10' = seeds 1..10, '3-7' = 3..7, '1,4,9' = those seeds."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",")]
        elif "-" in text.strip("-"):
            first, last = (int(s) for s in text.split("-", 1))
            seeds = list(range(first, last + 1))
        else:
            seeds = list(range(1, int(text) + 1))
    except ValueError:
        raise HarnessError(f"--seeds: {text!r} is not N, FIRST-LAST or a comma-separated list") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise HarnessError(f"--seeds: {text!r} gives no seeds, a negative seed or a repeated one")
    return seeds


def parse_variant(text: str | None) -> list[str]:
    """--flags: the script flags a variant adds to every run (shell-quoted as one argument), none of
    them a flag the harness sets itself."""
    if text is None:
        return []
    try:
        flags = shlex.split(text)
    except ValueError as error:
        raise HarnessError(f"--flags: {error}") from None
    if not flags or not flags[0].startswith("--"):
        raise HarnessError(f"--flags: {text!r} is not script flags (e.g. --flags '--cg-iters 25')")
    owned = [f for f in flags if f.split("=", 1)[0].replace("_", "-") in HARNESS_FLAGS]  # tyro takes --env_id too
    if owned:
        raise HarnessError(f"--flags: {', '.join(owned)} is set by the harness for every run")
    return flags


def variant_name(flags: list[str]) -> str:
    """A variant's folder name: its flags, e.g. `cg-iters_25` for --cg-iters 25 (a flag's leading
    `--` dropped, its value kept whole: `x_-0.5` for --x -0.5)."""
    words = [f[2:].replace("_", "-") if f.startswith("--") else f for f in flags]
    name = "_".join(re.sub(r"[^A-Za-z0-9.+=-]", "-", w).replace("..", "-") for w in words)
    return "-" if name == "." else name


def plan_grid(suites: dict, suite: str | None, envs: list[str] | None, algos: list[str],
              steps: int | None) -> tuple[str, dict, dict]:
    """(suite name, the grid to report, the grid to run), each {env: {algo: spec}}. A suite of
    thresholds.json has its budgets, thresholds and references, and its report covers all of it;
    --envs and --algos pick what to run of it. A custom grid (no --suite, or a new name) is
    --envs x --algos at --steps, without thresholds."""
    name = suite or "custom"
    if name in suites:
        config = suites[name]
        if steps is not None:
            raise HarnessError(f"--steps: suite {name!r} has its budgets in thresholds.json; for other budgets "
                               "run a custom grid (--envs ... --steps N, without --suite or with a new name)")
        unknown = [e for e in envs or [] if e not in config]
        if unknown:
            raise HarnessError(f"--envs: {', '.join(unknown)} not in suite {name!r} ({', '.join(config)}); "
                               "a custom grid is --envs ... --steps N without --suite")
        report = {e: {a: dict(spec) for a, spec in per_algo.items() if a in ALGOS} for e, per_algo in config.items()}
        run = {e: {a: spec for a, spec in report[e].items() if a in algos} for e in envs or config}
    else:
        if not envs or steps is None:
            raise HarnessError("give --suite NAME (" + ", ".join(sorted(suites)) + "), or a custom grid: "
                               "--envs ENV ... --steps N")
        report = run = {e: {a: {"timesteps": steps} for a in algos} for e in envs}
    run = {e: per_algo for e, per_algo in run.items() if per_algo}
    if not run:
        raise HarnessError(f"nothing to run: suite {name!r} has no env for --algos {' '.join(algos)}")
    return name, report, run


def plan_jobs(grid: dict, seeds: list[int], runs_dir: str, variant: list[str] = ()) -> list[dict]:
    """One job per (env, algo, seed): the script's flags (a variant's after the harness's) and its
    output folder, which names the budget."""
    jobs = []
    for env_id, per_algo in grid.items():
        for algo, spec in per_algo.items():
            steps = spec["timesteps"]
            every = str(max(1, steps // EVAL_POINTS))
            for seed in seeds:
                out = os.path.join(runs_dir, algo, file_name(env_id), str(steps), f"seed{seed}")
                flags = ["--env-id", env_id, "--seed", str(seed), "--total-timesteps", str(steps), "--no-cuda",
                         "--eval-every", every, "--checkpoint-every", every, *variant]
                jobs.append({"algo": algo, "env_id": env_id, "seed": seed, "spec": spec, "out": out, "flags": flags,
                             "variant": list(variant)})
    return jobs


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def script_sha256(algo: str) -> str:
    """The sha256 of the script as the harness found it: read once, not once per job."""
    with open(os.path.join(ROOT, f"{algo}.py"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_sha256(run_dir: str) -> str:
    """The sha256 of the script that made a run ('mixed' when its sessions ran different versions of
    it, 'unknown' without config.json)."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return "unknown"
    config = read_json(path)
    shas = {session.get("sha256") for session in config.get("sessions", [])} | {config.get("sha256")}
    shas.discard(None)
    return "unknown" if not shas else shas.pop() if len(shas) == 1 else "mixed"


def finished(run_dir: str) -> bool:
    summary = os.path.join(run_dir, "summary.json")
    return os.path.exists(summary) and not read_json(summary).get("interrupted")


def completed_run(out: str, sha256: str | None = None) -> str | None:
    """The newest run directory under `out` that finished (summary.json, not interrupted), made by
    the script with this sha256 if one is given; or None."""
    done = [os.path.dirname(p) for p in glob.glob(os.path.join(out, "*", "summary.json"))
            if finished(os.path.dirname(p)) and sha256 in (None, run_sha256(os.path.dirname(p)))]
    return max(done, key=os.path.getmtime) if done else None


def resumable_run(out: str, sha256: str | None = None) -> str | None:
    """The newest run directory under `out` that a stop or a kill left unfinished with a checkpoint
    (model.pt, config.json, no finished summary.json), made by the script with this sha256 if one is
    given; or None. It is continued with --resume."""
    unfinished = [os.path.dirname(p) for p in glob.glob(os.path.join(out, "*", "model.pt"))
                  if os.path.exists(os.path.join(os.path.dirname(p), "config.json")) and not finished(os.path.dirname(p))
                  and sha256 in (None, run_sha256(os.path.dirname(p)))]
    return max(unfinished, key=os.path.getmtime) if unfinished else None


def script_flags(job: dict, resume_dir: str | None, output_dir: str) -> list[str]:
    """The script's flags: the job's, or `--resume RUN_DIR` for a stopped or killed run of it."""
    return ["--resume", resume_dir] if resume_dir else [*job["flags"], "--output-dir", output_dir]


# ---------------------------------------------------------------------------------------------
# Backends: local processes, or Ray tasks
# ---------------------------------------------------------------------------------------------
class Progress:
    """One line per finished run: its result or failure, elapsed time and ETA."""

    def __init__(self, total: int):
        self.total, self.done, self.start, self.lock = total, 0, time.time(), threading.Lock()

    def finished(self, job: dict, returncode: int, detail: str = "") -> None:
        with self.lock:
            self.done += 1
            elapsed = time.time() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            run = completed_run(job["out"])
            if returncode == 130:
                result = "stopped by Ctrl-C, saved (the same command continues it)"
            elif returncode or run is None:
                result = f"FAILED (exit code {returncode}{detail}; see {os.path.join(job['out'], 'stdout.log')})"
            else:
                summary = read_json(os.path.join(run, "summary.json"))
                result = f"train {fmt(summary['final_return_mean'])}, eval {fmt(summary.get('eval_return_mean'))}"
            print(f"[{self.done}/{self.total}] {job['algo']} {job['env_id']} seed {job['seed']}: {result} "
                  f"| elapsed {elapsed / 60:.1f} min | ETA {eta / 60:.1f} min", flush=True)


def thread_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run_local(todo: list[dict], workers: int, progress: Progress) -> None:
    """`workers` scripts at a time. Each runs in its own session, so that Ctrl-C reaches the harness
    only, which then starts no new run and sends each running script one SIGINT: it saves a
    checkpoint and stops (exit 130), and the same command later continues it (`--resume`)."""
    running, lock = set(), threading.Lock()

    def work(job):
        flags = script_flags(job, resumable_run(job["out"], script_sha256(job["algo"])), job["out"])
        with open(os.path.join(job["out"], "stdout.log"), "a") as log:
            proc = subprocess.Popen([sys.executable, os.path.join(ROOT, f"{job['algo']}.py"), *flags], env=thread_env(),
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            with lock:
                running.add(proc)
            proc.wait()
            with lock:
                running.discard(proc)
        progress.finished(job, proc.returncode)

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        list(pool.map(work, todo))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        with lock:
            for proc in running:
                proc.send_signal(signal.SIGINT)
        raise
    finally:
        pool.shutdown(wait=True)


def pack(folder: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def unpack(archive: bytes, folder: str) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


def ray_task(script_name: str, script: bytes, job: dict, resume: tuple[str, bytes] | None) -> tuple[int, bytes, str]:
    """One run on a Ray worker, in a temporary folder: the script's source and (to resume) the
    unfinished run directory come with the task; (exit code, the output folder as .tar.gz, its log)
    go back to the driver."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        script_path, out = os.path.join(tmp, script_name), os.path.join(tmp, "out")
        with open(script_path, "wb") as f:
            f.write(script)
        os.makedirs(out)
        resume_dir = None
        if resume is not None:
            resume_dir = os.path.join(out, resume[0])
            os.makedirs(resume_dir)
            unpack(resume[1], resume_dir)
        proc = subprocess.Popen([sys.executable, script_path, *script_flags(job, resume_dir, out)], cwd=tmp,
                                env=thread_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            log, _ = proc.communicate()
        except BaseException:  # the task was cancelled: leave no script running on the worker
            proc.kill()
            proc.wait()
            raise
        return proc.returncode, pack(out), log


def run_ray(todo: list[dict], address: str | None, workers: int, progress: Progress) -> None:
    import ray

    try:  # where this file was imported as a module, its functions travel by value: workers cannot import it
        ray.cloudpickle.register_pickle_by_value(sys.modules[ray_task.__module__])
    except (KeyError, ValueError, AttributeError):
        pass
    try:  # without --address always a new local instance, never a cluster that RAY_ADDRESS or `ray start` names
        ray.init(address=address or "local", num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    except Exception as error:
        raise HarnessError(f"Ray did not start{f' at {address}' if address else ''}: "
                           f"{(str(error).strip().splitlines() or [type(error).__name__])[0]}") from None
    task = ray.remote(num_cpus=1, max_retries=0)(ray_task)
    pending = {}
    for job in todo:
        script_name = f"{job['algo']}.py"
        with open(os.path.join(ROOT, script_name), "rb") as f:
            script = f.read()
        unfinished = resumable_run(job["out"], script_sha256(job["algo"]))
        resume = (os.path.basename(unfinished), pack(unfinished)) if unfinished else None
        pending[task.remote(script_name, script, job, resume)] = job
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            try:
                returncode, archive, log = ray.get(ref)
            except ray.exceptions.RayError as error:
                returncode, archive, log = -1, None, f"{type(error).__name__}: {error}\n"
            detail = "" if archive is not None else ", the task failed"
            try:
                if archive is not None:
                    unpack(archive, job["out"])  # the run directory, new or continued
            except (OSError, tarfile.TarError) as error:
                log, detail = log + f"unpacking the run failed: {error}\n", ", its files could not be unpacked"
            with open(os.path.join(job["out"], "stdout.log"), "a") as f:
                f.write(log)
            progress.finished(job, returncode, detail)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # interrupts the task, which kills its script
        print(f"cancelled {len(pending)} runs in flight (lost: they start again from the state they were "
              "sent with); the finished runs are kept", flush=True)
        raise
    finally:
        ray.shutdown()


def run_jobs(jobs: list[dict], backend: str, workers: int, address: str | None, command: str, saved: dict) -> None:
    """Run the jobs that have no finished run, neither here nor in the committed records (`saved`,
    by record_key) made by the script as it is now: a suite can be worked through in several goes,
    on several machines, with the records committed in between."""
    current = {algo: script_sha256(algo) for algo in {j["algo"] for j in jobs}}
    recorded = [j for j in jobs if saved.get(job_key(j), {}).get("sha256") == current[j["algo"]]]
    todo = [j for j in jobs if completed_run(j["out"], current[j["algo"]]) is None and j not in recorded]
    where = f"Ray ({address or 'a local instance'})" if backend == "ray" else f"{workers} local workers"
    print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done ({len(recorded)} in the committed records); "
          f"running {len(todo)} on {where}", flush=True)
    if not todo:
        return
    harness = {"commit": commit(), "command": command, "machine": machine(), "backend": backend}
    for job in todo:
        os.makedirs(job["out"], exist_ok=True)
        with open(os.path.join(job["out"], "harness.json"), "w") as f:
            json.dump(harness, f)
    progress = Progress(len(todo))
    if backend == "ray":
        run_ray(todo, address, workers, progress)
    else:
        run_local(todo, workers, progress)


# ---------------------------------------------------------------------------------------------
# Records: one compact line per finished run, committed beside the report
# ---------------------------------------------------------------------------------------------
def read_metric(run_dir: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(global_step, value) of every record of `key` in metrics.jsonl."""
    steps, values = [], []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get(key) is not None:
                steps.append(record["global_step"])
                values.append(record[key])
    return np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)


def binned_curve(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean of the values logged in (g - width, g] for each grid point g; where a window holds
    none, the last value is carried forward (NaN before the first)."""
    width = grid[1] - grid[0] if len(grid) > 1 else grid[0]
    curve = np.full(len(grid), np.nan)
    last = np.nan
    for i, g in enumerate(grid):
        inside = (steps > g - width) & (steps <= g)
        last = values[inside].mean() if inside.any() else last
        curve[i] = last
    return curve


def train_grid(steps: int) -> np.ndarray:
    """The training curve's step grid."""
    return np.linspace(0, steps, CURVE_POINTS + 1)[1:]


def rounded(values) -> list:
    return [None if v is None or not np.isfinite(v) else round(float(v), 2) for v in values]


def make_record(job: dict, run_dir: str) -> dict:
    """What the report needs of one finished run, compact enough to commit: the summary, the
    training curve binned on the step grid, every evaluation as [step, mean return] (the periodic
    ones and the final one), the script's sha256, and where and how the harness ran it."""
    summary = read_json(os.path.join(run_dir, "summary.json"))
    config_path = os.path.join(run_dir, "config.json")
    versions = read_json(config_path).get("versions") if os.path.exists(config_path) else None
    harness_path = os.path.join(job["out"], "harness.json")
    harness = read_json(harness_path) if os.path.exists(harness_path) else {}
    grid = train_grid(job["spec"]["timesteps"])
    grid[-1] = max(grid[-1], summary["global_step"])  # whole batches overshoot the budget a little
    eval_steps, eval_returns = read_metric(run_dir, "eval/return_mean")
    return {
        "algo": job["algo"], "env_id": job["env_id"], "seed": job["seed"], "timesteps": job["spec"]["timesteps"],
        "commit": harness.get("commit", "not recorded"), "sha256": run_sha256(run_dir),
        "command": harness.get("command", "not recorded"), "machine": harness.get("machine", "not recorded"),
        "backend": harness.get("backend", "local"), "versions": versions,
        **({"flags": job["variant"]} if job.get("variant") else {}),
        **{k: summary.get(k) for k in ("global_step", "final_return_mean", "eval_return_mean", "eval_return_std",
                                        "episodes", "wall_time_s", "sps")},
        "train_curve": rounded(binned_curve(*read_metric(run_dir, "charts/episodic_return"), grid)),
        "eval_curve": [[int(step), value] for step, value in zip(eval_steps, rounded(eval_returns))],
    }


def record_key(record: dict) -> tuple:
    return record["algo"], record["env_id"], record["seed"], record["timesteps"]


def job_key(job: dict) -> tuple:
    return job["algo"], job["env_id"], job["seed"], job["spec"]["timesteps"]


def read_records(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return parse_records(f.read())


def parse_records(text: str) -> list[dict]:
    """Records from the text of a runs.jsonl (one JSON object per line)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def at_budget(records: list[dict], grid: dict) -> list[dict]:
    """The records made at the budget (`timesteps`) that `grid` gives their (env, algo)."""
    return [r for r in records if r["timesteps"] == grid.get(r["env_id"], {}).get(r["algo"], {}).get("timesteps")]


def collect_records(jobs: list[dict], saved: dict) -> list[dict]:
    """Each job's record, the first there is of: its finished run here made by the current script,
    its committed record (`saved`, by record_key) made by the current script, its newest finished
    run here, its committed record. A job with none of them is missing."""
    records = []
    for job in jobs:
        current, key = script_sha256(job["algo"]), job_key(job)
        run = completed_run(job["out"], current)
        if run is None and saved.get(key, {}).get("sha256") != current:
            run = completed_run(job["out"])
        record = make_record(job, run) if run is not None else saved.get(key)
        if record is not None:
            records.append(record)
    return records


def write_records(path: str, saved: dict, records: list[dict]) -> None:
    """runs.jsonl: the committed records, with these in place of theirs (records of runs outside
    this report's grid stay)."""
    merged = {**saved, **{record_key(r): r for r in records}}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for key in sorted(merged, key=str):
            f.write(json.dumps(merged[key]) + "\n")


def code_of(records: list[dict]) -> tuple[dict, bool]:
    """Per script, the sha256s of the files that made the records and the commits they ran at; and
    whether the records mix code (a script with more than one sha256). Commits that differ only
    outside the scripts (the harness, the tests) ran the same code."""
    code = collections.defaultdict(lambda: collections.defaultdict(set))
    for r in records:
        code[r["algo"]][r["sha256"]].add(r["commit"])
    return {a: {s: sorted(c) for s, c in v.items()} for a, v in sorted(code.items())}, any(len(v) > 1 for v in code.values())


def describe_code(code: dict) -> str:
    return "; ".join(f"{algo}.py " + ", ".join(f"sha256 {sha[:12]} (commit {', '.join(commits)})" for sha, commits in shas.items())
                     for algo, shas in code.items()) or "no runs"


# ---------------------------------------------------------------------------------------------
# Statistics (rliable: IQM and stratified-bootstrap confidence intervals)
# ---------------------------------------------------------------------------------------------
def bootstrap_interval(scores: list[np.ndarray], func: Callable) -> tuple[float, float, float]:
    """(func(*scores), 95% CI low, high) for (runs, tasks) score matrices: rliable's stratified
    bootstrap (runs resampled within each task, each matrix on its own), seeded, so that a report and
    the README table made from the same records give the same interval."""
    from rliable import library as rly

    state = np.random.get_state()
    np.random.seed(0)  # rliable's stratified resampling draws from numpy's global generator
    try:
        with warnings.catch_warnings():  # arch's notice that RandomState will give way to Generator
            warnings.simplefilter("ignore", FutureWarning)
            point, interval = rly.get_interval_estimates(
                {"x": [np.asarray(m, dtype=np.float64) for m in scores]}, func,
                reps=BOOTSTRAP_REPS, random_state=np.random.RandomState(0))
    finally:
        np.random.set_state(state)
    return float(np.squeeze(point["x"])), float(np.squeeze(interval["x"][0])), float(np.squeeze(interval["x"][1]))


def iqm(scores: np.ndarray) -> float:
    """The interquartile mean of all entries: rliable's `aggregate_iqm`, scipy.stats.trim_mean(scores,
    0.25, axis=None), computed as trim_mean computes it but without scipy's argument-handling wrapper,
    which takes about 85% of its time when a bootstrap calls it 5,000 times per interval. Equal to
    `aggregate_iqm` to the last digit (tests/test_benchmarks.py)."""
    values = np.ravel(scores)
    cut = int(0.25 * values.size)  # as trim_mean: the number cut from each end is rounded down
    return np.mean(np.partition(values, (cut, values.size - cut - 1))[cut:values.size - cut])


def iqm_interval(scores: np.ndarray) -> tuple[float, float, float]:
    """(IQM, 95% CI low, high) of a (runs, tasks) score matrix: the IQM over all its entries."""
    return bootstrap_interval([scores], iqm)


def seed_stats(values: list) -> dict | None:
    """IQM [95% CI], mean, std, median and count of one (algo, env)'s per-seed values; None without values."""
    values = np.sort(np.asarray([v for v in values if v is not None], dtype=np.float64))  # the CI must not depend on order
    if len(values) == 0:
        return None
    iqm, low, high = iqm_interval(values[:, None])
    return {"iqm": iqm, "low": low, "high": high, "mean": float(values.mean()), "std": float(values.std()),
            "median": float(np.median(values)), "n": int(len(values))}


def normalized(value: float | None, random_return: float, reference: float) -> float | None:
    """(value - random) / (reference - random): 0 = the random policy, 1 = the reference figure."""
    return None if value is None else (value - random_return) / (reference - random_return)


def aggregate_scores(records: list[dict], grid: dict, randoms: dict) -> dict:
    """Per algo: the IQM [CI] of normalized scores over the envs that have a reference above the
    random policy's return and a score, on the seeds that all of those envs have a score for (a
    stratified bootstrap resamples a full runs x envs matrix); `envs` names each env with its metric."""
    result = {}
    for algo in sorted({r["algo"] for r in records}):
        envs = [e for e in sorted(grid) if e in randoms and grid[e].get(algo, {}).get("reference_return") is not None
                and grid[e][algo]["reference_return"] > randoms[e]["return_mean"]]
        scores = {}
        for env in envs:
            spec = grid[env][algo]
            key = METRICS[spec.get("reference_metric", "train")][0]
            scores[env] = {r["seed"]: normalized(r[key], randoms[env]["return_mean"], spec["reference_return"])
                           for r in records if r["algo"] == algo and r["env_id"] == env and r[key] is not None}
        scores = {e: by_seed for e, by_seed in scores.items() if by_seed}  # the envs this script has run
        envs = [e for e in envs if e in scores]
        seeds = sorted(set.intersection(*(set(s) for s in scores.values()))) if scores else []
        if seeds:
            matrix = np.asarray([[scores[e][s] for e in envs] for s in seeds], dtype=np.float64)
            iqm, low, high = iqm_interval(matrix)
            labels = [f"{e} ({grid[e][algo].get('reference_metric', 'train')})" for e in envs]
            result[algo] = {"envs": labels, "seeds": seeds, "iqm": iqm, "low": low, "high": high}
    return result


def improvement_interval(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(P, 95% CI low, high): the probability of improvement of X over Y (rliable) from (runs, tasks)
    score matrices: per task, the chance that a run of X scores above a run of Y, ties counting half
    (Mann-Whitney U / (n m)), averaged over tasks; 0.5 = no difference."""
    from rliable import metrics

    return bootstrap_interval([x, y], metrics.probability_of_improvement)


def compare_to_defaults(grid: dict, records: list[dict], defaults: list[dict]) -> dict:
    """A variant's runs against the suite's own (the default flags). `rows`, per metric and algo: per
    env that both have runs of, each side's statistics and P(variant > defaults) [CI]; then, with more
    than one such env, P over all of them, on the seeds that every one of those envs has on each side.
    `one_side`: the (env, algo) pairs with runs on one side only, which nothing is compared for."""
    rows = []
    for metric, (key, _) in METRICS.items():
        for algo in ALGOS:
            by_env = [(e, *({r["seed"]: r[key] for r in side if r["algo"] == algo and r["env_id"] == e and r[key] is not None}
                            for side in (records, defaults)))
                      for e in sorted(grid) if algo in grid[e]]
            by_env = [(e, mine, theirs) for e, mine, theirs in by_env if mine and theirs]  # {seed: value} per side
            for env, mine, theirs in by_env:
                x, y = list(mine.values()), list(theirs.values())
                rows.append({"env": env, "algo": algo, "metric": metric, "variant": seed_stats(x),
                             "defaults": seed_stats(y), "p": improvement_interval(np.c_[x], np.c_[y])})
            if len(by_env) > 1:
                sides = []
                for side in (1, 2):  # the variant's values, the defaults'
                    seeds = sorted(set.intersection(*(set(per_env[side]) for per_env in by_env)))
                    sides.append(np.asarray([[per_env[side][s] for per_env in by_env] for s in seeds], dtype=np.float64))
                if all(len(side) for side in sides):
                    rows.append({"env": "over " + ", ".join(e for e, _, _ in by_env), "algo": algo, "metric": metric,
                                 "variant": None, "defaults": None, "n": [len(side) for side in sides],
                                 "p": improvement_interval(*sides)})
    pairs = [{(r["env_id"], r["algo"]) for r in side} for side in (records, defaults)]
    return {"rows": rows, "one_side": sorted(pairs[0] ^ pairs[1])}


def random_returns(env_ids: list[str], path: str) -> dict:
    """A uniform-random policy's mean return per env (RANDOM_EPISODES episodes, seed 0), measured once
    and recorded at `path`."""
    recorded = read_json(path) if os.path.exists(path) else {}
    missing = [e for e in env_ids if e not in recorded]
    if missing:
        import gymnasium as gym

        for env_id in missing:
            try:
                with warnings.catch_warnings():  # the runs say it (e.g. gymnasium's "v4 is out of date")
                    warnings.simplefilter("ignore")
                    env = gym.make(env_id)
            except Exception as error:  # an env this machine cannot make: no normalized score for it
                print(f"warning: random policy of {env_id} not measured: {error}", file=sys.stderr)
                continue
            env.action_space.seed(0)
            returns = []
            for episode in range(RANDOM_EPISODES):
                env.reset(seed=episode)
                total, done, steps = 0.0, False, 0
                while not done and steps < 10_000:  # 10,000 steps cap an env without a time limit
                    _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                    total, done, steps = total + float(reward), terminated or truncated, steps + 1
                returns.append(total)
            env.close()
            recorded[env_id] = {"return_mean": round(float(np.mean(returns)), 3),
                                "return_std": round(float(np.std(returns)), 3), "episodes": RANDOM_EPISODES}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(recorded, f, indent=1, sort_keys=True)
    return recorded


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


def verdict(spec: dict, stats: dict | None, expected: int, values: list) -> str:
    """PASS / FAIL against the threshold on the training return; 'missing' without every seed's run;
    '-' without a threshold (the seeds column says how many runs there are)."""
    if spec.get("threshold") is None:
        return "-"
    if len(values) < expected:
        return "missing"
    if stats is None or stats["n"] < len(values):
        return "FAIL"  # a run without a single finished episode
    value = min(values) if spec.get("rule") == "each" else stats["iqm"]
    return "PASS" if value >= spec["threshold"] else "FAIL"


def cell(stats: dict | None, digits: int = 1) -> str:
    return "n/a" if stats is None else f"{stats['iqm']:.{digits}f} [{stats['low']:.{digits}f}, {stats['high']:.{digits}f}]"


def summarize(grid: dict, records: list[dict], seeds: list[int] | None) -> list[dict]:
    """One row per (env, algo) of the grid: its records and the statistics of both metrics. A row
    with fewer runs than `seeds` is 'missing'; with seeds None, each row is judged on its own runs."""
    rows = []
    for env_id in sorted(grid):
        for algo in sorted(grid[env_id]):
            spec = grid[env_id][algo]
            mine = sorted((r for r in records if r["algo"] == algo and r["env_id"] == env_id), key=lambda r: r["seed"])
            train = [r["final_return_mean"] for r in mine]
            stats = {m: seed_stats([r[key] for r in mine]) for m, (key, _) in METRICS.items()}
            rows.append({"env_id": env_id, "algo": algo, "spec": spec, "records": mine, "stats": stats,
                         "verdict": verdict(spec, stats["train"], len(mine) if seeds is None else len(seeds), train)})
    return rows


def stats_cells(stats: dict | None) -> str:
    return (f"{stats['n']} | {cell(stats)} | {stats['mean']:.1f} ± {stats['std']:.1f} | {stats['median']:.1f}"
            if stats else "0 | n/a | n/a | n/a")


def reference_cell(spec: dict, metric: str) -> str:
    """The reference, marked where it reports the other metric."""
    ref = spec.get("reference", "")
    other = spec.get("reference_metric", metric)
    return ref if not ref or other == metric else f"({'training' if other == 'train' else 'evaluation'}-return figure: {ref})"


def write_report(suite: str, rows: list[dict], records: list[dict], randoms: dict, aggregate: dict,
                 out_dir: str, mixed: bool, code: dict, comparison: dict | None = None) -> str:
    commands = sorted({r["command"] for r in records})
    machines = collections.defaultdict(set)
    for r in records:
        machines[r["machine"]].add(r["algo"])
    title = f"{suite} suite" + (f", variant `{shlex.join(comparison['flags'])}`" if comparison else "")
    lines = [f"# Benchmark: {title}", ""]
    if mixed:
        lines += ["**MIXED CODE: these runs were made by different versions of a script (aggregated with "
                  f"--allow-mixed): {describe_code(code)}. Do not read the rows as one measurement.**", ""]
    if comparison and comparison["mixed"]:
        lines += ["**MIXED CODE: the suite's own records and this variant's runs were made by different versions of "
                  "a script (compared with --allow-mixed): the comparison below mixes a code change with the flags.**", ""]
    lines += [
        f"- code of the runs: {describe_code(code)}",
        "- made by: " + ("; ".join(f"`{c}`" for c in commands) or "no runs"),
        "- machine of the runs: " + ("; ".join(f"{m} ({', '.join(sorted(a))})" for m, a in sorted(machines.items())) or "none")
        + "; one torch thread per run, CPU",
        f"- report written {datetime.date.today().isoformat()} by commit `{commit()}`",
        "- statistics over seeds: IQM = interquartile mean, with its 95% stratified-bootstrap confidence interval "
        f"(rliable, {BOOTSTRAP_REPS:,} resamples; with 2 seeds it is their range); mean ± std (population std) and median",
        "- thresholds are checked on the training return: rule `iqm` = the IQM across seeds must reach it, "
        "rule `each` = every seed must",
        "",
        f"## Training return: {METRICS['train'][1].split(': ', 1)[1]}",
        "",
        "| env | algo | steps | seeds | IQM [95% CI] | mean ± std | median | threshold | rule | result | reference |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for row in rows:
        spec = row["spec"]
        threshold, rule = ("-", "-") if spec.get("threshold") is None else (str(spec["threshold"]), spec.get("rule", "iqm"))
        lines.append(f"| {row['env_id']} | {row['algo']} | {spec['timesteps']:,} | {stats_cells(row['stats']['train'])} | "
                     f"{threshold} | {rule} | {row['verdict']} | {reference_cell(spec, 'train')} |")
    lines += ["", f"## Deterministic evaluation return: {METRICS['eval'][1].split(': ', 1)[1]}", "",
              "| env | algo | steps | seeds | IQM [95% CI] | mean ± std | median | reference |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        lines.append(f"| {row['env_id']} | {row['algo']} | {row['spec']['timesteps']:,} | "
                     f"{stats_cells(row['stats']['eval'])} | {reference_cell(row['spec'], 'eval')} |")
    lines += ["", "## Normalized score per algorithm, over the suite's envs", "",
              "0 = a uniform-random policy's mean return (random.json), 1 = the reference figure of thresholds.json, "
              "on the metric that reference reports (named after each env: train or eval); IQM over all (env, seed) "
              "scores of the envs the script has run, on the seeds that every one of them has, with a 95% stratified-bootstrap CI (seeds resampled within each env).", "",
              "| algo | envs (metric) | seeds | IQM [95% CI] |", "| --- | --- | ---: | ---: |"]
    for algo, agg in aggregate.items():
        lines.append(f"| {algo} | {', '.join(agg['envs'])} | {len(agg['seeds'])} | {cell(agg, 2)} |")
    if not aggregate:
        lines.append("| none | no env with a reference figure and a finished run | | |")
    lines += ["", "Random policy: " + ", ".join(f"{e} {randoms[e]['return_mean']:.1f} ({randoms[e]['episodes']} episodes)"
                                               for e in sorted(randoms) if any(r["env_id"] == e for r in rows)), ""]
    if comparison:
        lines += comparison_lines(suite, comparison)
    lines += ["## Per seed (training / evaluation return, steps/s)", ""]
    for row in rows:
        per_seed = ", ".join(f"{r['seed']}: {fmt(r['final_return_mean'])} / {fmt(r['eval_return_mean'])} ({fmt(r['sps'], 0)})"
                             for r in row["records"])
        lines.append(f"- {row['env_id']} {row['algo']}: {per_seed or 'no runs'}")
    lines += ["", *[f"![{e}]({file_name(e)}.png)" for e in sorted({r['env_id'] for r in rows if r['records']})], ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def comparison_lines(suite: str, comparison: dict) -> list[str]:
    """A variant report's section: its rows beside the suite's own records (compare_to_defaults)."""
    lines = [f"## Against the defaults: the {suite} suite's own records", "",
             f"The same grid with the scripts' default flags (benchmarks/results/{suite}/runs.jsonl; code: "
             f"{comparison['code']}) beside this variant's runs: IQM [95% CI] of each, and the probability of "
             "improvement P(variant > defaults): the chance that a run of the variant scores above a run of the "
             "defaults, ties counting half (rliable; 0.5 = no difference), with its 95% stratified-bootstrap CI. "
             "A CI wholly above 0.5 shows the variant better on that metric; wholly below, worse. The `over` rows "
             "average P over the envs, on the seeds that each side has for all of them.", "",
             "| metric | env | algo | defaults: seeds, IQM [95% CI] | variant: seeds, IQM [95% CI] | P(variant > defaults) [95% CI] |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for row in comparison["rows"]:
        sides = ([f"{row[s]['n']}, {cell(row[s])}" for s in ("defaults", "variant")] if row["variant"]
                 else [f"{row['n'][1]} per env", f"{row['n'][0]} per env"])
        p, low, high = row["p"]
        lines.append(f"| {'training' if row['metric'] == 'train' else 'evaluation'} | {row['env']} | {row['algo']} | "
                     f"{sides[0]} | {sides[1]} | {p:.2f} [{low:.2f}, {high:.2f}] |")
    if not comparison["rows"]:
        lines.append("| - | no (env, algo) with runs on both sides | | | | |")
    if comparison["one_side"]:
        lines += ["", "Not compared (runs on one side only): " + ", ".join(f"{e} {a}" for e, a in comparison["one_side"]) + "."]
    return lines + [""]


def fmt(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def file_name(env_id: str) -> str:
    return env_id.replace(":", "_").replace("/", "_")


def iqm_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of a (seeds, points) array: the IQM and the 25th and 75th percentiles (NaN-aware)."""
    with warnings.catch_warnings():  # points before any seed's first value are all-NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(curves, [25, 75], axis=0)
    center = np.array([iqm(c[np.isfinite(c)]) if np.isfinite(c).any() else np.nan for c in curves.T])
    return center, low, high


def plot_curves(rows: list[dict], out_dir: str) -> list[str]:
    """Per env, two panels: the training return on the step grid and the evaluation return at the
    steps it was measured (the last point the final evaluation), IQM across seeds with the 25-75%
    band (inside the returns the runs reached), one x axis for all scripts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for env_id in sorted({r["env_id"] for r in rows if r["records"]}):  # no empty plots
        mine = [r for r in rows if r["env_id"] == env_id and r["records"]]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100, sharex=True)
        for row in mine:
            color, label = ALGO_COLORS.get(row["algo"]), f"{row['algo']} ({len(row['records'])} seeds)"
            center, low, high = iqm_band(np.asarray([r["train_curve"] for r in row["records"]], dtype=np.float64))
            grid = train_grid(row["spec"]["timesteps"])
            axes[0].plot(grid, center, color=color, label=label)
            axes[0].fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
            if row["spec"].get("threshold") is not None:
                axes[0].axhline(row["spec"]["threshold"], color=color, linestyle=":", linewidth=1,
                                label=f"{row['algo']} threshold ({row['spec']['rule']}) {row['spec']['threshold']}")
            evals = [r["eval_curve"] for r in row["records"] if r["eval_curve"]]
            if evals:  # the same steps for every seed of a script: whole batches past each --eval-every
                points = min(len(e) for e in evals)
                center, low, high = iqm_band(np.asarray([[v if v is not None else np.nan for _, v in e[:points]]
                                                         for e in evals], dtype=np.float64))
                steps = [step for step, _ in evals[0][:points]]
                axes[1].plot(steps, center, color=color, marker="o", markersize=3, label=label)
                axes[1].fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
        for ax, title in zip(axes, ["training return (last episodes)", "deterministic evaluation return"]):
            ax.set_title(title, fontsize=10)
            ax.set_xlim(0, max((r["spec"]["timesteps"] for r in mine), default=1) * 1.02)
            ax.set_xlabel("environment steps")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize=8)
        axes[0].set_ylabel("episodic return (IQM over seeds, band: 25-75%)")
        fig.suptitle(env_id)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{file_name(env_id)}.png")
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--suite", help="a suite of thresholds.json (quick, mujoco), reported whole; or a name for a "
                                        "custom grid (default: custom)")
    parser.add_argument("--envs", nargs="+", help="run only these envs of the suite; or a custom grid's envs (with --steps)")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), help="the scripts to run")
    parser.add_argument("--steps", type=int, help="a custom grid's training steps per run (a suite's are in thresholds.json)")
    parser.add_argument("--seeds", default="10", help="N = seeds 1..N, FIRST-LAST, or a comma-separated list")
    parser.add_argument("--backend", choices=["local", "ray"], default="local",
                        help="local processes, or Ray tasks (needs `pip install ray`)")
    parser.add_argument("--address", help="Ray cluster address (e.g. auto, ray://host:10001); default: a local Ray instance")
    parser.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1),
                        help="runs at a time (local backend; the CPUs of a local Ray instance)")
    parser.add_argument("--runs-dir", default=os.path.join(BENCH, "runs"), help="where run directories go")
    parser.add_argument("--results-dir", default=os.path.join(BENCH, "results"), help="where reports and records go")
    parser.add_argument("--thresholds", default=os.path.join(BENCH, "thresholds.json"), help="suites, budgets, thresholds, references")
    parser.add_argument("--flags", help="a variant: script flags added to every run, quoted as one argument (e.g. "
                                         "--flags '--cg-iters 25'); its runs, records and report go to {suite}/variants/{name}/, "
                                         "the report beside the suite's own records")
    parser.add_argument("--dry-run", action="store_true", help="print each run's command and exit")
    parser.add_argument("--report-only", action="store_true", help="run nothing: report the finished runs and committed records")
    parser.add_argument("--allow-mixed", action="store_true", help="aggregate runs of different code (the report says so)")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.address and args.backend != "ray":
        parser.error("--address is for --backend ray")
    unknown = [a for a in args.algos if a not in ALGOS]
    if unknown:
        parser.error(f"--algos: no such script: {', '.join(unknown)} (choose from {', '.join(ALGOS)})")
    return args


def check_envs(env_ids: list[str]) -> None:
    """Each env can be made here (a typo fails at once, not in every run)."""
    import gymnasium as gym

    for env_id in env_ids:
        try:
            with warnings.catch_warnings():  # the runs say it (e.g. gymnasium's "v4 is out of date")
                warnings.simplefilter("ignore")
                gym.make(env_id).close()
        except Exception as error:
            raise HarnessError(f"--envs: cannot make {env_id}: {(str(error).strip().splitlines() or [type(error).__name__])[0]}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        seeds = parse_seeds(args.seeds)
        suite, report_grid, run_grid = plan_grid(load_suites(args.thresholds), args.suite, args.envs, args.algos, args.steps)
        variant = parse_variant(args.flags)
        if variant:  # a variant reports the scripts it runs, not the whole suite
            report_grid = {e: {a: spec for a, spec in per_algo.items() if a in args.algos} for e, per_algo in report_grid.items()}
            report_grid = {e: per_algo for e, per_algo in report_grid.items() if per_algo}
        where = os.path.join(suite, "variants", variant_name(variant)) if variant else suite
        runs_dir, out_dir = os.path.join(args.runs_dir, where), os.path.join(args.results_dir, where)
        jobs = plan_jobs(run_grid, seeds, runs_dir, variant)
        if args.dry_run:
            for job in jobs:
                print(shlex.join([sys.executable, os.path.join(ROOT, f"{job['algo']}.py"), *script_flags(job, None, job["out"])]))
            return 0
        for package in ["rliable"] + (["ray"] if args.backend == "ray" and not args.report_only else []):
            if importlib.util.find_spec(package) is None:
                raise HarnessError(f"{package} is missing: pip install -r requirements-dev.txt")
        records_path = os.path.join(out_dir, "runs.jsonl")
        saved = {record_key(r): r for r in read_records(records_path)}
        others = sorted({shlex.join(r.get("flags", [])) for r in saved.values()} - {shlex.join(variant)})
        if others:  # two flag lists that name the same folder
            raise HarnessError(f"{records_path} holds records of other flags ({'; '.join(repr(o) for o in others)}), "
                               f"not of {shlex.join(variant)!r}")
        if not args.report_only:
            check_envs(list(run_grid))
            run_jobs(jobs, args.backend, args.workers, args.address, command, saved)
        records = collect_records(plan_jobs(report_grid, seeds, runs_dir, variant), saved)
        code, mixed = code_of(records)
        if mixed and not args.allow_mixed:
            raise HarnessError(f"the runs were made by different code ({describe_code(code)}): rerun them with one "
                               "version of each script, or report them anyway with --allow-mixed")
        comparison = None
        if variant:  # the suite's own records of the scripts this variant has runs of, at the same budgets
            defaults = [r for r in at_budget(read_records(os.path.join(args.results_dir, suite, "runs.jsonl")), report_grid)
                        if r["algo"] in code and r["seed"] in seeds]
            both, differ = code_of(records + defaults)
            if differ and not mixed and not args.allow_mixed:
                raise HarnessError(f"the suite's own records and this variant's runs were made by different code "
                                   f"({describe_code(both)}): the comparison would mix a code change with the flags; "
                                   "rerun one side, or report anyway with --allow-mixed")
            comparison = {"flags": variant, "code": describe_code(code_of(defaults)[0]), "mixed": differ,
                          **compare_to_defaults(report_grid, records, defaults)}
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the finished runs are kept; the same command continues", file=sys.stderr, flush=True)
        return 130
    write_records(records_path, saved, records)
    randoms = random_returns(sorted(report_grid), os.path.join(args.results_dir, suite, "random.json"))  # the suite's, for a variant too
    rows = summarize(report_grid, records, seeds)
    aggregate = aggregate_scores(records, report_grid, randoms)
    report = write_report(suite, rows, records, randoms, aggregate, out_dir, mixed, code, comparison)
    plot_curves(rows, out_dir)
    print(f"wrote {report}")
    for row in rows:
        print(f"{row['env_id']:22s} {row['algo']:10s} train {cell(row['stats']['train']):>24s}  "
              f"eval {cell(row['stats']['eval']):>24s}  {row['verdict']}")
    return 1 if any(r["verdict"] in ("FAIL", "missing") and r["spec"].get("threshold") is not None for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
