"""trpo.py's own math against slow, obviously-correct references (what several scripts define is
tested for each of them in test_shared_math.py)."""

import copy
import glob
import json
import math

import gymnasium as gym
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

import trpo
from test_loops import assert_same, record_agents, run_main, spy

SPACES = {"box": gym.spaces.Box(-1.0, 1.0, (2,)), "discrete": gym.spaces.Discrete(3)}


def tiny_agent(kind, seed=0):
    torch.manual_seed(seed)
    agent = trpo.Agent(3, SPACES[kind], (4,), norm_obs=False, clip_obs=10.0).double()
    if kind == "box":
        with torch.no_grad():
            agent.actor_logstd.copy_(torch.tensor([0.3, -0.2]))
            agent.actor[-1].weight.mul_(50.0)  # a policy head far from zero, so KL curvature is not trivial
    x = torch.randn(10, 3, dtype=torch.float64)
    return agent, x


def reference_mean_kl(agent, x, old, theta):
    """Mean KL(pi_0 || pi_theta) with theta written into a copy of the actor by plain tensor ops."""
    first, last = agent.actor[0], agent.actor[-1]
    shapes = [first.weight.shape, first.bias.shape, last.weight.shape, last.bias.shape]
    pieces, offset = [], 0
    for shape in shapes:
        n = math.prod(shape)
        pieces.append(theta[offset:offset + n].view(shape))
        offset += n
    w1, b1, w2, b2 = pieces
    out = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    if agent.continuous:
        log_std = theta[offset:]
        return trpo.gaussian_kl(old[0], old[1], out, log_std).mean()
    return trpo.categorical_kl(old[0], out).mean()


@pytest.mark.parametrize("kind", ["box", "discrete"])
def test_fisher_vector_product_equals_explicit_hessian_of_the_mean_kl(kind):
    agent, x = tiny_agent(kind)
    params = agent.policy_parameters()
    theta0 = trpo.flat_params(params)
    old = trpo.detached(agent.dist(x))
    assert not old.out.requires_grad and (old.log_std is None or not old.log_std.requires_grad)

    kl = trpo.kl(old, agent.dist(x))
    grad_kl = trpo.flat_grad(kl.mean(), params, create_graph=True)
    hessian = torch.autograd.functional.hessian(lambda th: reference_mean_kl(agent, x, old, th), theta0)
    assert hessian.shape == (len(theta0), len(theta0)) and hessian.abs().max() > 1e-3
    for damping in (0.0, 0.1):
        v = torch.randn(len(theta0), dtype=torch.float64)
        fvp = trpo.fisher_vector_product(grad_kl, params, v, damping)
        torch.testing.assert_close(fvp, hessian @ v + damping * v, rtol=1e-8, atol=1e-10)


def test_kl_against_a_live_old_policy_has_no_curvature():
    """Why pi_0 must be detached: KL(pi_theta || pi_theta) is 0 for every theta, so is its Hessian."""
    agent, x = tiny_agent("box")
    params = agent.policy_parameters()
    live = agent.dist(x)  # not detached
    kl = trpo.kl(live, agent.dist(x))
    grad_kl = trpo.flat_grad(kl.mean(), params, create_graph=True)
    v = torch.randn(len(trpo.flat_params(params)), dtype=torch.float64)
    assert trpo.fisher_vector_product(grad_kl, params, v, 0.0).abs().max() < 1e-10


def test_conjugate_gradient_matches_a_direct_solve():
    torch.manual_seed(0)
    m = torch.randn(20, 20, dtype=torch.float64)
    a = m @ m.T / 20 + torch.eye(20, dtype=torch.float64)  # symmetric positive definite
    b = torch.randn(20, dtype=torch.float64)
    calls = []
    x, residual = trpo.conjugate_gradient(lambda v: calls.append(1) or a @ v, b, iters=40, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-6, atol=1e-8)
    assert residual < 1e-6 and residual == pytest.approx(float((b - a @ x).norm()), abs=1e-6)
    assert len(calls) <= 40
    # a fixed budget is respected, and a few iterations already reduce the residual
    calls.clear()
    x5, residual5 = trpo.conjugate_gradient(lambda v: calls.append(1) or a @ v, b, iters=5)
    assert len(calls) == 5 and residual5 < float(b.norm())
    # an exact solution stops early: b in a 1-d eigenspace needs one iteration
    calls.clear()
    trpo.conjugate_gradient(lambda v: calls.append(1) or 3.0 * v, b, iters=10)
    assert len(calls) == 1


