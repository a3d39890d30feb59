"""The benchmark harness: grid and flags, statistics on fixed data, records, reports, code mixing,
and both backends on a tiny real suite (the Ray one on a local Ray instance)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "benchmarks", "run.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

SUITES = {"quick": {
    "Fake-v0": {"ppo": {"timesteps": 1000, "threshold": 100, "rule": "each", "reference": "ref A",
                        "reference_return": 200, "reference_metric": "train"}},
    "Other-v1": {"ppo": {"timesteps": 1000, "threshold": 50, "rule": "iqm", "reference": "ref B",
                         "reference_return": 100, "reference_metric": "eval"},
                 "trpo": {"timesteps": 1000, "threshold": None, "rule": "iqm", "reference": "ref C"}},
}}
RANDOM = {"Fake-v0": {"return_mean": 0.0, "return_std": 0.0, "episodes": 100},
          "Other-v1": {"return_mean": 20.0, "return_std": 0.0, "episodes": 100}}


@pytest.fixture(autouse=True)
def few_resamples(monkeypatch):
    monkeypatch.setattr(bench, "BOOTSTRAP_REPS", 500)


def fake_run(tmp_path, algo, env_id, seed, returns, eval_return=None, commit="abc1234", sha256=None, name="run",
             where="quick"):
    """A finished run as the scripts and the harness leave it: metrics.jsonl with training episodes
    and evaluations, summary.json, config.json, and the harness's harness.json."""
    out = os.path.join(tmp_path, "runs", where, algo, env_id, "1000", f"seed{seed}")
    run_dir = os.path.join(out, name)
    os.makedirs(run_dir)
    eval_return = float(np.mean(returns)) if eval_return is None else eval_return
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        for step, ret in zip(np.linspace(100, 1000, len(returns)).astype(int), returns):
            f.write(json.dumps({"global_step": int(step), "time": 0.1, "charts/episodic_return": ret}) + "\n")
        f.write(json.dumps({"global_step": 1024, "time": 0.2, "eval/return_mean": eval_return}) + "\n")
    summary = {"algo": algo, "env_id": env_id, "seed": seed, "total_timesteps": 1024, "global_step": 1024,
               "wall_time_s": 12.0, "sps": 85.3, "episodes": len(returns), "interrupted": False,
               "final_return_mean": float(np.mean(returns[-100:])), "eval_return_mean": eval_return, "eval_return_std": 0.0}
    for name_, content in [("summary.json", summary), ("config.json", {"sha256": sha256 or f"sha-{algo}"})]:
        with open(os.path.join(run_dir, name_), "w") as f:
            json.dump(content, f)
    with open(os.path.join(out, "harness.json"), "w") as f:
        json.dump({"commit": commit, "command": "python benchmarks/run.py --suite quick", "machine": "m", "backend": "local"}, f)


def harness(tmp_path, *extra, algos=("ppo", "trpo"), seeds="2"):
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps(SUITES))
    results = tmp_path / "results" / "quick"
    results.mkdir(parents=True, exist_ok=True)
    (results / "random.json").write_text(json.dumps(RANDOM))
    return bench.main(["--suite", "quick", "--algos", *algos, "--seeds", seeds, "--report-only",
                       "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
                       "--thresholds", str(thresholds), *extra])


def report(tmp_path):
    return (tmp_path / "results" / "quick" / "report.md").read_text()


def test_binned_curve_means_each_window_and_carries_forward():
    steps = np.array([10.0, 20.0, 35.0, 90.0])
    returns = np.array([1.0, 3.0, 5.0, 7.0])
    curve = bench.binned_curve(steps, returns, np.array([25.0, 50.0, 75.0, 100.0]))
    np.testing.assert_allclose(curve, [2.0, 5.0, 5.0, 7.0])
    assert np.isnan(bench.binned_curve(steps, returns, np.array([5.0, 10.0]))[0])


def test_seed_statistics_against_hand_computed_values():
    stats = bench.seed_stats([8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0])
    assert stats["iqm"] == pytest.approx(4.5)  # the middle half, 3..6
    assert stats["mean"] == pytest.approx(4.5) and stats["median"] == pytest.approx(4.5)
    assert stats["std"] == pytest.approx(np.sqrt(5.25)) and stats["n"] == 8
    assert 1.0 <= stats["low"] < 4.5 < stats["high"] <= 8.0
    assert bench.seed_stats([1.0, 2.0, 3.0, 100.0])["iqm"] == pytest.approx(2.5)  # an outlier seed does not count
    # two seeds a < b: a resample is (a, a), (b, b) or (a, b) with probabilities 1/4, 1/4, 1/2, so the
    # bootstrap IQM is a, b or (a + b) / 2 and its 2.5% and 97.5% percentiles are exactly a and b
    two = bench.seed_stats([20.4, 21.2, None])
    assert (two["iqm"], two["low"], two["high"], two["n"]) == pytest.approx((20.8, 20.4, 21.2, 2))
    values = [3.0, 9.0, 1.0, 7.0, 4.0, 8.0, 2.0]
    assert bench.seed_stats(values) == bench.seed_stats(values[::-1])  # the same interval, whatever the order
    same = bench.seed_stats([5.0, 5.0, 5.0])
    assert (same["low"], same["high"]) == (5.0, 5.0)
    assert bench.seed_stats([None]) is None


def test_normalized_scores_and_their_aggregate_over_envs():
    assert bench.normalized(60.0, 20.0, 100.0) == pytest.approx(0.5)
    assert bench.normalized(None, 20.0, 100.0) is None
    records = [{"algo": "ppo", "env_id": "Fake-v0", "seed": s, "final_return_mean": f, "eval_return_mean": 0.0}
               for s, f in [(1, 0.0), (2, 100.0), (3, 200.0), (4, 400.0)]]
    records += [{"algo": "ppo", "env_id": "Other-v1", "seed": s, "final_return_mean": 0.0, "eval_return_mean": e}
                for s, e in [(1, 20.0), (2, 60.0), (3, 100.0)]]  # seed 4 missing: the aggregate uses seeds 1-3
    agg = bench.aggregate_scores(records, SUITES["quick"], RANDOM)["ppo"]
    assert agg["envs"] == ["Fake-v0 (train)", "Other-v1 (eval)"] and agg["seeds"] == [1, 2, 3]
    # scores (Fake-v0 on training returns / 200, Other-v1 on evaluation returns: (e - 20) / 80):
    # 0, 0.5, 1 and 0, 0.5, 1; the IQM of the six drops one from each end: mean(0, 0.5, 0.5, 1) = 0.5
    assert agg["iqm"] == pytest.approx(0.5) and agg["low"] <= 0.5 <= agg["high"]


