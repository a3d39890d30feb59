"""ppo.py's own math against slow, obviously-correct references (what several scripts define is\ntested for each of them in test_shared_math.py)."""

import copy
import dataclasses
import functools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import ppo


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


def test_ppo_policy_loss_gradient_is_zero_exactly_where_the_clip_binds():
    """On random ratios and advantages: d loss / d log r = -r A / n where the unclipped term is the
    minimum, and 0 where the ratio has left [1 - eps, 1 + eps] in the advantage's direction (a loss
    without the clip, or with the min replaced by a max, fails here)."""
    torch.manual_seed(0)
    n, eps = 400, 0.2
    logratio = (0.3 * torch.randn(n, dtype=torch.float64)).requires_grad_()
    adv = torch.randn(n, dtype=torch.float64)
    ppo.ppo_policy_loss(logratio, adv, eps).backward()
    r = logratio.detach().exp()
    clipped = ((adv > 0) & (r > 1 + eps)) | ((adv < 0) & (r < 1 - eps))
    assert 50 < clipped.sum() < n - 50  # both regimes are well represented
    torch.testing.assert_close(logratio.grad, torch.where(clipped, 0.0, -r * adv / n), rtol=1e-12, atol=1e-15)


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


def test_clip_fraction():
    logratio = torch.log(torch.tensor([0.7, 0.9, 1.0, 1.1, 1.3]))
    assert ppo.clip_fraction(logratio, 0.2).item() == pytest.approx(2 / 5)


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
    assert agent.deterministic_action(x).shape == action.shape
    torch.testing.assert_close(logprob.mean(), -entropy.mean(), atol=0.02, rtol=0.0)


def flat_grad_case():
    torch.manual_seed(0)
    agent = ppo.Agent(4, gym.spaces.Box(-1, 1, (2,)), (8, 8), norm_obs=False, clip_obs=10.0)
    reference = copy.deepcopy(agent)
    x, a, w = torch.randn(16, 4), torch.randn(16, 2), torch.randn(16)

    def loss_of(model):
        dtype = next(model.parameters()).dtype  # float64 after .double()
        logprob, _ = model.log_prob_entropy(x.to(dtype), a.to(dtype))
        return -(logprob * w.to(dtype)).mean() + model.value(x.to(dtype)).square().mean()

    return agent, reference, loss_of


def test_flat_grad_holds_the_gradient_and_clipping_matches_torch():
    """After zero_() and backward(), every .grad is still a view into the buffer and equals the
    gradient of a separate copy of the model; clip_norm_ equals torch's clip_grad_norm_."""
    agent, reference, loss_of = flat_grad_case()
    params, ref_params = list(agent.parameters()), list(reference.parameters())
    grad = ppo.FlatGrad(params)
    for _ in range(2):  # the second pass must not accumulate onto the first
        grad.zero_()
        loss_of(agent).backward()
    for p in params:
        assert p.grad.untyped_storage().data_ptr() == grad.buffer.untyped_storage().data_ptr()
    reference.zero_grad()
    loss_of(reference).backward()
    torch.testing.assert_close(grad.buffer, torch.cat([p.grad.flatten() for p in ref_params]))

    for max_norm in (1e-3, 1e3):  # clipped, and left alone
        expected_norm = torch.nn.utils.clip_grad_norm_(ref_params, max_norm)
        norm = grad.clip_norm_(max_norm)
        torch.testing.assert_close(norm, expected_norm)
        torch.testing.assert_close(grad.buffer, torch.cat([p.grad.flatten() for p in ref_params]))


@pytest.mark.parametrize("misuse", ["zero_grad after zero_", "zero_grad before zero_", "double()"])
def test_flat_grad_cannot_be_silently_detached(misuse):
    """The usual optimizer.zero_grad() (grads to None) or a dtype/device move replaces the .grad
    tensors; clipping must still see and clip the true gradient (norm 0.0 would mean it stopped)."""
    agent, reference, loss_of = flat_grad_case()
    grad = ppo.FlatGrad(list(agent.parameters()))
    optimizer = torch.optim.Adam(agent.parameters())
    if misuse == "double()":
        agent.double(), reference.double()
    if misuse == "zero_grad before zero_":
        optimizer.zero_grad()
    grad.zero_()
    if misuse == "zero_grad after zero_":
        optimizer.zero_grad()
    loss_of(agent).backward()
    loss_of(reference).backward()
    expected_norm = torch.nn.utils.clip_grad_norm_(list(reference.parameters()), 1e-3)
    torch.testing.assert_close(grad.clip_norm_(1e-3), expected_norm)
    assert expected_norm > 1e-2  # the clip binds
    for p, q in zip(agent.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def gradient_norm(agent, batch):
    """||grad L|| of ppo_loss on a copy of the agent, before any clipping."""
    twin = copy.deepcopy(agent)
    ppo.ppo_loss(twin, *batch)[0].backward()
    return torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in twin.parameters()])).item()