def test_max_step_size_reaches_the_trust_region_boundary_of_the_quadratic_model():
    torch.manual_seed(0)
    m = torch.randn(6, 6, dtype=torch.float64)
    fisher = m @ m.T + torch.eye(6, dtype=torch.float64)
    x = torch.randn(6, dtype=torch.float64)
    delta = 0.01
    beta = trpo.max_step_size(x @ fisher @ x, delta)
    step = beta * x
    assert (0.5 * step @ fisher @ step).item() == pytest.approx(delta, rel=1e-6)
    assert torch.isfinite(trpo.max_step_size(torch.tensor(0.0), delta))  # epsilon-guarded
    assert trpo.max_step_size(torch.tensor(-1e-12), delta) == trpo.max_step_size(torch.tensor(0.0), delta)  # rounding below 0


def quadratic_problem(kl_scale, surrogate_fn):
    """theta in R^2, KL = kl_scale * |theta - theta0|^2, surrogate given."""
    theta0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    seen = []

    def evaluate(theta):
        seen.append(theta.clone())
        d = theta - theta0
        return surrogate_fn(d), float(kl_scale * (d @ d))

    return theta0, evaluate, seen


def test_line_search_never_accepts_a_kl_above_delta():
    theta0, evaluate, seen = quadratic_problem(1.0, lambda d: float(d.sum()))  # always improves
    step = torch.tensor([0.3, 0.3], dtype=torch.float64)  # KL of the full step 0.18
    theta, accepted, backtracks, surrogate, kl = trpo.line_search(evaluate, theta0, step, 0.0, 0.01, 0.5, 10)
    assert accepted and kl <= 0.01
    # the first candidate inside the region: 0.5^j * 0.3 * sqrt(2) <= 0.1  =>  j = 3
    assert backtracks == 3 and torch.allclose(theta, theta0 + 0.125 * step)
    assert all(evaluate(t)[1] > 0.01 for t in seen[:3])


def test_line_search_never_accepts_a_worse_surrogate():
    # within the trust region everywhere, but the surrogate only improves for small steps
    theta0, evaluate, _ = quadratic_problem(1e-6, lambda d: float(d[0] - 10 * d[0] ** 2))
    step = torch.tensor([1.0, 0.0], dtype=torch.float64)
    theta, accepted, backtracks, surrogate, kl = trpo.line_search(evaluate, theta0, step, 0.0, 0.01, 0.5, 10)
    assert accepted and surrogate > 0.0
    assert backtracks == 4  # 0.5^j < 0.1 first at j = 4


def test_line_search_boundaries_kl_equal_to_delta_accepted_equal_surrogate_rejected():
    """KL <= delta is inside the region; only a strict improvement of the surrogate is accepted."""
    theta0 = torch.zeros(1, dtype=torch.float64)
    step = torch.ones(1, dtype=torch.float64)
    at_boundary = lambda theta: (1.0, 0.01)  # improves, KL exactly delta
    assert trpo.line_search(at_boundary, theta0, step, 0.0, 0.01, 0.5, 3).accepted
    no_better = lambda theta: (0.0, 0.0) if theta.item() != 0.25 else (1e-9, 0.0)  # equal, equal, then better
    result = trpo.line_search(no_better, theta0, step, 0.0, 0.01, 0.5, 3)
    assert result.accepted and result.backtracks == 2


def test_line_search_failure_returns_theta0_unchanged():
    theta0, evaluate, seen = quadratic_problem(1.0, lambda d: -float(d @ d))  # never improves
    before = theta0.clone()
    theta, accepted, backtracks, surrogate, kl = trpo.line_search(
        evaluate, theta0, torch.tensor([0.1, 0.1], dtype=torch.float64), 0.0, 0.01, 0.8, 7)
    assert not accepted and backtracks == 7
    assert len(seen) == 8 and torch.equal(seen[-1], before)  # 7 candidates, then the KL at theta_0
    assert torch.equal(theta, before) and surrogate == 0.0 and kl == 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_line_search_rejects_non_finite_candidates(bad):
    # the surrogate non-finite (+inf would otherwise "improve"), or the KL (-inf would otherwise "fit")
    for surrogate_fn, kl_scale in [(lambda d: bad, 0.0), (lambda d: 1.0, bad)]:
        theta0, evaluate, _ = quadratic_problem(kl_scale, surrogate_fn)
        result = trpo.line_search(evaluate, theta0, torch.ones(2, dtype=torch.float64), -1.0, 0.01, 0.5, 3)
        assert not result.accepted and torch.equal(result.theta, theta0)


