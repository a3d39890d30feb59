"""Runs that survive real use, for every script: a real SIGINT/SIGTERM stops a training process with
a saved, resumable run; --resume continues it; checkpoints are atomic; --load-model takes the
checkpoint's model flags; evaluation during training; TensorBoard; whole batches; quiet output.

The signals come from helper_envs.SelfSignal-v0, which sends its own process a real signal after a
given number of env steps: the interruption lands at a known point, with no race against a timer."""

import copy
import glob
import json
import os
import random
import time

import numpy as np
import pytest
import torch

from test_loops import MODULES, SCRIPTS, TINY, assert_same, optimizer_states, run_main, spy
from test_scripts import (HELPER_ENVS, SHARED_SECTION_BY, assert_ok, assert_one_line_error, read_config,
                          read_summary, run_dirs, tiny)

SCRIPT_NAMES = [f"{name}.py" for name in SCRIPTS]
SMALL = {  # 2 envs x 64 steps = batches of 128
    "ppo.py": ["--num-envs", "2", "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "2"],
    "trpo.py": ["--num-envs", "2", "--num-steps", "64", "--vf-num-minibatches", "2", "--vf-update-epochs", "2"],
    "reinforce.py": ["--num-envs", "2", "--num-steps", "64", "--vf-num-minibatches", "2", "--vf-update-epochs", "2"],
}
BATCH = 128


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def update_records(metrics):
    return [r for r in metrics if "losses/approx_kl" in r]


def self_signal(at, name="INT"):
    return {**HELPER_ENVS, "SELF_SIGNAL_AT": ",".join(map(str, at)), "SELF_SIGNAL": name}


def assert_interrupted(proc, code, signal_name):
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr and signal_name in proc.stderr
    assert "--resume" in proc.stdout.splitlines()[-1]  # the last line says how to continue


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_sigint_saves_the_run_and_resume_continues_it(run, tmp_path, script):
    args = ["--env-id", "helper_envs:SelfSignal-v0", "--total-timesteps", "1280", "--eval-episodes", "1",
            *SMALL[script], "--no-cuda"]
    # env step 300 of the process (both envs counted) is vector step 150: inside the third rollout
    proc = run(script, *args, env_extra=self_signal([300]))
    assert_interrupted(proc, 130, "SIGINT")
    (run_dir,) = run_dirs(tmp_path / "runs")
    summary = read_summary(run_dir)
    assert summary["interrupted"] is True and summary["signal"] == "SIGINT"
    assert summary["global_step"] == 2 * BATCH  # the unfinished third rollout is discarded
    assert "eval_return_mean" not in summary
    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    assert checkpoint["progress"]["global_step"] == 2 * BATCH and checkpoint["progress"]["update"] == 2
    first = read_metrics(run_dir)
    assert max(r["global_step"] for r in first) == 2 * BATCH  # nothing logged beyond the saved state

    proc = run(script, "--resume", run_dir, env_extra=HELPER_ENVS)
    assert_ok(proc)
    assert run_dirs(tmp_path / "runs") == [run_dir]  # the same directory, no new one
    summary = read_summary(run_dir)
    assert summary["interrupted"] is False and summary["global_step"] == 1280
    assert summary["episodes"] == sum("charts/episodic_return" in r for r in read_metrics(run_dir))
    metrics = read_metrics(run_dir)
    assert metrics[:len(first)] == first  # appended to
    steps = [r["global_step"] for r in metrics]
    assert steps == sorted(steps) and steps[len(first)] > 2 * BATCH  # increasing across the seam
    # the same updates, at the same steps, as an uninterrupted run
    assert [r["global_step"] for r in update_records(metrics)] == [BATCH * k for k in range(1, 11)]
    if script == "ppo.py":  # the learning rate continues its schedule: lr_k = lr_0 (1 - (k - 1) / K)
        lrs = [r["charts/learning_rate"] for r in update_records(metrics)]
        assert lrs == pytest.approx([3e-4 * (1 - k / 10) for k in range(10)])
    config = read_config(run_dir)
    assert [s["global_step"] for s in config["sessions"]] == [0, 2 * BATCH]
    assert config["sessions"][1]["command"][2:4] == ["--resume", run_dir]
    assert all(s["versions"]["torch"] and s["machine"]["cpu"] for s in config["sessions"])  # where each ran

    uninterrupted = run(script, *args, env_extra=HELPER_ENVS, output_dir=tmp_path / "whole")
    assert_ok(uninterrupted)
    (whole_dir,) = run_dirs(tmp_path / "whole")
    assert read_summary(whole_dir)["global_step"] == summary["global_step"]
    # the same update records as the uninterrupted run, at the same steps, with the same schedules
    schedule = lambda records: [{k: v for k, v in r.items() if k == "global_step" or "learning_rate" in k}
                                for r in update_records(records)]
    assert schedule(metrics) == schedule(read_metrics(whole_dir))


def test_sigterm_exits_143_saved(run, tmp_path):
    proc = run("trpo.py", "--env-id", "helper_envs:SelfSignal-v0", "--total-timesteps", "1280", "--eval-episodes", "0",
               *SMALL["trpo.py"], "--no-cuda", env_extra=self_signal([200], "TERM"))
    assert_interrupted(proc, 143, "SIGTERM")
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert read_summary(run_dir)["signal"] == "SIGTERM"
    assert torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)["progress"]["global_step"] == BATCH


