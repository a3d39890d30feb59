"""The math that several scripts define, each script's own copy against the same slow references.

The scripts share no code by design, so a function that is defined in two files is two functions:
every test below runs once per module that defines it, and `test_the_table_names_every_copy`
keeps DEFINED_IN true, so a copy added or renamed in one script cannot go untested."""

import copy
import importlib
import math

import numpy as np
import pytest
import torch
import torch._inductor
from torch.distributions import Categorical, Normal, kl_divergence

from conftest import random_batch

SCRIPTS = ["ppo", "trpo", "reinforce"]
MODULES = {name: importlib.import_module(name) for name in SCRIPTS}
DEFINED_IN = {
    "compute_gae": ["ppo", "trpo"],
    "successor_values": SCRIPTS,
    "discounted_returns_stream": SCRIPTS,
    "RunningMeanStd": SCRIPTS,
    "normalize_advantages": SCRIPTS,
    "approx_kl": SCRIPTS,
    "explained_variance": SCRIPTS,
    "gaussian_log_prob": SCRIPTS,
    "gaussian_entropy": SCRIPTS,
    "categorical_log_prob": SCRIPTS,
    "categorical_entropy": SCRIPTS,
    "gaussian_kl": SCRIPTS,
    "categorical_kl": SCRIPTS,
    "adam_update_": SCRIPTS,
    "critic_step": ["trpo", "reinforce"],
}


def copies(name):
    """pytest parameters: (module, its function `name`) for every script that defines it."""
    return [pytest.param(getattr(MODULES[m], name), id=m) for m in DEFINED_IN[name]]


@pytest.mark.parametrize("name", sorted(DEFINED_IN))
def test_the_table_names_every_copy(name):
    assert [m for m in SCRIPTS if hasattr(MODULES[m], name)] == DEFINED_IN[name]


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


@pytest.mark.parametrize("compute_gae", copies("compute_gae"))
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.5)])
def test_compute_gae_matches_slow_reference_with_mid_batch_terminations_and_truncations(compute_gae, gamma, lam):
    # mid-batch ends in envs 0-2, and env 2 both terminates and is truncated at step 15: terminal wins, no bootstrap
    rewards, values, next_values, terminations, truncations, dones = random_batch(
        17, 3, terminated=[(3, 0), (9, 0), (4, 2), (15, 2)], truncated=[(5, 1), (12, 1), (10, 2), (15, 2)])

    expected = slow_gae(rewards, values, next_values, terminations, truncations, gamma, lam)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)
    adv, ret = compute_gae(t(rewards), t(values), t(next_values), t(terminations), t(dones), gamma, lam)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), expected + values, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("compute_gae", copies("compute_gae"))
def test_truncation_is_bootstrapped_and_termination_is_not(compute_gae):
    # one env, one step each: A = r + gamma * V(s') - V(s) when truncated, r - V(s) when terminated
    r, v, v_final, gamma = torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[2.0]]), 0.9
    done = torch.tensor([[1.0]])
    adv_trunc, _ = compute_gae(r, v, v_final, torch.tensor([[0.0]]), done, gamma, 0.95)
    adv_term, _ = compute_gae(r, v, v_final, torch.tensor([[1.0]]), done, gamma, 0.95)
    assert adv_trunc.item() == pytest.approx(1.0 + 0.9 * 2.0 - 0.5)
    assert adv_term.item() == pytest.approx(1.0 - 0.5)


@pytest.mark.parametrize("successor_values", copies("successor_values"))
def test_successor_values_uses_final_observation_value_at_episode_ends(successor_values):
    values = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    last_value = torch.tensor([4.0, 40.0])
    final_values = torch.tensor([[0.0, 0.0], [-7.0, 0.0], [0.0, -9.0]])
    dones = torch.tensor([[False, False], [True, False], [False, True]])
    expected = torch.tensor([[2.0, 20.0], [-7.0, 30.0], [4.0, -9.0]])
    assert torch.equal(successor_values(values, last_value, final_values, dones), expected)


@pytest.mark.parametrize("discounted_returns_stream", copies("discounted_returns_stream"))
def test_discounted_returns_stream_resets_after_done_and_carries_state(discounted_returns_stream):
    rewards = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    dones = np.array([[False, False], [True, False], [False, False], [False, True]])
    running = np.array([10.0, 0.0])
    out = discounted_returns_stream(rewards, dones, running, gamma=0.5)
    expected = np.array([[6.0, 2.0], [4.0, 3.0], [1.0, 3.5], [1.5, 3.75]])
    np.testing.assert_allclose(out, expected)
    np.testing.assert_allclose(running, [1.5, 0.0])  # env 1 finished at the last step