def test_the_confidence_interval_resamples_seeds_within_each_env():
    # 3 seeds x 2 envs, every seed scoring 0 on one env and 1 on the other: resampling seeds within
    # each env always gives three 0s and three 1s, IQM 0.5, so a stratified CI is exactly [0.5, 0.5]
    # (resampling the six scores as one pool would not be)
    assert bench.iqm_interval(np.array([[0.0, 1.0]] * 3)) == pytest.approx((0.5, 0.5, 0.5))


def test_the_iqm_is_rliables_to_the_last_digit():
    from rliable import metrics

    rng = np.random.default_rng(0)
    matrices = [rng.normal(1000.0, 300.0, size=shape) for shape in [(1, 1), (2, 1), (3, 1), (7, 1), (10, 1), (10, 3), (9, 4)]]
    matrices += [np.round(rng.normal(size=(10, 3))), np.array([[5.0], [5.0], [1.0], [5.0]])]  # ties
    for scores in matrices:
        assert bench.iqm(scores) == metrics.aggregate_iqm(scores)
        resampled = scores[rng.integers(0, len(scores), size=len(scores))]  # as a bootstrap calls it
        assert bench.iqm(resampled) == metrics.aggregate_iqm(resampled)


@pytest.mark.parametrize("text, seeds", [("3", [1, 2, 3]), ("4-6", [4, 5, 6]), ("1,4,9", [1, 4, 9]), ("0-1", [0, 1])])
def test_seeds_flag(text, seeds):
    assert bench.parse_seeds(text) == seeds


def test_thresholds_checked_on_the_stated_statistic_report_plots_and_exit_code(tmp_path):
    fake_run(tmp_path, "ppo", "Fake-v0", 1, [100.0, 120.0])
    fake_run(tmp_path, "ppo", "Fake-v0", 2, [100.0, 104.0])
    fake_run(tmp_path, "ppo", "Other-v1", 1, [40.0, 60.0], eval_return=60.0)
    fake_run(tmp_path, "ppo", "Other-v1", 2, [50.0, 70.0], eval_return=100.0)
    fake_run(tmp_path, "trpo", "Other-v1", 1, [1.0, 2.0])
    fake_run(tmp_path, "trpo", "Other-v1", 2, [1.0, 2.0])
    assert harness(tmp_path) == 0
    text = report(tmp_path)
    assert "| Fake-v0 | ppo | 1,000 | 2 | 106.0 [102.0, 110.0] | 106.0 ± 4.0 | 106.0 | 100 | each | PASS | ref A |" in text
    assert "| Other-v1 | ppo | 1,000 | 2 | 55.0 [50.0, 60.0] | 55.0 ± 5.0 | 55.0 | 50 | iqm | PASS |" in text
    assert "| Other-v1 | trpo | 1,000 | 2 | 1.5 [1.5, 1.5] | 1.5 ± 0.0 | 1.5 | - | - | - | ref C |" in text
    assert "| Other-v1 | ppo | 1,000 | 2 | 80.0 [60.0, 100.0] | 80.0 ± 20.0 | 80.0 | ref B |" in text  # evaluation
    assert "| Fake-v0 | ppo | 1,000 | 2 | 106.0 [102.0, 110.0] | 106.0 ± 4.0 | 106.0 | (training-return figure: ref A) |" in text
    # normalized: Fake-v0 0.55, 0.51 (training / 200); Other-v1 0.5, 1.0 ((eval - 20) / 80): IQM of 4 = mean of middle 2
    assert "| ppo | Fake-v0 (train), Other-v1 (eval) | 2 | 0.53 [" in text
    assert "code of the runs: ppo.py sha256 sha-ppo (commit abc1234); trpo.py sha256 sha-trpo (commit abc1234)" in text
    assert "MIXED" not in text
    assert "made by: `python benchmarks/run.py --suite quick`" in text
    assert (tmp_path / "results" / "quick" / "Fake-v0.png").stat().st_size > 1000
    records = bench.read_records(str(tmp_path / "results" / "quick" / "runs.jsonl"))
    assert len(records) == 6 and records[0]["eval_curve"] == [[1024, 110.0]]

    shutil.rmtree(tmp_path / "runs" / "quick" / "ppo" / "Fake-v0" / "1000" / "seed2")
    fake_run(tmp_path, "ppo", "Fake-v0", 2, [90.0, 99.0])  # rule 'each': one seed below 100 fails the row
    assert harness(tmp_path) == 1
    assert "| Fake-v0 | ppo | 1,000 | 2 | 102.2 [94.5, 110.0] | 102.2 ± 7.8 | 102.2 | 100 | each | FAIL |" in report(tmp_path)


def test_the_committed_records_alone_rebuild_the_report(tmp_path):
    for seed in (1, 2):
        fake_run(tmp_path, "ppo", "Fake-v0", seed, [100.0 + seed, 120.0])
        fake_run(tmp_path, "ppo", "Other-v1", seed, [60.0])
    assert harness(tmp_path, algos=("ppo",)) == 0
    before = report(tmp_path)
    shutil.rmtree(tmp_path / "runs")
    for png in (tmp_path / "results" / "quick").glob("*.png"):
        png.unlink()
    assert harness(tmp_path, algos=("ppo",)) == 0
    written = [line for line in before.splitlines() if line.startswith("- report written")]
    assert [line for line in report(tmp_path).splitlines() if line not in written] == \
        [line for line in before.splitlines() if line not in written]
    assert "| Fake-v0 | ppo | 1,000 | 2 | 110.8 [110.5, 111.0] |" in before
    assert (tmp_path / "results" / "quick" / "Fake-v0.png").exists() and (tmp_path / "results" / "quick" / "Other-v1.png").exists()