def test_a_second_signal_quits_at_once(run, tmp_path):
    # two signals in one vector step (env steps 299 and 300): no time to save, the process quits
    proc = run("ppo.py", "--env-id", "helper_envs:SelfSignal-v0", "--total-timesteps", "1280", "--eval-episodes", "0",
               "--checkpoint-every", "128", *SMALL["ppo.py"], "--no-cuda", env_extra=self_signal([299, 300]))
    assert proc.returncode == 130 and "quitting without saving" in proc.stderr and "Traceback" not in proc.stderr
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert not os.path.exists(os.path.join(run_dir, "summary.json"))
    # the last periodic checkpoint is intact and resumable
    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    assert checkpoint["progress"]["global_step"] == 2 * BATCH
    assert_ok(run("ppo.py", "--resume", run_dir, "--eval-episodes", "0", env_extra=HELPER_ENVS))
    assert read_summary(run_dir)["global_step"] == 1280


@pytest.mark.parametrize("name", SCRIPTS)
def test_resume_restores_every_piece_of_state(tmp_path, monkeypatch, name):
    """In-process: what --resume restores is exactly what was saved; the envs restart from new seeds."""
    m = MODULES[name]
    with monkeypatch.context() as patch:  # python's and numpy's generators, unused by training, drawn from once
        spy(patch, m, "rng_state", before=lambda: (random.random(), np.random.random()))
        run_main(name, tmp_path, env_id="Pendulum-v1", total_timesteps=128)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    saved = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    restored = []
    real_start_envs = m.Run.start_envs

    def start_envs(run):
        restored.append(copy.deepcopy((run.agent.state_dict(), {k: o.state_dict() for k, o in run.optimizers.items()},
                                       run.reward_rms.state_dict(), run.discounted_return, list(run.recent_returns),
                                       run.episodes, run.env_seed, m.rng_state())))
        return real_start_envs(run)

    monkeypatch.setattr(m.Run, "start_envs", start_envs)
    m.main(m.parse_args(["--resume", run_dir, "--total-timesteps", "192"]))
    agent, optimizers, reward_rms, discounted_return, recent, episodes, env_seed, rng = restored[0]
    assert_same(agent, saved["agent"], "agent")
    # Adam's moments and settings; the learning rate is this session's flag, not the checkpoint's
    assert_same({k: o["state"] for k, o in optimizers.items()}, optimizer_states(saved), "optimizers")
    for which, optimizer in optimizers.items():
        (group,), (saved_group,) = optimizer["param_groups"], saved["optimizers"][which]["param_groups"]
        assert {k: v for k, v in group.items() if k != "lr"} == {k: v for k, v in saved_group.items() if k != "lr"}
    assert_same(reward_rms, saved["reward_rms"], "reward_rms")
    # the envs restart their episodes, so reward scaling's running returns start again from 0
    assert "discounted_return" not in saved["progress"] and not discounted_return.any()
    assert recent == saved["progress"]["recent_returns"] and episodes == saved["progress"]["episodes"]
    assert torch.equal(rng.pop("torch"), saved["rng"].pop("torch"))
    assert rng == saved["rng"]  # python's and numpy's generators too (and no CUDA state on the CPU)
    # the envs restart their episodes from seeds drawn from (seed, step), not the first session's seed 1
    assert env_seed == int(np.random.SeedSequence([1, 128]).generate_state(1)[0] % 2**31) != 1
    assert read_summary(run_dir)["global_step"] == 192