# ---------------------------------------------------------------------------------------------
# Normalization and diagnostics
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("RunningMeanStd", copies("RunningMeanStd"))
def test_running_mean_std_equals_batch_statistics(RunningMeanStd):
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (1, 5, 100, 37)]
    rms = RunningMeanStd((4,), epsilon=0.0)
    for b in batches:
        rms.update(torch.as_tensor(b))
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-10)
    assert rms.count.item() == len(data)
    normalized = rms.normalize(torch.as_tensor(data), clip=10.0)
    np.testing.assert_allclose(normalized.numpy(), (data - data.mean(0)) / np.sqrt(data.var(0) + 1e-8), rtol=1e-8)
    assert rms.normalize(torch.full((1, 4), 1e6, dtype=torch.float64), clip=5.0).max().item() == 5.0
    assert rms.normalize(torch.full((1, 4), -1e6, dtype=torch.float64), clip=5.0).min().item() == -5.0
    # the statistics are buffers: they travel in state_dict (and so in checkpoints); float64, so
    # that the count still grows past 2^24 steps and the mean of a long run keeps its precision
    assert {"mean", "var", "count"} <= set(rms.state_dict())
    assert all(v.dtype == torch.float64 for v in rms.state_dict().values())


@pytest.mark.parametrize("RunningMeanStd", copies("RunningMeanStd"))
def test_running_mean_std_normalizes_a_constant_dimension_to_zero(RunningMeanStd):
    """An observation coordinate that never changes has variance 0: it becomes 0, never NaN or inf."""
    rms = RunningMeanStd((2,), epsilon=0.0)
    data = torch.tensor([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]], dtype=torch.float64)
    rms.update(data)
    out = rms.normalize(data, clip=10.0)
    assert torch.isfinite(out).all() and torch.equal(out[:, 1], torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("RunningMeanStd", copies("RunningMeanStd"))
def test_running_mean_std_starts_from_its_prior(RunningMeanStd):
    rms = RunningMeanStd((2,))
    assert rms.mean.tolist() == [0.0, 0.0] and rms.var.tolist() == [1.0, 1.0] and 0 < rms.count.item() < 1e-3
    rms.update(torch.tensor([[2.0, 4.0], [4.0, 8.0]]))
    np.testing.assert_allclose(rms.mean.numpy(), [3.0, 6.0], rtol=1e-3)
    np.testing.assert_allclose(rms.var.numpy(), [1.0, 4.0], rtol=1e-3)


@pytest.mark.parametrize("normalize_advantages", copies("normalize_advantages"))
def test_normalize_advantages_is_safe_for_a_minibatch_of_one(normalize_advantages):
    one = normalize_advantages(torch.tensor([3.0]))
    assert torch.isfinite(one).all() and one.item() == 0.0
    torch.manual_seed(0)
    data = torch.randn(1000) * 5 + 3
    many = normalize_advantages(data)
    assert many.mean().abs() < 1e-5 and (many.std(correction=0) - 1).abs() < 1e-4
    assert torch.equal(many.argsort(), data.argsort())  # an increasing map: signs relative to the mean kept


@pytest.mark.parametrize("approx_kl", copies("approx_kl"))
def test_approx_kl_estimates_the_true_kl(approx_kl):
    torch.manual_seed(0)
    p, q = Normal(0.0, 1.0), Normal(0.1, 1.1)
    a = p.sample((200_000,))
    logratio = q.log_prob(a) - p.log_prob(a)  # log pi_1 - log pi_0 on samples of pi_0
    true_kl = kl_divergence(p, q)
    assert approx_kl(logratio).item() == pytest.approx(true_kl.item(), rel=0.05)
    assert approx_kl(torch.zeros(5)).item() == 0.0
    assert (approx_kl(torch.randn(100, 1) * 3).item() >= 0) and approx_kl(torch.tensor([-1.0, 1.0])).item() > 0


@pytest.mark.parametrize("explained_variance", copies("explained_variance"))
def test_explained_variance(explained_variance):
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(4), y) == pytest.approx(0.0)
    assert explained_variance(y + 1.0, y) == pytest.approx(1.0)  # a constant offset is not penalized
    assert explained_variance(torch.tensor([2.0, 1.0, 4.0, 3.0]), y) == pytest.approx(1.0 - 4.0 / 5.0)  # Var[-1, 1, -1, 1] / Var[1, 2, 3, 4]
    assert math.isnan(explained_variance(y, torch.ones(4)))


