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
import torch._inductor
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


def spy(monkeypatch, owner, function_name, before=None):
    """Wrap owner.function_name (a module's function or a class's method); returns the list of
    (args, kwargs, result) of its calls. `before(*args, **kwargs)`, if given, runs before each call:
    the place to copy a state the call is about to change."""
    calls, real = [], getattr(owner, function_name)

    def wrapper(*args, **kwargs):
        if before is not None:
            before(*args, **kwargs)
        result = real(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(owner, function_name, wrapper)
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


def record_optimizers(monkeypatch, before_step=None):
    """Every torch.optim.Adam the run builds is appended to the returned list; `before_step(optimizer)`,
    if given, runs before each of its steps."""
    optimizers = []

    class Recorder(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            optimizers.append(self)
            if before_step is not None:
                self.register_step_pre_hook(lambda optimizer, *_: before_step(optimizer))

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


@pytest.mark.parametrize("clip", [10.0, 0.5])
@pytest.mark.parametrize("name", SCRIPTS)
def test_scaled_rewards_reach_the_advantages_and_the_logged_returns_stay_raw(tmp_path, monkeypatch, name, clip):
    m = MODULES[name]
    calls = spy(monkeypatch, m, ESTIMATOR[name])
    gamma = 0.9
    _, metrics = run_main(name, tmp_path, env_id="Probe-v0", total_timesteps=128, gamma=gamma, norm_reward=True,
                          clip_reward=clip)
    obs, rewards, terminated, truncated, _ = first_batch(2, 32)
    # the first batch's rewards are divided by the std of their discounted return stream, then clipped
    scale = discounted_stream(rewards, terminated | truncated, gamma).std()
    assert scale > 2.0 and (rewards / scale > 0.5).any() and (rewards / scale < 0.5).any()
    np.testing.assert_allclose(calls[0][0][0].numpy(), np.clip(rewards / scale, -clip, clip), rtol=1e-4)
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


# ---------------------------------------------------------------------------------------------
# Which way the update moves the policy
# ---------------------------------------------------------------------------------------------
def policy_log_prob(agent, obs, actions):
    """log pi(a|s) from the actor's outputs, with torch.distributions (not the script's helpers)."""
    with torch.no_grad():
        out = agent.actor(agent.normalize(obs))
        if agent.continuous:
            return Normal(out, agent.actor_logstd.exp().expand_as(out)).log_prob(actions).sum(-1)
        return Categorical(logits=out).log_prob(actions)


@pytest.mark.parametrize("env_id", ["Bandit-v0", "DiscreteBandit-v0"])
@pytest.mark.parametrize("name", SCRIPTS)
def test_one_update_raises_log_pi_of_positive_advantage_actions_and_lowers_the_rest(
        tmp_path, monkeypatch, name, env_id):
    """One-step episodes from s = 0, reward = the action (Box) or +-1 (Discrete): V(0) = 0 at
    initialization, so A = r, and the script's default update (advantage normalization included)
    must move log pi up for the actions whose reward is above the batch's mean and down for the rest."""
    m = MODULES[name]
    agents = record_agents(monkeypatch, m)
    before = []  # the policy that collected the batch
    spy(monkeypatch, m, ESTIMATOR[name], before=lambda *_, **__: before.append(copy.deepcopy(agents[-1])))
    _, metrics = run_main(name, tmp_path, env_id=env_id, total_timesteps=64)
    assert len(before) == 1
    records = helper_envs.BanditEnv.TRANSITIONS[1] + helper_envs.BanditEnv.TRANSITIONS[2]
    assert len(records) == 64
    continuous = env_id == "Bandit-v0"
    actions = torch.as_tensor(np.stack([a for a, _ in records]), dtype=torch.float32 if continuous else torch.long)
    rewards = torch.tensor([r for _, r in records])
    advantages = rewards - rewards.mean()
    obs = torch.zeros(len(records), 3)
    change = policy_log_prob(agents[-1], obs, actions) - policy_log_prob(before[0], obs, actions)
    up, down = change[advantages > 0].mean().item(), change[advantages < 0].mean().item()
    assert up > 0 > down, (up, down)
    # the logged KL is the estimate mean[(r - 1) - log r] of this very change, r = pi_1 / pi_0
    (logged,) = [r["losses/approx_kl"] for r in metrics if "losses/approx_kl" in r]
    assert logged == pytest.approx((change.exp() - 1 - change).mean().item(), rel=1e-3, abs=1e-9)


@pytest.mark.parametrize("norm_obs", [False, True])
@pytest.mark.parametrize("env_id", BOTH_KINDS)
@pytest.mark.parametrize("name", SCRIPTS)
def test_one_update_brings_the_critic_closer_to_its_targets(tmp_path, monkeypatch, name, env_id, norm_obs):
    """The value regression descends: on the first batch, mean (V(s) - R)^2 is smaller after the
    update than before it, R being the targets the estimator returned. With normalization, V is read
    through the statistics the batch was collected under; trpo.py's V(s) takes the raw observation,
    and its statistics update keeps V the same function of it, so there V is read through its own."""
    m = MODULES[name]
    agents = record_agents(monkeypatch, m)
    before = []
    calls = spy(monkeypatch, m, ESTIMATOR[name], before=lambda *_, **__: before.append(copy.deepcopy(agents[-1])))
    longer = {"vf_update_epochs": 8} if norm_obs and name != "ppo" else {}  # normalized inputs: a slower first fit
    run_main(name, tmp_path, env_id=env_id, total_timesteps=64, norm_obs=norm_obs, norm_reward=False, **longer)
    targets = [result if name == "reinforce" else result[1] for _, _, result in calls]
    obs = torch.as_tensor(first_batch(2, 32)[0])
    if norm_obs and name != "trpo":
        assert agents[-1].obs_rms.count > before[0].obs_rms.count  # the statistics did move after the batch
    with torch.no_grad():
        values = [agent.value(obs) if name == "trpo" else agent.value(before[0].normalize(obs))
                  for agent in (before[0], agents[-1])]
    error = [(v - targets[0]).square().mean().item() for v in values]
    assert error[1] < 0.98 * error[0], error


def normalized(obs, rms, clip=10.0):
    """Raw observations normalized by running statistics, computed here: clip((s - mean) / sqrt(var + 1e-8))."""
    return np.clip((obs - rms.mean.numpy()) / np.sqrt(rms.var.numpy() + 1e-8), -clip, clip)


@pytest.mark.parametrize("name", ["ppo", "reinforce"])
def test_the_batch_end_is_bootstrapped_with_the_value_of_the_normalized_next_observation(tmp_path, monkeypatch, name):
    """V(s_T) for the observation after the batch goes through the same normalization as every other
    V(s): with V(x) = x[0] on the network's input, last_value = (s_T[0] - mean[0]) / std[0] under the
    statistics of the rollout (checked on the second batch, whose statistics are not the initial ones)."""
    m = MODULES[name]
    agents = record_agents(monkeypatch, m)
    known_values(monkeypatch, m)
    stats = []
    calls = spy(monkeypatch, m, "successor_values", before=lambda *_, **__: stats.append(copy.deepcopy(agents[-1].obs_rms)))
    run_main(name, tmp_path, env_id="Probe-v0", total_timesteps=192, norm_obs=True, norm_reward=False)
    rms, last_value = stats[1], calls[1][0][1]
    next_obs = np.stack([helper_envs.ProbeEnv.TRANSITIONS[seed][64][0] for seed in (1, 2)])  # after 2 x 32 steps
    expected = normalized(next_obs, rms)[:, 0]
    assert np.abs(expected - next_obs[:, 0]).min() > 0.1  # normalized and raw differ here
    np.testing.assert_allclose(last_value.numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_update_sees_the_sampled_actions_not_the_clipped_ones(tmp_path, monkeypatch, name):
    """The env gets the action clipped to its bounds; log pi_0(a|s) and the update use the action
    that was sampled, which may lie outside them."""
    m = MODULES[name]
    samples = spy(monkeypatch, m.Agent, "sample")
    seen = spy(monkeypatch, *((m, "log_prob") if name == "trpo" else (m.Agent, "log_prob_entropy")))
    run_main(name, tmp_path, env_id="Probe-v0", total_timesteps=64, norm_obs=False, norm_reward=False)
    sampled = torch.stack([result for _, _, result in samples])  # (32 steps, 2 envs, 1)
    assert sampled.shape == (32, 2, 1) and (sampled.abs() > 1).any()  # outside the Box [-1, 1]
    torch.testing.assert_close(seen[0][0][-1].reshape(sampled.shape), sampled)


@pytest.mark.parametrize("name", ["ppo", "reinforce"])
def test_gradients_are_clipped_before_the_optimizer_steps(tmp_path, monkeypatch, name):
    """Every step of the optimizer that --max-grad-norm governs sees a gradient of norm <= the bound,
    and the bound was active (some gradient was clipped to it)."""
    m, norms = MODULES[name], []
    record_optimizers(monkeypatch, before_step=lambda opt: norms.append((opt, torch.linalg.vector_norm(torch.stack(
        [p.grad.norm() for group in opt.param_groups for p in group["params"] if p.grad is not None])).item())))
    agents = record_agents(monkeypatch, m)
    run_main(name, tmp_path, env_id="Probe-v0", total_timesteps=128, max_grad_norm=0.05)
    clipped = [norm for opt, norm in norms
               if any(p is agents[-1].actor_logstd for group in opt.param_groups for p in group["params"])]
    assert len(clipped) >= 2 and max(clipped) <= 0.05 * (1 + 1e-4)
    assert any(norm == pytest.approx(0.05, rel=1e-3) for norm in clipped)


@pytest.mark.parametrize("norm_adv", [True, False])
def test_ppo_minibatches_partition_the_batch_and_keep_each_sample_together(tmp_path, monkeypatch, norm_adv):
    """Per epoch, the minibatches hold every sample of the batch once, each with its own old value,
    return and advantage (A = R - V_0); advantages normalized per minibatch when asked."""
    m = MODULES["ppo"]
    known_values(monkeypatch, m)  # V(s) = s[0], so a sample's value tells which state it is
    gae = spy(monkeypatch, m, "compute_gae")
    value_losses = spy(monkeypatch, m, "ppo_value_loss")
    policy_losses = spy(monkeypatch, m, "ppo_policy_loss")
    run_main("ppo", tmp_path, env_id="Probe-v0", total_timesteps=64, norm_obs=False, norm_reward=False,
             norm_adv=norm_adv, update_epochs=3, num_minibatches=4)
    (_, returns), values = gae[0][2], gae[0][0][1]
    batch = sorted(zip(values.flatten().tolist(), returns.flatten().tolist()))
    assert len(value_losses) == len(policy_losses) == 3 * 4
    orders = []
    for epoch in range(3):
        samples = []
        for k in range(4 * epoch, 4 * epoch + 4):
            new_values, old_values, mb_returns, _ = value_losses[k][0]
            mb_advantages = policy_losses[k][0][1]
            assert len(mb_returns) == 64 // 4
            torch.testing.assert_close(new_values, old_values)  # same states, V unchanged by the update
            if norm_adv:
                assert abs(mb_advantages.mean().item()) < 1e-5 and abs(mb_advantages.std(correction=0).item() - 1) < 1e-3
            else:
                torch.testing.assert_close(mb_advantages, mb_returns - old_values)
            samples += zip(old_values.tolist(), mb_returns.tolist())
        assert sorted(samples) == batch
        orders.append(samples)
    assert orders[0] != orders[1] != orders[2]  # each epoch shuffles the batch anew


def test_ppo_entropy_bonus_raises_the_entropy(tmp_path, monkeypatch):
    """Zero rewards, so zero advantages: only the bonus -c_H * H moves the policy, and up in entropy."""
    agents = record_agents(monkeypatch, MODULES["ppo"])
    run_main("ppo", tmp_path, env_id="ZeroReward-v0", total_timesteps=64, ent_coef=0.1)
    assert (agents[-1].actor_logstd > 0).all(), agents[-1].actor_logstd  # starts at 0
    run_main("ppo", tmp_path / "without", env_id="ZeroReward-v0", total_timesteps=64, ent_coef=0.0)
    assert (agents[-1].actor_logstd == 0).all()


# ---------------------------------------------------------------------------------------------
# TRPO: the distribution the line search measures against
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["trpo", "reinforce"])
def test_critic_minibatches_keep_each_state_with_its_own_target(tmp_path, monkeypatch, name):
    """Per epoch, the critic's minibatches hold every (state, target) pair of the batch once: the
    shuffle moves a state and its return together (s[0] tells every state of the probe apart)."""
    m = MODULES[name]
    estimates = spy(monkeypatch, m, ESTIMATOR[name])
    fits = spy(monkeypatch, m, "critic_loss")
    run_main(name, tmp_path, env_id="Probe-v0", total_timesteps=64, norm_obs=False, norm_reward=False)
    returns = estimates[0][2] if name == "reinforce" else estimates[0][2][1]
    obs = first_batch(2, 32)[0]
    batch = sorted(zip(obs[..., 0].flatten().tolist(), returns.flatten().tolist()))
    assert len(fits) == 2 * 4  # 2 epochs of 4 minibatches
    for epoch in range(2):
        pairs = [pair for args, _, _ in fits[4 * epoch:4 * epoch + 4] for pair in zip(args[1][:, 0].tolist(), args[2].tolist())]
        assert sorted(pairs) == batch


def test_trpo_solve_is_damped_by_the_flag_and_the_step_size_is_not(tmp_path, monkeypatch):
    """Every F v of the conjugate gradient is (F + cg_damping I) v with the flag's damping; the step
    size beta = sqrt(2 delta / x^T F x) takes x^T F x with F undamped, at CG's solution x."""
    m = MODULES["trpo"]
    products = spy(monkeypatch, m, "fisher_vector_product")
    solves = spy(monkeypatch, m, "conjugate_gradient")
    sizes = spy(monkeypatch, m, "max_step_size")
    run_main("trpo", tmp_path, env_id="Probe-v0", total_timesteps=128, cg_damping=0.37)
    assert len(solves) == len(sizes) == 2  # one policy step per update
    undamped = [(args, result) for args, _, result in products if args[3] == 0.0]
    assert len(undamped) == 2 and len(products) >= 4
    assert {args[3] for args, _, _ in products} == {0.37, 0.0}
    for (_, _, (x, _)), (size_args, _, _), (fvp_args, fx) in zip(solves, sizes, undamped):
        torch.testing.assert_close(fvp_args[2], x)
        torch.testing.assert_close(size_args[0], x @ fx)


def test_trpo_critic_is_fit_on_the_inputs_its_value_function_reads(tmp_path, monkeypatch):
    """trpo.py's V(s) = critic(normalize(s)) under the statistics after the batch's update: the
    critic's minibatches hold exactly those inputs, each batch state once per epoch."""
    m = MODULES["trpo"]
    agents = record_agents(monkeypatch, m)
    fits = spy(monkeypatch, m, "critic_loss")
    run_main("trpo", tmp_path, env_id="Probe-v0", total_timesteps=64, norm_obs=True, norm_reward=False)
    rms, obs = agents[-1].obs_rms, first_batch(2, 32)[0].reshape(-1, 2)
    expected = normalized(obs, rms)
    seen = torch.cat([args[1] for args, _, _ in fits[:4]]).numpy()  # the first epoch's 4 minibatches
    assert np.abs(expected - obs).max() > 0.5  # normalized and raw differ here
    np.testing.assert_allclose(seen[np.lexsort(seen.T)], expected[np.lexsort(expected.T)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("env_id", BOTH_KINDS)
def test_trpo_old_distribution_is_a_detached_copy(tmp_path, monkeypatch, env_id):
    """pi_0's parameters in the batch must not move with the policy during the line search: no
    gradient, and no storage shared with any parameter of the agent."""
    m = MODULES["trpo"]
    agents = record_agents(monkeypatch, m)
    calls = spy(monkeypatch, m, "trpo_policy_update")
    run_main("trpo", tmp_path, env_id=env_id, total_timesteps=128)
    assert len(calls) == 2
    storages = {p.untyped_storage().data_ptr() for p in agents[-1].parameters()}
    for args, _, _ in calls:
        batch = args[1]
        for tensor in batch.old_dist:
            if tensor is None:
                continue
            assert not tensor.requires_grad
            assert tensor.untyped_storage().data_ptr() not in storages
        assert not batch.old_logprobs.requires_grad


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
def test_ppo_target_kl_stops_before_stepping_on_the_offending_minibatch(tmp_path, monkeypatch):
    """With a tiny target the first minibatch (ratio 1, KL 0) is stepped on and the second, already
    past the target, is not: one optimizer step per update. Without a target: epochs x minibatches."""
    optimizers = record_optimizers(monkeypatch)
    _, metrics = run_main("ppo", tmp_path / "a", env_id="Probe-v0", total_timesteps=128, target_kl=1e-9)
    assert steps_taken(optimizers[-1]) == 2
    assert [r["ppo/minibatch_steps"] for r in metrics if "ppo/minibatch_steps" in r] == [1, 1]
    _, metrics = run_main("ppo", tmp_path / "b", env_id="Probe-v0", total_timesteps=128, target_kl=1e3)
    assert steps_taken(optimizers[-1]) == 2 * 2 * 4
    assert [r["ppo/minibatch_steps"] for r in metrics if "ppo/minibatch_steps" in r] == [8, 8]


@pytest.mark.parametrize("anneal", [True, False])
def test_ppo_learning_rate_annealing(tmp_path, monkeypatch, anneal):
    """lr_k = lr_0 (1 - (k - 1) / K) for update k of K, as the optimizer holds it during the update."""
    optimizers = record_optimizers(monkeypatch)
    seen = []
    spy(monkeypatch, MODULES["ppo"], "ppo_policy_loss",
        before=lambda *_, **__: seen.append(optimizers[-1].param_groups[0]["lr"]))
    _, metrics = run_main("ppo", tmp_path, env_id="Probe-v0", total_timesteps=256, learning_rate=0.01,
                          anneal_lr=anneal)
    expected = [0.01, 0.0075, 0.005, 0.0025] if anneal else [0.01] * 4
    logged = [r["charts/learning_rate"] for r in metrics if "charts/learning_rate" in r]
    np.testing.assert_allclose(logged, expected)
    np.testing.assert_allclose(seen, np.repeat(expected, 8))  # 8 minibatch steps per update


@pytest.mark.parametrize("env_id,flag,clipped", [
    ("Probe-v0", None, True), ("DiscreteProbe-v0", None, False),  # the default follows reward scaling
    ("Probe-v0", False, False), ("DiscreteProbe-v0", True, True)])
def test_ppo_value_clipping_default_follows_the_action_kind(tmp_path, monkeypatch, env_id, flag, clipped):
    calls = spy(monkeypatch, MODULES["ppo"], "ppo_value_loss")
    run_main("ppo", tmp_path, env_id=env_id, total_timesteps=64, clip_vloss=flag, clip_coef=0.3)
    assert len(calls) == 8
    assert {call[0][3] for call in calls} == ({0.3} if clipped else {None})


@pytest.mark.parametrize("norm_adv", [False, True])
@pytest.mark.parametrize("baseline", [True, False])
def test_reinforce_baseline_is_subtracted_only_when_asked(tmp_path, monkeypatch, baseline, norm_adv):
    m = MODULES["reinforce"]
    known_values(monkeypatch, m)
    returns = spy(monkeypatch, m, "reward_to_go")
    losses = spy(monkeypatch, m, "reinforce_loss")
    run_main("reinforce", tmp_path, env_id="Probe-v0", total_timesteps=64, norm_obs=False, norm_reward=False,
             norm_adv=norm_adv, baseline=baseline)
    obs = first_batch(2, 32)[0]
    expected = (returns[0][2] - (torch.as_tensor(obs[..., 0]) if baseline else 0.0)).reshape(-1)
    if norm_adv:  # G - V, then normalized over the batch
        expected = (expected - expected.mean()) / (expected.std(correction=0) + 1e-8)
    torch.testing.assert_close(losses[0][0][1], expected)


@pytest.mark.parametrize("epochs", [1, 3])
def test_reinforce_update_epochs_steps_the_policy_that_many_times_per_batch(tmp_path, monkeypatch, epochs):
    agents = record_agents(monkeypatch, MODULES["reinforce"])
    optimizers = record_optimizers(monkeypatch)
    losses = spy(monkeypatch, MODULES["reinforce"], "reinforce_loss")
    run_main("reinforce", tmp_path, env_id="Probe-v0", total_timesteps=128, update_epochs=epochs)
    actor = {id(p) for p in agents[-1].actor.parameters()}
    (policy_optimizer,) = [o for o in optimizers if id(o.param_groups[0]["params"][0]) in actor]
    assert steps_taken(policy_optimizer) == 2 * epochs
    # each epoch re-evaluates log pi under the policy the previous epoch left
    if epochs > 1:
        assert not torch.equal(losses[0][0][0], losses[1][0][0])


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def assert_same(a, b, where="checkpoint"):
    """Nested dicts, lists and tensors are equal, key by key and element by element."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def optimizer_states(checkpoint):
    """The per-parameter state (step, moments) of the checkpoint's optimizer(s), by name."""
    return {name: s["state"] for name, s in checkpoint["optimizers"].items()}


@pytest.mark.parametrize("env_id", BOTH_KINDS)
@pytest.mark.parametrize("name", SCRIPTS)
def test_checkpoints_round_trip_everything_and_training_continues_from_them(tmp_path, monkeypatch, name, env_id):
    m = MODULES[name]
    flags = dict(env_id=env_id, norm_obs=True, norm_reward=True)
    run_main(name, tmp_path / "a", total_timesteps=128, **flags)
    (path_a,) = glob.glob(str(tmp_path / "a" / "runs" / "*" / "model.pt"))
    a = torch.load(path_a, weights_only=True)
    assert a["agent"]["obs_rms.count"] > 100 and a["reward_rms"]["count"] > 100  # moved from their priors
    assert all(len(state) > 0 for state in optimizer_states(a).values())  # Adam moments of every optimizer

    # load then save, without training in between: the same checkpoint, but for the learning rates,
    # which are the new run's flags (config.json), not the checkpoint's (PPO's annealed 1.5e-4)
    learning_rates = {"ppo": dict(learning_rate=7e-4), "trpo": dict(vf_learning_rate=9e-4),
                      "reinforce": dict(learning_rate=7e-4, vf_learning_rate=9e-4)}[name]
    run_main(name, tmp_path / "b", total_timesteps=0, load_model=path_a, **flags, **learning_rates)
    (path_b,) = glob.glob(str(tmp_path / "b" / "runs" / "*" / "model.pt"))
    b = torch.load(path_b, weights_only=True)
    for key in ("agent", "reward_rms", "algo", "version"):
        assert_same(a[key], b[key], key)
    assert_same(optimizer_states(a), optimizer_states(b), "optimizer states")
    expected_lr = {"actor_critic": 7e-4, "critic": 9e-4, "policy": 7e-4}
    for optimizer_name, state in b["optimizers"].items():
        (group,) = state["param_groups"]
        assert group["lr"] == expected_lr[optimizer_name], optimizer_name
        (saved,) = a["optimizers"][optimizer_name]["param_groups"]
        assert {k: v for k, v in group.items() if k != "lr"} == {k: v for k, v in saved.items() if k != "lr"}

    # training from the checkpoint starts from its state: weights, statistics, optimizer moments
    agents, optimizers = record_agents(monkeypatch, m), record_optimizers(monkeypatch)
    reward_stats, at_first_batch = [], []

    def reward_statistics(rms, x):
        if rms.mean.dim() == 0:  # the reward-scaling statistics, before the first batch merges in
            reward_stats.append(copy.deepcopy(rms.state_dict()))

    def agent_and_optimizers(*args, **kwargs):
        at_first_batch.append((copy.deepcopy(agents[-1].state_dict()),
                               [copy.deepcopy(o.state_dict()["state"]) for o in optimizers]))

    spy(monkeypatch, m.RunningMeanStd, "update", before=reward_statistics)
    spy(monkeypatch, m, ESTIMATOR[name], before=agent_and_optimizers)
    run_main(name, tmp_path / "c", total_timesteps=64, load_model=path_a, **flags)
    agent_state, optimizer_state = at_first_batch[0]
    assert_same(a["agent"], agent_state, "agent")
    assert_same(list(optimizer_states(a).values()), optimizer_state, "optimizer")
    assert_same(a["reward_rms"], reward_stats[0], "reward_rms")


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_non_finite_loss_undoes_its_update_and_saves_the_run(tmp_path, monkeypatch, name):
    """The rewards grow so large within the first batch that the returns overflow (every env output
    finite): the run stops; the agent and its optimizers are as
    they were before that update (no Adam step survives), and model.pt holds that state at step 0.
    (TRPO meets the NaN first in its surrogate, before any step on it.)"""
    m = MODULES[name]
    agents, optimizers, at_first_batch = record_agents(monkeypatch, m), record_optimizers(monkeypatch), []
    spy(monkeypatch, m, ESTIMATOR[name], before=lambda *a, **k: at_first_batch.append(copy.deepcopy(agents[-1].state_dict())))
    with pytest.raises(m.TrainingError, match=r"non-finite (loss, weights, statistics or outputs at update 1|surrogate).* holds the run as of step 0 "):
        run_main(name, tmp_path, env_id="OverflowReward-v0", total_timesteps=64, norm_obs=False, norm_reward=False)
    assert_same(at_first_batch[0], agents[-1].state_dict(), "agent")
    assert all(optimizer.state_dict()["state"] == {} for optimizer in optimizers)
    (path,) = glob.glob(str(tmp_path / "runs" / "*" / "model.pt"))
    saved = torch.load(path, weights_only=True)
    assert_same(saved["agent"], at_first_batch[0], "saved agent")
    assert saved["progress"]["global_step"] == 0 and all(s["state"] == {} for s in saved["optimizers"].values())


class GuardedRun:
    """What NonFiniteGuard needs of a Run: an agent (its parameters, actor and critic), reward_rms,
    state, load_state and fail (which raises). `net` is the actor and the critic at once."""

    def __init__(self, m, net, optimizer):
        self.m, self.net, self.optimizer = m, net, optimizer
        self.agent = torch.nn.Module()
        self.agent.actor = self.agent.critic = net
        self.reward_rms = m.RunningMeanStd(())

    def state(self):
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "reward_rms": self.reward_rms.state_dict()}

    def load_state(self, state):
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.reward_rms.load_state_dict(state["reward_rms"])

    def fail(self, message):
        raise self.m.TrainingError(message)


def test_the_non_finite_guard_reads_the_device_once_and_restores(monkeypatch):
    m, net = MODULES["trpo"], torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    before = copy.deepcopy(net.state_dict())
    guard = m.NonFiniteGuard(GuardedRun(m, net, optimizer))
    reads, watching = [], []
    for method in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy", "cpu"):  # the ways to read a value
        real = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda self, *a, _real=real, _name=method, **k:
                            (reads.append(_name) if watching else None, _real(self, *a, **k))[1])
    for loss in (net(torch.ones(1, 2)).sum(), net(torch.ones(1, 2)).sum() * float("nan")):
        watching.append(True)
        guard.watch(loss)
        watching.clear()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert reads == [] and isinstance(guard.nonfinite, torch.Tensor)  # a device flag, unread until check
    with pytest.raises(m.TrainingError, match="non-finite loss, weights, statistics or outputs at update 3, global step 99; "
                                              "the update is undone"):
        guard.check(3, 99, torch.ones(1, 2))
    assert_same(before, net.state_dict(), "restored")
    assert optimizer.state_dict()["state"] == {}


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_non_finite_guard_watches_a_tensor_of_losses(name):
    """trpo.py and reinforce.py watch a critic fit's losses once, stacked: one NaN among them stops the
    run, as a NaN loss watched alone does; all finite, check passes."""
    m, net = MODULES[name], torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    for losses, stops in (([1.0, 2.0, 3.0], False), ([1.0, float("nan"), 2.0], True), ([float("inf")], True)):
        guard = m.NonFiniteGuard(GuardedRun(m, net, optimizer))
        guard.watch(torch.tensor(0.5))
        guard.watch(torch.tensor(losses))
        if stops:
            with pytest.raises(m.TrainingError, match="non-finite loss"):
                guard.check(1, 8, torch.ones(1, 2))
        else:
            guard.check(1, 8, torch.ones(1, 2))


def test_the_non_finite_guard_checks_the_observation_statistics():
    """Statistics turned non-finite (one inf observation makes the mean inf and the variance NaN),
    every loss, weight and output on the batch finite: the update is undone all the same."""
    m, net = MODULES["reinforce"], torch.nn.Linear(2, 1)
    net.register_buffer("mean", torch.zeros(2, dtype=torch.float64))
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    guard = m.NonFiniteGuard(GuardedRun(m, net, optimizer))
    net.mean[1] = float("inf")
    with pytest.raises(m.TrainingError, match="non-finite loss, weights, statistics or outputs at update 2"):
        guard.check(2, 128, torch.ones(1, 2))
    assert torch.equal(net.mean, torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_non_finite_guard_checks_the_reward_statistics(name):
    """Reward scaling's statistics turned non-finite (every reward would then scale to 0 or NaN
    without a loss showing it): the update is undone all the same."""
    m, net = MODULES[name], torch.nn.Linear(2, 1)
    run = GuardedRun(m, net, torch.optim.SGD(net.parameters(), lr=1.0))
    guard = m.NonFiniteGuard(run)
    run.reward_rms.var.fill_(float("inf"))
    with pytest.raises(m.TrainingError, match="non-finite loss, weights, statistics or outputs at update 4"):
        guard.check(4, 256, torch.ones(1, 2))
    assert run.reward_rms.var.item() == 1.0


@pytest.mark.parametrize("overflow", ["weights", "outputs"])
def test_the_non_finite_guard_undoes_a_step_that_overflows_from_a_finite_loss(overflow):
    """Every loss finite, yet the last step leaves an infinite weight, or finite weights whose outputs
    overflow: the update is undone all the same."""
    m, net = MODULES["ppo"], torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    before = copy.deepcopy(net.state_dict())
    guard = m.NonFiniteGuard(GuardedRun(m, net, optimizer))
    loss = net(torch.ones(1, 2)).sum()
    guard.watch(loss)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        net.weight[0, 0] = float("inf") if overflow == "weights" else 3e38
        net.weight[0, 1] = 0.0 if overflow == "weights" else 3e38
    with pytest.raises(m.TrainingError, match="non-finite loss, weights, statistics or outputs at update 1"):
        guard.check(1, 64, torch.ones(1, 2))
    assert_same(before, net.state_dict(), "restored")


@pytest.mark.parametrize("name", ["ppo", "trpo", "reinforce"])
def test_an_update_that_blows_up_the_weights_is_undone_and_the_run_resumes(tmp_path, name):
    """A learning rate of 1e38 takes each script's networks past float32's range in one update from
    finite losses (in ppo.py and reinforce.py the policy's, in trpo.py the critic's): the update is
    undone, model.pt holds the finite weights of the run before it, and --resume with a sane learning
    rate trains on."""
    m = MODULES[name]
    blow_up = {"ppo": dict(learning_rate=1e38, num_minibatches=1, update_epochs=1),
               "trpo": dict(vf_learning_rate=1e38, vf_num_minibatches=1, vf_update_epochs=1),
               "reinforce": dict(learning_rate=1e38, vf_learning_rate=1e-3)}[name]
    with pytest.raises(m.TrainingError, match="non-finite loss, weights, statistics or outputs at update 1, global step 64"):
        run_main(name, tmp_path, env_id="Probe-v0", total_timesteps=128, **blow_up)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    checkpoint = torch.load(os.path.join(run_dir, "model.pt"), weights_only=True)
    assert all(torch.isfinite(t).all() for t in checkpoint["agent"].values())
    sane = {key: (1e-3 if "learning_rate" in key else value) for key, value in blow_up.items()}
    summary, _ = run_main(name, tmp_path, env_id="Probe-v0", total_timesteps=128, resume=run_dir, **sane)
    assert summary["global_step"] == 128 and not summary["interrupted"]


def without_timings(records):
    """metrics.jsonl records without what differs between two runs of the same computation."""
    return [{k: v for k, v in r.items() if k not in ("time", "charts/SPS")} for r in records]


def assert_same_metrics(plain, fast):
    """Two runs' metrics.jsonl records agree within float tolerance (timings aside)."""
    assert len(plain) == len(fast)
    for p, c in zip(plain, fast):
        assert p.keys() == c.keys()
        for key in p.keys() - {"time", "charts/SPS"}:
            tolerance = 1e-5 if key == "trpo/cg_residual" else 1e-6  # a residual near 0: absolute rounding
            assert c[key] == pytest.approx(p[key], rel=1e-4, abs=tolerance, nan_ok=True), key


@pytest.mark.parametrize("name", SCRIPTS)
def test_compile_learns_like_the_plain_path(tmp_path, capsys, name):
    """--compile (each minibatch step as one compiled function, on the CPU here) gives the plain path's
    metrics within float tolerance over two updates (rounding differences then grow, as between
    two CPUs)."""
    _, plain = run_main(name, tmp_path / "plain", env_id="Pendulum-v1", total_timesteps=128)
    capsys.readouterr()
    _, fast = run_main(name, tmp_path / "compiled", env_id="Pendulum-v1", total_timesteps=128, compile=True)
    out, err = capsys.readouterr()  # compiled indeed: no fallback to the plain function
    loss = {"ppo": "ppo_loss", "trpo": "critic_loss", "reinforce": "critic_loss"}[name]
    assert f"--compile: {loss} step compiled in" in out and "could not be compiled" not in err
    assert_same_metrics(plain, fast)


def test_compiled_ppo_with_target_kl_discrete_actions_and_entropy_learns_like_the_plain_path(tmp_path, capsys):
    """The compiled step's other branches, compiled: --target-kl (a masked step, then the update's
    early end), a categorical policy, the entropy bonus."""
    flags = dict(env_id="CartPole-v1", total_timesteps=128, target_kl=0.002, ent_coef=0.01, learning_rate=0.01)
    _, plain = run_main("ppo", tmp_path / "plain", **flags)
    _, fast = run_main("ppo", tmp_path / "compiled", compile=True, **flags)
    assert "ppo_loss step compiled in" in capsys.readouterr().out
    assert any(r.get("ppo/minibatch_steps", 8) < 8 for r in plain)  # --target-kl ended an update early
    assert_same_metrics(plain, fast)


@pytest.mark.parametrize("name", SCRIPTS)
def test_compiled_resume_continues_like_the_plain_resume(tmp_path, capsys, name):
    """--resume with --compile continues from the checkpoint's optimizer state as the plain path does
    (the compiled step reads the state that load_state_dict put in place)."""
    metrics = {}
    for path, compile_ in (("plain", False), ("compiled", True)):
        run_main(name, tmp_path / path, env_id="Pendulum-v1", total_timesteps=64, compile=compile_)
        (run_dir,) = glob.glob(str(tmp_path / path / "runs" / "*"))
        m = MODULES[name]
        m.main(m.parse_args(["--resume", run_dir, "--total-timesteps", "128"]))
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            metrics[path] = [json.loads(line) for line in f]
    assert "compiled in" in capsys.readouterr().out
    assert_same_metrics(metrics["plain"], metrics["compiled"])


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_step_that_cannot_be_compiled_runs_the_plain_path(tmp_path, capsys, monkeypatch, name):
    """No C++ compiler, an unsupported op...: one warning line, then the plain step (not the slower
    uncompiled functional one), so the run is the plain run to the last digit."""
    _, plain = run_main(name, tmp_path / "plain", env_id="Pendulum-v1", total_timesteps=128)
    capsys.readouterr()

    def fails(graph, inputs, options):
        raise RuntimeError("Compiler: cc not found\nmore detail")

    monkeypatch.setattr(torch._inductor, "compile", fails)
    _, fallback = run_main(name, tmp_path / "fallback", env_id="Pendulum-v1", total_timesteps=128, compile=True)
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "--compile" in line] == [
        f"warning: --compile: {'ppo_loss' if name == 'ppo' else 'critic_loss'} step could not be compiled "
        "(Compiler: cc not found); running the plain path"]
    assert without_timings(plain) == without_timings(fallback)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("flags", [{}, {"compile": True}, {"compile": True, "cudagraphs": True}],
                         ids=["cuda", "compile", "cudagraphs"])
@pytest.mark.parametrize("name", SCRIPTS)
def test_cuda_paths_run_and_learn_like_the_cpu(tmp_path, name, flags):
    """The CUDA paths run end to end (the CUDA generator differs from the CPU's: no same-seed match)."""
    summary, metrics = run_main(name, tmp_path, env_id="Pendulum-v1", total_timesteps=128, cuda=True, **flags)
    assert summary["global_step"] == 128
    assert all(r["losses/value_loss"] is not None and r["losses/approx_kl"] is not None
               for r in metrics if "losses/approx_kl" in r)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    m = MODULES[name]  # --resume on CUDA: the checkpoint's host-side state is read on the host
    assert m.main(m.parse_args(["--resume", run_dir, "--total-timesteps", "192"]))["global_step"] == 192


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("flags", [{"compile": True}, {"compile": True, "cudagraphs": True}], ids=["compile", "cudagraphs"])
@pytest.mark.parametrize("name", SCRIPTS)
def test_cuda_compile_and_graphs_learn_like_plain_cuda(tmp_path, capsys, name, flags):
    """On one GPU the compiled and graph-replayed paths give the plain CUDA path's metrics within float
    tolerance over two updates: a replay that reused a stale input would train on one minibatch."""
    _, plain = run_main(name, tmp_path / "plain", env_id="Pendulum-v1", total_timesteps=128, cuda=True)
    capsys.readouterr()
    _, fast = run_main(name, tmp_path / "fast", env_id="Pendulum-v1", total_timesteps=128, cuda=True, **flags)
    out, err = capsys.readouterr()
    assert "compiled in" in out and "could not be compiled" not in err
    assert_same_metrics(plain, fast)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", SCRIPTS)
def test_cuda_discrete_actions_and_evaluation(tmp_path, name):
    summary, _ = run_main(name, tmp_path, env_id="CartPole-v1", total_timesteps=128, cuda=True, eval_episodes=2)
    assert summary["global_step"] == 128 and summary["eval_return_mean"] > 0


@pytest.mark.parametrize("name", SCRIPTS)
def test_cuda_graph_outputs_outlive_the_next_replay(monkeypatch, name):
    """A CUDA graph's replay writes its outputs into the same memory each time: the losses a loop
    keeps for logging must be copies, and each call must begin a new graph step (CPU stand-in)."""
    steps = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    static = torch.zeros(2)

    def graph(x):  # outputs that alias the graph's static memory, as a replay's do (nested, as a plain step's)
        static.copy_(x)
        return (static[0],), static[1]

    call = MODULES[name].replayed_safely(graph)
    (first, first_flag), (second, second_flag) = call(torch.tensor([1.0, 2.0])), call(torch.tensor([3.0, 4.0]))
    assert [first[0].item(), first_flag.item()] == [1.0, 2.0] and [second[0].item(), second_flag.item()] == [3.0, 4.0]
    assert len(steps) == 2
    single = MODULES[name].replayed_safely(lambda x: static.copy_(x))
    kept = single(torch.tensor([5.0, 6.0]))
    single(torch.tensor([7.0, 8.0]))
    assert kept.tolist() == [5.0, 6.0]


@pytest.mark.parametrize("name", SCRIPTS)
def test_checkpoints_are_read_onto_the_host(tmp_path, monkeypatch, name):
    """The checkpoint loads on the CPU whatever the run's device (load_state_dict copies weights to
    it; the reward scaler's running returns are numpy): a CUDA run's --resume reads it too."""
    run_main(name, tmp_path, env_id="Pendulum-v1", total_timesteps=64)
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    loads = spy(monkeypatch, torch, "load")
    MODULES[name].read_checkpoint(f"{run_dir}/model.pt", "--resume")
    assert [kwargs.get("map_location") for _, kwargs, _ in loads] == ["cpu"]