def batch(kind, seed=0):
    agent, x = tiny_agent(kind, seed)
    x = torch.randn(256, 3, dtype=torch.float64)
    with torch.no_grad():
        actions = agent.sample(x)
        old_dist = trpo.detached(agent.dist(x))
    advantages = torch.randn(256, dtype=torch.float64)
    return agent, trpo.PolicyBatch(x, actions, old_dist, trpo.log_prob(old_dist, actions), advantages)


@pytest.mark.parametrize("kind", ["box", "discrete"])
def test_policy_update_stays_in_the_trust_region_and_improves_the_surrogate(kind):
    agent, b = batch(kind)
    critic_before = trpo.flat_params(list(agent.critic.parameters()))
    stats = trpo.trpo_policy_update(agent, b, trpo.Args(max_kl=0.01))
    assert stats["step_accepted"] == 1.0
    assert 0 < stats["kl_after_step"] <= 0.01 and stats["surrogate_improvement"] > 0
    assert stats["expected_improvement"] > 0
    # the parameters the actor now holds are the accepted ones
    with torch.no_grad():
        logprob_new = trpo.log_prob(agent.dist(b.obs), b.actions)
    assert trpo.surrogate_objective(logprob_new - b.old_logprobs, b.advantages).item() == pytest.approx(stats["surrogate"])
    assert torch.equal(trpo.flat_params(list(agent.critic.parameters())), critic_before)  # theta is the actor only


@pytest.mark.parametrize("kind", ["box", "discrete"])
def test_policy_update_restores_the_parameters_exactly_when_the_line_search_fails(kind, monkeypatch):
    agent, b = batch(kind)
    before = [p.detach().clone() for p in agent.policy_parameters()]
    real_line_search = trpo.line_search
    tried = []

    def nothing_fits(evaluate, theta0, full_step, surrogate0, max_kl, decay, max_backtracks):
        def recording(theta):
            tried.append(theta)
            return evaluate(theta)  # writes the candidate into the actor

        return real_line_search(recording, theta0, full_step, surrogate0, -1.0, decay, max_backtracks)

    monkeypatch.setattr(trpo, "line_search", nothing_fits)
    stats = trpo.trpo_policy_update(agent, b, trpo.Args(max_kl=0.01, max_backtracks=5))
    assert stats["step_accepted"] == 0.0 and stats["line_search_backtracks"] == 5 and len(tried) == 6
    assert stats["kl_after_step"] == 0.0 and stats["surrogate_improvement"] == 0.0
    assert stats["expected_improvement"] == 0.0  # of the step taken: none
    for p, b in zip(agent.policy_parameters(), before):
        assert torch.equal(p, b)


@pytest.mark.parametrize("kind", ["box", "discrete"])
def test_policy_update_uses_the_fisher_matrix_of_pi_at_theta0_after_pi_has_moved(kind, monkeypatch):
    """A statistics update moves pi away from the stored pi_0 before the step. Every F v of the step
    is then still the Fisher matrix of pi at theta_0 (the Hessian of the mean KL from pi_theta_0), not
    the Hessian of the mean KL from the stored pi_0, which is not positive semi-definite here."""
    agent, b = batch(kind)
    torch.manual_seed(1)
    with torch.no_grad():  # pi moves with theta unchanged, as under new statistics
        for p in agent.policy_parameters():
            p.add_(0.2 * torch.randn_like(p))
    params = agent.policy_parameters()
    theta0 = trpo.flat_params(params)
    with torch.no_grad():
        here = trpo.detached(agent.dist(b.obs))
    fisher = torch.autograd.functional.hessian(lambda th: reference_mean_kl(agent, b.obs, here, th), theta0)
    stored = torch.autograd.functional.hessian(lambda th: reference_mean_kl(agent, b.obs, b.old_dist, th), theta0)
    assert torch.linalg.eigvalsh(fisher).min() > -1e-10 and torch.linalg.eigvalsh(stored).min() < -1e-4
    products = spy(monkeypatch, trpo, "fisher_vector_product")
    trpo.trpo_policy_update(agent, b, trpo.Args(max_kl=0.01))
    assert len(products) >= 2
    for (_, _, v, damping), _, fvp in products:
        torch.testing.assert_close(fvp, fisher @ v + damping * v, rtol=1e-7, atol=1e-9)