def test_runs_of_different_code_are_refused_unless_allowed(tmp_path, capsys):
    fake_run(tmp_path, "ppo", "Fake-v0", 1, [150.0])
    fake_run(tmp_path, "ppo", "Fake-v0", 2, [150.0], commit="def5678")  # another commit, the same ppo.py
    fake_run(tmp_path, "ppo", "Other-v1", 1, [60.0])
    fake_run(tmp_path, "ppo", "Other-v1", 2, [60.0])
    assert harness(tmp_path, algos=("ppo",)) == 0
    assert "- code of the runs: ppo.py sha256 sha-ppo (commit abc1234, def5678)" in report(tmp_path)
    shutil.rmtree(tmp_path / "runs" / "quick" / "ppo" / "Fake-v0" / "1000" / "seed2")
    fake_run(tmp_path, "ppo", "Fake-v0", 2, [150.0], sha256="edited", commit="def5678")  # ppo.py changed
    (tmp_path / "results" / "quick" / "report.md").unlink()
    records_before = (tmp_path / "results" / "quick" / "runs.jsonl").read_text()
    assert harness(tmp_path, algos=("ppo",)) == 2
    assert (tmp_path / "results" / "quick" / "runs.jsonl").read_text() == records_before  # a refusal writes nothing
    err = capsys.readouterr().err
    assert err.startswith("error: the runs were made by different code (ppo.py sha256 sha-ppo (commit abc1234), "
                          "sha256 edited (commit def5678))") and err.count("\n") == 1
    assert not (tmp_path / "results" / "quick" / "report.md").exists()
    assert harness(tmp_path, "--allow-mixed", algos=("ppo",)) == 0
    assert report(tmp_path).splitlines()[2].startswith("**MIXED CODE")


def test_runs_in_the_committed_records_made_by_the_current_script_are_not_run_again(tmp_path, capsys, monkeypatch):
    spec = {"timesteps": 1000}
    jobs = [{"algo": "ppo", "env_id": "Fake-v0", "seed": s, "spec": spec, "out": str(tmp_path / f"seed{s}"), "flags": []}
            for s in (1, 2)]
    saved = {("ppo", "Fake-v0", 1, 1000): {"sha256": bench.script_sha256("ppo")},
             ("ppo", "Fake-v0", 2, 1000): {"sha256": "an older ppo.py"}}
    ran = []
    monkeypatch.setattr(bench, "run_local", lambda todo, workers, progress: ran.extend(todo))
    bench.run_jobs(jobs, "local", 1, None, "cmd", saved)
    assert [j["seed"] for j in ran] == [2]
    assert "1 of 2 runs already done (1 in the committed records); running 1" in capsys.readouterr().out


def test_a_variant_runs_its_flags_apart_and_is_reported_beside_the_defaults(tmp_path, capsys):
    jobs = bench.plan_jobs({"Fake-v0": {"ppo": {"timesteps": 1000}}}, [1], str(tmp_path), ["--x", "1"])
    assert jobs[0]["flags"][-2:] == ["--x", "1"] and jobs[0]["variant"] == ["--x", "1"]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--suite", "mujoco", "--envs",
                           "Hopper-v4", "--algos", "trpo", "--seeds", "1", "--flags", "--cg-iters 25", "--dry-run"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split().count("--cg-iters") == 1
    assert os.path.join("mujoco", "variants", "cg-iters_25", "trpo", "Hopper-v4") in proc.stdout
    for seed in (1, 2):  # the defaults, the suite's own records: Other-v1 has seed 1 only
        fake_run(tmp_path, "ppo", "Fake-v0", seed, [100.0 + seed])
    fake_run(tmp_path, "ppo", "Other-v1", 1, [50.0], eval_return=61.0)
    assert harness(tmp_path, algos=("ppo",)) == 1  # Other-v1 seed 2 missing
    fake_run(tmp_path, "ppo", "Fake-v0", 3, [500.0])  # a record outside the seeds compared below
    assert harness(tmp_path, algos=("ppo",), seeds="3") == 1
    defaults = (tmp_path / "results" / "quick" / "runs.jsonl").read_text()
    assert '"seed": 3' in defaults
    where = os.path.join("quick", "variants", "x_1")
    for seed in (1, 2):  # the variant: better on Fake-v0, a tie and a loss on Other-v1
        fake_run(tmp_path, "ppo", "Fake-v0", seed, [110.0 + seed], where=where)
        fake_run(tmp_path, "ppo", "Other-v1", seed, [20.0 + 20 * seed], eval_return=60.0 + seed, where=where)
    assert harness(tmp_path, "--flags", "--x 1", algos=("ppo",)) == 0
    assert (tmp_path / "results" / "quick" / "runs.jsonl").read_text() == defaults  # the suite's records untouched
    out = tmp_path / "results" / "quick" / "variants" / "x_1"
    assert all(r["flags"] == ["--x", "1"] for r in bench.read_records(str(out / "runs.jsonl")))
    text = (out / "report.md").read_text()
    assert text.startswith("# Benchmark: quick suite, variant `--x 1`") and "MIXED" not in text
    assert "| Fake-v0 | ppo | 1,000 | 2 | 111.5 [111.0, 112.0] |" in text  # its own rows, as any report
    assert "| Other-v1 | trpo |" not in text  # the scripts it ran, not the whole suite
    # defaults on --seeds 2 only (not seed 3's 500), on the left
    assert "| training | Fake-v0 | ppo | 2, 101.5 [101.0, 102.0] | 2, 111.5 [111.0, 112.0] | 1.00 [1.00, 1.00] |" in text
    # P(40 > 50) = 0, P(60 > 50) = 1: 0.5; resampled, both 40 (0) or both 60 (1)
    assert "| training | Other-v1 | ppo | 1, 50.0 [50.0, 50.0] | 2, 50.0 [40.0, 60.0] | 0.50 [0.00, 1.00] |" in text
    # over both envs on the seeds each side has in both: defaults seed 1, the variant seeds 1 and 2; (1 + 0.5) / 2
    assert "| training | over Fake-v0, Other-v1 | ppo | 1 per env | 2 per env | 0.75 [0.50, 1.00] |" in text
    assert "| evaluation | Other-v1 | ppo | 1, 61.0 [61.0, 61.0] | 2, 61.5 [61.0, 62.0] | 0.75 [0.50, 1.00] |" in text  # a tie counts half
    assert "code: ppo.py sha256 sha-ppo (commit abc1234)" in text and "Not compared" not in text
    for env_id in ("Fake-v0", "Other-v1"):  # the variant's runs made by an edited ppo.py
        for seed in (1, 2):
            shutil.rmtree(tmp_path / "runs" / where / "ppo" / env_id / "1000" / f"seed{seed}")
            fake_run(tmp_path, "ppo", env_id, seed, [120.0], sha256="edited", where=where)
    capsys.readouterr()
    assert harness(tmp_path, "--flags", "--x 1", algos=("ppo",)) == 2  # the flags and a code change: no comparison
    err = capsys.readouterr().err
    assert err.startswith("error: the suite's own records and this variant's runs were made by different code") and err.count("\n") == 1
    assert harness(tmp_path, "--flags", "--x 1", "--allow-mixed", algos=("ppo",)) == 0
    assert (out / "report.md").read_text().splitlines()[2].startswith("**MIXED CODE: the suite's own records and this variant's")
    for env_id in ("Fake-v0", "Other-v1"):  # --x/1 names its folder x-1
        for seed in (1, 2):
            fake_run(tmp_path, "ppo", env_id, seed, [120.0], where=os.path.join("quick", "variants", "x-1"))
    assert harness(tmp_path, "--flags=--x/1", algos=("ppo",)) == 0
    capsys.readouterr()
    assert harness(tmp_path, "--flags=--x_1", algos=("ppo",)) == 2  # so does --x_1: refused, not mixed in
    assert "holds records of other flags ('--x/1'), not of '--x_1'" in capsys.readouterr().err


