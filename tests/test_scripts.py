"""Every script end to end, in subprocesses, with budgets of a few hundred steps: the contract
they share (flags, outputs, errors, determinism, save/load) is tested once for all of them."""

import ast
import glob
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
import tyro

from conftest import ROOT, run_script
from test_loops import without_timings

# Per script: flags for a tiny batch (2 envs x 128 steps), the flag whose value must divide the
# batch, and the metrics only that script logs.
SCRIPTS = {
    "ppo.py": {
        "tiny": ["--num-envs", "2", "--num-steps", "128", "--num-minibatches", "4", "--update-epochs", "2"],
        "divides_batch": "--num-minibatches",
        "keys": ["charts/learning_rate", "losses/clipfrac", "ppo/minibatch_steps"],
    },
    "trpo.py": {
        "tiny": ["--num-envs", "2", "--num-steps", "128", "--vf-num-minibatches", "4", "--vf-update-epochs", "2"],
        "divides_batch": "--vf-num-minibatches",
        "keys": ["charts/critic_learning_rate", "trpo/kl_after_step", "trpo/surrogate_improvement",
                 "trpo/expected_improvement", "trpo/line_search_backtracks", "trpo/step_accepted", "trpo/cg_residual"],
    },
    "reinforce.py": {
        "tiny": ["--num-envs", "2", "--num-steps", "128", "--vf-num-minibatches", "4", "--vf-update-epochs", "2"],
        "divides_batch": "--vf-num-minibatches",
        "keys": ["charts/learning_rate", "reinforce/grad_norm"],
    },
}
SCRIPT_NAMES = list(SCRIPTS)  # a missing script fails its tests; it is never skipped
HELPER_ENVS = {"PYTHONPATH": os.path.join(ROOT, "tests")}
# The shared section is the same text in every script (test_shared_section_is_identical_in_the_three_scripts),
# so what only it does (device fallback, wandb, --output-dir, TensorBoard, ...) is run through one script.
SHARED_SECTION_BY = ["ppo.py"]


def tiny(script):
    return [*SCRIPTS[script]["tiny"], "--no-cuda"]


def module(script):
    return importlib.import_module(script[:-3])