# ---------------------------------------------------------------------------------------------
# Policy distributions
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [pytest.param(MODULES[m], id=m) for m in SCRIPTS])
@pytest.mark.parametrize("batch", [(7,), (5, 2)])
def test_gaussian_log_prob_and_entropy_match_torch_distributions(m, batch):
    torch.manual_seed(0)
    mean, log_std, action = torch.randn(*batch, 3), torch.randn(3), torch.randn(*batch, 3)
    reference = Normal(mean, log_std.exp())
    torch.testing.assert_close(m.gaussian_log_prob(mean, log_std, action), reference.log_prob(action).sum(-1))
    torch.testing.assert_close(m.gaussian_entropy(log_std), reference.entropy().sum(-1).flatten()[0])
    torch.testing.assert_close(m.gaussian_entropy(log_std.expand(*batch, 3)), reference.entropy().sum(-1))


@pytest.mark.parametrize("m", [pytest.param(MODULES[m], id=m) for m in SCRIPTS])
@pytest.mark.parametrize("batch", [(7,), (5, 2)])
def test_categorical_log_prob_and_entropy_match_torch_distributions(m, batch):
    torch.manual_seed(0)
    logits, action = torch.randn(*batch, 4), torch.randint(0, 4, batch)
    reference = Categorical(logits=logits)
    torch.testing.assert_close(m.categorical_log_prob(logits, action), reference.log_prob(action))
    torch.testing.assert_close(m.categorical_entropy(logits), reference.entropy())


@pytest.mark.parametrize("m", [pytest.param(MODULES[m], id=m) for m in SCRIPTS])
@pytest.mark.parametrize("batch", [(5,), (5, 2)])
def test_gaussian_and_categorical_kl_match_torch_distributions(m, batch):
    torch.manual_seed(0)
    m0, m1, s0, s1 = torch.randn(*batch, 3), torch.randn(*batch, 3), torch.randn(3), torch.randn(3)
    expected = kl_divergence(Normal(m0, s0.exp()), Normal(m1, s1.exp())).sum(-1)  # summed over action dims
    torch.testing.assert_close(m.gaussian_kl(m0, s0, m1, s1), expected)
    l0, l1 = torch.randn(*batch, 4), torch.randn(*batch, 4)
    torch.testing.assert_close(m.categorical_kl(l0, l1), kl_divergence(Categorical(logits=l0), Categorical(logits=l1)))
    assert m.gaussian_kl(m0, s0, m0, s0).abs().max() < 1e-6


# ---------------------------------------------------------------------------------------------
# --compile's step: torch.optim.Adam written out, and the critic's step as the plain path takes it
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("adam_update_", copies("adam_update_"))
def test_adam_update_matches_torch_adam_and_a_skipped_step_changes_nothing(adam_update_):
    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(3)]
    reference = [p.clone().requires_grad_() for p in params]
    optimizer = torch.optim.Adam(reference, lr=1e-2, eps=1e-5, fused=True)
    state = [[torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params],
             [torch.zeros(()) for _ in params]]
    for k in range(6):
        grads = [torch.randn_like(p) * 10.0 ** (k - 3) for p in params]  # small and large gradients
        lr = 1e-2 * (1.0 - k / 6)
        optimizer.param_groups[0]["lr"] = lr
        for r, g in zip(reference, grads):
            r.grad = g.clone()
        optimizer.step()
        before = [t.clone() for t in [*params, *state[0], *state[1], *state[2]]]
        adam_update_(params, grads, *state, torch.tensor(lr), 0.9, 0.999, 1e-5, taken=torch.tensor(False))
        for a, b in zip(before, [*params, *state[0], *state[1], *state[2]]):
            assert torch.equal(a, b)
        adam_update_(params, grads, *state, torch.tensor(lr), 0.9, 0.999, 1e-5,
                     taken=None if k % 2 else torch.tensor(True))
        for p, r in zip(params, reference):
            torch.testing.assert_close(p, r.detach(), rtol=1e-5, atol=1e-7)
        for i, r in enumerate(reference):
            torch.testing.assert_close(state[0][i], optimizer.state[r]["exp_avg"])
            torch.testing.assert_close(state[1][i], optimizer.state[r]["exp_avg_sq"])
            torch.testing.assert_close(state[2][i], optimizer.state[r]["step"])


def critic_and_compiled_twin(module, compile=False, dtype=torch.float32):
    """A small critic with torch's fused Adam, and its copy with Adam under `module`'s CompiledStep
    (`compile`: Args.compile); returns (critic, its optimizer, twin, its optimizer, the step)."""
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(dtype)
    twin = copy.deepcopy(critic)
    plain_opt = torch.optim.Adam(critic.parameters(), lr=1e-2, eps=1e-5, fused=True)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1e-2, eps=1e-5, fused=True)
    fused = module.CompiledStep(module.critic_loss, twin, twin_opt, module.Args(compile=compile), plain=None)
    return critic, plain_opt, twin, twin_opt, fused