def test_a_missing_run_is_a_miss(tmp_path):
    fake_run(tmp_path, "ppo", "Fake-v0", 1, [200.0])
    fake_run(tmp_path, "ppo", "Fake-v0", 2, [200.0])
    fake_run(tmp_path, "trpo", "Other-v1", 1, [30.0])
    assert harness(tmp_path) == 1  # Other-v1 has no ppo runs
    assert "| Other-v1 | ppo | 1,000 | 0 | n/a | n/a | n/a | 50 | iqm | missing |" in report(tmp_path)
    # without a threshold a row says how many seeds it has and is no miss
    assert "| Other-v1 | trpo | 1,000 | 1 | 30.0 [30.0, 30.0] | 30.0 ± 0.0 | 30.0 | - | - | - |" in report(tmp_path)


def test_custom_grids_suites_reported_whole_and_dry_run(tmp_path):
    suites = bench.load_suites()
    name, report_grid, run_grid = bench.plan_grid(suites, None, ["Acrobot-v1", "Hopper-v4"], ["ppo", "trpo"], 5000)
    assert name == "custom" and report_grid == run_grid and set(run_grid) == {"Acrobot-v1", "Hopper-v4"}
    assert run_grid["Hopper-v4"]["ppo"] == {"timesteps": 5000}  # no threshold at another budget
    name, report_grid, run_grid = bench.plan_grid(suites, "mujoco", ["Hopper-v4"], ["trpo"], None)
    assert run_grid == {"Hopper-v4": {"trpo": suites["mujoco"]["Hopper-v4"]["trpo"]}}
    assert report_grid == suites["mujoco"]  # the suite's report covers all of it
    jobs = bench.plan_jobs(run_grid, [3, 7], str(tmp_path))
    assert [j["seed"] for j in jobs] == [3, 7]
    assert jobs[0]["out"] == str(tmp_path / "trpo" / "Hopper-v4" / "1000000" / "seed3")  # the budget in the path
    assert jobs[0]["flags"][-4:] == ["--eval-every", "100000", "--checkpoint-every", "100000"]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--envs", "CartPole-v1",
                           "--algos", "ppo", "reinforce", "--steps", "4096", "--seeds", "2-3", "--dry-run"],
                          capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 4
    assert "ppo.py --env-id CartPole-v1 --seed 2 --total-timesteps 4096 --no-cuda --eval-every 409" in lines[0]


@pytest.mark.parametrize("bad, message", [
    (["--suite", "quick", "--workers", "0"], "--workers must be >= 1"),
    (["--suite", "quick", "--steps", "0"], "--steps must be >= 1"),
    (["--suite", "quick", "--algos", "dqn"], "no such script: dqn"),
    (["--suite", "quick", "--address", "auto"], "--address is for --backend ray"),
    (["--suite", "quick", "--backend", "slurm"], "invalid choice"),
    (["--suite", "quick", "--seeds", "two"], "is not N, FIRST-LAST"),
    (["--suite", "quick", "--seeds", "1,1"], "a repeated one"),
    (["--suite", "nosuch"], "or a custom grid: --envs ENV ... --steps N"),
    ([], "give --suite NAME"),
    (["--envs", "Acrobot-v1"], "or a custom grid: --envs ENV ... --steps N"),
    (["--suite", "quick", "--steps", "5000"], "has its budgets in thresholds.json"),
    (["--suite", "quick", "--envs", "Acrobot-v1"], "Acrobot-v1 not in suite 'quick'"),
    (["--suite", "quick", "--flags", "--seed 3"], "--flags: --seed is set by the harness"),
    (["--suite", "quick", "--flags", "--cg-iters=25 --output-dir=x"], "--flags: --output-dir=x is set by the harness"),
    (["--suite", "quick", "--flags", "cg-iters 25"], "is not script flags"),
    (["--suite", "quick", "--flags", "--total_timesteps 5"], "--flags: --total_timesteps is set by the harness"),
    (["--suite", "quick", "--flags", "--x 'unclosed"], "--flags: No closing quotation"),
])
def test_bad_harness_arguments_are_one_error_line(bad, message):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), *bad, "--dry-run"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(("error:", "run.py: error:"))


def test_help_documents_every_flag():
    actions = [a for a in bench.build_parser()._actions if a.dest != "help"]
    assert len(actions) == 15 and all(a.help and len(a.help) > 10 for a in actions)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and all(a.option_strings[0] in proc.stdout for a in actions)


def test_thresholds_file_is_complete_and_cites_its_sources():
    suites = bench.load_suites()
    assert set(suites) == {"quick", "mujoco"}
    for suite in suites.values():
        for per_algo in suite.values():
            for entry in per_algo.values():
                assert entry["timesteps"] > 0 and entry["rule"] in ("each", "iqm")
                assert entry["reference_return"] > 0 and entry["reference_metric"] in ("train", "eval")
                assert "(" in entry["reference"] and "REFERENCES" not in entry["reference"]
    assert "REFERENCES" not in open(os.path.join(ROOT, "benchmarks", "thresholds.json")).read()