def test_policy_update_refuses_a_non_finite_surrogate():
    agent, b = batch("box")
    before = trpo.flat_params(agent.policy_parameters())
    with pytest.raises(trpo.TrainingError, match="non-finite surrogate"):
        trpo.trpo_policy_update(agent, b._replace(advantages=b.advantages * float("nan")), trpo.Args())
    assert torch.equal(trpo.flat_params(agent.policy_parameters()), before)


def test_every_logged_step_stays_within_max_kl_in_a_real_run(run, tmp_path):
    proc = run("trpo.py", "--env-id", "Pendulum-v1", "--total-timesteps", "4096", "--num-envs", "2",
               "--num-steps", "256", "--max-kl", "0.005", "--eval-episodes", "0", "--no-cuda")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (metrics,) = glob.glob(str(tmp_path / "runs" / "*" / "metrics.jsonl"))
    steps = [json.loads(line) for line in open(metrics) if "trpo/kl_after_step" in line]
    assert len(steps) == 8
    for s in steps:
        assert s["trpo/kl_after_step"] <= 0.005
        assert s["trpo/step_accepted"] in (0.0, 1.0) and 0 <= s["trpo/line_search_backtracks"] <= 10
        assert s["trpo/step_accepted"] == 0.0 or s["trpo/surrogate_improvement"] > 0
    assert sum(s["trpo/step_accepted"] for s in steps) >= 6


def test_surrogate_objective_is_the_importance_weighted_advantage():
    logratio = torch.log(torch.tensor([0.5, 1.0, 2.0]))
    advantages = torch.tensor([1.0, -2.0, 3.0])
    assert trpo.surrogate_objective(logratio, advantages).item() == pytest.approx((0.5 - 2.0 + 6.0) / 3)


def test_flat_params_round_trip_is_exact():
    agent, _ = tiny_agent("box")
    params = agent.policy_parameters()
    theta = trpo.flat_params(params)
    trpo.set_flat_params(params, torch.zeros_like(theta))
    assert all((p == 0).all() for p in params)
    trpo.set_flat_params(params, theta)
    assert torch.equal(trpo.flat_params(params), theta)
    assert len(theta) == sum(p.numel() for p in params) == 3 * 4 + 4 + 4 * 2 + 2 + 2


def torch_dist(agent, obs):
    """pi(.|s) on raw observations as a torch.distributions object, built from the agent's modules
    directly (its normalizer, its actor), independently of the code under test's KL."""
    with torch.no_grad():
        out = agent.actor(agent.obs_rms.normalize(obs, agent.clip_obs) if agent.norm_obs else obs)
        if agent.continuous:
            return torch.distributions.Independent(Normal(out, agent.actor_logstd.exp().expand_as(out)), 1)
        return Categorical(logits=out)


def normalizing_agent(seed=0):
    """A float64 Box agent with normalization on, statistics already estimated from data."""
    agent, _ = tiny_agent("box", seed)
    agent.norm_obs = True
    agent.obs_rms.update(3.0 + 2.0 * torch.randn(500, 3, dtype=torch.float64))
    return agent


def test_statistics_update_keeps_actor_and_critic_outputs_on_raw_observations():
    agent = normalizing_agent()
    obs = 3.0 + 2.0 * torch.randn(64, 3, dtype=torch.float64)
    before_dist, before_value = torch_dist(agent, obs), agent.value(obs).detach()
    mean_before = agent.obs_rms.mean.clone()
    # moved a lot, yet within the old statistics' clip (+-10 std), where the rewrite is exact
    agent.update_obs_stats(torch.tensor([[-4.0, 9.0, 0.5]], dtype=torch.float64) + 3.0 * torch.randn(300, 3, dtype=torch.float64))
    assert (agent.obs_rms.mean - mean_before).abs().min() > 0.5  # the statistics moved a lot...
    after_dist = torch_dist(agent, obs)
    torch.testing.assert_close(after_dist.mean, before_dist.mean)  # ...the functions did not
    torch.testing.assert_close(agent.value(obs).detach(), before_value)
    assert kl_divergence(before_dist, after_dist).max() < 1e-12