@pytest.mark.parametrize("script", SCRIPT_NAMES)
@pytest.mark.parametrize("env, trigger, at", [("SelfSignal-v0", "NAN_REWARD_AT", 302),
                                              # inf (Box: normalized), the final observation of a truncated episode
                                              ("SelfSignal-v0", "NONFINITE_OBS_AT", 300),
                                              ("DiscreteSelfSignal-v0", "NONFINITE_OBS_AT", 302)])  # NaN
def test_non_finite_env_output_saves_the_run_as_of_its_last_update_and_resume_continues_it(run, tmp_path, script,
                                                                                            env, trigger, at):
    # env step `at` (both envs counted) returns the non-finite value, in the third rollout; step 300
    # ends the second env's 6th episode by its time limit (a final observation, seen only by the critic)
    args = ["--env-id", f"helper_envs:{env}", "--total-timesteps", "512", "--eval-episodes", "0",
            "--checkpoint-every", "0", *SMALL[script], "--no-cuda"]
    proc = run(script, *args, env_extra={**HELPER_ENVS, trigger: str(at)})
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert_one_line_error(proc, 1, f"the environment returned a non-finite observation or reward at global step {at}")
    assert f"{run_dir}/model.pt holds the run as of step {2 * BATCH}" in proc.stderr
    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    assert checkpoint["progress"]["update"] == 2
    assert all(torch.isfinite(t).all() for t in checkpoint["agent"].values())  # the statistics too
    assert max(r["global_step"] for r in read_metrics(run_dir)) == 2 * BATCH  # nothing of the unfinished update
    # a new process counts its env steps from 0: the remaining 256 steps meet no non-finite value
    assert_ok(run(script, "--resume", run_dir, env_extra={**HELPER_ENVS, trigger: str(at)}))
    assert read_summary(run_dir)["global_step"] == 512


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_fine_tuned_run_resumes_without_the_model_it_started_from(tmp_path, name):
    m = MODULES[name]
    run_main(name, tmp_path / "a", env_id="Pendulum-v1", total_timesteps=64)
    (source,) = glob.glob(str(tmp_path / "a" / "runs" / "*" / "model.pt"))
    run_main(name, tmp_path / "b", env_id="Pendulum-v1", total_timesteps=64, load_model=source)
    (run_dir,) = glob.glob(str(tmp_path / "b" / "runs" / "*"))
    os.remove(source)  # config.json still names it as --load-model; --resume reads the run's own model.pt
    m.main(m.parse_args(["--resume", run_dir, "--total-timesteps", "128"]))
    assert read_summary(run_dir)["global_step"] == 128


def test_resume_refuses_what_it_cannot_continue(run, tmp_path):
    m = MODULES["ppo"]
    run_main("ppo", tmp_path, env_id="CartPole-v1", total_timesteps=128)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    proc = run("ppo.py", "--resume", run_dir)  # the exit path: the run is already complete
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        f"error: --resume {run_dir}: the run already has 128 steps; give a larger --total-timesteps to train on"]
    for args, needle in [(["--total-timesteps", "1024", "--num-envs", "4"], "--num-envs"),
                         (["--total-timesteps", "1024", "--env-id", "Acrobot-v1"], "--env-id"),
                         (["--total-timesteps", "1024", "--seed", "7"], "--seed"),
                         (["--total-timesteps", "1024", "--load-model", "x.pt"], "--load-model")]:
        with pytest.raises(m.ConfigError, match=needle):
            m.main(m.parse_args(["--resume", run_dir, *args]))
    os.remove(os.path.join(run_dir, "model.pt"))
    with pytest.raises(m.ConfigError, match="no model.pt"):
        m.parse_args(["--resume", run_dir, "--total-timesteps", "1024"])