def test_a_stopped_or_killed_run_is_resumed_not_counted_as_done(tmp_path):
    out = tmp_path / "seed1"
    job = {"algo": "ppo", "env_id": "Fake-v0", "seed": 1, "out": str(out), "flags": ["--seed", "1"]}
    assert bench.completed_run(str(out)) is None and bench.resumable_run(str(out)) is None  # nothing yet
    stopped = out / "Fake-v0__ppo__1__100"
    stopped.mkdir(parents=True)
    for name, content in [("config.json", {}), ("model.pt", {}), ("summary.json", {"interrupted": True})]:
        (stopped / name).write_text(json.dumps(content))
    assert bench.completed_run(str(out)) is None and bench.resumable_run(str(out)) == str(stopped)
    assert bench.script_flags(job, bench.resumable_run(str(out)), str(out)) == ["--resume", str(stopped)]
    (stopped / "summary.json").write_text(json.dumps({"interrupted": False}))
    assert bench.completed_run(str(out)) == str(stopped) and bench.resumable_run(str(out)) is None
    assert bench.script_flags(job, None, str(out)) == ["--seed", "1", "--output-dir", str(out)]
    killed = out / "Fake-v0__ppo__1__200"  # a kill leaves a checkpoint and no summary
    killed.mkdir()
    for name in ("config.json", "model.pt"):
        (killed / name).write_text("{}")
    assert bench.resumable_run(str(out)) == str(killed)


def test_the_ray_backend_runs_a_tiny_real_suite_and_reports_as_the_local_backend(tmp_path):
    common = ["--envs", "CartPole-v1", "--algos", "ppo", "--steps", "1024", "--seeds", "2", "--workers", "2"]
    for backend in ("local", "ray"):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), *common, "--backend", backend,
                               "--runs-dir", str(tmp_path / backend / "runs"), "--results-dir", str(tmp_path / backend / "res")],
                              capture_output=True, text=True, timeout=600, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[2/2] ppo CartPole-v1" in proc.stdout
        runs = sorted((tmp_path / backend / "runs" / "custom" / "ppo" / "CartPole-v1" / "1024").glob("seed*/*/config.json"))
        assert len(runs) == 2  # the run directories, returned by the Ray tasks and written by the driver
        script = json.loads(runs[0].read_text())["command"][1]
        assert (script == os.path.join(ROOT, "ppo.py")) == (backend == "local")  # Ray: the task's own copy
    local, ray = (bench.read_records(str(tmp_path / b / "res" / "custom" / "runs.jsonl")) for b in ("local", "ray"))
    assert [r["backend"] for r in ray] == ["ray", "ray"]
    same = ("seed", "final_return_mean", "eval_return_mean", "episodes", "train_curve", "eval_curve", "sha256")
    assert [{k: r[k] for k in same} for r in local] == [{k: r[k] for k in same} for r in ray]
    tables = [(tmp_path / b / "res" / "custom" / "report.md").read_text().split("## Training return")[1].split("## Per seed")[0]
              for b in ("local", "ray")]
    assert tables[0] == tables[1]