def test_first_statistics_update_replaces_the_placeholders_and_keeps_the_weights():
    agent, _ = tiny_agent("box")
    agent.norm_obs = True
    weights = [p.detach().clone() for p in agent.parameters()]
    agent.update_obs_stats(3.0 + 2.0 * torch.randn(500, 3, dtype=torch.float64))
    assert all(torch.equal(p, w) for p, w in zip(agent.parameters(), weights))
    assert agent.obs_rms.count > 400


def test_preserve_first_layer_is_exact_where_the_clip_does_not_bind():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 5).double()
    m0, s0, m1, s1 = torch.randn(4).double(), torch.rand(4).double() + 0.5, torch.randn(4).double(), torch.rand(4).double() + 0.5
    obs = torch.randn(32, 4, dtype=torch.float64)
    before = layer((obs - m0) / s0).detach()
    weight = layer.weight.detach().clone()
    trpo.preserve_first_layer(layer, m0, s0, m1, s1, torch.tensor([True, True, False, True]))
    # coordinate 2 is renormalized without the rewrite: its weights stay, and only it changes the output
    torch.testing.assert_close(layer.weight[:, 2], weight[:, 2])
    x1 = (obs - m1) / s1
    x1[:, 2] = (obs[:, 2] - m0[2]) / s0[2]
    torch.testing.assert_close(layer(x1).detach(), before)


def test_statistics_update_leaves_a_coordinate_the_old_statistics_clipped_alone():
    """A coordinate that was constant (std at its floor, ~1e-4) and now varies: the old normalization
    clipped it to +-10 in the batch, so preserving the function would scale its weights by s_1 / s_0
    (~1e4 here). It is renormalized instead, with its weights kept; the other coordinates are rewritten."""
    agent, _ = tiny_agent("box")
    agent.norm_obs = True
    data = 3.0 + 2.0 * torch.randn(500, 3, dtype=torch.float64)
    data[:, 1] = 0.5  # constant so far
    agent.obs_rms.update(data)
    actor_w = agent.actor[0].weight.detach().clone()
    batch = 3.0 + 2.0 * torch.randn(300, 3, dtype=torch.float64)  # coordinate 1 now varies
    agent.update_obs_stats(batch)
    torch.testing.assert_close(agent.actor[0].weight[:, 1], actor_w[:, 1])
    assert not torch.allclose(agent.actor[0].weight[:, 0], actor_w[:, 0])  # rewritten
    assert agent.actor[0].weight.abs().max() < 10 and agent.critic[0].weight.abs().max() < 10


def test_frozen_coordinates_keep_their_statistics_and_the_policy_keeps_its_outputs():
    """The fallback of a statistics update that alone leaves the trust region: the coordinates the
    rewrite leaves out (returned by the first try) keep their mean and variance, the others are
    updated and rewritten, and the outputs on the batch are the acting policy's; with every
    coordinate frozen nothing changes, the sample count included."""
    agent, _ = tiny_agent("box")
    agent.norm_obs = True
    data = 3.0 + 2.0 * torch.randn(500, 3, dtype=torch.float64)
    data[:, 1] = 0.5  # constant so far
    agent.obs_rms.update(data)
    acting = copy.deepcopy(agent.state_dict())
    batch = 3.0 + 2.0 * torch.randn(300, 3, dtype=torch.float64)  # coordinate 1 now varies
    before = torch_dist(agent, batch)
    not_rewritten = agent.update_obs_stats(batch)
    assert not_rewritten.tolist() == [False, True, False]
    assert kl_divergence(before, torch_dist(agent, batch)).mean() > 1e-3  # the left-out coordinate moved pi
    agent.load_state_dict(acting)
    agent.update_obs_stats(batch, frozen=not_rewritten)
    assert agent.obs_rms.mean[1] == acting["obs_rms.mean"][1] and agent.obs_rms.var[1] == acting["obs_rms.var"][1]
    assert (agent.obs_rms.mean[[0, 2]] != acting["obs_rms.mean"][[0, 2]]).all()
    assert agent.obs_rms.count == acting["obs_rms.count"] + 300
    assert kl_divergence(before, torch_dist(agent, batch)).max() < 1e-12
    agent.load_state_dict(acting)
    agent.update_obs_stats(batch, frozen=torch.ones(3, dtype=torch.bool))
    assert_same(acting, agent.state_dict(), "all frozen")


