"""The training loops, run in-process on tiny deterministic environments (tests/helper_envs.py):
what the loop hands to the math, what it logs, which way its update moves the policy, and what
its options do. The math itself is tested in the *_math.py files; these tests catch the loop
using correct math wrongly.

The tools: `spy` wraps a module-level function of a script and records its calls; `Recorder`
subclasses record the Agent and optimizers a run builds; `known_values` replaces the critic by
V(s) = s[0] on the raw observation, so that every expected advantage can be computed here from
the environment's own record of its transitions."""

import copy
import glob
import importlib
import json
import os

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal

import helper_envs
from test_reinforce_math import slow_reward_to_go
from test_shared_math import slow_gae

SCRIPTS = ["ppo", "trpo", "reinforce"]
MODULES = {name: importlib.import_module(name) for name in SCRIPTS}
TINY = {  # 2 envs x 32 steps
    "ppo": dict(num_envs=2, num_steps=32, num_minibatches=4, update_epochs=2),
    "trpo": dict(num_envs=2, num_steps=32, vf_num_minibatches=4, vf_update_epochs=2),
    "reinforce": dict(num_envs=2, num_steps=32, vf_num_minibatches=4, vf_update_epochs=2),
}
# the function that turns a batch's rewards and values into advantages (or returns); rewards first
ESTIMATOR = {"ppo": "compute_gae", "trpo": "compute_gae", "reinforce": "reward_to_go"}
BOTH_KINDS = ["Probe-v0", "DiscreteProbe-v0"]


def run_main(name, tmp_path, **fields):
    """main() of script `name` with a tiny batch, no evaluation, on the CPU; returns (summary, metrics)."""
    m = MODULES[name]
    settings = dict(TINY[name], cuda=False, eval_episodes=0, output_dir=str(tmp_path / "runs"))
    settings.update(fields)
    summary = m.main(m.Args(**settings))
    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "metrics.jsonl"))
    with open(path) as f:
        return summary, [json.loads(line) for line in f]


def spy(monkeypatch, m, function_name):
    """Wrap m.function_name; returns the list of (args, kwargs, result) of its calls."""
    calls, real = [], getattr(m, function_name)

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(m, function_name, wrapper)
    return calls