@pytest.mark.parametrize("name", SCRIPTS)
def test_checkpoints_are_written_when_due_and_atomically(tmp_path, monkeypatch, name):
    m = MODULES[name]
    saves = spy(monkeypatch, m, "save_checkpoint")
    real_save, calls, on_disk = torch.save, [], []

    def save_then_die(obj, f, *args, **kwargs):  # the third checkpoint write is killed halfway
        calls.append(obj["progress"]["global_step"])
        # what a kill now would leave of the log: it must reach the update the checkpoint holds
        on_disk.append(update_records(read_metrics(os.path.dirname(f.name)))[-1]["global_step"])
        if len(calls) == 3:
            f.write(b"half a checkpoint")
            raise KeyboardInterrupt("killed while writing")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_main(name, tmp_path, env_id="Pendulum-v1", total_timesteps=640, checkpoint_every=128)
    assert calls == [128, 256, 384]  # every 128 steps (2 envs x 32 steps = 64 per batch)
    assert on_disk == calls  # metrics.jsonl is never behind model.pt
    assert len(saves) == 2
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)  # the previous one, whole
    assert checkpoint["progress"]["global_step"] == 256


@pytest.mark.parametrize("name", SCRIPTS)
def test_json_files_are_replaced_whole(tmp_path, monkeypatch, name):
    """config.json (rewritten by --resume) and summary.json: a failure mid-write leaves the old file."""
    m, path = MODULES[name], str(tmp_path / "config.json")
    m.write_json(path, {"sessions": 1})
    with pytest.raises(TypeError):
        m.write_json(path, {"sessions": 2, "then": object()})  # json.dump fails halfway through
    with open(path) as f:
        assert json.load(f) == {"sessions": 1}

    class DiesMidWrite:  # a file whose first write is cut off: the disk fills, or the process is killed
        def __init__(self, f):
            self.f = f

        def write(self, text):
            self.f.write(text[:2])
            raise OSError("killed while writing")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr(m, "open", lambda *a, **k: DiesMidWrite(open(*a, **k)), raising=False)
    with pytest.raises(OSError, match="killed"):
        m.write_json(path, {"sessions": 3, "commands": ["a" * 100, "b" * 100]})
    monkeypatch.undo()
    with open(path) as f:
        assert json.load(f) == {"sessions": 1}