def test_first_batch_fallback_rewrites_where_that_is_exact_and_counts_the_batch():
    """The first batch's fallback (its plain replacement moved pi by more than delta): the coordinates
    where the rewrite is exact on the batch are merged and rewritten, so the actor and the critic keep
    their outputs on it; one the placeholder statistics (mean 0, std 1) clip, and one that only the new
    statistics clip (a single spike), keep their placeholders; the batch is counted. Every coordinate
    clipped: nothing changes, the count included."""
    agent, _ = tiny_agent("box")
    agent.norm_obs = True
    placeholders = copy.deepcopy(agent.state_dict())
    batch = (3.0 + 2.0 * torch.randn(300, 3, dtype=torch.float64)).clamp(-9.0, 9.0)
    batch[:, 1], batch[0, 1] = 0.0, 3.0  # 0 but once: new statistics ~(0.01, 0.17) put the spike at z ~ 17
    batch[:, 2] += 40.0  # beyond the placeholders' clip (+-10) on every row
    before_dist, before_value = torch_dist(agent, batch), agent.value(batch)
    assert agent.update_obs_stats(batch).all()  # the plain first batch: replaced, nothing rewritten
    agent.load_state_dict(placeholders)
    left_out = agent.update_obs_stats(batch, frozen=torch.zeros(3, dtype=torch.bool))  # on a first batch: a request
    assert left_out.tolist() == [False, True, True]
    assert agent.obs_rms.mean[1:].tolist() == [0, 0] and agent.obs_rms.var[1:].tolist() == [1, 1]
    assert (agent.obs_rms.mean[0] - 3.0).abs() < 0.5 and agent.obs_rms.count > 300
    assert not torch.equal(agent.actor[0].weight, placeholders["actor.0.weight"])  # rewritten, not merely kept
    assert kl_divergence(before_dist, torch_dist(agent, batch)).max() < 1e-12
    torch.testing.assert_close(agent.value(batch), before_value)
    agent.load_state_dict(placeholders)
    assert agent.update_obs_stats(batch + 100.0, frozen=torch.ones(3, dtype=torch.bool)).all()
    assert_same(placeholders, agent.state_dict(), "all clipped")


def record_statistics_updates(monkeypatch):
    """Wrap trpo.Agent.update_obs_stats; returns (snapshots, first_batch_fallbacks), filled as the run
    goes: per batch, a deep copy of the acting agent and the batch's raw observations, taken before its
    first statistics update (not the redo with frozen coordinates); and the batch size of each redo on
    a first batch (the first batch's fallback)."""
    snapshots, first_batch_fallbacks = [], []
    real_update = trpo.Agent.update_obs_stats

    def recording(agent, obs, frozen=None):
        if frozen is None:
            snapshots.append((copy.deepcopy(agent), obs.clone()))  # before the statistics change
        elif agent.obs_rms.count < 1:
            first_batch_fallbacks.append(obs.shape[0])
        return real_update(agent, obs, frozen)

    monkeypatch.setattr(trpo.Agent, "update_obs_stats", recording)
    return snapshots, first_batch_fallbacks


def consecutive_kls(snapshots, last=None):
    """Mean KL, by torch.distributions, between the policy that collected batch k and the one that
    collected batch k+1 (for the last batch: `last`, if given), over batch k's raw observations."""
    acting = [agent for agent, _ in snapshots[1:]] + ([last] if last is not None else [])
    return [kl_divergence(torch_dist(a0, obs), torch_dist(a1, obs)).mean().item() for (a0, obs), a1 in zip(snapshots, acting)]