def run_dirs(output_dir):
    return sorted(glob.glob(os.path.join(output_dir, "*")))


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def read_summary(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def assert_ok(proc):
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def assert_one_line_error(proc, code, needle):
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


COMMON_KEYS = ["global_step", "time", "charts/episodic_return", "charts/episodic_length", "charts/SPS",
               "losses/policy_loss", "losses/value_loss", "losses/entropy",
               "losses/approx_kl", "losses/explained_variance", "eval/episodic_return"]


@pytest.mark.parametrize("script", SCRIPT_NAMES)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Hopper-v4"])
def test_smoke_run_writes_metrics_and_summary(run, tmp_path, script, env_id):
    proc = run(script, "--env-id", env_id, "--total-timesteps", "512", "--eval-episodes", "1", *tiny(script))
    assert_ok(proc)
    (run_dir,) = run_dirs(tmp_path / "runs")
    algo = script[:-3]
    assert os.path.basename(run_dir).startswith(f"{env_id}__{algo}__1__")
    records = read_metrics(run_dir)
    keys = set().union(*records)
    for key in COMMON_KEYS + SCRIPTS[script]["keys"]:
        assert key in keys, key
    # observation normalization is on by default for Box actions only, and then its effect is logged
    normalized = env_id != "CartPole-v1"
    assert ("charts/normalizer_kl" in keys) == normalized
    if normalized:
        assert all(r["charts/normalizer_kl"] >= 0 for r in records if "charts/normalizer_kl" in r)
    steps = [r["global_step"] for r in records]
    assert steps == sorted(steps) and max(steps) == 512
    summary = read_summary(run_dir)
    assert summary["algo"] == algo and summary["env_id"] == env_id and summary["seed"] == 1
    assert summary["global_step"] == 512 and summary["total_timesteps"] == 512
    assert summary["episodes"] == sum("charts/episodic_return" in r for r in records) > 0
    assert summary["final_return_mean"] is not None and summary["sps"] > 0
    assert "eval_return_mean" in summary and "eval_return_std" in summary
    assert "done:" in proc.stdout and len(proc.stdout.splitlines()) < 20  # no line per episode
    config = check_config(run_dir, script, summary)
    assert config["args"]["env_id"] == env_id and config["args"]["total_timesteps"] == 512
    assert config["args"]["norm_obs"] is normalized and config["args"]["norm_reward"] is normalized  # resolved
    if script == "ppo.py":
        assert config["args"]["clip_vloss"] is normalized
    assert config["command"][1].endswith(script) and config["command"][2:4] == ["--env-id", env_id]


def read_config(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        return json.load(f)


def git_head(folder):
    """The commit of the repository holding `folder`, or None outside one."""
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def check_config(run_dir, script, summary, script_path=None):
    """config.json names the exact file that ran (sha256, also in summary.json), its commit, the
    library versions, the device and the machine; returns it."""
    script_path = script_path or os.path.join(ROOT, script)
    config = read_config(run_dir)
    with open(script_path, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    assert config["script"] == script and config["sha256"] == sha256 == summary["sha256"]
    assert config["git_commit"] == git_head(os.path.dirname(script_path))
    assert config["versions"]["torch"] == torch.__version__ and config["versions"]["gymnasium"] == gym.__version__
    assert config["versions"]["python"].count(".") == 2 and "mujoco" in config["versions"]
    assert config["versions"]["numpy"] == np.__version__ and config["versions"]["tyro"] == tyro.__version__
    assert config["device"] == "cpu" and config["machine"]["gpu"] is None and config["machine"]["cpus"] == os.cpu_count()
    assert config["machine"]["cpu"] and config["machine"]["os"]
    assert set(config["args"]) >= set(module(script).Args.__dataclass_fields__)
    return config


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_lone_copy_runs_in_an_empty_folder(tmp_path, script):
    lone = tmp_path / "elsewhere"
    lone.mkdir()
    shutil.copy(os.path.join(ROOT, script), lone / script)
    proc = run_script(str(lone / script), ["--env-id", "CartPole-v1", "--total-timesteps", "256",
                                           "--eval-episodes", "0", *tiny(script)], cwd=lone)
    assert_ok(proc)
    (run_dir,) = run_dirs(lone / "runs")
    assert sorted(os.listdir(lone)) == sorted(["runs", script])
    check_config(run_dir, script, read_summary(run_dir), script_path=str(lone / script))  # no commit outside a repository


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_save_load_evaluate_round_trip(run, tmp_path, script):
    first = tmp_path / "first"
    proc = run(script, "--env-id", "Pendulum-v1", "--total-timesteps", "1024",
               "--eval-episodes", "2", *tiny(script), output_dir=first)
    assert_ok(proc)
    (train_dir,) = run_dirs(first)
    model_path = os.path.join(train_dir, "model.pt")
    checkpoint = torch.load(model_path, weights_only=True)
    assert checkpoint["agent"]["obs_rms.count"] > 1000  # normalization statistics are in the model
    assert "optimizers" in checkpoint and "reward_rms" in checkpoint

    second = tmp_path / "second"
    proc = run(script, "--total-timesteps", "0", "--load-model", model_path,  # the env is the checkpoint's
               "--eval-episodes", "2", "--no-cuda", output_dir=second)
    assert_ok(proc)
    (eval_dir,) = run_dirs(second)
    assert read_summary(eval_dir)["env_id"] == "Pendulum-v1"
    # same weights, same frozen normalization, same evaluation seeds: the same returns
    assert read_summary(eval_dir)["eval_return_mean"] == read_summary(train_dir)["eval_return_mean"]
    # loading and saving again changes nothing (that evaluation leaves the model untouched is
    # checked where it runs, in test_loops.py)
    reloaded = torch.load(os.path.join(eval_dir, "model.pt"), weights_only=True)
    for key, value in checkpoint["agent"].items():
        assert torch.equal(value, reloaded["agent"][key]), f"{key} changed by loading and saving"

    # training can continue from the checkpoint
    proc = run(script, "--env-id", "Pendulum-v1", "--total-timesteps", "256", "--load-model", model_path,
               "--eval-episodes", "0", *tiny(script), output_dir=tmp_path / "third")
    assert_ok(proc)


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_load_model_that_does_not_fit_is_a_one_line_error(run, tmp_path, script):
    proc = run(script, "--env-id", "Pendulum-v1", "--total-timesteps", "256",
               "--eval-episodes", "0", *tiny(script), output_dir=tmp_path / "a")
    assert_ok(proc)
    (train_dir,) = run_dirs(tmp_path / "a")
    model = os.path.join(train_dir, "model.pt")
    proc = run(script, "--env-id", "Hopper-v4", "--total-timesteps", "0", "--no-cuda",
               "--load-model", model, output_dir=tmp_path / "b")
    assert_one_line_error(proc, 2, "--load-model")  # an explicit --env-id that contradicts the checkpoint
    # the other refusals, in-process: a contradicting --hidden-sizes, another algorithm's checkpoint
    other = [s for s in SCRIPT_NAMES if s != script][0]
    for name, extra, needle in [(script, ["--hidden-sizes", "32"], "--hidden-sizes"), (other, [], "checkpoint")]:
        m = module(name)
        with pytest.raises(m.ConfigError, match=needle):
            m.main(m.parse_args(["--total-timesteps", "0", "--no-cuda", "--load-model", model,
                                 "--output-dir", str(tmp_path / "c"), *extra]))
    assert not os.path.exists(tmp_path / "c")


@pytest.mark.parametrize("script", SCRIPT_NAMES)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_same_seed_same_metrics_another_seed_others(run, tmp_path, script, env_id):
    dirs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        proc = run(script, "--env-id", env_id, "--total-timesteps", "768", "--seed", seed,
                   "--eval-episodes", "1", *tiny(script), output_dir=tmp_path / name)
        assert_ok(proc)
        dirs += run_dirs(tmp_path / name)

    a, b, c = (without_timings(read_metrics(d)) for d in dirs)
    assert any("charts/episodic_return" in r for r in a) and any("eval/episodic_return" in r for r in a)
    assert a == b
    # --seed reaches the weights, the envs and the sampling: the first update already differs
    first_update = lambda records: next(r for r in records if "losses/approx_kl" in r)
    assert first_update(c) != first_update(a)


def bad_args(script):
    return [
        (["--env-id", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["--env-id", "no_such_module:Foo-v0"], "no_such_module"),
        (["--env-id", "helper_envs:DictObs-v0"], "observation space"),
        (["--env-id", "helper_envs:ImageObs-v0"], "observation space"),
        (["--env-id", "helper_envs:MultiDiscreteAction-v0"], "action space"),
        (["--env-id", "helper_envs:EmptyObs-v0"], "observation space"),
        (["--env-id", "helper_envs:EmptyAction-v0"], "action space"),
        ([SCRIPTS[script]["divides_batch"], "3"], SCRIPTS[script]["divides_batch"]),
        (["--num-envs", "0"], "--num-envs"),
        (["--gamma", "0"], "--gamma"),
        *([(["--gae-lambda", "1.5"], "--gae-lambda")] if script != "reinforce.py" else []),
        (["--total-timesteps", "0"], "--load-model"),
        (["--load-model", "missing.pt"], "missing.pt"),
        (["--env-id", "helper_envs:DiscreteStartOne-v0"], "start at 0"),
        (["--capture-video", "--eval-episodes", "0"], "--capture-video"),
        (["--eval-every", "1000", "--eval-episodes", "0"], "--eval-every"),
        (["--checkpoint-every", "-1"], "--checkpoint-every"),
        (["--cudagraphs"], "--cudagraphs"),
        *([(["--compile", "--cudagraphs"], "--cudagraphs")] if not torch.cuda.is_available() else []),
        (["--resume", "no/such/run"], "--resume"),
        (["--resume", "a", "--load-model", "b"], "--resume"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**32)], "--seed"),
        ([{"ppo.py": "--learning-rate", "trpo.py": "--max-kl", "reinforce.py": "--vf-learning-rate"}[script], "inf"],
         "must be a finite number"),
    ]


BAD_CASES = [(script, args, needle) for script in SCRIPT_NAMES for args, needle in bad_args(script)]
# the exit path (one stderr line, exit code 2, no run directory) is checked in a subprocess for a few
# cases per script; every case is checked in-process through main(), which must raise ConfigError
EXIT_PATH_CASES = [case for case in BAD_CASES if case[1][0] in ("--env-id", "--load-model", "--resume")
                   or case[1][0] == SCRIPTS[case[0]]["divides_batch"]]


@pytest.mark.parametrize("script,args,needle", EXIT_PATH_CASES, ids=[f"{s} {' '.join(a)}" for s, a, _ in EXIT_PATH_CASES])
def test_bad_input_is_a_one_line_error_with_exit_code_2(run, tmp_path, script, args, needle):
    proc = run(script, "--no-cuda", *args, env_extra=HELPER_ENVS)
    assert_one_line_error(proc, 2, needle)
    assert not os.path.exists(tmp_path / "runs"), "no run directory for a run that never started"


@pytest.mark.parametrize("script,args,needle", BAD_CASES, ids=[f"{s} {' '.join(a)}" for s, a, _ in BAD_CASES])
def test_bad_input_raises_config_error_before_any_work(tmp_path, monkeypatch, script, args, needle):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "tests"))
    m = module(script)
    with pytest.raises(m.ConfigError, match=needle.replace("(", "\\(")):
        m.main(m.parse_args(["--no-cuda", "--output-dir", str(tmp_path / "runs"), *args]))
    assert not os.path.exists(tmp_path / "runs")


