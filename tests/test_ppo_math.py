"""ppo.py's math against slow, obviously-correct references."""

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal

import ppo


# ---------------------------------------------------------------------------------------------
# GAE and the successor values it bootstraps from
# ---------------------------------------------------------------------------------------------
def slow_gae(rewards, values, next_values, terminations, truncations, gamma, lam):
    """A_t = sum_k (gamma lam)^k delta_{t+k}, the sum stopping at the end of the episode or batch."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                bootstrap = 0.0 if terminations[k, n] else next_values[k, n]
                delta = rewards[k, n] + gamma * bootstrap - values[k, n]
                total += weight * delta
                if terminations[k, n] or truncations[k, n]:
                    break
                weight *= gamma * lam
            adv[t, n] = total
    return adv


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.5)])
def test_compute_gae_matches_slow_reference_with_mid_batch_terminations_and_truncations(gamma, lam):
    rng = np.random.default_rng(0)
    T, N = 17, 3
    rewards = rng.normal(size=(T, N))
    values = rng.normal(size=(T, N))
    next_values = rng.normal(size=(T, N))
    terminations = np.zeros((T, N), dtype=bool)
    truncations = np.zeros((T, N), dtype=bool)
    terminations[[3, 9], 0] = True
    truncations[[5, 12], 1] = True
    terminations[4, 2], truncations[10, 2] = True, True
    terminations[15, 2] = truncations[15, 2] = True  # both at once: terminal wins, no bootstrap
    dones = terminations | truncations

    expected = slow_gae(rewards, values, next_values, terminations, truncations, gamma, lam)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)
    adv, ret = ppo.compute_gae(t(rewards), t(values), t(next_values), t(terminations), t(dones), gamma, lam)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), expected + values, rtol=1e-10, atol=1e-10)


def test_truncation_is_bootstrapped_and_termination_is_not():
    # one env, one step each: A = r + gamma * V(s') - V(s) when truncated, r - V(s) when terminated
    r, v, v_final, gamma = torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[2.0]]), 0.9
    done = torch.tensor([[1.0]])
    adv_trunc, _ = ppo.compute_gae(r, v, v_final, torch.tensor([[0.0]]), done, gamma, 0.95)
    adv_term, _ = ppo.compute_gae(r, v, v_final, torch.tensor([[1.0]]), done, gamma, 0.95)
    assert adv_trunc.item() == pytest.approx(1.0 + 0.9 * 2.0 - 0.5)
    assert adv_term.item() == pytest.approx(1.0 - 0.5)


def test_successor_values_uses_final_observation_value_at_episode_ends():
    values = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    last_value = torch.tensor([4.0, 40.0])
    final_values = torch.tensor([[0.0, 0.0], [-7.0, 0.0], [0.0, -9.0]])
    dones = torch.tensor([[False, False], [True, False], [False, True]])
    expected = torch.tensor([[2.0, 20.0], [-7.0, 30.0], [4.0, -9.0]])
    assert torch.equal(ppo.successor_values(values, last_value, final_values, dones), expected)


def test_discounted_returns_stream_resets_after_done_and_carries_state():
    rewards = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    dones = np.array([[False, False], [True, False], [False, False], [False, True]])
    running = np.array([10.0, 0.0])
    out = ppo.discounted_returns_stream(rewards, dones, running, gamma=0.5)
    expected = np.array([[6.0, 2.0], [4.0, 3.0], [1.0, 3.5], [1.5, 3.75]])
    np.testing.assert_allclose(out, expected)
    np.testing.assert_allclose(running, [1.5, 0.0])  # env 1 finished at the last step


# ---------------------------------------------------------------------------------------------
# The clipped surrogate and the value loss
# ---------------------------------------------------------------------------------------------
def slow_clipped_objective(ratio, adv, eps):
    return min(ratio * adv, min(max(ratio, 1 - eps), 1 + eps) * adv)


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
def test_ppo_policy_loss_value_and_gradient_on_both_sides_of_the_clip(eps):
    # ratios inside and outside [1 - eps, 1 + eps], for positive and negative advantages
    ratios = [0.5, 1 - eps / 2, 1.0, 1 + eps / 2, 1.7]
    cases = [(r, a) for r in ratios for a in (2.0, -3.0)]
    logratio = torch.tensor([math.log(r) for r, _ in cases], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([a for _, a in cases], dtype=torch.float64)
    loss = ppo.ppo_policy_loss(logratio, adv, eps)
    loss.backward()

    expected = -np.mean([slow_clipped_objective(r, a, eps) for r, a in cases])
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    for i, (r, a) in enumerate(cases):
        # d(-obj/n)/d(log r): -r*A/n where the unclipped term is the min and active, 0 where clipped
        clipped = (a > 0 and r > 1 + eps) or (a < 0 and r < 1 - eps)
        expected_grad = 0.0 if clipped else -r * a / len(cases)
        assert logratio.grad[i].item() == pytest.approx(expected_grad, abs=1e-12), (r, a)


def test_ppo_policy_loss_gradient_matches_finite_differences():
    torch.manual_seed(0)
    logratio = (0.3 * torch.randn(50, dtype=torch.float64)).requires_grad_()
    adv = torch.randn(50, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda lr: ppo.ppo_policy_loss(lr, adv, 0.2), (logratio,))


def test_ppo_value_loss_clipped_and_unclipped():
    new = torch.tensor([1.0, 0.0, 3.0, -2.0])
    old = torch.tensor([0.5, 0.5, 2.0, -1.0])
    ret = torch.tensor([2.0, -1.0, 2.5, 0.0])
    eps = 0.2
    unclipped = 0.5 * ((new - ret) ** 2).mean()
    assert ppo.ppo_value_loss(new, old, ret, None).item() == pytest.approx(unclipped.item())
    slow = []
    for n, o, r in zip(new.tolist(), old.tolist(), ret.tolist()):
        v_clip = o + min(max(n - o, -eps), eps)
        slow.append(max((n - r) ** 2, (v_clip - r) ** 2))
    assert ppo.ppo_value_loss(new, old, ret, eps).item() == pytest.approx(0.5 * np.mean(slow))


def test_normalize_advantages_is_safe_for_a_minibatch_of_one():
    one = ppo.normalize_advantages(torch.tensor([3.0]))
    assert torch.isfinite(one).all() and one.item() == 0.0
    many = ppo.normalize_advantages(torch.randn(1000) * 5 + 3)
    assert many.mean().abs() < 1e-5 and (many.std(correction=0) - 1).abs() < 1e-4


def test_approx_kl_estimates_the_true_kl():
    torch.manual_seed(0)
    p, q = Normal(0.0, 1.0), Normal(0.1, 1.1)
    a = p.sample((200_000,))
    logratio = q.log_prob(a) - p.log_prob(a)
    true_kl = torch.distributions.kl_divergence(p, q)
    assert ppo.approx_kl(logratio).item() == pytest.approx(true_kl.item(), rel=0.05)
    assert ppo.approx_kl(torch.zeros(5)).item() == 0.0


def test_clip_fraction():
    logratio = torch.log(torch.tensor([0.7, 0.9, 1.0, 1.1, 1.3]))
    assert ppo.clip_fraction(logratio, 0.2).item() == pytest.approx(2 / 5)


def test_explained_variance():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert ppo.explained_variance(y, y) == pytest.approx(1.0)
    assert ppo.explained_variance(torch.zeros(4), y) == pytest.approx(0.0)
    assert ppo.explained_variance(y + 1.0, y) == pytest.approx(1.0)  # a constant offset is not penalized
    assert math.isnan(ppo.explained_variance(y, torch.ones(4)))


# ---------------------------------------------------------------------------------------------
# Policy distributions
# ---------------------------------------------------------------------------------------------
def test_gaussian_log_prob_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    mean, log_std, action = torch.randn(7, 3), torch.randn(3), torch.randn(7, 3)
    reference = Normal(mean, log_std.exp())
    torch.testing.assert_close(ppo.gaussian_log_prob(mean, log_std, action), reference.log_prob(action).sum(-1))
    torch.testing.assert_close(ppo.gaussian_entropy(log_std), reference.entropy()[0].sum())


def test_categorical_log_prob_and_entropy_match_torch_distributions():
    torch.manual_seed(0)
    logits, action = torch.randn(7, 4), torch.randint(0, 4, (7,))
    reference = Categorical(logits=logits)
    torch.testing.assert_close(ppo.categorical_log_prob(logits, action), reference.log_prob(action))
    torch.testing.assert_close(ppo.categorical_entropy(logits), reference.entropy())


@pytest.mark.parametrize("space", [gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3)])
def test_agent_sample_follows_the_policy(space):
    """Samples of the rollout follow pi(.|s): their empirical log-likelihood under the policy's
    log_prob matches minus the policy's entropy (E_pi[log pi] = -H)."""
    torch.manual_seed(0)
    agent = ppo.Agent(4, space, (8, 8), norm_obs=False, clip_obs=10.0)
    with torch.no_grad():  # a policy far from its near-uniform initialization
        for p in agent.parameters():
            p.normal_()
    x = torch.randn(5, 4).repeat(20_000, 1)
    with torch.no_grad():
        action = agent.sample(x)
        logprob, entropy = agent.log_prob_entropy(x, action)
    assert agent.act_deterministic(x).shape == action.shape
    torch.testing.assert_close(logprob.mean(), -entropy.mean(), atol=0.02, rtol=0.0)