@pytest.mark.parametrize("env_id", ["DriftingObs-v0", "ContactObs-v0"])
def test_trust_region_holds_between_consecutive_acting_policies_on_raw_observations(tmp_path, monkeypatch, env_id):
    """A real run whose observation statistics keep moving (DriftingObs: the rewrite keeps the
    function; ContactObs: a coordinate that was constant starts to vary, which the rewrite leaves out):
    the policy that collected batch k and the one that collects batch k+1 differ by at most max_kl in
    mean KL over batch k's raw observations, computed here with torch.distributions on deep copies of
    the agent."""
    snapshots, _ = record_statistics_updates(monkeypatch)
    max_kl = 0.01
    trpo.main(trpo.Args(env_id=f"helper_envs:{env_id}", total_timesteps=128 * 16, num_envs=2, num_steps=64,
                        vf_num_minibatches=4, vf_update_epochs=2, max_kl=max_kl, eval_episodes=0, cuda=False,
                        output_dir=str(tmp_path / "runs")))
    assert len(snapshots) == 16
    kls = consecutive_kls(snapshots)
    assert max(kls) <= max_kl * (1 + 1e-4), kls
    # the run did move: most updates used a good part of the region
    assert sum(k > 0.2 * max_kl for k in kls) >= len(kls) // 2, kls
    (metrics,) = glob.glob(str(tmp_path / "runs" / "*" / "metrics.jsonl"))
    logged = [json.loads(line) for line in open(metrics) if "charts/normalizer_kl" in line]
    assert len(logged) == 16 and all(0 <= r["charts/normalizer_kl"] <= max_kl for r in logged)
    frozen = [r["trpo/statistics_frozen"] for r in logged]
    if env_id == "ContactObs-v0":  # from the switch on, the contact coordinate (alone) keeps its statistics
        assert frozen[:3] == [0, 0, 0] and frozen[3] == 1 and set(frozen) == {0, 1}, frozen
    else:
        assert set(frozen) == {0}


def test_a_tiny_delta_still_lets_the_observation_statistics_learn(tmp_path, monkeypatch):
    """However small max_kl, the statistics learn from the batches and the region holds: with 1e-7
    on Pendulum-v1 the first batch's replacement moves pi by more than delta (8.5e-7), and its
    fallback merges the batch with the rewrite (no coordinate is left out: neither the placeholders
    nor the new statistics clip any of Pendulum's), instead of keeping every placeholder and never
    counting a batch. The KL between consecutive acting policies is computed here independently."""
    snapshots, first_batch_fallbacks = record_statistics_updates(monkeypatch)
    agents = record_agents(monkeypatch, trpo)
    max_kl = 1e-7
    _, metrics = run_main("trpo", tmp_path, env_id="Pendulum-v1", total_timesteps=128 * 4, num_steps=64, max_kl=max_kl)
    assert first_batch_fallbacks == [128]  # the path under test was taken, once
    logged = [r for r in metrics if "trpo/statistics_frozen" in r]
    assert len(logged) == 4 and [r["trpo/statistics_frozen"] for r in logged] == [0, 0, 0, 0]
    assert all(r["trpo/kl_after_step"] <= max_kl and r["charts/normalizer_kl"] <= max_kl for r in logged)
    (agent,) = agents
    assert agent.obs_rms.count >= 512 and agent.obs_rms.var[2] > 4  # counted; Pendulum's angular velocity: var 14 here, placeholder 1
    kls = consecutive_kls(snapshots, last=agent)
    assert len(kls) == 4 and max(kls) <= max_kl * (1 + 1e-3), kls


@pytest.mark.parametrize("kind", ["box", "discrete"])
def test_policy_dist_helpers_match_torch_distributions(kind):
    """log_prob, entropy and kl on PolicyDist, and detached: a copy outside the graph."""
    agent, x = tiny_agent(kind)
    dist = agent.dist(x)
    other = trpo.PolicyDist(dist.out + 0.3 * torch.randn_like(dist.out), None if dist.log_std is None else dist.log_std - 0.2)
    if kind == "box":
        make = lambda d: torch.distributions.Independent(Normal(d.out, d.log_std.exp().expand_as(d.out)), 1)
        actions = torch.randn(len(x), 2, dtype=torch.float64)
    else:
        make = lambda d: Categorical(logits=d.out)
        actions = torch.randint(0, 3, (len(x),))
    torch.testing.assert_close(trpo.log_prob(dist, actions), make(dist).log_prob(actions))
    torch.testing.assert_close(trpo.entropy(dist).expand(len(x)), make(dist).entropy())  # () for the Gaussian
    torch.testing.assert_close(trpo.kl(dist, other), kl_divergence(make(dist), make(other)))
    copy_ = trpo.detached(dist)
    for original, copied in zip(dist, copy_):
        if original is None:
            continue
        assert original.requires_grad and not copied.requires_grad and torch.equal(original, copied)
        assert copied.untyped_storage().data_ptr() != original.untyped_storage().data_ptr()