# what tyro itself cannot parse: its boxed message becomes one ConfigError line
UNPARSABLE = [(["--num-envs", "abc"], "--num-envs: invalid literal for int() with base 10: 'abc'"),
              (["--hidden-sizes", "64", "x"], "--hidden-sizes"), (["--num-envs"], "--num-envs"),
              (["--no-such-flag", "3"], "--no-such-flag"), (["--cuda", "3"], "Unrecognized options: 3")]


@pytest.mark.parametrize("script", SCRIPT_NAMES)
@pytest.mark.parametrize("args,needle", UNPARSABLE, ids=[" ".join(a) for a, _ in UNPARSABLE])
def test_a_command_line_tyro_cannot_parse_is_a_one_line_config_error(script, args, needle):
    m = module(script)
    with pytest.raises(m.ConfigError) as error:
        m.parse_args(args)
    message = str(error.value)
    assert needle in message and message.endswith(" (see --help)") and "\n" not in message
    assert not set(message) & set("│╭╮╰╯─"), message


@pytest.mark.parametrize("script", SHARED_SECTION_BY)
def test_a_command_line_tyro_cannot_parse_prints_one_error_line_and_nothing_else(run, tmp_path, script):
    long_value = "abcdefghij" * 12  # longer than any terminal line: tyro would wrap it inside the word
    proc = run(script, "--cuda", "--num-envs", long_value, env_extra={"COLUMNS": "40", "PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 2, proc.stderr  # no CUDA warning either: the command line comes first
    assert proc.stderr == f"error: --num-envs: invalid literal for int() with base 10: '{long_value}' (see --help)\n"
    assert not os.path.exists(tmp_path / "runs")
    help_ = run_script(os.path.join(ROOT, script), ["--help"], cwd=tmp_path)
    assert help_.returncode == 0 and help_.stderr == "" and "--num-envs" in help_.stdout


BOX = "╭─ Value error ──╮\n│ Error parsing --num-envs: invalid │\n│ 'abc' │\n│ ──────── │\n│ Argument helptext: │\n╰──╯\n"


@pytest.mark.parametrize("script", SHARED_SECTION_BY)
@pytest.mark.parametrize("boxed,message", [
    (BOX, "--num-envs: invalid 'abc'"),
    ("warning: printed before\n" + BOX, "--num-envs: invalid 'abc'"),
    ("\x1b[31m╭─ \x1b[1mValue error\x1b[0m ─╮\n│ \x1b[1mError parsing --seed:\x1b[0m x │\n│ ─── │\n", "--seed: x"),
    (" Value error \n ------------ \n  Error parsing --seed: x  \n  ----------\n  Argument helptext:\n", "--seed: x"),
    ("Error: no box\n\nmore\n", "Error: no box"), ("", "the command line could not be parsed")],
    ids=["unicode", "after a warning", "colours", "ascii", "no box", "nothing"])
def test_one_line_of_tyro_box(script, boxed, message):
    assert module(script).one_line(boxed) == f"{message} (see --help)"


@pytest.mark.parametrize("script", SHARED_SECTION_BY)
def test_what_tyro_says_of_a_command_line_it_parsed_still_reaches_stderr(script, monkeypatch, capsys):
    m = module(script)

    def cli(*args, **kwargs):
        print("warning: from tyro", file=sys.stderr)
        return kwargs["default"]

    monkeypatch.setattr(m.tyro, "cli", cli)
    assert m.parse_args(["--seed", "3"]) == m.Args()
    assert capsys.readouterr().err == "warning: from tyro\n"

INVALID_FIELDS = {
    "ppo.py": [("num_steps", 0), ("update_epochs", 0), ("learning_rate", 0.0), ("clip_coef", -0.1),
               ("max_grad_norm", 0.0), ("target_kl", 0.0), ("ent_coef", -1.0)],
    "trpo.py": [("num_steps", 0), ("max_kl", 0.0), ("cg_iters", 0), ("cg_damping", -0.1), ("backtrack_coef", 1.0),
                ("backtrack_coef", 0.0), ("max_backtracks", 0), ("vf_learning_rate", 0.0), ("vf_update_epochs", 0)],
    "reinforce.py": [("num_steps", 0), ("learning_rate", 0.0), ("update_epochs", 0), ("max_grad_norm", 0.0),
                     ("vf_learning_rate", 0.0), ("vf_update_epochs", 0), ("vf_num_minibatches", 0)],
}
COMMON_INVALID = [("eval_episodes", -1), ("hidden_sizes", ()), ("hidden_sizes", (64, 0)), ("gamma", 1.01),
                  ("total_timesteps", -5), ("torch_threads", 0), ("seed", -1), ("seed", 2**32),
                  ("gamma", float("nan")), ("clip_obs", float("inf")), ("clip_reward", -float("inf"))]
INVALID = [(s, f, v) for s in SCRIPT_NAMES for f, v in INVALID_FIELDS[s] + COMMON_INVALID]


@pytest.mark.parametrize("script,field,value", INVALID)
def test_validate_args_rejects(script, field, value):
    m = module(script)
    with pytest.raises(m.ConfigError, match=f"^--{field.replace('_', '-')} "):  # names the flag at fault
        m.validate_args(m.Args(**{field: value}))


BOUNDARY_FIELDS = {
    "ppo.py": [("ent_coef", 0.0), ("update_epochs", 1), ("clip_coef", 1e-3), ("gae_lambda", 1e-3), ("gae_lambda", 1.0)],
    "trpo.py": [("cg_damping", 0.0), ("cg_iters", 1), ("backtrack_coef", 0.99), ("max_backtracks", 1),
                ("gae_lambda", 1e-3), ("gae_lambda", 1.0)],
    "reinforce.py": [("update_epochs", 1), ("vf_num_minibatches", 1)],
}
BOUNDARY = [(s, f, v) for s in SCRIPT_NAMES for f, v in BOUNDARY_FIELDS[s] + [("gamma", 1.0), ("eval_episodes", 0)]]


@pytest.mark.parametrize("script,field,value", BOUNDARY)
def test_validate_args_accepts_boundary_values(script, field, value):
    m = module(script)
    m.validate_args(m.Args(**{field: value}))


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_validate_args_accepts_the_defaults(script):
    m = module(script)
    m.validate_args(m.Args())


@pytest.mark.parametrize("script", SCRIPT_NAMES)
@pytest.mark.parametrize("env", ["NaNReward-v0", "OverflowReward-v0"])  # the latter: finite rewards, overflowing returns
def test_non_finite_data_or_loss_stops_training_with_a_clear_message(run, script, env):
    proc = run(script, "--env-id", f"helper_envs:{env}", "--total-timesteps", "512", "--norm-reward", "False",
               *tiny(script), env_extra=HELPER_ENVS)
    loss = "non-finite surrogate objective" if script == "trpo.py" else "non-finite loss, weights, statistics or outputs"
    assert_one_line_error(proc, 1, "the environment returned a non-finite observation or reward"
                          if env == "NaNReward-v0" else loss)


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_an_allocation_the_machine_cannot_make_is_one_error_line(run, script):
    proc = run(script, "--env-id", "CartPole-v1", "--hidden-sizes", "1000000", "1000000")  # 4 TB of weights
    assert_one_line_error(proc, 1, "out of memory (tried to allocate 4000000000000 bytes)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="for machines without CUDA")
@pytest.mark.parametrize("script", SHARED_SECTION_BY)
def test_cuda_falls_back_to_cpu_with_a_warning_only_when_asked_for(run, script):
    proc = run(script, "--env-id", "CartPole-v1", "--total-timesteps", "256", "--eval-episodes", "0",
               *SCRIPTS[script]["tiny"])
    assert_ok(proc)
    assert " on cpu -> " in proc.stdout.splitlines()[0] and proc.stderr == ""  # the default: no warning
    proc = run(script, "--cuda", "--env-id", "CartPole-v1", "--total-timesteps", "256", "--eval-episodes", "0",
               *SCRIPTS[script]["tiny"])
    assert_ok(proc)
    assert proc.stderr.splitlines() == ["warning: --cuda: CUDA is not available; running on the CPU"]


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_capture_video_without_moviepy_is_a_one_line_error(run, script):
    try:
        import moviepy  # noqa: F401
        pytest.skip("moviepy is installed")
    except ImportError:
        pass
    proc = run(script, "--env-id", "CartPole-v1", "--capture-video", *tiny(script))
    assert_one_line_error(proc, 2, "moviepy")


@pytest.mark.parametrize("script", SHARED_SECTION_BY)
def test_wandb_tracking_works_offline(run, tmp_path, script):
    proc = run(script, "--env-id", "CartPole-v1", "--total-timesteps", "256", "--eval-episodes", "0",
               "--track", *tiny(script), env_extra={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert_ok(proc)
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert os.path.isdir(os.path.join(run_dir, "wandb"))


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_run_directories_are_never_reused(tmp_path, script):
    m = module(script)
    a = m.make_run_dir(str(tmp_path), "module:Env/v0", "x", 1)
    b = m.make_run_dir(str(tmp_path), "module:Env/v0", "x", 1)
    assert a[1] != b[1] and os.path.isdir(a[1]) and os.path.isdir(b[1])
    assert ":" not in a[0] and "/" not in a[0]


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_importing_runs_nothing(tmp_path, script):
    proc = run_script("-c", [f"import sys; sys.path.insert(0, {ROOT!r}); import {script[:-3]}"], cwd=tmp_path)
    assert_ok(proc)
    assert proc.stdout == "" and os.listdir(tmp_path) == []


def help_flags(script):
    """The whole flags that `script --help` lists (--no-cuda is not --cuda)."""
    help_text = run_script(os.path.join(ROOT, script), ["--help"], cwd=ROOT).stdout
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text))


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_every_flag_has_a_docstring(script):
    tree = ast.parse(open(os.path.join(ROOT, script)).read())
    (args_class,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Args"]
    body = args_class.body
    fields = [(i, n.target.id) for i, n in enumerate(body) if isinstance(n, ast.AnnAssign)]
    for i, name in fields:
        following = body[i + 1] if i + 1 < len(body) else None
        assert isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant), name
    flags = help_flags(script)
    for _, name in fields:
        assert "--" + name.replace("_", "-") in flags, name


COMMON_FLAGS = ["--env-id", "--seed", "--total-timesteps", "--num-envs", "--cuda", "--no-cuda",
                "--torch-deterministic", "--track", "--wandb-project-name", "--wandb-entity", "--capture-video",
                "--save-model", "--load-model", "--resume", "--checkpoint-every", "--eval-every", "--eval-episodes", "--tensorboard",
                "--output-dir", "--exp-name"]


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_common_command_line(script):
    flags = help_flags(script)
    for flag in COMMON_FLAGS:
        assert flag in flags, flag


@pytest.mark.parametrize("script", SHARED_SECTION_BY)
def test_output_dir_that_is_a_file_is_a_one_line_error(run, tmp_path, script):
    (tmp_path / "afile").write_text("")
    proc = run(script, "--env-id", "CartPole-v1", "--total-timesteps", "256", *tiny(script),
               output_dir=tmp_path / "afile")
    assert_one_line_error(proc, 2, "--output-dir")


@pytest.mark.parametrize("script", SHARED_SECTION_BY)
def test_wandb_that_cannot_start_is_a_one_line_error_leaving_no_run_directory(run, tmp_path, script):
    proc = run(script, "--env-id", "CartPole-v1", "--total-timesteps", "256", "--track", *tiny(script),
               env_extra={"WANDB_MODE": "no-such-mode", "WANDB_SILENT": "true"})
    assert_one_line_error(proc, 2, "WANDB_MODE=offline")
    assert run_dirs(tmp_path / "runs") == []


@pytest.mark.parametrize("script", SHARED_SECTION_BY)
def test_tensorboard_without_its_package_is_a_one_line_error_leaving_no_run_directory(run, tmp_path, script):
    hidden = tmp_path / "hide"  # a `tensorboard` package that cannot be imported, ahead of the installed one
    (hidden / "tensorboard").mkdir(parents=True)
    (hidden / "tensorboard" / "__init__.py").write_text("raise ImportError('No module named tensorboard')\n")
    proc = run(script, "--env-id", "CartPole-v1", "--total-timesteps", "256", "--tensorboard", *tiny(script),
               env_extra={"PYTHONPATH": str(hidden)})
    assert_one_line_error(proc, 2, "pip install tensorboard")
    assert run_dirs(tmp_path / "runs") == []


SHARED_BANNER = "# Shared section: byte-identical in ppo.py, trpo.py and reinforce.py"


def layout(script):
    """(source, line of the shared section's banner, {top-level name: (first line, last line)})."""
    with open(os.path.join(ROOT, script)) as f:
        source = f.read()
    banner = source[:source.index(SHARED_BANNER)].count("\n")  # the line after the "# ====" rule (0-based)
    spans = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            spans[node.name] = (node.lineno, node.end_lineno)
    return source, banner, spans


def test_shared_section_is_identical_in_the_three_scripts():
    """From its banner to the end of the file, the shared section is the same text in every script,
    so that `diff ppo.py trpo.py` shows the algorithms and nothing else."""
    sections = {}
    for script in SCRIPT_NAMES:
        source, _, _ = layout(script)
        start = source.rindex("\n# ====", 0, source.index(SHARED_BANNER)) + 1
        sections[script] = source[start:]
    assert len(SCRIPT_NAMES) == 3 and len(set(sections.values())) == 1, [
        (script, len(text)) for script, text in sections.items()]


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_the_algorithm_comes_first(script):
    """Args, the networks, the math, then main (at most 150 lines), then the shared section."""
    _, banner, spans = layout(script)
    main_start, main_end = spans["main"]
    assert spans["Args"][0] < spans["Agent"][0] < spans["compute_gae" if script != "reinforce.py" else "reward_to_go"][0]
    assert max(end for name, (start, end) in spans.items() if start < main_start) < main_start < main_end < banner
    assert main_end - main_start + 1 <= 150
    below = {name for name, (start, _) in spans.items() if start > banner}
    assert {"validate_args", "check_env", "evaluate", "Run", "parse_args", "cli"} <= below
    assert not below & {"Agent", "main", "compute_gae", "reward_to_go", "ppo_policy_loss", "line_search"}
