"""reinforce.py's math against slow, obviously-correct references."""

import numpy as np
import pytest
import torch

import reinforce
from conftest import random_batch


def slow_reward_to_go(rewards, next_values, terminations, truncations, gamma):
    """G_t = sum_k gamma^k r_{t+k} to the end of the episode, plus gamma^(k+1) V(s') where the episode
    was cut (truncated, or the batch ended) rather than terminated."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, discount = 0.0, 1.0
            for k in range(t, T):
                total += discount * rewards[k, n]
                discount *= gamma
                if terminations[k, n]:
                    break
                if truncations[k, n] or k == T - 1:
                    total += discount * next_values[k, n]
                    break
            out[t, n] = total
    return out


@pytest.mark.parametrize("gamma", [0.99, 0.5, 1.0])
def test_reward_to_go_matches_slow_reference_with_mid_batch_terminations_and_truncations(gamma):
    # mid-batch ends in envs 0-2, and env 0 terminates on the batch's last step: no bootstrap there either
    rewards, _, next_values, terminations, truncations, dones = random_batch(
        13, 3, terminated=[(2, 0), (8, 0), (3, 2), (12, 0)], truncated=[(4, 1), (9, 1), (7, 2)])
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)
    got = reinforce.reward_to_go(t(rewards), t(next_values), t(terminations), t(dones), gamma)
    np.testing.assert_allclose(got.numpy(), slow_reward_to_go(rewards, next_values, terminations, truncations, gamma),
                               rtol=1e-10, atol=1e-10)


def test_reward_to_go_is_not_the_whole_episode_return():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    terminations = torch.tensor([[0.0], [0.0], [1.0]])
    got = reinforce.reward_to_go(rewards, torch.zeros(3, 1), terminations, terminations, 1.0)
    assert got.squeeze(-1).tolist() == [6.0, 5.0, 3.0]


def test_loss_gradient_matches_the_analytic_policy_gradient_of_a_categorical_bandit():
    torch.manual_seed(0)
    logits = torch.tensor([0.2, -0.5, 0.1], requires_grad=True)
    arm_rewards = torch.tensor([1.0, 0.0, 2.0])
    probs = logits.softmax(-1).detach()
    # J = sum_a pi(a) r(a);  dJ/dlogits = pi * (r - J)
    analytic = probs * (arm_rewards - (probs * arm_rewards).sum())
    n = 200_000
    actions = torch.multinomial(probs, n, replacement=True)
    noise = torch.randn(n)  # noisy rewards, mean r(a)
    for baseline in (0.0, 1.3):  # any constant baseline leaves the gradient unbiased
        advantages = arm_rewards[actions] + noise - baseline
        logp = reinforce.categorical_log_prob(logits.expand(n, 3), actions)
        (grad,) = torch.autograd.grad(reinforce.reinforce_loss(logp, advantages), logits)
        # -grad Loss estimates grad J; per-sample terms have std ~2, so 200k samples give ~0.005
        torch.testing.assert_close(-grad, analytic, atol=0.02, rtol=0.0)


def test_loss_gradient_matches_the_analytic_policy_gradient_of_a_gaussian_bandit():
    torch.manual_seed(1)
    mean = torch.tensor([0.5], requires_grad=True)
    log_std = torch.tensor([-0.3], requires_grad=True)
    n = 200_000
    with torch.no_grad():
        actions = mean + log_std.exp() * torch.randn(n, 1)
    rewards = -(actions.squeeze(-1) - 2.0) ** 2
    # J(mu, sigma) = -((mu - 2)^2 + sigma^2):  dJ/dmu = -2 (mu - 2),  dJ/dlog sigma = -2 sigma^2
    logp = reinforce.gaussian_log_prob(mean.expand(n, 1), log_std, actions)
    grad_mean, grad_log_std = torch.autograd.grad(reinforce.reinforce_loss(logp, rewards), (mean, log_std))
    sigma2 = float(log_std.detach().exp() ** 2)
    assert -grad_mean.item() == pytest.approx(-2 * (0.5 - 2.0), abs=0.05)
    assert -grad_log_std.item() == pytest.approx(-2 * sigma2, abs=0.05)


def test_the_loss_is_a_mean_over_all_steps_not_per_episode():
    logp = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    advantages = torch.tensor([1.0, 1.0, -1.0, 2.0])
    assert reinforce.reinforce_loss(logp, advantages).item() == pytest.approx(-(-1 - 2 + 3 - 8) / 4)