@pytest.mark.parametrize("name", SCRIPTS)
def test_stop_during_the_update_ends_it_at_a_safe_point(tmp_path, monkeypatch, name):
    """A stop request that arrives during the update: the update ends early, is logged and saved."""
    m = MODULES[name]
    stop = m.StopRequest()
    estimator = {"ppo": "ppo_policy_loss", "trpo": "conjugate_gradient", "reinforce": "reinforce_loss"}[name]
    calls = spy(monkeypatch, m, estimator, before=lambda *a, **k: setattr(stop, "signum", 2) if len(calls) == 2 else None)
    critic_steps = spy(monkeypatch, m, "critic_loss") if name != "ppo" else []
    summary = m.main(m.Args(env_id="Pendulum-v1", total_timesteps=640, eval_episodes=3, cuda=False,
                            output_dir=str(tmp_path / "runs"), **TINY[name]), stop)
    assert summary["interrupted"] is True and "eval_return_mean" not in summary
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    updates = update_records(read_metrics(run_dir))
    stopped_at = 64 * len(updates)
    assert summary["global_step"] == stopped_at == updates[-1]["global_step"] < 640
    if name == "ppo":
        assert updates[-1]["ppo/minibatch_steps"] < 8  # the update was cut short
    else:  # the critic's fit of the last update ended after its first epoch: 4 of its 2 x 4 minibatch steps
        assert len(critic_steps) == 8 * (len(updates) - 1) + 4
    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    assert checkpoint["progress"]["global_step"] == stopped_at


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_run_stopped_in_its_last_update_resumes_to_its_final_evaluation(tmp_path, monkeypatch, name):
    """A stop during the last update: the run has all its steps but no final evaluation, and the
    command it prints, --resume, evaluates it and finishes it; a finished run is not resumed."""
    m = MODULES[name]
    stop = m.StopRequest()
    estimator = {"ppo": "ppo_policy_loss", "trpo": "conjugate_gradient", "reinforce": "reinforce_loss"}[name]
    spy(monkeypatch, m, estimator, before=lambda *a, **k: setattr(stop, "signum", 2))
    summary = m.main(m.Args(env_id="Pendulum-v1", total_timesteps=64, eval_episodes=2, cuda=False,
                            output_dir=str(tmp_path / "runs"), **TINY[name]), stop)
    assert summary["interrupted"] is True and summary["global_step"] == 64 and "eval_return_mean" not in summary
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    summary = m.main(m.parse_args(["--resume", run_dir]))
    assert summary["interrupted"] is False and summary["global_step"] == 64 and "eval_return_mean" in summary
    assert len(update_records(read_metrics(run_dir))) == 1  # evaluated, not trained further
    with pytest.raises(m.ConfigError, match="the run already has 64 steps"):
        m.main(m.parse_args(["--resume", run_dir]))
    # trained further, to 128, and stopped in its last update again: the summary of 64 steps is not its end
    stop.signum = None  # the spy requests the stop again at the next update's first estimate
    summary = m.main(m.parse_args(["--resume", run_dir, "--total-timesteps", "128"]), stop)
    assert summary["interrupted"] is True and summary["global_step"] == 128
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump({"global_step": 64, "interrupted": False}, f)  # as if killed before the new summary
    with pytest.raises(m.ConfigError, match="the run already has 128 steps"):  # not with a smaller target
        m.main(m.parse_args(["--resume", run_dir, "--total-timesteps", "64"]))
    summary = m.main(m.parse_args(["--resume", run_dir, "--total-timesteps", "128"]))
    assert summary["interrupted"] is False and summary["global_step"] == 128 and "eval_return_mean" in summary


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_stop_during_an_evaluation_cuts_it_short_and_resume_makes_it(tmp_path, monkeypatch, name):
    """A stop in an evaluation ends it after the current env step with nothing logged of it: during
    training the run then stops (exit 128 + signal), saved, and --resume makes that evaluation first;
    in the final evaluation the run ends interrupted, and --resume makes it."""
    m = MODULES[name]
    at = {"stop": m.StopRequest(), "step": 230, "steps": 0}  # Pendulum: 200-step episodes

    def count(*args, **kwargs):  # deterministic actions are taken in evaluations only
        at["steps"] += 1
        if at["steps"] == at["step"]:
            at["stop"].signum = 15
        time.sleep(0.001)  # evaluations that take longer than a resumed run's start and first rollout

    spy(monkeypatch, m.Agent, "deterministic_action", before=count)
    summary = m.main(m.Args(env_id="Pendulum-v1", total_timesteps=256, eval_every=128, eval_episodes=2, cuda=False,
                            output_dir=str(tmp_path / "runs"), **TINY[name]), at["stop"])
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    assert summary["interrupted"] is True and summary["signal"] == "SIGTERM" and summary["global_step"] == 128
    assert "eval_return_mean" not in summary and at["steps"] == 230  # ended there; no final evaluation began
    assert not [r for r in read_metrics(run_dir) if "eval/return_mean" in r or "eval/episodic_return" in r]

    at.update(stop=m.StopRequest(), step=400 + 210, steps=0)  # the final evaluation's 2nd episode
    summary = m.main(m.parse_args(["--resume", run_dir]), at["stop"])
    assert summary["interrupted"] is True and summary["global_step"] == 256 and "eval_return_mean" not in summary
    assert at["steps"] == 610
    # the missed evaluation, made first, at its step; nothing of the final one
    assert [r["global_step"] for r in read_metrics(run_dir) if "eval/return_mean" in r] == [128]

    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    assert checkpoint["progress"]["eval_missed"] is False

    summary = m.main(m.parse_args(["--resume", run_dir]))  # only the final evaluation is left
    assert summary["interrupted"] is False and summary["global_step"] == 256 and "eval_return_mean" in summary
    metrics = read_metrics(run_dir)
    assert [r["global_step"] for r in metrics if "eval/return_mean" in r] == [128, 256]
    assert sum("eval/episodic_return" in r for r in metrics) == 4
    assert len(update_records(metrics)) == 256 // 64

    # trained further, after its final evaluation: the log's clock runs on from that evaluation's records
    # (logged after the checkpoint); and an evaluation noted as missed is not made once --eval-every is 0
    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    checkpoint["progress"]["eval_missed"] = True
    torch.save(checkpoint, os.path.join(run_dir, "model.pt"))
    summary = m.main(m.parse_args(["--resume", run_dir, "--total-timesteps", "320", "--eval-every", "0"]))
    metrics = read_metrics(run_dir)
    assert [r["global_step"] for r in metrics if "eval/return_mean" in r] == [128, 256, 320]
    times = [r["time"] for r in metrics]
    assert times == sorted(times)
    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    assert checkpoint["progress"]["eval_missed"] is False