@pytest.mark.parametrize("m", DEFINED_IN["critic_step"])
def test_compiled_critic_step_is_the_plain_step(m):
    """CompiledStep (here uncompiled: the function whose make_fx graph inductor gets) takes the plain critic
    step's steps: same weights and Adam state after several minibatches, learning rate changing."""
    module = MODULES[m]
    critic, plain_opt, twin, twin_opt, fused = critic_and_compiled_twin(module)
    for k in range(5):
        x, returns = torch.randn(16, 4), torch.randn(16) * 5
        for opt in (plain_opt, twin_opt):
            opt.param_groups[0]["lr"] = 1e-2 / (k + 1)
        loss, taken = module.critic_step(critic, plain_opt, x, returns)
        twin_loss, twin_taken = fused(x, returns)
        torch.testing.assert_close(twin_loss, loss)
        assert taken is True and twin_taken is True
    for p, q in zip(critic.parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(twin_opt.state[q][key], plain_opt.state[p][key])
    # the optimizer's state is one: torch's Adam continues from the state the compiled step wrote
    x, returns = torch.randn(16, 4), torch.randn(16)
    module.critic_step(critic, plain_opt, x, returns)
    module.critic_step(twin, twin_opt, x, returns)
    for p, q in zip(critic.parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("traced", [False, True], ids=["uncompiled", "traced"])
@pytest.mark.parametrize("m", DEFINED_IN["critic_step"])
def test_compiled_step_keeps_one_state_through_a_load_state_dict(m, traced, monkeypatch, capsys):
    """CompiledStep's parameters and Adam state are views into its flat tensors (what state_dict saves
    and the plain step reads is what the compiled step wrote); after load_state_dict of the module and
    the optimizer (--resume, an undone update) replaces them, it continues from the loaded state as
    the plain step does, attached to flat tensors again. `traced`: with --compile, inductor left
    out (the graph make_fx traced runs as it is): the traced graph reads the new flat tensors."""
    module = MODULES[m]
    if traced:
        monkeypatch.setattr(torch._inductor, "compile", lambda graph, inputs, options: graph)
    critic, plain_opt, twin, twin_opt, fused = critic_and_compiled_twin(module, compile=traced)
    saved = {}
    for k in range(7):
        if k == 4:  # both go back to their state after the second step
            for net, opt in ((critic, plain_opt), (twin, twin_opt)):
                net.load_state_dict(saved[id(net)][0])
                opt.load_state_dict(saved[id(net)][1])
            assert not fused.attached()
        x, returns = torch.randn(16, 4), torch.randn(16) * 5
        module.critic_step(critic, plain_opt, x, returns)
        fused(x, returns)
        if k == 1:
            for net, opt in ((critic, plain_opt), (twin, twin_opt)):
                saved[id(net)] = copy.deepcopy((net.state_dict(), opt.state_dict()))
        storages = [t.untyped_storage().data_ptr() for t in fused.flat]
        for p in twin.parameters():
            state = twin_opt.state[p]
            assert [t.untyped_storage().data_ptr() for t in (p, state["exp_avg"], state["exp_avg_sq"], state["step"])] == storages
    for p, q in zip(critic.parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(twin_opt.state[q][key], plain_opt.state[p][key])
    out, err = capsys.readouterr()
    assert ("critic_loss step compiled in" in out) == traced and "could not be compiled" not in err


@pytest.mark.parametrize("m", DEFINED_IN["critic_step"])
def test_compiled_step_keeps_the_dtype_and_refuses_unequal_step_counts(m):
    """A float64 critic's step in float64, as the plain step's; Adam step counts that differ between
    parameters (which the one flat count cannot keep) are an error, not a silent change."""
    module = MODULES[m]
    critic, plain_opt, twin, twin_opt, fused = critic_and_compiled_twin(module, dtype=torch.float64)
    for _ in range(3):
        x, returns = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
        module.critic_step(critic, plain_opt, x, returns)
        fused(x, returns)
    for p, q in zip(critic.parameters(), twin.parameters()):
        assert q.dtype == twin_opt.state[q]["exp_avg"].dtype == torch.float64
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)  # Adam's bias corrections: float32 step counts
    twin_opt.state[next(twin.parameters())]["step"] = torch.tensor(7.0)
    with pytest.raises(ValueError, match="step counts differ"):
        fused(x, returns)