def test_running_mean_std_equals_batch_statistics():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (1, 5, 100, 37)]
    rms = ppo.RunningMeanStd((4,), epsilon=0.0)
    for b in batches:
        rms.update(torch.as_tensor(b))
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-10)
    normalized = rms.normalize(torch.as_tensor(data), clip=10.0)
    np.testing.assert_allclose(normalized.mean(0).numpy(), 0.0, atol=1e-8)
    assert rms.normalize(torch.full((1, 4), 1e6, dtype=torch.float64), clip=5.0).max().item() == 5.0


def test_flat_grad_buffer_holds_the_gradient_and_clipping_matches_torch():
    """After buffer.zero_() and backward(), every .grad is still a view into the buffer and equals the
    gradient of a separate copy of the model; clip_grad_norm equals torch's clip_grad_norm_."""
    torch.manual_seed(0)
    agent = ppo.Agent(4, gym.spaces.Box(-1, 1, (2,)), (8, 8), norm_obs=False, clip_obs=10.0)
    reference = copy.deepcopy(agent)
    params, ref_params = list(agent.parameters()), list(reference.parameters())
    buffer = ppo.flat_grad_buffer(params)
    x, a = torch.randn(16, 4), torch.randn(16, 2)

    def loss_of(model):
        logprob, _ = model.log_prob_entropy(x, a)
        return -(logprob * torch.randn(16, generator=torch.Generator().manual_seed(1))).mean() + model.value(x).square().mean()

    for _ in range(2):  # the second pass must not accumulate onto the first
        buffer.zero_()
        loss_of(agent).backward()
    for p in params:
        assert p.grad.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()
    reference.zero_grad()
    loss_of(reference).backward()
    torch.testing.assert_close(buffer, torch.cat([p.grad.flatten() for p in ref_params]))

    for max_norm in (1e-3, 1e3):  # clipped, and left alone
        expected_norm = torch.nn.utils.clip_grad_norm_(ref_params, max_norm)
        norm = ppo.clip_grad_norm(buffer, max_norm)
        torch.testing.assert_close(norm, expected_norm)
        torch.testing.assert_close(buffer, torch.cat([p.grad.flatten() for p in ref_params]))