@pytest.mark.parametrize("name", SCRIPTS)
def test_evaluation_during_training(tmp_path, name):
    summary, metrics = run_main(name, tmp_path, env_id="Pendulum-v1", total_timesteps=320, eval_every=128,
                                eval_episodes=2)
    means = [(r["global_step"], r["eval/return_mean"]) for r in metrics if "eval/return_mean" in r]
    assert [step for step, _ in means] == [128, 256, 320]  # every 128 steps, and the final evaluation
    assert sum("eval/episodic_return" in r for r in metrics) == 6
    assert means[-1][1] == pytest.approx(summary["eval_return_mean"])


def test_evaluation_of_an_env_without_time_limit_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(MODULES["ppo"], "EVAL_MAX_EPISODE_STEPS", 300)
    summary, _ = run_main("ppo", tmp_path, env_id="Endless-v0", total_timesteps=64, eval_episodes=2)
    assert summary["eval_return_mean"] == 300.0


@pytest.mark.parametrize("script", SHARED_SECTION_BY)
def test_tensorboard_has_the_same_curves(run, tmp_path, script):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert_ok(run(script, "--env-id", "CartPole-v1", "--total-timesteps", "512", "--eval-episodes", "2",
                  "--tensorboard", *tiny(script)))
    (run_dir,) = run_dirs(tmp_path / "runs")
    events = EventAccumulator(run_dir)
    events.Reload()
    metrics = read_metrics(run_dir)
    keys = {k for r in metrics for k, v in r.items() if k not in ("global_step", "time") and v is not None}
    assert set(events.Tags()["scalars"]) == keys
    returns = [(r["global_step"], r["charts/episodic_return"]) for r in metrics if "charts/episodic_return" in r]
    logged = [(e.step, e.value) for e in events.Scalars("charts/episodic_return")]
    assert logged == [(step, pytest.approx(value)) for step, value in returns]


@pytest.mark.parametrize("name", SCRIPTS)
def test_total_timesteps_is_rounded_up_to_whole_batches(tmp_path, capsys, name):
    summary, _ = run_main(name, tmp_path, env_id="CartPole-v1", total_timesteps=100)  # batches of 64
    assert summary["global_step"] == summary["total_timesteps"] == 128
    assert "step 128/128 (100%)" in capsys.readouterr().out


def test_warnings_are_printed_once_and_plainly(run):
    proc = run("ppo.py", "--env-id", "HalfCheetah-v4", "--total-timesteps", "256", "--eval-episodes", "1",
               *tiny("ppo.py"), env_extra={"PYTHONWARNINGS": ""})
    assert_ok(proc)
    lines = proc.stderr.splitlines()
    assert len(lines) == len(set(lines)) and "\x1b[" not in proc.stderr
    assert sum("settotalmass" in line for line in lines) == 1 and sum("v5" in line for line in lines) == 1
    assert all(line.startswith("warning: ") for line in lines)



def test_resume_of_a_run_directory_it_cannot_write_is_refused(tmp_path, monkeypatch):
    """A run directory on a read-only disk (or without write permission) is refused up front with a
    ConfigError (one line, exit 2), not met later by a traceback from the first file it writes."""
    m = MODULES["ppo"]
    run_main("ppo", tmp_path, env_id="Probe-v0", total_timesteps=64)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    real_access = os.access
    monkeypatch.setattr(m.os, "access", lambda path, mode: False if path == run_dir else real_access(path, mode))
    with pytest.raises(m.ConfigError, match="--resume .*: the run directory is not writable"):
        run_main("ppo", tmp_path, env_id="Probe-v0", total_timesteps=128, resume=run_dir)
