"""The benchmark harness on tiny fake runs: parsing, aggregation, report, plots and exit code."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "benchmarks", "run.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

CONFIG = {"quick": {
    "Fake-v0": {"ppo": {"timesteps": 1000, "threshold": 100, "rule": "each", "reference": "ref A"}},
    "Other-v1": {"ppo": {"timesteps": 1000, "threshold": 50, "rule": "mean", "reference": "ref B"},
                 "trpo": {"timesteps": 1000, "threshold": None, "rule": "mean", "reference": "ref C"}},
}}


def fake_run(runs_dir, algo, env_id, seed, returns, name="run"):
    """A finished run as the scripts write it: metrics.jsonl with episodes, and summary.json."""
    run_dir = os.path.join(runs_dir, "quick", algo, env_id, f"seed{seed}", name)
    os.makedirs(run_dir)
    steps = np.linspace(100, 1000, len(returns)).astype(int)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        for step, ret in zip(steps, returns):
            f.write(json.dumps({"global_step": int(step), "time": 0.1, "charts/episodic_return": ret,
                                "charts/episodic_length": 10}) + "\n")
            f.write(json.dumps({"global_step": int(step), "time": 0.1, "losses/approx_kl": 0.01}) + "\n")
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump({"algo": algo, "env_id": env_id, "seed": seed, "total_timesteps": 1000, "global_step": 1000,
                   "wall_time_s": 12.0, "sps": 83.3, "episodes": len(returns),
                   "final_return_mean": float(np.mean(returns[-100:]))}, f)


def harness(tmp_path, *extra):
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps(CONFIG))
    return bench.main(["--suite", "quick", "--algos", "ppo", "trpo", "--seeds", "2", "--report-only",
                       "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
                       "--thresholds", str(thresholds), *extra])


def test_binned_curve_means_each_window_and_carries_forward():
    steps = np.array([10.0, 20.0, 35.0, 90.0])
    returns = np.array([1.0, 3.0, 5.0, 7.0])
    curve = bench.binned_curve(steps, returns, np.array([25.0, 50.0, 75.0, 100.0]))
    np.testing.assert_allclose(curve, [2.0, 5.0, 5.0, 7.0])
    assert np.isnan(bench.binned_curve(steps, returns, np.array([5.0, 10.0]))[0])


def test_all_thresholds_met_exit_code_0_report_and_plots(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "ppo", "Fake-v0", 1, [100.0, 120.0])
    fake_run(runs, "ppo", "Fake-v0", 2, [100.0, 104.0])
    fake_run(runs, "ppo", "Other-v1", 1, [40.0, 60.0])
    fake_run(runs, "ppo", "Other-v1", 2, [50.0, 70.0])
    fake_run(runs, "trpo", "Other-v1", 1, [1.0, 2.0])
    assert harness(tmp_path) == 0
    report = (tmp_path / "results" / "quick" / "report.md").read_text()
    assert "| Fake-v0 | ppo | 1,000 | 1,2 | 106.0 ± 4.0 | 100 | each | PASS | ref A |" in report
    assert "| Other-v1 | ppo | 1,000 | 1,2 | 55.0 ± 5.0 | 50 | mean | PASS | ref B |" in report
    assert "| Other-v1 | trpo | 1,000 | 1 | 1.5 ± 0.0 | - | mean | - | ref C |" in report
    assert "commit `" in report and "cores" in report
    assert (tmp_path / "results" / "quick" / "Fake-v0.png").stat().st_size > 1000
    assert (tmp_path / "results" / "quick" / "Other-v1.png").exists()
    curves = json.loads((tmp_path / "results" / "quick" / "curves.json").read_text())
    assert {c["algo"] for c in curves} == {"ppo", "trpo"}


def test_a_missed_threshold_gives_exit_code_1(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "ppo", "Fake-v0", 1, [200.0, 300.0])
    fake_run(runs, "ppo", "Fake-v0", 2, [90.0, 99.0])  # 'each': one seed below 100 fails the row
    fake_run(runs, "ppo", "Other-v1", 1, [100.0])
    fake_run(runs, "ppo", "Other-v1", 2, [100.0])
    assert harness(tmp_path) == 1
    report = (tmp_path / "results" / "quick" / "report.md").read_text()
    assert "| Fake-v0 | ppo | 1,000 | 1,2 | 172.2 ± 77.8 | 100 | each | FAIL |" in report
    assert "| Other-v1 | ppo | 1,000 | 1,2 | 100.0 ± 0.0 | 50 | mean | PASS |" in report


def test_missing_runs_count_as_a_miss(tmp_path):
    fake_run(tmp_path / "runs", "ppo", "Fake-v0", 1, [200.0])
    fake_run(tmp_path / "runs", "ppo", "Fake-v0", 2, [200.0])
    assert harness(tmp_path) == 1  # Other-v1 has no ppo runs


def test_unfinished_runs_are_rerun_and_finished_ones_are_not(tmp_path):
    runs = tmp_path / "runs" / "quick"
    fake_run(tmp_path / "runs", "ppo", "Fake-v0", 1, [200.0])
    os.makedirs(runs / "ppo" / "Fake-v0" / "seed2" / "interrupted")  # no summary.json
    jobs = bench.plan_jobs(CONFIG["quick"], ["ppo"], [1, 2], str(runs))
    todo = [j for j in jobs if bench.completed_run(j["out"]) is None]
    assert [(j["env_id"], j["seed"]) for j in todo] == [("Fake-v0", 2), ("Other-v1", 1), ("Other-v1", 2)]
    assert "--total-timesteps" in todo[0]["cmd"] and "1000" in todo[0]["cmd"]


def test_dry_run_prints_one_command_per_run():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--suite", "mujoco",
                           "--algos", "ppo", "--seeds", "2", "--dry-run"], capture_output=True, text=True)
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 6 and all("ppo.py" in line and "--total-timesteps 1000000" in line for line in lines)


def test_thresholds_file_is_complete():
    config = bench.load_thresholds()
    assert set(config) == {"quick", "mujoco"}
    for suite in config.values():
        for per_algo in suite.values():
            for entry in per_algo.values():
                assert entry["timesteps"] > 0 and entry["rule"] in ("each", "mean") and entry["reference"]


@pytest.mark.parametrize("bad", [["--seeds", "0"], ["--workers", "0"]])
def test_bad_harness_arguments(bad):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--suite", "quick", "--dry-run", *bad])
    assert exc.value.code == 2


def test_keep_other_algos_renews_one_script_and_keeps_the_other_rows_with_their_machine(tmp_path):
    runs = tmp_path / "runs"
    for seed in (1, 2):
        fake_run(runs, "ppo", "Fake-v0", seed, [100.0, 120.0])
        fake_run(runs, "ppo", "Other-v1", seed, [60.0])
    fake_run(runs, "trpo", "Other-v1", 1, [1.0, 2.0])
    assert harness(tmp_path) == 0
    curves_path = tmp_path / "results" / "quick" / "curves.json"
    old = json.loads(curves_path.read_text())
    # rows written before rows recorded their machine: it comes from the old report's header
    curves_path.write_text(json.dumps([{k: v for k, v in r.items() if k != "machine"} for r in old]))
    shutil.rmtree(runs / "quick" / "ppo")  # the ppo runs are gone; only the report knows them
    shutil.rmtree(runs / "quick" / "trpo" / "Other-v1" / "seed1")
    fake_run(runs, "trpo", "Other-v1", 1, [7.0, 9.0])
    assert harness(tmp_path, "--algos", "trpo", "--keep-other-algos") == 0
    report = (tmp_path / "results" / "quick" / "report.md").read_text()
    assert "| Fake-v0 | ppo | 1,000 | 1,2 | 110.0 ± 0.0 | 100 | each | PASS | ref A |" in report
    assert "| Other-v1 | trpo | 1,000 | 1 | 8.0 ± 0.0 | - | mean | - | ref C |" in report
    assert "| Other-v1 | trpo | 1,000 | 1 | 1.5" not in report
    machine = bench.machine()
    assert f"- machine of the runs: {machine} (ppo, trpo)" in report
    assert {(c["algo"], c["env_id"]) for c in json.loads(curves_path.read_text())} == {
        ("ppo", "Fake-v0"), ("ppo", "Other-v1"), ("trpo", "Other-v1")}
    # without the flag the other scripts' rows are dropped
    assert harness(tmp_path, "--algos", "trpo") == 0
    assert {c["algo"] for c in json.loads(curves_path.read_text())} == {"trpo"}


def test_a_stopped_run_is_resumed_not_counted_as_done(tmp_path):
    out = tmp_path / "runs" / "quick" / "ppo" / "Fake-v0" / "seed1"
    job = {"algo": "ppo", "env_id": "Fake-v0", "seed": 1, "out": str(out), "cmd": ["python", "ppo.py", "--seed", "1"]}
    assert bench.completed_run(str(out)) is None and bench.job_command(job) == job["cmd"]  # nothing yet
    stopped = out / "Fake-v0__ppo__1__100"
    stopped.mkdir(parents=True)
    for name, content in [("config.json", {}), ("model.pt", {}), ("summary.json", {"interrupted": True})]:
        (stopped / name).write_text(json.dumps(content))
    assert bench.completed_run(str(out)) is None
    assert bench.job_command(job) == ["python", "ppo.py", "--resume", str(stopped)]
    (stopped / "summary.json").write_text(json.dumps({"interrupted": False}))
    assert bench.completed_run(str(out)) == str(stopped) and bench.job_command(job) == job["cmd"]
    killed = out / "Fake-v0__ppo__1__200"  # a kill leaves a checkpoint and no summary
    killed.mkdir()
    for name in ("config.json", "model.pt"):
        (killed / name).write_text("{}")
    assert bench.job_command(job) == ["python", "ppo.py", "--resume", str(killed)]