@pytest.mark.parametrize("case", ["gaussian", "categorical", "target_kl", "clip not binding"])
def test_compiled_step_is_the_plain_minibatch_step(case):
    """CompiledStep (here uncompiled: the function whose make_fx graph inductor gets) equals minibatch_step:
    same losses, weights and Adam state over several minibatches, with the gradient clip binding or
    not, and with --target-kl the same steps taken and skipped (a skipped step changes nothing)."""
    torch.manual_seed(0)
    space = gym.spaces.Discrete(3) if case == "categorical" else gym.spaces.Box(-1, 1, (2,), np.float32)
    max_grad_norm = 1e3 if case == "clip not binding" else 0.05
    args = ppo.Args(compile=False, max_grad_norm=max_grad_norm, target_kl=1e-4 if case == "target_kl" else None)
    agent = ppo.Agent(4, space, (8, 8), True, 10.0)
    agent.obs_rms.update(torch.randn(32, 4) * 3 + 1)
    twin = copy.deepcopy(agent)
    opt = torch.optim.Adam(agent.parameters(), lr=3e-3, eps=1e-5, fused=True)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=3e-3, eps=1e-5, fused=True)
    plain = functools.partial(ppo.minibatch_step, agent, opt, ppo.FlatGrad(list(agent.parameters())))
    skip = None if args.target_kl is None else functools.partial(ppo.kl_exceeded, target_kl=args.target_kl)
    fused = ppo.CompiledStep(ppo.ppo_loss, twin, twin_opt, args, None, args.max_grad_norm, skip=skip)
    x = agent.normalize(torch.randn(16, 4))
    taken_steps, norms = [], []
    for k in range(8):
        with torch.no_grad():  # log pi_0 of the current policy, perturbed: a KL near 0 or well above --target-kl
            actions = agent.sample(x)
            logprobs = agent.log_prob_entropy(x, actions)[0] + torch.randn(16) * (0.3 if k % 3 == 2 else 1e-3)
        batch = (x, actions, logprobs, torch.randn(16), torch.randn(16), torch.randn(16), args, True)
        norms.append(gradient_norm(agent, batch))
        outputs, taken = plain(*batch)
        twin_outputs, twin_taken = fused(*batch)
        for a, b in zip(twin_outputs, outputs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert twin_taken == taken
        taken_steps.append(taken)
    if case == "target_kl":
        assert taken_steps == [True, True, False] * 2 + [True, True]
    else:
        assert all(taken_steps)
        assert min(norms) > max_grad_norm if max_grad_norm < 1 else max(norms) < max_grad_norm  # the clip binds, or never
    for p, q in zip(agent.parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(twin_opt.state[q][key], opt.state[p][key], rtol=1e-5, atol=1e-8)


def test_compiled_step_follows_its_other_arguments():
    """CompiledStep keeps one step function per set of non-tensor arguments (Args, clip_vloss): called
    with other ones, it takes the plain step with those, not with the first call's."""
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    first = ppo.Args(compile=False)
    other = dataclasses.replace(first, clip_coef=0.05, vf_coef=2.0, ent_coef=0.1, norm_adv=False)
    agent = ppo.Agent(4, space, (8, 8), False, 10.0)
    twin = copy.deepcopy(agent)
    opt = torch.optim.Adam(agent.parameters(), lr=3e-3, eps=1e-5, fused=True)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=3e-3, eps=1e-5, fused=True)
    plain = functools.partial(ppo.minibatch_step, agent, opt, ppo.FlatGrad(list(agent.parameters())))
    fused = ppo.CompiledStep(ppo.ppo_loss, twin, twin_opt, first, None, first.max_grad_norm)
    x = torch.randn(16, 4)
    for args, clip_vloss in ((first, True), (other, False), (first, False), (other, True), (first, True)):
        with torch.no_grad():
            actions = agent.sample(x)
            logprobs = agent.log_prob_entropy(x, actions)[0] + torch.randn(16) * 0.3
        batch = (x, actions, logprobs, torch.randn(16), torch.randn(16), torch.randn(16), args, clip_vloss)
        outputs, _ = plain(*batch)
        twin_outputs, _ = fused(*batch)
        for a, b in zip(twin_outputs, outputs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert len(fused.step_fns) == 4
    for p, q in zip(agent.parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