def record_agents(monkeypatch, m):
    """Every Agent the run builds is appended to the returned list."""
    agents = []

    class Recorder(m.Agent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            agents.append(self)

    monkeypatch.setattr(m, "Agent", Recorder)
    return agents


def record_optimizers(monkeypatch):
    """Every torch.optim.Adam the run builds is appended to the returned list."""
    optimizers = []

    class Recorder(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            optimizers.append(self)

    monkeypatch.setattr(torch.optim, "Adam", Recorder)
    return optimizers


def steps_taken(optimizer):
    """How many optimizer steps an Adam took (its per-parameter step counter)."""
    return int(next(iter(optimizer.state.values()))["step"]) if optimizer.state else 0


def known_values(monkeypatch, m):
    """V(s) = s[0] (with norm_obs off the networks see the raw observation); the critic's graph is
    kept, multiplied by 0, so that its losses still backpropagate."""
    real = m.Agent.value
    monkeypatch.setattr(m.Agent, "value", lambda self, x: x[..., 0] + 0.0 * real(self, x))


def first_batch(num_envs, num_steps, seed=1):
    """The first num_steps transitions of each training env, as (T, N) arrays."""
    columns = [helper_envs.ProbeEnv.TRANSITIONS[seed + n][:num_steps] for n in range(num_envs)]
    fields = list(zip(*[list(zip(*column)) for column in columns]))  # field -> env -> step
    obs, _, rewards, terminated, truncated, successors = (np.stack([np.array(f) for f in field], axis=1)
                                                          for field in fields)
    return obs, rewards, terminated, truncated, successors


@pytest.fixture(autouse=True)
def fresh_records():
    helper_envs.ProbeEnv.TRANSITIONS.clear()
    helper_envs.BanditEnv.TRANSITIONS.clear()


# ---------------------------------------------------------------------------------------------
# What the rollout hands to the advantage estimator
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", BOTH_KINDS)
@pytest.mark.parametrize("name", SCRIPTS)
def test_truncation_is_bootstrapped_with_the_final_observation_and_termination_is_not(
        tmp_path, monkeypatch, name, env_id):
    """With V(s) = s[0], the advantages (returns, for REINFORCE) of the first batch equal a slow
    reference built from the env's own record: V(final observation) after a truncation, nothing
    after a termination (also when both flags are set), V(next observation) at the end of the batch."""
    m = MODULES[name]
    known_values(monkeypatch, m)
    calls = spy(monkeypatch, m, ESTIMATOR[name])
    gamma, lam = 0.9, 0.8
    extra = dict(gae_lambda=lam) if name != "reinforce" else dict(baseline=True)
    run_main(name, tmp_path, env_id=env_id, total_timesteps=64, gamma=gamma, norm_obs=False,
             norm_reward=False, **extra)

    obs, rewards, terminated, truncated, successors = first_batch(2, 32)
    assert terminated.sum() >= 2 and (truncated & ~terminated).sum() >= 2 and (truncated & terminated).sum() >= 1
    values, next_values = obs[..., 0], successors[..., 0]
    result = calls[0][2]
    if name == "reinforce":
        expected = slow_reward_to_go(rewards, next_values, terminated, truncated, gamma)
        got = result
    else:
        expected = slow_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
        got = result[0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def discounted_stream(rewards, dones, gamma):
    """R_t = gamma R_{t-1} + r_t per env, from 0, reset after each episode's end."""
    out, running = np.zeros_like(rewards), np.zeros(rewards.shape[1])
    for t in range(len(rewards)):
        running = gamma * running + rewards[t]
        out[t] = running
        running[dones[t]] = 0.0
    return out


@pytest.mark.parametrize("name", SCRIPTS)
def test_scaled_rewards_reach_the_advantages_and_the_logged_returns_stay_raw(tmp_path, monkeypatch, name):
    m = MODULES[name]
    calls = spy(monkeypatch, m, ESTIMATOR[name])
    gamma = 0.9
    _, metrics = run_main(name, tmp_path, env_id="Probe-v0", total_timesteps=128, gamma=gamma, norm_reward=True)
    obs, rewards, terminated, truncated, _ = first_batch(2, 32)
    # the first batch's rewards are divided by the std of their discounted return stream
    scale = discounted_stream(rewards, terminated | truncated, gamma).std()
    assert scale > 2.0
    np.testing.assert_allclose(calls[0][0][0].numpy(), rewards / scale, rtol=1e-4)
    # ... while every logged episode return is the raw sum of the env's rewards
    episodes = []
    for key in (1, 2):
        total, length = 0.0, 0
        for _, _, reward, term, trunc, _ in helper_envs.ProbeEnv.TRANSITIONS[key]:
            total, length = total + reward, length + 1
            if term or trunc:
                episodes.append((total, length))
                total, length = 0.0, 0
    logged = [(r["charts/episodic_return"], r["charts/episodic_length"]) for r in metrics if "charts/episodic_return" in r]
    assert len(logged) >= 20
    np.testing.assert_allclose(sorted(logged), sorted(episodes), rtol=1e-6)


@pytest.mark.parametrize("env_id", BOTH_KINDS)
@pytest.mark.parametrize("name", SCRIPTS)
def test_evaluation_leaves_every_statistic_and_weight_untouched(tmp_path, monkeypatch, name, env_id):
    m = MODULES[name]
    states = []
    real_evaluate = m.evaluate

    def evaluate(agent, *args, **kwargs):
        before = copy.deepcopy(agent.state_dict())
        result = real_evaluate(agent, *args, **kwargs)
        states.append((before, agent.state_dict()))
        return result

    monkeypatch.setattr(m, "evaluate", evaluate)
    run_main(name, tmp_path, env_id=env_id, total_timesteps=128, norm_obs=True, norm_reward=True, eval_episodes=3)
    ((before, after),) = states
    assert before["obs_rms.count"] > 100  # statistics that an update would move
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), f"{key} changed during evaluation"