def test_a_ray_task_continues_a_stopped_run_it_is_given(tmp_path, monkeypatch):
    """The Ray task's own code, called as a plain function: a run stopped by SIGINT goes back as an
    archive, and a second task given that archive continues it to the end (--resume)."""
    monkeypatch.setenv("PYTHONPATH", os.path.join(ROOT, "tests"))
    monkeypatch.setenv("SELF_SIGNAL_AT", "300")  # helper_envs.SelfSignal-v0 interrupts its own process there
    flags = ["--env-id", "helper_envs:SelfSignal-v0", "--seed", "1", "--total-timesteps", "1280", "--num-envs", "2",
             "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "1", "--eval-episodes", "0"]
    job = {"algo": "ppo", "env_id": "SelfSignal-v0", "seed": 1, "out": str(tmp_path), "flags": flags}
    script = open(os.path.join(ROOT, "ppo.py"), "rb").read()
    returncode, archive, log = bench.ray_task("ppo.py", script, job, None)
    assert returncode == 130, log
    bench.unpack(archive, str(tmp_path))
    stopped = bench.resumable_run(str(tmp_path), bench.script_sha256("ppo"))
    assert stopped is not None and bench.completed_run(str(tmp_path)) is None
    monkeypatch.delenv("SELF_SIGNAL_AT")
    returncode, archive, log = bench.ray_task("ppo.py", script, job, (os.path.basename(stopped), bench.pack(stopped)))
    assert returncode == 0, log
    bench.unpack(archive, str(tmp_path))
    assert bench.completed_run(str(tmp_path)) == stopped  # the same run directory, finished
    summary = json.load(open(os.path.join(stopped, "summary.json")))
    assert summary["global_step"] == 1280 and [s["global_step"] for s in json.load(open(os.path.join(stopped, "config.json")))["sessions"]] == [0, 256]


SPEED = os.path.join(ROOT, "benchmarks", "speed.py")


def test_speed_measures_training_against_the_raw_env_in_one_run(tmp_path):
    out = tmp_path / "speed.md"
    proc = subprocess.run([sys.executable, SPEED, "--algos", "ppo", "--env-id", "CartPole-v1", "--timesteps", "6144",
                           "--raw-steps", "500", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "plain = `--no-cuda`" in text and "command: `python benchmarks/speed.py --algos ppo" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| ppo.py | plain |")]
    raw, around, *figures = row.strip("| ").split(" | ")[2:]
    raw, (before, after), (train, ratio, steady, steady_ratio, compile_s) = (
        float(raw), (float(x) for x in around.split(" / ")), (float(x) for x in figures))
    assert raw == pytest.approx((before + after) / 2, abs=1)
    assert raw > 0 and train > 0 and ratio == pytest.approx(train / raw, abs=0.006)
    assert steady > 0 and steady_ratio == pytest.approx(steady / raw, abs=0.006) and compile_s == 0.0


def test_speed_never_overwrites_a_record(tmp_path):
    out = tmp_path / "speed.md"
    out.write_text("a record")
    proc = subprocess.run([sys.executable, SPEED, "--algos", "ppo", "--env-id", "CartPole-v1", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --out ") and len(proc.stderr.splitlines()) == 1
    assert out.read_text() == "a record"


def load_speed():
    spec_ = importlib.util.spec_from_file_location("bench_speed", SPEED)
    speed = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(speed)
    return speed


def test_speed_ratio_is_training_over_the_mean_raw_speed_around_it(tmp_path, monkeypatch):
    """Known measurements in, the table's figures out: both raw measurements and their mean for each row, the
    variant's flags reach the script, and the ratios divide by that row's raw speed."""
    speed, raw_speeds, trained = load_speed(), iter([1000.0, 3000.0, 4000.0, 6000.0]), []
    monkeypatch.setattr(speed, "raw_env_sps", lambda env_id, steps: next(raw_speeds))

    def training_sps(algo, env_id, timesteps, extra):
        trained.append((algo, env_id, timesteps, extra))
        return (1500.0, 1800.0, 0.0) if "--compile" not in extra else (3000.0, 4500.0, 9.5)

    monkeypatch.setattr(speed, "training_sps", training_sps)
    out = tmp_path / "speed.md"
    monkeypatch.setattr(sys, "argv", ["speed.py", "--algos", "trpo", "--env-id", "Pendulum-v1", "--timesteps", "64",
                                      "--variants", "plain", "compile", "--out", str(out)])
    speed.main()
    assert trained == [("trpo", "Pendulum-v1", 64, ["--no-cuda"]), ("trpo", "Pendulum-v1", 64, ["--no-cuda", "--compile"])]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| trpo.py |")]
    assert rows == ["| trpo.py | plain | 2000 | 1000 / 3000 | 1500 | 0.75 | 1800 | 0.90 | 0.0 |",
                    "| trpo.py | compile | 5000 | 4000 / 6000 | 3000 | 0.60 | 4500 | 0.90 | 9.5 |"]


def test_speed_rounds_give_each_rows_median_ratio_and_range_then_every_round(tmp_path, monkeypatch):
    """--rounds 3: every row measured once per round, round by round; a round's ratio divides by that round's
    own raw speed, and the summary row gives the medians and the rounds' range."""
    speed, measured = load_speed(), []
    raw_speeds = iter([3000.0, 5000.0, 6000.0, 6000.0,  # round 1: plain before / after, compile before / after
                       2000.0, 2000.0, 4000.0, 4000.0,  # round 2
                       1000.0, 1000.0, 4000.0, 6000.0])  # round 3
    trained = iter([(3600.0, 4000.0, 0.0), (3000.0, 4800.0, 9.0),  # (training, after the first update, compiling)
                    (1000.0, 1200.0, 0.0), (2000.0, 2400.0, 5.0),
                    (800.0, 900.0, 0.0), (3500.0, 4500.0, 6.0)])
    monkeypatch.setattr(speed, "raw_env_sps", lambda env_id, steps: next(raw_speeds))

    def training_sps(algo, env_id, timesteps, extra):
        measured.append(extra)
        return next(trained)

    monkeypatch.setattr(speed, "training_sps", training_sps)
    out = tmp_path / "speed.md"
    monkeypatch.setattr(sys, "argv", ["speed.py", "--algos", "trpo", "--variants", "plain", "compile", "--rounds", "3",
                                      "--out", str(out)])
    speed.main()
    assert measured == [["--no-cuda"], ["--no-cuda", "--compile"]] * 3  # round by round
    summary, every_round = out.read_text().split("Every round, in the order measured:")
    # plain: raw 4000 / 2000 / 1000, training 3600 / 1000 / 800 -> ratios 0.90 / 0.50 / 0.80 (median 0.80, where
    # median training / median raw would give 0.50); after the first update 1.00 / 0.60 / 0.90
    # compile: raw 6000 / 4000 / 5000, training 3000 / 2000 / 3500 -> 0.50 / 0.50 / 0.70; 0.80 / 0.60 / 0.90
    assert [line for line in summary.splitlines() if line.startswith("| trpo.py |")] == [
        "| trpo.py | plain | 3 | 2000 | 1000–4000 | 1000 | 0.80 (0.50–0.90) | 1200 | 0.90 (0.60–1.00) | 0.0 |",
        "| trpo.py | compile | 3 | 5000 | 4000–6000 | 3000 | 0.50 (0.50–0.70) | 4500 | 0.80 (0.60–0.90) | 6.0 |"]
    rounds = [line for line in every_round.splitlines() if line.startswith("| trpo.py |")]
    assert [row.split(" | ")[1] for row in rounds] == ["plain", "compile"] * 3
    assert rounds[0] == "| trpo.py | plain | 4000 | 3000 / 5000 | 3600 | 0.90 | 4000 | 1.00 | 0.0 |"
    assert "rounds: 3" in summary


def test_speed_rounds_below_one_are_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, SPEED, "--rounds", "0", "--out", str(tmp_path / "s.md")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["error: --rounds 0: must be at least 1"]
    assert not (tmp_path / "s.md").exists()


def test_speed_after_the_first_update_from_the_cumulative_steps_per_second(tmp_path):
    speed = load_speed()
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"global_step": 100, "charts/SPS": 50.0}, {"global_step": 120, "charts/episodic_return": 3.0},
            {"global_step": 200, "charts/SPS": 80.0}, {"global_step": 300, "charts/SPS": 100.0}]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert speed.steady_sps(str(metrics)) == pytest.approx(200.0)  # steps 100 -> 300 in seconds 2 -> 3
    metrics.write_text(json.dumps(rows[0]) + "\n")
    assert speed.steady_sps(str(metrics)) is None  # one update: nothing after it


@pytest.mark.skipif(torch.cuda.is_available(), reason="for machines without CUDA")
def test_speed_gpu_variants_without_cuda_are_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, SPEED, "--variants", "plain", "cuda", "--out", str(tmp_path / "s.md")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and not (tmp_path / "s.md").exists()
    assert proc.stderr.strip().splitlines() == ["error: --variants cuda: CUDA is not available on this machine"]


def test_readme_table_gives_the_reports_rows_each_judged_on_its_own_runs():
    spec_ = importlib.util.spec_from_file_location("bench_readme", os.path.join(ROOT, "benchmarks", "readme.py"))
    readme = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(readme)
    readme.bench.BOOTSTRAP_REPS = 500

    def record(algo, env_id, seed, train, evaluation, timesteps=1000):
        sha = readme.bench.script_sha256("trpo") if algo == "trpo" else "sha-old"
        return {"algo": algo, "env_id": env_id, "seed": seed, "timesteps": timesteps, "sha256": sha, "commit": "abc1234",
                "final_return_mean": train, "eval_return_mean": evaluation}

    records = [record("ppo", "Fake-v0", 1, 100.0, 90.0), record("ppo", "Fake-v0", 2, 120.0, 130.0),
               record("ppo", "Fake-v0", 3, 0.0, 0.0, timesteps=2000),  # another budget: not this suite's row
               record("ppo", "Other-v1", 1, 40.0, 60.0),
               *[record("trpo", "Other-v1", seed, 7.0, 8.0) for seed in (1, 2, 3)]]
    lines = readme.suite_table("quick", SUITES["quick"], records, "old/report.md")
    text = "\n".join(lines)
    assert "scripts by sha256: ppo.py sha-old (not the current file), trpo.py " in text
    assert readme.bench.script_sha256("trpo")[:12] + ")" in text  # the current trpo.py: no remark
    assert "| env | steps | seeds | ppo | trpo |" in text
    # rule 'each', both seeds >= 100: PASS; the two-seed interval is the two values
    assert "| Fake-v0 | 1,000 | 2 | 110 [100, 120] / 110 [90, 130] ✓ | not run |" in text
    # one ppo seed below the IQM threshold 50 fails (not 'missing'); trpo has no threshold: no mark
    assert "| Other-v1 | 1,000 | 1/3 | 40 [40, 40] / 60 [60, 60] ✗ (target 50) | 7 [7, 7] / 8 [8, 8] |" in text
    assert "[old/report.md](old/report.md)" in text  # a cell not run points to the older report
    assert "![Fake-v0](benchmarks/results/quick/Fake-v0.png)" in lines
    assert readme.suite_table("quick", SUITES["quick"], records[2:3], None) == []  # no record of this budget


def test_readme_sets_each_row_beside_its_reference_figures_on_their_metrics():
    spec_ = importlib.util.spec_from_file_location("bench_readme", os.path.join(ROOT, "benchmarks", "readme.py"))
    readme = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(readme)
    readme.bench.BOOTSTRAP_REPS = 500
    config = json.loads(json.dumps(SUITES["quick"]))
    config["Fake-v0"]["ppo"].update(reference="ref A: 110 at 1M (somewhere)", reference_return=110,
                                    other_references=[{"reference": "ref D: 50 (elsewhere)", "return": 50, "metric": "eval"}])
    records = [{"algo": "ppo", "env_id": env_id, "seed": seed, "timesteps": 1000, "sha256": "sha-old", "commit": "abc1234",
                "final_return_mean": train, "eval_return_mean": evaluation}
               for env_id, seed, train, evaluation in (("Fake-v0", 1, 100.0, 90.0), ("Fake-v0", 2, 120.0, 130.0),
                                                       ("Other-v1", 1, 40.0, 60.0))]
    lines = readme.suite_table("quick", config, records, None)
    rows = [line for line in lines if line.startswith(("| Fake-v0 | ppo |", "| Other-v1 | ppo |"))]
    assert rows == [
        "| Fake-v0 | ppo | ref A: 110 at 1M | training | 110 [100, 120] | no difference shown: the reference is inside the interval |",
        "| Fake-v0 | ppo | ref D: 50 | evaluation | 110 [90, 130] | higher: the reference is below the interval |",
        "| Other-v1 | ppo | ref B | evaluation | 60 [60, 60] | **lower: the reference is above the interval** |",
    ]  # trpo has runs in no env here and no reference figure: no row


def test_readme_help_only_helps(tmp_path):
    readme_md = os.path.join(ROOT, "README.md")
    before = os.stat(readme_md).st_mtime_ns
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "readme.py"), "--help"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "results table" in proc.stdout
    assert os.stat(readme_md).st_mtime_ns == before  # README.md not rewritten
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "readme.py"), "--bogus"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and os.stat(readme_md).st_mtime_ns == before


def test_the_readme_results_table_is_the_one_the_committed_records_make():
    spec_ = importlib.util.spec_from_file_location("bench_readme_sync", os.path.join(ROOT, "benchmarks", "readme.py"))
    readme = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(readme)
    with open(os.path.join(ROOT, "README.md")) as f:
        block = f.read().split(readme.START, 1)[1].split(readme.END, 1)[0]
    assert block.strip() == readme.table().strip(), "README.md is behind the records: run python benchmarks/readme.py"


def load_script(name):
    spec_ = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    return module


def test_replay_compares_what_the_runs_learned_and_says_which_differ(tmp_path, capsys):
    replay = load_script("replay")

    def record(seed, final, **extra):
        return {"algo": "trpo", "env_id": "Fake-v0", "seed": seed, "timesteps": 1000, "sha256": "a" * 64,
                "commit": "abc1234", "machine": "m", "global_step": 1024, "episodes": 9, "final_return_mean": final,
                "eval_return_mean": 5.0, "eval_return_std": 0.5, "train_curve": [1.0, 2.0], "eval_curve": [[1024, 5.0]],
                "wall_time_s": 3.0, "sps": 300.0, **extra}

    def write(name, records):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return str(path)

    def written_runs():
        with open(tmp_path / "out" / "quick" / "replay.json") as f:
            return json.load(f)["runs"]

    recorded = write("recorded.jsonl", [record(1, 10.0), record(2, 20.0)])
    other_version = {"sha256": "b" * 64, "commit": "def5678", "wall_time_s": 9.0, "sps": 100.0}  # not compared
    replayed = write("replayed.jsonl", [record(2, 20.000001, **other_version), record(1, 10.0, **other_version),
                                        record(3, 30.0, **other_version)])  # seed 3: no record, not compared
    args = ["--suite", "quick", "--recorded", recorded, "--results-dir", str(tmp_path / "out")]
    assert replay.main([*args, "--replayed", replayed]) == 1
    assert "1 of 2 replayed runs identical" in capsys.readouterr().out
    runs = written_runs()
    assert [(r["seed"], r["differs"]) for r in runs] == [(1, []), (2, ["final_return_mean"])]
    assert runs[0]["recorded"]["sha256"] == "a" * 64 and runs[0]["replayed"]["sha256"] == "b" * 64
    text = (tmp_path / "out" / "quick" / "replay.md").read_text()
    assert "| trpo | Fake-v0 | 1 | 1,000 | aaaaaaaaaaaa, abc1234, m | bbbbbbbbbbbb, def5678, m | 10.0 / 5.0 | identical |" in text
    assert "| differs: final_return_mean |" in text
    assert replay.main([*args, "--replayed", write("same.jsonl", [record(1, 10.0, **other_version)])]) == 0
    runs = written_runs()  # without --add: this comparison alone
    assert [(r["seed"], r["differs"], r["against"]) for r in runs] == [(1, [], "other runs")]  # --recorded: not the records
    # --add keeps the rows of another comparison
    assert replay.main([*args, "--replayed", write("other.jsonl", [record(2, 20.0, **other_version)]), "--add"]) == 0
    runs = written_runs()
    assert [(r["seed"], r["differs"]) for r in runs] == [(1, []), (2, [])]
    assert all(r["command"].startswith("python benchmarks/replay.py --suite quick") for r in runs)
    assert "--add" in runs[1]["command"] and "--add" not in runs[0]["command"]
    assert (tmp_path / "out" / "quick" / "replay.md").read_text().count("- written ") == 2
    # --add replaces a row of the same run compared on the same machine, and keeps one from another machine
    assert replay.main([*args, "--replayed", write("again.jsonl", [record(2, 20.0, **other_version)]), "--add"]) == 0
    elsewhere = write("elsewhere.jsonl", [record(2, 20.0, machine="m2")])
    assert replay.main([*args[:2], "--recorded", elsewhere, *args[4:], "--add",
                        "--replayed", write("m2.jsonl", [record(2, 20.0, **other_version, machine="m2")])]) == 0
    runs = written_runs()
    assert [(r["seed"], r["recorded"]["machine"]) for r in runs] == [(1, "m"), (2, "m"), (2, "m2")]
    assert replay.main([*args, "--replayed", str(tmp_path / "missing.jsonl")]) == 2
    assert replay.main([*args, "--replayed", write("none.jsonl", [record(3, 30.0)])]) == 2  # nothing to compare
    variant = write("variant.jsonl", [record(1, 10.0, flags=["--cg-iters", "25"])])  # a variant's run is not the defaults'
    assert replay.main([*args, "--replayed", variant]) == 2
    assert capsys.readouterr().err.count("error:") == 3
    # the records as a commit holds them: the committed quick suite against itself
    committed = os.path.join(ROOT, "benchmarks", "results", "quick", "runs.jsonl")
    if subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True).returncode == 0:
        assert replay.main(["--suite", "quick", "--recorded-at", "HEAD", "--replayed", committed,
                            "--results-dir", str(tmp_path / "head")]) == 0
        with open(committed) as f:
            n = sum(1 for line in f if line.strip())
        assert f"{n} of {n} replayed runs identical" in capsys.readouterr().out
        with open(tmp_path / "head" / "quick" / "replay.json") as f:
            assert {r["against"] for r in json.load(f)["runs"]} == {"records"}
    assert replay.main(["--suite", "quick", "--recorded-at", "no-such-commit", "--replayed", committed,
                        "--results-dir", str(tmp_path / "bad")]) == 2


def test_readme_says_what_a_replay_showed_of_records_made_by_another_version(tmp_path, monkeypatch):
    readme = load_script("readme")
    readme.bench.BOOTSTRAP_REPS = 500
    current = readme.bench.script_sha256("ppo")
    amd, intel = "AMD EPYC, 2 cores", "Intel Xeon, 2 cores"
    records = [{"algo": "ppo", "env_id": "Fake-v0", "seed": seed, "timesteps": 1000, "sha256": "sha-old", "machine": amd,
                "commit": "abc1234", "final_return_mean": 100.0 + seed, "eval_return_mean": 90.0} for seed in (1, 2)]
    assert "ppo.py sha-old (not the current file))" in "\n".join(readme.suite_table("quick", SUITES["quick"], records, None))
    os.makedirs(tmp_path / "benchmarks" / "results" / "quick")
    monkeypatch.setattr(readme, "ROOT", str(tmp_path))

    def table_with(rows):
        with open(tmp_path / "benchmarks" / "results" / "quick" / "replay.json", "w") as f:
            json.dump({"runs": [{"algo": "ppo", "env_id": "Fake-v0", "seed": seed, "recorded": {"sha256": "sha-old", "machine": m0},
                                 "replayed": {"sha256": sha, "machine": m1}, "differs": differs, **extra}
                                for seed, sha, m0, m1, differs, extra in rows]}, f)
        return "\n".join(readme.suite_table("quick", SUITES["quick"], records, None))

    link = "[replay](benchmarks/results/quick/replay.md)"
    text = table_with([(1, current, amd, amd, [], {}), (2, current, amd, amd, ["episodes"], {}),
                       (2, "sha-other", amd, amd, [], {}),  # not the current file
                       (1, current, amd, amd, ["episodes"], {"flags": ["--cg-iters", "25"]})])  # a variant's run
    assert f"ppo.py sha-old (not the current file; the current file made 1 of 2 of these runs again identically, {link}))" in text
    # both files run on another machine than the records': they agree there, the records were not made again
    other = {"against": "other runs"}
    text = table_with([(1, current, intel, intel, [], other), (2, current, intel, intel, [], other), (1, current, amd, amd, [], {}),
                       (2, current, amd, intel, ["episodes"], {})])  # the records against a run elsewhere: neither
    assert (f"ppo.py sha-old (not the current file; the current file made 1 of 1 of these runs again identically, {link}; "
            f"on {intel}, the current file and this one each ran 2 of these (env, seed) and made 2 of 2 "
            f"runs identically, {link}))") in text
    assert "made" not in table_with([(1, current, None, None, [], {})])  # a row that names no machine says nothing
    # two files compared on the records' machine class: still not the records made again
    assert f"on {amd}, the current file and this one each ran 1 of these (env, seed) and made 1 of 1 runs identically" in \
        table_with([(1, current, amd, amd, [], other)])
    assert "made 1 of 1 of these runs again" not in table_with([(1, current, amd, amd, [], other)])
