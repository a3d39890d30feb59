"""Proximal Policy Optimization (PPO), clipped-surrogate variant, in one file.

Paper: Schulman et al., "Proximal Policy Optimization Algorithms", 2017, https://arxiv.org/abs/1707.06347

The algorithm
-------------
Repeat until `--total-timesteps` environment steps have been taken:

1. Collect a batch S of `num_envs * num_steps` transitions with the current policy pi_0 (= pi_old).
2. Estimate advantages A_0(a, s) with GAE(lambda) and a learned value function V(s):

       delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
       A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

   where s_{t+1} is the true next observation, also when the episode was cut by a time limit
   (truncation): a truncated episode is bootstrapped with V(final observation), never with the
   first observation of the next episode.
3. For `update_epochs` epochs, over shuffled minibatches of S, minimize

       L(theta) = -(1/|S|) sum_i sum_t min[ r_it * A_it, clip(r_it, 1 - eps, 1 + eps) * A_it ]
                  + c_v * L_V(theta) - c_H * H[pi_1]

   with the importance ratio r_it = pi_1(a_it | s_it) / pi_0(a_it | s_it), pi_1 the policy being
   optimized. Clipping removes any incentive to move r outside [1 - eps, 1 + eps]: the first-order
   stand-in for TRPO's trust region KL(pi_0 || pi_1) <= delta.
4. Throw the batch away and collect fresh data with the updated policy.

Implementation details (numbers as in Huang et al., "The 37 Implementation Details of PPO", 2022)
-------------------------------------------------------------------------------------------
1. Vectorized environments (gymnasium 1.x `SyncVectorEnv`) in SAME_STEP autoreset mode: when an
   episode ends, `step` returns the first observation of the next episode and the final observation
   in `info["final_obs"]`; no transition is wasted or mixed across episodes.
2. Termination and truncation are kept apart. Terminated: no bootstrap. Truncated (time limit):
   bootstrap with V(final observation). The end of a batch is a cut, bootstrapped with V(next obs).
3. Separate actor and critic MLPs (64-64, tanh), orthogonal initialization (gain sqrt(2) hidden,
   0.01 for the policy head, 1 for the value head), zero biases.
4. Discrete actions: categorical policy over logits. Box actions: diagonal Gaussian with a
   state-independent log-std parameter; log-probs and entropies summed over action dimensions;
   actions sampled unclipped, clipped to the bounds only when stepping the environment, stored
   unclipped.
5. Adam with eps 1e-5, learning rate annealed linearly to 0.
6. Advantages normalized per minibatch (population std, so a minibatch of one gives 0, not NaN).
7. Clipped value loss (by default only with reward scaling, since the clip range is in reward
   units), entropy bonus, one combined loss, global gradient-norm clipping.
8. Optional early stop when the approximate KL of a minibatch exceeds `--target-kl`, checked before
   each gradient step with the low-variance estimator KL ~ mean[(r - 1) - log r].
9. Box-action environments by default: running observation normalization (clipped to +-10) and
   reward scaling by the running std of the discounted return (clipped to +-10). Observation
   statistics are frozen during a rollout, so pi_0 is one fixed function over the batch, and updated
   from the batch afterwards. They are part of the model: saved in `model.pt`, frozen in evaluation.
   The update changes the function pi computes with theta unchanged; `charts/normalizer_kl` logs that
   change (mean KL on the batch). PPO's clip bounds the ratio during the update, not this change;
   unlike trpo.py, the update here is not function-preserving (README: observation normalization).
10. Diagnostics of each update: approx_kl and clipfrac of the final policy against pi_0 over the
    whole batch (measured after the update), and the explained variance of the value targets by
    V_0, the critic that produced the advantages (CleanRL's convention).

Usage: python ppo.py --env-id Hopper-v4      python ppo.py --help
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from typing import Callable, NamedTuple, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro

ALGO = "ppo"
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
@dataclass
class Args:
    # Experiment
    exp_name: str = os.path.splitext(os.path.basename(__file__))[0]
    """name of the experiment, part of the run directory's name"""
    seed: int = 1
    """seed of python, numpy, torch and the environments, in [0, 2**32)"""
    torch_deterministic: bool = True
    """force deterministic cuDNN kernels (CPU runs are deterministic either way)"""
    cuda: bool = True
    """use CUDA when it is available (the start line names the device used)"""
    compile: bool = False
    """compile each minibatch step (loss, gradient, clipping, Adam) into one function (torch's inductor); see the README for when it pays"""
    cudagraphs: bool = False
    """with --compile on CUDA, also capture the compiled step in CUDA graphs (torch.compile's "reduce-overhead")"""
    torch_threads: int = 1
    """CPU threads torch may use; 1 is fastest for small MLPs and lets runs share a machine"""
    track: bool = False
    """log to Weights & Biases (set WANDB_MODE=offline to log without a network)"""
    wandb_project_name: str = "rl-reference"
    """Weights & Biases project"""
    wandb_entity: Optional[str] = None
    """Weights & Biases entity (team or user); None = your default"""
    tensorboard: bool = False
    """also write the metrics as TensorBoard events in the run directory (`tensorboard --logdir runs`)"""
    capture_video: bool = False
    """record the final evaluation's episodes to `videos/` in the run directory (needs moviepy)"""
    save_model: bool = False
    """accepted for CleanRL habits, changes nothing: `model.pt` is always written (see --checkpoint-every)"""
    checkpoint_every: int = 100_000
    """rewrite the run's `model.pt` every this many steps (0 = never during training); it is always
    written at the end, and when SIGINT (Ctrl-C) or SIGTERM stops the run"""
    resume: Optional[str] = None
    """continue the run in this run directory from its `model.pt`: same directory, step count,
    schedule, optimizer, statistics and RNG states; its config.json supplies every flag not given here"""
    load_model: Optional[str] = None
    """start a new run from this `model.pt` (fine-tuning; with --total-timesteps 0 only evaluated); the env
    id, --hidden-sizes and normalization flags default to the checkpoint's"""
    eval_every: int = 0
    """also evaluate every this many steps during training (0 = only at the end)"""
    eval_episodes: int = 10
    """episodes of each evaluation: deterministic policy, frozen normalization (0 = no evaluation)"""
    output_dir: str = "runs"
    """directory under which each run gets its own new directory"""

    # Environment
    env_id: str = "Hopper-v4"
    """gymnasium id, also `module:EnvName-vN` to import the module that registers it"""
    total_timesteps: int = 1_000_000
    """environment steps to train for (all environments together), rounded up to whole batches"""
    num_envs: int = 8
    """parallel environments (gymnasium SyncVectorEnv, stepped in this process)"""
    norm_obs: Optional[bool] = None
    """running observation normalization; default: on for Box actions, off for Discrete"""
    norm_reward: Optional[bool] = None
    """reward scaling by the running std of the discounted return; default: on for Box actions, off for Discrete"""
    clip_obs: float = 10.0
    """normalized observations are clipped to [-clip_obs, clip_obs]"""
    clip_reward: float = 10.0
    """scaled rewards are clipped to [-clip_reward, clip_reward]"""

    # Algorithm
    learning_rate: float = 3e-4
    """Adam learning rate (start value when annealed)"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over training"""
    num_steps: int = 256
    """steps per environment per rollout; batch size = num_envs * num_steps (2048 by default)"""
    gamma: float = 0.99
    """discount factor, in (0, 1]"""
    gae_lambda: float = 0.95
    """GAE lambda, in (0, 1]"""
    num_minibatches: int = 32
    """minibatches per epoch; must divide the batch size"""
    update_epochs: int = 10
    """passes over each batch"""
    norm_adv: bool = True
    """normalize advantages per minibatch"""
    clip_coef: float = 0.2
    """surrogate clipping epsilon: r is clipped to [1 - eps, 1 + eps]"""
    clip_vloss: Optional[bool] = None
    """clip the value update to +-clip_coef around the rollout's estimate; default: on when rewards
    are scaled (the clip range is in reward units: with raw returns of ~100 it would stall the critic)"""
    ent_coef: float = 0.0
    """entropy bonus coefficient c_H"""
    vf_coef: float = 0.5
    """value loss coefficient c_v"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping threshold"""
    target_kl: Optional[float] = None
    """stop the update early once a minibatch's approximate KL exceeds this (None = never)"""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """hidden layer widths of both the actor and the critic"""


def algorithm_checks(args: Args) -> list[tuple[bool, str]]:
    """PPO's own argument checks, as (valid, message); validate_args runs them after the common ones."""
    batch_size = args.num_envs * args.num_steps
    return [
        (args.num_minibatches > 0, "--num-minibatches must be > 0"),
        (args.update_epochs > 0, "--update-epochs must be > 0"),
        (args.learning_rate > 0, "--learning-rate must be > 0"),
        (0 < args.gae_lambda <= 1, "--gae-lambda must be in (0, 1]"),
        (args.clip_coef > 0, "--clip-coef must be > 0"),
        (args.ent_coef >= 0, "--ent-coef must be >= 0"),
        (args.vf_coef >= 0, "--vf-coef must be >= 0"),
        (args.max_grad_norm > 0, "--max-grad-norm must be > 0"),
        (args.target_kl is None or args.target_kl > 0, "--target-kl must be > 0"),
        (args.num_minibatches > 0 and batch_size % args.num_minibatches == 0,
         f"--num-minibatches ({args.num_minibatches}) must divide the batch size num_envs * num_steps = {batch_size}"),
    ]


# ---------------------------------------------------------------------------------------------
# Networks (the observation normalizer is part of the model)
# ---------------------------------------------------------------------------------------------
class RunningMeanStd(nn.Module):
    """Running mean and variance of a stream of batches (parallel Welford), kept as buffers so
    that they are saved in the model's state_dict."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch x of shape (n, *shape) into the statistics."""
        x = x.to(self.mean.dtype)
        batch_mean, batch_var, n = x.mean(0), x.var(0, correction=0), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def std(self, eps: float = 1e-8) -> torch.Tensor:
        """sqrt(var + eps), the divisor of `normalize`."""
        return (self.var + eps).sqrt()

    def normalize(self, x: torch.Tensor, clip: float) -> torch.Tensor:
        """(x - mean) / std, clipped to [-clip, clip], in x's dtype."""
        return ((x - self.mean.to(x.dtype)) / self.std().to(x.dtype)).clamp(-clip, clip)


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(sizes: list[int], out_std: float) -> nn.Sequential:
    """Linear-tanh stack; orthogonal init with gain sqrt(2), `out_std` for the output layer."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 2):
        layers += [layer_init(nn.Linear(sizes[i], sizes[i + 1])), nn.Tanh()]
    layers.append(layer_init(nn.Linear(sizes[-2], sizes[-1]), std=out_std))
    return nn.Sequential(*layers)


class Agent(nn.Module):
    """Separate actor and critic; the observation normalizer is part of the model.

    Box actions: the actor outputs the Gaussian mean, `actor_logstd` is a state-independent
    parameter. Discrete actions: the actor outputs the categorical logits.
    """

    def __init__(self, obs_dim: int, action_space: gym.spaces.Space, hidden_sizes: tuple[int, ...],
                 norm_obs: bool, clip_obs: float):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        self.norm_obs, self.clip_obs = norm_obs, clip_obs
        act_dim = action_space.shape[0] if self.continuous else int(action_space.n)
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.critic = mlp([obs_dim, *hidden_sizes, 1], out_std=1.0)
        self.actor = mlp([obs_dim, *hidden_sizes, act_dim], out_std=0.01)
        if self.continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(act_dim))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_rms.normalize(obs, self.clip_obs) if self.norm_obs else obs

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """V(s) for normalized observations x: shape (batch,)."""
        return self.critic(x).squeeze(-1)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        """a ~ pi(.|s) for normalized observations x (log pi(a|s) comes from `log_prob_entropy`)."""
        out = self.actor(x)
        if self.continuous:
            return out + self.actor_logstd.exp() * torch.randn_like(out)
        return torch.multinomial(out.softmax(-1), 1).squeeze(-1)

    def log_prob_entropy(self, x: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(a|s), shape (batch,), and the entropy H[pi(.|s)], shape (batch,) or () for the
        Gaussian, whose entropy does not depend on s."""
        out = self.actor(x)
        if self.continuous:
            return gaussian_log_prob(out, self.actor_logstd, action), gaussian_entropy(self.actor_logstd)
        return categorical_log_prob(out, action), categorical_entropy(out)

    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The mode of pi(.|s) for raw observations: the Gaussian mean, or the most likely discrete action."""
        out = self.actor(self.normalize(obs))
        return out if self.continuous else out.argmax(-1)

    def input_change_kl(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Mean KL(pi(.|x0) || pi(.|x1)) for two normalizations x0, x1 of the same observations."""
        out0, out1 = self.actor(x0), self.actor(x1)
        if self.continuous:
            return gaussian_kl(out0, self.actor_logstd, out1, self.actor_logstd).mean()
        return categorical_kl(out0, out1).mean()


# ---------------------------------------------------------------------------------------------
# PPO math: small pure functions, tested in tests/test_ppo_math.py and tests/test_shared_math.py
# ---------------------------------------------------------------------------------------------
def discounted_returns_stream(
    rewards: np.ndarray, dones: np.ndarray, running: np.ndarray, gamma: float
) -> np.ndarray:
    """R_t = gamma * R_{t-1} + r_t per environment, reset to 0 after a done step.

    rewards, dones: (T, N); `running` (N,) is the carried state R_{-1}, updated in place.
    Returns the (T, N) sequence R_t whose running std scales the rewards.
    """
    out = np.empty_like(rewards)
    for t in range(rewards.shape[0]):
        running[:] = gamma * running + rewards[t]
        out[t] = running
        running[dones[t]] = 0.0
    return out


def scale_rewards(rewards: np.ndarray, dones: np.ndarray, running: np.ndarray, reward_rms: RunningMeanStd,
                  gamma: float, clip: float) -> np.ndarray:
    """Reward scaling: r_t / std(R), clipped to [-clip, clip], one scale for the whole (T, N) batch.
    R_t = gamma * R_{t-1} + r_t is each env's discounted return stream (`running` carries it across
    batches); `reward_rms` merges this batch's R_t before the scale is read."""
    returns_stream = discounted_returns_stream(rewards, dones, running, gamma)
    reward_rms.update(torch.from_numpy(returns_stream.reshape(-1)))
    scale = float((reward_rms.var + 1e-8).sqrt())
    return np.clip(rewards / scale, -clip, clip)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log N(a; mu, diag(sigma^2)) = -sum_j [ (a_j - mu_j)^2 / (2 sigma_j^2) + log sigma_j + log(2 pi) / 2 ]."""
    z = (action - mean) * torch.exp(-log_std)
    return -(0.5 * z.square() + log_std + HALF_LOG_2PI).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """H[N(mu, diag(sigma^2))] = sum_j [ log sigma_j + (1 + log(2 pi)) / 2 ]."""
    return (log_std + 0.5 + HALF_LOG_2PI).sum(-1)


def categorical_log_prob(logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) = logits_a - logsumexp(logits)."""
    return logits.log_softmax(-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H = -sum_a pi(a|s) log pi(a|s)."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


def gaussian_kl(mean0: torch.Tensor, log_std0: torch.Tensor, mean1: torch.Tensor, log_std1: torch.Tensor) -> torch.Tensor:
    """KL(N0 || N1) for diagonal Gaussians, summed over action dimensions:
    sum_j [ log(sigma1_j / sigma0_j) + (sigma0_j^2 + (mu0_j - mu1_j)^2) / (2 sigma1_j^2) - 1/2 ]."""
    var0, var1 = torch.exp(2 * log_std0), torch.exp(2 * log_std1)
    return (log_std1 - log_std0 + (var0 + (mean0 - mean1).square()) / (2 * var1) - 0.5).sum(-1)


def categorical_kl(logits0: torch.Tensor, logits1: torch.Tensor) -> torch.Tensor:
    """KL(p0 || p1) = sum_a p0(a) (log p0(a) - log p1(a))."""
    log_p0, log_p1 = logits0.log_softmax(-1), logits1.log_softmax(-1)
    return (log_p0.exp() * (log_p0 - log_p1)).sum(-1)


def successor_values(values: torch.Tensor, last_value: torch.Tensor, final_values: torch.Tensor,
                     dones: torch.Tensor) -> torch.Tensor:
    """V(s_{t+1}) for each step of a (T, N) rollout.

    Inside an episode it is the next step's value; where the episode ended at t (dones[t]) it is
    final_values[t] = V(final observation), because with autoreset the next row already holds the
    next episode's first observation; after the last step it is last_value = V(next observation).
    """
    return torch.where(dones, final_values, torch.cat([values[1:], last_value.unsqueeze(0)]))


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminations: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(lambda) advantages and value targets for a (T, N) batch.

    next_values[t] = V(s_{t+1}), the true successor: V(final observation) where the episode ended at
    t, V(next observation) at the last step. terminations[t] = 1 where the episode reached a terminal
    state (no bootstrap); dones[t] = terminated or truncated (the GAE sum stops there).
    Returns (advantages, returns) with returns = advantages + values.
    """
    # delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
    deltas = rewards + gamma * (1.0 - terminations) * next_values - values
    # A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1};  A_T = 0 (the batch ends)
    decay = gamma * gae_lambda * (1.0 - dones)
    advantages = torch.zeros_like(deltas)
    next_advantage = torch.zeros_like(deltas[0])
    for t in reversed(range(deltas.shape[0])):
        next_advantage = deltas[t] + decay[t] * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + values


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A - mean) / (std + eps) with the population std: one sample gives 0, never NaN."""
    return (advantages - advantages.mean()) / (advantages.std(correction=0) + eps)


def ppo_policy_loss(logratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float) -> torch.Tensor:
    """L_CLIP = -mean[min(r * A, clip(r, 1 - eps, 1 + eps) * A)],  r = exp(log pi_1 - log pi_0)."""
    ratio = logratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages
    return -torch.min(unclipped, clipped).mean()


def ppo_value_loss(
    new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_coef: Optional[float]
) -> torch.Tensor:
    """L_V = 0.5 * mean[(V - R)^2]; clipped: 0.5 * mean[max((V - R)^2, (V_0 + clip(V - V_0, +-eps) - R)^2)]."""
    unclipped = (new_values - returns).square()
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    clipped_values = old_values + (new_values - old_values).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max(unclipped, (clipped_values - returns).square()).mean()


def ppo_loss(agent: Agent, x: torch.Tensor, actions: torch.Tensor, logprobs0: torch.Tensor,
             advantages: torch.Tensor, returns: torch.Tensor, values0: torch.Tensor, args: Args,
             clip_vloss: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One minibatch's L = L_CLIP + c_v * L_V - c_H * H, with L_CLIP, L_V and log r = log pi_1 - log pi_0."""
    newlogprob, entropy = agent.log_prob_entropy(x, actions)
    logratio = newlogprob - logprobs0
    advantages = normalize_advantages(advantages) if args.norm_adv else advantages
    pg_loss = ppo_policy_loss(logratio, advantages, args.clip_coef)
    v_loss = ppo_value_loss(agent.value(x), values0, returns, args.clip_coef if clip_vloss else None)
    loss = pg_loss + args.vf_coef * v_loss
    if args.ent_coef > 0:
        loss = loss - args.ent_coef * entropy.mean()
    return loss, pg_loss, v_loss, logratio


def approx_kl(logratio: torch.Tensor) -> torch.Tensor:
    """KL(pi_0 || pi_1) ~ mean[(r - 1) - log r] over samples from pi_0: unbiased, never negative."""
    return (logratio.exp() - 1.0 - logratio).mean()


def clip_fraction(logratio: torch.Tensor, clip_coef: float) -> torch.Tensor:
    """Fraction of samples whose ratio r lies outside [1 - eps, 1 + eps]."""
    return ((logratio.exp() - 1.0).abs() > clip_coef).float().mean()


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - Var[targets - predictions] / Var[targets]; NaN when the targets are constant."""
    var_targets = targets.var()
    return float("nan") if var_targets == 0 else float(1.0 - (targets - predictions).var() / var_targets)


class FlatGrad:
    """Every parameter's .grad as a view into one flat buffer g: zeroing and norm-clipping the gradient
    are one operation each per minibatch step, not one per tensor (on a CPU, per-operation overhead is
    most of a step). Replaced .grad tensors are noticed (optimizer.zero_grad() sets them to None; .to()
    or .double() swap their storage): `zero_()` re-attaches the views, `clip_norm_` uses torch's clipping."""

    def __init__(self, parameters: list[nn.Parameter]):
        self.parameters = list(parameters)
        self.attach()

    def attach(self) -> None:
        first = self.parameters[0]
        self.buffer = torch.zeros(sum(p.numel() for p in self.parameters), device=first.device, dtype=first.dtype)
        chunks = self.buffer.split([p.numel() for p in self.parameters])
        self.views = [chunk.view_as(p) for chunk, p in zip(chunks, self.parameters)]
        for p, view in zip(self.parameters, self.views):
            p.grad = view  # backward() accumulates into it in place

    def attached(self) -> bool:
        return (all(p.grad is view for p, view in zip(self.parameters, self.views))
                and self.views[0].data_ptr() == self.buffer.data_ptr())  # the storage swap of .to() keeps the objects

    def zero_(self) -> None:
        if self.attached():
            self.buffer.zero_()
        else:
            self.attach()

    def clip_norm_(self, max_norm: float) -> torch.Tensor:
        """g <- g * min(1, max_norm / (||g|| + 1e-6)) in place; returns ||g||."""
        if not self.attached():
            return nn.utils.clip_grad_norm_(self.parameters, max_norm)
        norm = torch.linalg.vector_norm(self.buffer)
        self.buffer.mul_((max_norm / (norm + 1e-6)).clamp(max=1.0))
        return norm


def minibatch_step(agent: Agent, optimizer: torch.optim.Adam, grad: FlatGrad, x: torch.Tensor, actions: torch.Tensor,
                   logprobs0: torch.Tensor, advantages: torch.Tensor, returns: torch.Tensor, values0: torch.Tensor,
                   args: Args, clip_vloss: bool) -> tuple[tuple, bool]:
    """One gradient step on a minibatch: L = `ppo_loss`, backward into the flat gradient, global
    gradient-norm clipping, Adam. Returns ppo_loss's outputs (L, L_CLIP, L_V, log r) and whether the
    step was taken: not when --target-kl is set and the minibatch has already left the trust region
    (then nothing changes). With --compile, `CompiledStep` takes the same step."""
    loss, _, _, _ = outputs = ppo_loss(agent, x, actions, logprobs0, advantages, returns, values0, args, clip_vloss)
    if args.target_kl is not None and kl_exceeded(outputs, args.target_kl).item():
        return tuple(t.detach() for t in outputs), False
    grad.zero_()
    loss.backward()  # into the flat buffer that every parameter's .grad is a view of
    grad.clip_norm_(args.max_grad_norm)
    optimizer.step()
    return tuple(t.detach() for t in outputs), True


def kl_exceeded(outputs: tuple, target_kl: float) -> torch.Tensor:
    """--target-kl: the minibatch's approximate KL(pi_0 || pi_1), from ppo_loss's log r, exceeds it."""
    return approx_kl(outputs[3].detach()).double() > target_kl  # compared in double, as a Python float


# ---------------------------------------------------------------------------------------------
# Training: the loop of the module docstring
# ---------------------------------------------------------------------------------------------
def main(args: Args, stop: Optional[StopRequest] = None) -> dict:
    """Train and evaluate as `args` says; return the summary (summary.json). `stop` (SIGINT/SIGTERM
    from the command line) ends training early, saved and resumable."""
    obs_space, action_space, continuous, norm_obs, norm_reward, device = setup(args)
    clip_vloss = norm_reward if args.clip_vloss is None else args.clip_vloss

    obs_dim = obs_space.shape[0]
    agent = Agent(obs_dim, action_space, args.hidden_sizes, norm_obs, args.clip_obs).to(device)
    parameters = list(agent.parameters())
    optimizer = torch.optim.Adam(parameters, lr=args.learning_rate, eps=1e-5, fused=True)
    reward_rms = RunningMeanStd(())
    grad = FlatGrad(parameters)  # every parameter's .grad is a view into one flat buffer
    # one minibatch step (ppo_loss, backward, clipping, Adam); --compile: the same step as one compiled function
    train_step = partial(minibatch_step, agent, optimizer, grad)
    if args.compile:
        train_step = CompiledStep(ppo_loss, agent, optimizer, args, train_step, args.max_grad_norm,
                                  skip=None if args.target_kl is None else partial(kl_exceeded, target_kl=args.target_kl))

    N, T = args.num_envs, args.num_steps
    batch_size, minibatch_size = N * T, N * T // args.num_minibatches
    # the run directory, logs and checkpoints; with --load-model or --resume it loads the checkpoint
    run = Run(args, {"norm_obs": norm_obs, "norm_reward": norm_reward, "clip_vloss": clip_vloss}, device,
              agent, {"actor_critic": optimizer}, reward_rms, batch_size, stop)
    action_shape = action_space.shape if continuous else ()

    # Rollout storage: what the networks see lives on the device; what the env returns stays on the
    # host until the rollout is over and then moves once.
    obs = torch.zeros((T, N, obs_dim), device=device)  # normalized observations x_t, as pi_0 saw them
    actions = torch.zeros((T, N, *action_shape), device=device, dtype=torch.float32 if continuous else torch.long)
    final_values = torch.zeros((T, N), device=device)  # V(final observation) where a time limit cut the episode
    raw_obs = np.zeros((T, N, obs_dim), dtype=np.float32)  # raw observations s_t, for the statistics update
    rewards = np.zeros((T, N), dtype=np.float64)  # raw rewards
    terminations = np.zeros((T, N), dtype=bool)
    dones = np.zeros((T, N), dtype=bool)  # terminated or truncated

    envs, next_obs = run.start_envs()
    global_step = run.global_step

    for update in range(run.update + 1, run.num_updates + 1):
        guard = NonFiniteGuard(run)  # the run as of its last update, put back if anything turns non-finite
        if args.anneal_lr:
            # lr_k = lr_0 * (1 - (k - 1) / K)
            optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - (update - 1.0) / run.num_updates)

        # ---- 1. Rollout with the fixed policy pi_0 (normalization statistics frozen) ------------
        final_values.zero_()
        for step in range(T):
            if run.stopping:
                break
            global_step += N
            raw_obs[step] = next_obs
            with torch.no_grad():
                x = agent.normalize(torch.as_tensor(next_obs, dtype=torch.float32, device=device))
                action = agent.sample(x)
            obs[step] = x
            actions[step] = action
            env_action = action.cpu().numpy()
            if continuous:
                env_action = np.clip(env_action, action_space.low, action_space.high)  # sampled unclipped, stored unclipped
            next_obs, reward, terminated, truncated, info = envs.step(env_action)
            rewards[step], terminations[step], dones[step] = reward, terminated, terminated | truncated
            run.track_episodes(global_step, next_obs, reward, dones[step], info)

            # Truncated, not terminated: bootstrap with V(final observation), not V(next episode's start).
            cut = truncated & ~terminated
            if cut.any():
                idx = np.flatnonzero(cut)
                final_obs = np.stack(info["final_obs"][idx]).astype(np.float32)
                with torch.no_grad():
                    x_final = agent.normalize(torch.as_tensor(final_obs, device=device))
                    final_values[step, torch.as_tensor(idx, device=device)] = agent.value(x_final)
        if run.stopping:
            break  # a stop request discards the unfinished rollout: the run ends as of its last update

        # ---- 2. Advantages: GAE(lambda) with V(s_{t+1}) the true successor's value -------------
        train_rewards = (scale_rewards(rewards, dones, run.discounted_return, reward_rms, args.gamma, args.clip_reward)
                         if norm_reward else rewards)
        with torch.no_grad():
            # pi_0 and V did not change during the rollout: log pi_0(a|s) and V(s) in one pass over the batch
            logprobs = agent.log_prob_entropy(obs.reshape(-1, obs_dim), actions.reshape(-1, *action_shape))[0].view(T, N)
            values = agent.value(obs.reshape(-1, obs_dim)).view(T, N)
            last_value = agent.value(agent.normalize(torch.as_tensor(next_obs, dtype=torch.float32, device=device)))
            b_terminations = torch.as_tensor(terminations, dtype=torch.float32, device=device)
            b_dones = torch.as_tensor(dones, device=device)
            next_values = successor_values(values, last_value, final_values, b_dones)
            advantages, returns = compute_gae(
                torch.as_tensor(train_rewards, dtype=torch.float32, device=device),
                values, next_values, b_terminations, b_dones.float(), args.gamma, args.gae_lambda,
            )
        if norm_obs:
            b_raw_obs = torch.as_tensor(raw_obs.reshape(-1, obs_dim), device=device)
            agent.obs_rms.update(b_raw_obs)
            with torch.no_grad():
                # what the statistics update alone does to the acting policy (theta unchanged)
                normalizer_kl = agent.input_change_kl(obs.reshape(-1, obs_dim), agent.normalize(b_raw_obs)).item()

        # ---- 3. Several epochs of minibatch steps on the clipped surrogate ----------------------
        b_obs = obs.reshape(-1, obs_dim)
        b_actions = actions.reshape(-1, *action_shape)
        b_logprobs, b_advantages = logprobs.reshape(-1), advantages.reshape(-1)
        b_returns, b_values = returns.reshape(-1), values.reshape(-1)
        policy_losses, value_losses = [], []
        end_update = False
        for epoch in range(args.update_epochs):
            # shuffle once per epoch; minibatches are consecutive slices of the shuffled batch
            perm = torch.randperm(batch_size, device=device)
            e_obs, e_actions, e_logprobs = b_obs[perm], b_actions[perm], b_logprobs[perm]
            e_advantages, e_returns, e_values = b_advantages[perm], b_returns[perm], b_values[perm]
            for start in range(0, batch_size, minibatch_size):
                mb = slice(start, start + minibatch_size)
                if run.stopping:
                    end_update = True  # a safe point: the update ends here, is logged and saved
                    break
                (loss, pg_loss, v_loss, _), taken = train_step(e_obs[mb], e_actions[mb], e_logprobs[mb], e_advantages[mb],
                                                               e_returns[mb], e_values[mb], args, clip_vloss)
                if not taken:
                    end_update = True  # this minibatch had already left the trust region: no step on it
                    break
                guard.watch(loss)  # a device flag, read once after the update: no sync per minibatch
                policy_losses.append(pg_loss)
                value_losses.append(v_loss)
            if end_update:
                break
        guard.check(update, global_step, b_obs)

        # ---- 4. Diagnostics of the update just made (final policy vs. pi_0, whole batch) ---------
        with torch.no_grad():
            newlogprob, entropy = agent.log_prob_entropy(b_obs, b_actions)
            logratio = newlogprob - b_logprobs
            kl, clipfrac = approx_kl(logratio).item(), clip_fraction(logratio, args.clip_coef).item()
        run.end_update(update, global_step, {
            "charts/learning_rate": optimizer.param_groups[0]["lr"],
            **({"charts/normalizer_kl": normalizer_kl} if norm_obs else {}),
            "losses/policy_loss": torch.stack(policy_losses).mean().item() if policy_losses else float("nan"),
            "losses/value_loss": torch.stack(value_losses).mean().item() if value_losses else float("nan"),
            "losses/entropy": entropy.mean().item(),
            "losses/approx_kl": kl,
            "losses/clipfrac": clipfrac,
            "losses/explained_variance": explained_variance(b_values, b_returns),
            "ppo/minibatch_steps": len(policy_losses),
        }, status=f"kl {kl:.4f}")

    return run.finish(envs)


# =============================================================================================
# Shared section: byte-identical in ppo.py, trpo.py and reinforce.py (tests/test_scripts.py checks
# it), and nothing below this line is algorithmic: argument validation, environments, seeding and
# device, the run directory, logging, checkpoints, evaluation, signals and the command line.
# =============================================================================================
PROGRESS_EVERY_S = 5.0  # seconds between two progress lines on stdout

EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds disjoint from the training envs'

EVAL_MAX_EPISODE_STEPS = 10_000  # evaluation's cap for an env without a time limit of its own

CHECKPOINT_VERSION = 2

MODEL_KEYS = ("env_id", "hidden_sizes", "norm_obs", "norm_reward", "clip_obs")  # what a checkpoint's model is made for

RESUME_FIXED = (*MODEL_KEYS, "seed", "num_envs", "num_steps")  # what a resumed run cannot change


class ConfigError(Exception):
    """Bad input: reported as one line on stderr, exit code 2, before any work."""


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss): reported as one line, exit code 1."""


def validate_args(args: Args) -> None:
    """Raise ConfigError for the first invalid argument: the common checks, then the algorithm's own."""
    checks = [
        (0 <= args.seed < 2**32, "--seed must be in [0, 2**32)"),
        (args.total_timesteps >= 0, "--total-timesteps must be >= 0"),
        (args.total_timesteps > 0 or args.load_model, "--total-timesteps 0 needs --load-model (evaluate only)"),
        (args.num_envs > 0, "--num-envs must be > 0"),
        (args.num_steps > 0, "--num-steps must be > 0"),
        (0 < args.gamma <= 1, "--gamma must be in (0, 1]"),
        (args.clip_obs > 0 and args.clip_reward > 0, "--clip-obs and --clip-reward must be > 0"),
        (args.eval_episodes >= 0, "--eval-episodes must be >= 0"),
        (args.eval_every >= 0 and args.checkpoint_every >= 0, "--eval-every and --checkpoint-every must be >= 0"),
        (args.compile or not args.cudagraphs, "--cudagraphs works with --compile: add --compile"),
        (not args.cudagraphs or (args.cuda and torch.cuda.is_available()), "--cudagraphs needs CUDA (and --cuda)"),
        (args.eval_episodes > 0 or not args.eval_every, "--eval-every needs --eval-episodes > 0"),
        (args.eval_episodes > 0 or not args.capture_video, "--capture-video records evaluation episodes: it needs --eval-episodes > 0"),
        (args.torch_threads > 0, "--torch-threads must be > 0"),
        (len(args.hidden_sizes) > 0 and min(args.hidden_sizes) > 0, "--hidden-sizes must be positive widths"),
    ]
    for field in fields(args):
        value = getattr(args, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--{field.name.replace('_', '-')} must be a finite number")
    for ok, message in checks + algorithm_checks(args):
        if not ok:
            raise ConfigError(message)
    # a resumed run reads its own model.pt: the --load-model its first session started from may be gone
    if args.load_model is not None and not args.resume and not os.path.isfile(args.load_model):
        raise ConfigError(f"--load-model: no such file: {args.load_model}")


def make_env(env_id: str, **kwargs):
    """A thunk that builds one environment (`kwargs` go to gym.make); the vector env calls it once per copy."""

    def thunk():
        # gymnasium's own wrappers only (TimeLimit, order and passive checks): rewards stay raw,
        # normalization happens in this file where it can be saved and frozen.
        return gym.make(env_id, **kwargs)

    return thunk


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.SyncVectorEnv:
    """Training environments; SAME_STEP autoreset puts the final observation in info['final_obs']."""
    return gym.vector.SyncVectorEnv(
        [make_env(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def first_line(error: Exception) -> str:
    """The first line of an exception's message (or its type), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_env(env_id: str) -> tuple[gym.spaces.Box, gym.spaces.Space]:
    """Build the env once to turn an unknown id or an unsupported space into a ConfigError."""
    try:
        env = gym.make(env_id)
    except Exception as e:  # gymnasium raises several error types (NameNotFound, ImportError, ...)
        raise ConfigError(f"cannot make environment {env_id!r}: {first_line(e)}") from None
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1 and obs_space.shape[0] > 0):
        raise ConfigError(f"unsupported observation space {obs_space}: only flat, non-empty Box observations are supported")
    if isinstance(act_space, gym.spaces.Box) and not (len(act_space.shape) == 1 and act_space.shape[0] > 0):
        raise ConfigError(f"unsupported action space {act_space}: only 1-d, non-empty Box actions are supported")
    if not isinstance(act_space, (gym.spaces.Box, gym.spaces.Discrete)):
        raise ConfigError(f"unsupported action space {act_space}: only Discrete and Box are supported")
    if isinstance(act_space, gym.spaces.Discrete) and act_space.start != 0:
        raise ConfigError(f"unsupported action space {act_space}: only Discrete spaces that start at 0 are supported")
    return obs_space, act_space


def check_video(env_id: str) -> None:
    """--capture-video needs moviepy and a working renderer: fail before training, not after."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise ConfigError("--capture-video needs moviepy: pip install moviepy") from None
    try:
        env = gym.make(env_id, render_mode="rgb_array")
        env.reset(seed=0)
        frame = env.render()
        env.close()
    except Exception as e:
        raise ConfigError(f"--capture-video: {env_id} cannot render ({first_line(e)}); for MuJoCo try MUJOCO_GL=egl") from None
    if frame is None:
        raise ConfigError(f"--capture-video: {env_id} returned no frame in rgb_array mode")


class Setup(NamedTuple):
    obs_space: gym.spaces.Box
    action_space: gym.spaces.Space
    continuous: bool  # Box actions
    norm_obs: bool  # --norm-obs, the per-kind default resolved
    norm_reward: bool  # --norm-reward, likewise
    device: torch.device


def setup(args: Args) -> Setup:
    """Check the arguments and the env (one-line errors before any work), resolve the per-kind
    defaults, seed python, numpy and torch (the envs are seeded at their first reset), set torch's
    threads and pick the device."""
    validate_args(args)
    obs_space, action_space = check_env(args.env_id)
    continuous = isinstance(action_space, gym.spaces.Box)
    if args.capture_video:
        check_video(args.env_id)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.torch_threads)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.backends.cudnn.benchmark = not args.torch_deterministic
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    return Setup(obs_space, action_space, continuous, continuous if args.norm_obs is None else args.norm_obs,
                 continuous if args.norm_reward is None else args.norm_reward, device)


def make_run_dir(output_dir: str, env_id: str, exp_name: str, seed: int) -> tuple[str, str]:
    """`{output_dir}/{env_id}__{exp_name}__{seed}__{unix_time}`, made safe for a path, never reused."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{env_id}__{exp_name}__{seed}__{int(time.time())}")
    for suffix in range(1000):
        run_name = base if suffix == 0 else f"{base}_{suffix}"
        path = os.path.join(output_dir, run_name)
        try:
            os.makedirs(path)
            return run_name, path
        except FileExistsError:
            continue
        except OSError as e:  # --output-dir is a file, read-only, ...
            raise ConfigError(f"cannot create the run directory {path} (--output-dir, --env-id, --exp-name): "
                              f"{e.strerror or type(e).__name__}") from None
    raise ConfigError(f"could not create a new run directory under {output_dir}")


class MetricsLogger:
    """One JSON line per event in metrics.jsonl (appended to); the same record goes to wandb and
    TensorBoard when they are on. `time` counts the run's seconds, across resumed sessions."""

    def __init__(self, path: str, wandb_run=None, tb_writer=None, time_offset: float = 0.0):
        self.file = open(path, "a")
        self.wandb_run, self.tb_writer = wandb_run, tb_writer
        self.start = time.time() - time_offset

    def log(self, global_step: int, metrics: dict) -> None:
        record = {"global_step": int(global_step), "time": round(time.time() - self.start, 3)}
        for key, value in metrics.items():
            value = float(value)
            record[key] = value if math.isfinite(value) else None  # JSON has no NaN
        self.file.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(record)
        if self.tb_writer is not None:
            for key, value in record.items():
                if key not in ("global_step", "time") and value is not None:
                    self.tb_writer.add_scalar(key, value, global_step)

    def flush(self, sync: bool = False) -> None:
        """Hand the records to the OS; with `sync` also wait until metrics.jsonl is on the disk."""
        self.file.flush()
        if sync:
            os.fsync(self.file.fileno())
        if self.tb_writer is not None:
            self.tb_writer.flush()

    def close(self) -> None:
        self.file.close()
        if self.tb_writer is not None:
            self.tb_writer.close()


def keep_metrics_until(path: str, global_step: int) -> float:
    """Drop the records after `global_step` from metrics.jsonl (written after the last checkpoint by a
    run that was then killed, or cut off mid-line), so that a resumed run's steps continue from there.
    Returns the latest `time` kept (0 if none): the final evaluation logs after the last checkpoint."""
    if not os.path.exists(path):
        return 0.0
    kept, latest = [], 0.0
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
                if record["global_step"] <= global_step:
                    kept.append(line)
                    latest = max(latest, float(record.get("time", 0.0)))
            except (ValueError, KeyError, TypeError):
                pass  # a line cut off by a kill
    replace_file(path, lambda f: f.writelines(kept))
    return latest


def replace_file(path: str, write: Callable, binary: bool = False) -> None:
    """`write(f)` into a temporary file, synced to the disk, then renamed over `path`: a kill or a
    crash at any instant leaves either the previous file or the new one, never a partial file."""
    tmp = path + ".tmp"
    with open(tmp, "wb" if binary else "w") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: str, checkpoint: dict) -> None:
    replace_file(path, lambda f: torch.save(checkpoint, f), binary=True)


def write_json(path: str, data: dict) -> None:
    replace_file(path, lambda f: json.dump(data, f, indent=2))


def read_checkpoint(path: str, flag: str) -> dict:
    """The checkpoint at `path` if it is one of this script's, its tensors on the CPU (load_state_dict
    copies them to the model's device; the rest is read on the host); otherwise a ConfigError naming `flag`."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{flag} {path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("algo") != ALGO:
        raise ConfigError(f"{flag} {path}: not a {ALGO}.py checkpoint")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{flag} {path}: written by another version of {ALGO}.py (checkpoint format "
                          f"{checkpoint.get('version', 1)}, this file reads {CHECKPOINT_VERSION})")
    return checkpoint


def read_run_config(run_dir: str) -> dict:
    """config.json of a run directory of this script, for --resume; otherwise a ConfigError."""
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--resume {run_dir}: no readable config.json ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    if config.get("algo") != ALGO:
        raise ConfigError(f"--resume {run_dir}: not a run of {ALGO}.py")
    if not os.path.isfile(os.path.join(run_dir, "model.pt")):
        raise ConfigError(f"--resume {run_dir}: no model.pt to resume from")
    return config


def finished(run_dir: str, global_step: int) -> bool:
    """The run's summary.json is of a session that ended at `global_step` without being stopped:
    training and the final evaluation are done (not an earlier summary of a run trained further)."""
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return False
    return not summary.get("interrupted") and summary.get("global_step") == global_step


def args_from(saved: dict, keys=None) -> dict:
    """The saved arguments (config.json or a checkpoint) that Args has, as Args holds them (lists as tuples)."""
    names = {f.name for f in fields(Args)} if keys is None else set(keys)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names}


def rng_state() -> dict:
    """python, numpy and torch RNG states in types that torch.load(weights_only=True) reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}  # a CPU run starts no CUDA


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_initialized() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def script_identity() -> dict:
    """This file's name, sha256 and git commit (None outside a repository)."""
    path = os.path.abspath(__file__)
    with open(path, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(path), capture_output=True,
                             text=True, timeout=10)
        commit = git.stdout.strip() if git.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"script": os.path.basename(path), "sha256": sha256, "git_commit": commit}


def cpu_model() -> str:
    """The CPU's model name where Linux gives it, else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def run_config(args: Args, resolved: dict, device: torch.device) -> dict:
    """What a run directory's config.json records: every argument (per-kind defaults resolved), the
    command line, this file's name, sha256 and git commit, the library versions, the device and the
    machine (the same seed gives other numbers on another CPU model or another library version)."""
    try:
        import mujoco  # only to record its version
        mujoco_version = mujoco.__version__
    except ImportError:
        mujoco_version = None
    return {
        "algo": ALGO,
        "args": {**asdict(args), **resolved},
        "command": [os.path.basename(sys.executable), *sys.argv],
        **script_identity(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                     "gymnasium": gym.__version__, "mujoco": mujoco_version, "tyro": tyro.__version__},
        "device": str(device),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "os": platform.platform(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
    }


@torch.no_grad()
def evaluate(agent: Agent, env_id: str, episodes: int, seed: int, device: torch.device,
             video_dir: Optional[str] = None, stop: Optional[StopRequest] = None) -> Optional[list[float]]:
    """Raw returns of `episodes` episodes with the deterministic policy and frozen normalization.
    The same seeds every time, so that evaluations during training differ only by the policy; an env
    without a time limit of its own is cut at EVAL_MAX_EPISODE_STEPS. None if `stop` is requested
    before the last episode ends (an evaluation is all or nothing)."""
    env = make_env(env_id, **({"render_mode": "rgb_array"} if video_dir else {}))()
    if env.spec is None or env.spec.max_episode_steps is None:
        env = gym.wrappers.TimeLimit(env, EVAL_MAX_EPISODE_STEPS)
    if video_dir:
        # one file per evaluation episode
        env = gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda episode: True)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
        done, episode_return = False, 0.0
        while not done:
            if stop is not None and stop.requested:
                env.close()
                return None
            action = agent.deterministic_action(torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0))
            action = action[0].cpu().numpy()
            if agent.continuous:
                action = np.clip(action, env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    env.close()
    return returns


class NonFiniteGuard:
    """No update is kept that a non-finite loss went into or that left non-finite weights, statistics or outputs
    (a step can overflow from finite losses), with one host-device sync per update instead of one per
    gradient step. Made at the start of an update, it copies the run's state (weights, statistics,
    optimizers); `watch` folds losses into a flag on the device; `check`, at the end of the update,
    adds the updated networks' check and reads the flag once: if anything was NaN or infinite, it puts
    that state back, saves the run as of its last update (model.pt, which --resume continues) and
    stops it (TrainingError)."""

    def __init__(self, run: Run):
        self.run, self.saved = run, copy.deepcopy(run.state())
        self.nonfinite: Optional[torch.Tensor] = None

    def watch(self, loss: torch.Tensor) -> None:
        """Fold a loss, or a tensor of losses, into the flag."""
        bad = ~torch.isfinite(loss.detach()).all()
        self.nonfinite = bad if self.nonfinite is None else self.nonfinite | bad

    def check(self, update: int, global_step: int, x: torch.Tensor) -> None:
        """`x`: the batch's network inputs; the updated weights, and the actor's and the critic's
        outputs on `x`, must be finite as well as every loss."""
        agent = self.run.agent
        with torch.no_grad():  # the statistics too: one inf observation makes them inf and NaN
            tensors = [*agent.parameters(), *agent.buffers(), agent.actor(x), agent.critic(x)]
        bad = ~torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        if self.nonfinite is not None:
            bad = bad | self.nonfinite
        # reward scaling's statistics live on the host, beside the rewards they scale
        rewards_bad = not all(torch.isfinite(t).all() for t in self.run.reward_rms.buffers())
        if bool(bad) or rewards_bad:
            self.stop(f"non-finite loss, weights, statistics or outputs at update {update}, global step {global_step}")

    def stop(self, reason: str) -> None:
        """Undo the update, save the run as of its last update and stop it (TrainingError)."""
        self.run.load_state(self.saved)
        self.run.fail(f"{reason}; the update is undone and training stops")


def compiled(fn: Callable, args: Args, fallback: Callable, device: torch.device) -> Callable:
    """With --compile, `fn` traced and compiled at its first call. make_fx records the tensor operations
    fn runs (on fake tensors: nothing is computed or changed) as one graph whose inputs are fn's
    arguments, tensors all; inductor, torch.compile's compiler, compiles that graph: on a CPU with the
    compiled function's wrapper in C++ (inductor's "cpp_wrapper": the same kernels, called without
    Python in between); with --cudagraphs, torch.compile in CUDA graphs (mode "reduce-overhead").
    Traced first, the modules, torch.func's transforms and the Python between the operations run once,
    and the graph is given to inductor directly: torch.compile would check at every call the inputs'
    shapes, strides, dtypes, devices, whether they require gradients or share memory, and the grad
    mode (its guards), a fifth of a critic step for 64-64 networks (README: Speed). Here each call
    checks the shapes and strides (another is an error, not a new graph); the rest is the caller's
    part: the same dtypes and devices at every call (CompiledStep compiles one function for each),
    called under torch.no_grad, no input requiring gradients, and no input the graph changes in place
    sharing memory with another. fn may read no tensors but its arguments (fake tracing refuses
    others: the fallback runs). Without --compile, `fn` itself. Compiling is reported once per compiled
    function; a failure falls back to `fallback`, called the same way, with one warning line."""
    if not args.compile:
        return fn
    chosen: list[Callable] = []

    def call(*fn_args):
        if chosen:
            return chosen[0](*fn_args)
        start = time.time()
        try:
            from torch._inductor import compile as inductor_compile  # only --compile needs these
            from torch.fx.experimental.proxy_tensor import make_fx
            from torch.utils._pytree import tree_flatten, tree_unflatten

            out_spec = []

            def flat_fn(*fn_args):  # inductor compiles graphs whose output is a flat tuple of tensors
                out, spec = tree_flatten(fn(*fn_args))
                out_spec.append(spec)
                return tuple(out)

            graph = make_fx(flat_fn, tracing_mode="fake")(*fn_args)
            if args.cudagraphs:
                flat_compiled = replayed_safely(torch.compile(graph, mode="reduce-overhead"))
            else:
                flat_compiled = inductor_compile(graph, list(fn_args), {"cpp_wrapper": device.type == "cpu"})

            def compiled_fn(*fn_args):
                return tree_unflatten(flat_compiled(*fn_args), out_spec[0])

            out = compiled_fn(*fn_args)
        except Exception as e:  # an unsupported op, no C++ compiler, ...
            print(f"warning: --compile: {fn.__name__} could not be compiled ({first_line(e)}); "
                  "running the plain path", file=sys.stderr)
            chosen.append(fallback)
            return fallback(*fn_args)
        print(f"{ALGO}: --compile: {fn.__name__} compiled in {time.time() - start:.1f} s", flush=True)
        chosen.append(compiled_fn)
        return out

    return call


def replayed_safely(graph_fn: Callable) -> Callable:
    """A CUDA-graph function whose outputs outlive its next call: each call starts a new graph step
    (torch.compiler.cudagraph_mark_step_begin) and returns copies, since the next replay overwrites
    the graph's own output memory (losses kept for logging)."""

    def copy(out):
        return tuple(copy(t) for t in out) if isinstance(out, tuple) else out.clone()

    def call(*fn_args, **fn_kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        return copy(graph_fn(*fn_args, **fn_kwargs))

    return call


class CompiledStep:
    """--compile: one gradient step, `loss_fn(module, *loss_args)`, its gradient, optional global
    gradient-norm clipping and torch.optim.Adam's step, as one compiled function (`compiled`). On a
    CPU, the autograd engine and the optimizer's Python loop between these parts cost more than the
    arithmetic of 64-64 networks; here there is neither: the same `loss_fn` is evaluated at the
    module's parameters by torch.func.functional_call, differentiated by torch.func.grad, and Adam's
    update is written out (`adam_update_`). The parameters, Adam's two moments and its step counts are
    each one flat tensor, the module's parameters and the optimizer's state tensors views into them
    (`attach`): the compiled function has a few inputs, not four per parameter, and its clipping and
    Adam are one pass over all the weights. The views keep one optimizer for the checkpoint, --resume
    and the plain path; a load_state_dict that replaces them is noticed and attached again.
    Called like `plain`, the plain step it stands for (and falls back to if compiling fails): returns
    loss_fn's outputs and whether the step was taken (`skip(outputs)` true: nothing changes). One
    function is compiled for each dtype and device of the state, each set of shapes, strides, dtypes
    and devices of the tensor arguments and each set of the others, compared by identity (`args`, flags): their values are fixed in it, so `args`
    must not change during a run (the scripts never change it). loss_fn may read the module's parameters and its
    arguments, no other tensor. Equal to the plain step within float tolerance (tested)."""

    def __init__(self, loss_fn: Callable, module: nn.Module, optimizer: torch.optim.Adam, args: Args,
                 plain: Callable, max_grad_norm: Optional[float] = None, skip: Optional[Callable] = None):
        self.optimizer, self.params, self.skip = optimizer, list(module.parameters()), skip
        (group,) = optimizer.param_groups  # what adam_update_ writes out: one group of plain Adam
        if ([id(p) for p in group["params"]] != [id(p) for p in self.params] or group["weight_decay"]
                or group["amsgrad"] or group["maximize"]):
            raise ValueError("CompiledStep: Adam over the module's parameters, no weight decay, amsgrad or maximize")
        self.bound = BoundLoss(loss_fn, module)
        self.names = [name for name, _ in self.bound.named_parameters()]
        self.sizes, self.shapes = [p.numel() for p in self.params], [p.shape for p in self.params]
        self.lr = torch.zeros((), device=self.params[0].device)
        self.loss_fn, self.args, self.plain, self.max_grad_norm = loss_fn, args, plain, max_grad_norm
        self.flat: tuple[torch.Tensor, ...] = ()  # (theta, m, v, steps) once attached
        self.views: list[tuple[torch.Tensor, ...]] = []
        self.step_fns: dict[tuple, Callable] = {}

    def functional_step(self, theta: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                        steps: torch.Tensor, lr: torch.Tensor, loss_args: tuple) -> tuple[tuple, torch.Tensor]:
        """The step on the flat tensors, in place; returns loss_fn's outputs and whether it was taken."""
        def loss_at(theta):
            params = [chunk.view(shape) for chunk, shape in zip(theta.split(self.sizes), self.shapes)]
            return torch.func.functional_call(self.bound, dict(zip(self.names, params)), loss_args)

        grad, outputs = torch.func.grad(loss_at, has_aux=True)(theta)
        if self.max_grad_norm is not None:  # g <- g * min(1, max_norm / (||g|| + 1e-6)), as clip_grad_norm_
            grad = grad * (self.max_grad_norm / (torch.linalg.vector_norm(grad) + 1e-6)).clamp(max=1.0)
        taken = None if self.skip is None else ~self.skip(outputs)
        step = steps[0].clone()  # every parameter has taken the same steps
        (group,) = self.optimizer.param_groups
        adam_update_([theta], [grad], [exp_avg], [exp_avg_sq], [step], lr, *group["betas"], group["eps"], taken=taken)
        steps.copy_(step.expand_as(steps))
        return outputs, (torch.ones((), dtype=torch.bool, device=theta.device) if taken is None else taken)

    def step_fn(self, loss_args: tuple) -> Callable:
        """The compiled step for arguments like `loss_args`: a function of the flat tensors, the learning
        rate and loss_args' tensors, the other arguments fixed."""
        is_tensor = [isinstance(a, torch.Tensor) for a in loss_args]
        constants = [None if t else a for a, t in zip(loss_args, is_tensor)]

        def all_args(tensors: tuple) -> tuple:
            it = iter(tensors)
            return tuple(next(it) if t else a for a, t in zip(constants, is_tensor))

        def step(theta, exp_avg, exp_avg_sq, steps, lr, *tensors):
            return self.functional_step(theta, exp_avg, exp_avg_sq, steps, lr, all_args(tensors))

        def plain_step(theta, exp_avg, exp_avg_sq, steps, lr, *tensors):
            with torch.enable_grad():
                return self.plain(*all_args(tensors))

        step.__name__ = f"{self.loss_fn.__name__} step"
        return compiled(step, self.args, fallback=plain_step, device=self.lr.device)

    def attach(self) -> None:
        """Copy the parameters and the optimizer's state (zeros before its first step, as
        torch.optim.Adam(fused=True) starts) into flat tensors, and make the originals views into them.
        The moments keep the parameters' dtype, the step counts float32 (as fused Adam keeps them); the
        counts must be equal (every step updates every parameter), since the flat step keeps one."""
        state, theta = self.optimizer.state, torch.cat([p.detach().reshape(-1) for p in self.params])

        def flat(key: str, dtype: torch.dtype) -> torch.Tensor:
            if not state:
                return torch.zeros(len(self.params) if key == "step" else theta.numel(), device=theta.device, dtype=dtype)
            return torch.cat([state[p][key].detach().reshape(-1).to(theta.device, dtype) for p in self.params])

        steps = flat("step", torch.float32)
        if not bool((steps == steps[0]).all()):
            raise ValueError(f"CompiledStep: Adam's step counts differ between parameters ({steps.tolist()})")
        self.flat = (theta, flat("exp_avg", theta.dtype), flat("exp_avg_sq", theta.dtype), steps)
        chunks = zip(*(t.split(self.sizes) for t in self.flat[:3]), self.flat[3].unbind())
        self.views = []
        for p, (w, m, v, t) in zip(self.params, chunks):
            p.data = w.view_as(p)
            state[p] = {"step": t, "exp_avg": m.view_as(p), "exp_avg_sq": v.view_as(p)}
            self.views.append((p.data, state[p]["exp_avg"], state[p]["exp_avg_sq"], t))
        if self.args.cudagraphs:  # CUDA graphs: updated in place at fixed addresses, no copies into and out of the graph
            for t in (*self.flat, self.lr):
                torch._dynamo.mark_static_address(t)

    def attached(self) -> bool:
        """The parameters and the optimizer's state are the views `attach` made (the optimizer's
        load_state_dict replaces its state tensors; the module's copies into the parameters)."""
        state = self.optimizer.state
        return bool(self.views) and all(
            p.data_ptr() == w.data_ptr() and p in state and state[p]["exp_avg"] is m
            and state[p]["exp_avg_sq"] is v and state[p]["step"] is t
            for p, (w, m, v, t) in zip(self.params, self.views))

    def __call__(self, *loss_args) -> tuple:
        if not self.attached():
            self.attach()
        self.lr.fill_(self.optimizer.param_groups[0]["lr"])
        key = (self.flat[0].dtype, self.flat[0].device,  # the state's, then the arguments'
               *((a.shape, a.stride(), a.dtype, a.device) if isinstance(a, torch.Tensor) else id(a) for a in loss_args))
        if key not in self.step_fns:
            self.step_fns[key] = self.step_fn(loss_args)
        tensors = [a for a in loss_args if isinstance(a, torch.Tensor)]
        with torch.no_grad():  # torch.func.grad differentiates inside; the update itself is not differentiated
            outputs, taken = self.step_fns[key](*self.flat, self.lr, *tensors)
        return outputs, (True if self.skip is None else bool(taken))


class BoundLoss(nn.Module):
    """`loss_fn(module, *loss_args)` as a module's forward, for torch.func: returns (loss, outputs),
    loss the first of loss_fn's outputs (or its only one)."""

    def __init__(self, loss_fn: Callable, module: nn.Module):
        super().__init__()
        self.loss_fn, self.module = loss_fn, module

    def forward(self, *loss_args):
        outputs = self.loss_fn(self.module, *loss_args)
        return (outputs[0] if isinstance(outputs, tuple) else outputs), outputs


def adam_update_(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                 exp_avg_sqs: list[torch.Tensor], steps: list[torch.Tensor], lr: torch.Tensor, beta1: float,
                 beta2: float, eps: float, taken: Optional[torch.Tensor] = None) -> None:
    """torch.optim.Adam's step (no weight decay, no amsgrad), in place on the parameters and its state:
    m <- beta1 m + (1 - beta1) g,  v <- beta2 v + (1 - beta2) g^2,  t <- t + 1,
    theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps). Where `taken` is
    False, nothing changes."""
    for p, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        t1 = t + 1
        m1 = m.lerp(g, 1.0 - beta1)
        v1 = v * beta2 + (1.0 - beta2) * g * g
        p1 = p - lr / (1.0 - beta1 ** t1) * m1 / (v1.sqrt() / (1.0 - beta2 ** t1).sqrt() + eps)
        if taken is not None:
            p1, m1, v1, t1 = (torch.where(taken, new, old) for new, old in ((p1, p), (m1, m), (v1, v), (t1, t)))
        p.copy_(p1), m.copy_(m1), v.copy_(v1), t.copy_(t1)


class StopRequest:
    """SIGINT (Ctrl-C) and SIGTERM ask the run to stop: the loops check `requested` at safe points
    (after an env step, after a minibatch step, in an evaluation after an env step), and the run then
    saves and exits 128 + signal. A second signal quits at once (the last checkpoint stays intact: it
    is renamed into place). The handler writes its notice with os.write: a print could land inside a
    print of the main program to the same stream, which Python refuses (a reentrant call)."""

    def __init__(self):
        self.signum: Optional[int] = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self.handle)
        signal.signal(signal.SIGTERM, self.handle)

    def handle(self, signum, frame) -> None:
        if self.signum is not None:
            os.write(2, f"\n{ALGO}: {signal.Signals(signum).name} again: quitting without saving\n".encode())
            os._exit(128 + signum)
        self.signum = signum
        os.write(2, f"\n{ALGO}: {signal.Signals(signum).name}: stopping at the next safe point to save the run "
                    "(again to quit at once)\n".encode())

    @property
    def requested(self) -> bool:
        return self.signum is not None


class Run:
    """Everything around the algorithm for one run: the run directory (new, or the one --resume names),
    config.json, metrics.jsonl with wandb and TensorBoard, the counters a resumed run continues from,
    checkpoints, evaluations, progress lines, summary.json, and the request to stop.

    The training loop reports each env step's output (`track_episodes`) and each update (`end_update`); an
    episode counts only once its rollout's update is reported, so that a rollout cut short by a stop
    request leaves no trace and the saved run is exactly the state after its last update.
    """

    def __init__(self, args: Args, resolved: dict, device: torch.device, agent: Agent,
                 optimizers: dict[str, torch.optim.Optimizer], reward_rms: RunningMeanStd, batch_size: int,
                 stop: Optional[StopRequest] = None):
        self.args, self.device, self.agent, self.optimizers = args, device, agent, optimizers
        self.reward_rms, self.batch_size = reward_rms, batch_size
        self.discounted_return = np.zeros(args.num_envs, dtype=np.float64)  # reward scaling's running R_t, per env
        self.stop = stop if stop is not None else StopRequest()
        # whole batches, never fewer steps than asked for
        self.num_updates = math.ceil(args.total_timesteps / batch_size)
        self.target_steps = self.num_updates * batch_size
        self.global_step = self.update = self.episodes = 0
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.earlier_time = 0.0  # seconds of training in earlier sessions of a resumed run
        self.log_time = 0.0  # metrics.jsonl's `time` at the checkpoint a resumed run continues from
        self.eval_missed = False  # a stop cut short the evaluation due at the saved step (made on --resume)
        self.env_seed = args.seed
        self.pending: list[tuple[int, float, int]] = []  # episodes of the current rollout
        self.episode_return, self.episode_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=np.int64)
        config = run_config(args, resolved, device)
        previous = read_run_config(args.resume) if args.resume else {}
        if args.resume:
            self.run_dir, saved = args.resume, args_from(previous["args"])
            if not os.access(self.run_dir, os.W_OK):
                raise ConfigError(f"--resume {self.run_dir}: the run directory is not writable")
            for key in RESUME_FIXED:
                if key in saved and config["args"][key] != saved[key]:
                    raise ConfigError(f"--resume: --{key.replace('_', '-')} cannot change in a resumed run "
                                      f"(it has {saved[key]})")
            self.restore(read_checkpoint(os.path.join(self.run_dir, "model.pt"), "--resume"),
                         config["args"], everything=True)
            # a run stopped or killed at its target, before its final evaluation, resumes to evaluate
            if self.global_step > self.target_steps or (self.global_step == self.target_steps
                                                        and finished(self.run_dir, self.global_step)):
                raise ConfigError(f"--resume {self.run_dir}: the run already has {self.global_step} steps; "
                                  "give a larger --total-timesteps to train on")
            if previous.get("sha256") != config["sha256"]:
                print(f"warning: {config['script']} differs from the one that wrote this run (sha256)", file=sys.stderr)
            latest = keep_metrics_until(os.path.join(self.run_dir, "metrics.jsonl"), self.global_step)
            self.log_time = max(self.log_time, latest)  # the log's clock goes on from its last record
        else:
            if args.load_model:
                self.restore(read_checkpoint(args.load_model, "--load-model"), config["args"], everything=False)
            _, self.run_dir = make_run_dir(args.output_dir, args.env_id, args.exp_name, args.seed)
        session = {key: config[key] for key in ("command", "sha256", "git_commit", "versions", "device", "machine")}
        self.config = {**config, "wandb_id": previous.get("wandb_id"), "sessions": [
            *previous.get("sessions", []), {"global_step": self.global_step, **session,
                                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]}
        self.wandb_run = self.start_wandb() if args.track else None
        tb_writer = self.start_tensorboard() if args.tensorboard else None
        write_json(os.path.join(self.run_dir, "config.json"), self.config)
        self.logger = MetricsLogger(os.path.join(self.run_dir, "metrics.jsonl"), self.wandb_run, tb_writer,
                                    time_offset=self.log_time)
        resumed = f" (resumed at step {self.global_step})" if args.resume else ""
        print(f"{ALGO} {args.env_id} seed {args.seed} on {device} -> {self.run_dir}{resumed}", flush=True)
        self.start_time, self.start_step, self.eval_time, self.last_print = time.time(), self.global_step, 0.0, 0.0

    def restore(self, checkpoint: dict, resolved_args: dict, everything: bool) -> None:
        """Load weights, statistics and optimizers (--load-model), and with `everything` also the
        counters and the RNG states (--resume)."""
        flag = "--resume" if everything else "--load-model"
        for key in MODEL_KEYS:
            saved = args_from(checkpoint["args"], [key])[key]
            if resolved_args[key] != saved:
                raise ConfigError(f"{flag}: the checkpoint was made with --{key.replace('_', '-')} {saved}, this run "
                                  f"has {resolved_args[key]} (leave the flag out to use the checkpoint's)")
        expected = {k: tuple(v.shape) for k, v in self.agent.state_dict().items()}
        if {k: tuple(v.shape) for k, v in checkpoint["agent"].items()} != expected:
            raise ConfigError(f"{flag}: the checkpoint's networks do not fit this script's Agent")
        self.load_state(checkpoint)
        if everything:
            progress = checkpoint["progress"]
            self.global_step, self.update, self.episodes = progress["global_step"], progress["update"], progress["episodes"]
            self.recent_returns.extend(progress["recent_returns"])
            self.earlier_time = progress["train_time"]
            self.log_time = progress.get("log_time", self.earlier_time)
            self.eval_missed = progress.get("eval_missed", False)
            set_rng_state(checkpoint["rng"])
            # the environments restart their episodes, from seeds that differ from the first session's
            # (so reward scaling's running returns start again from 0, as after any episode's end)
            self.env_seed = int(np.random.SeedSequence([self.args.seed, self.global_step]).generate_state(1)[0] % 2**31)

    def state(self) -> dict:
        """What an update changes: weights and statistics, optimizers, reward scaling's statistics and
        running returns (a checkpoint holds all but the running returns, which a resumed run restarts)."""
        return {"agent": self.agent.state_dict(), "reward_rms": self.reward_rms.state_dict(),
                "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
                "discounted_return": self.discounted_return.copy()}

    def load_state(self, state: dict) -> None:
        """Put back a `state()`, or a checkpoint's part of one. The learning rates stay this run's (its
        flags and schedule set them), not the saved ones."""
        self.agent.load_state_dict(state["agent"])
        self.reward_rms.load_state_dict(state["reward_rms"])
        for name, optimizer in self.optimizers.items():
            learning_rates = [group["lr"] for group in optimizer.param_groups]
            optimizer.load_state_dict(state["optimizers"][name])
            for group, lr in zip(optimizer.param_groups, learning_rates):
                group["lr"] = lr
        if "discounted_return" in state:
            self.discounted_return[:] = state["discounted_return"]

    def fail(self, message: str) -> None:
        """Training cannot go on: save the run as it is (model.pt), close the logs, raise TrainingError."""
        self.save()
        self.close_logs(exit_code=1)
        raise TrainingError(f"{message}; {os.path.join(self.run_dir, 'model.pt')} holds the run as of step "
                            f"{self.global_step} (--resume continues it, e.g. with other flags)")

    def close_logs(self, exit_code: int) -> None:
        """Close metrics.jsonl and TensorBoard's events, and end the wandb run with `exit_code`."""
        self.logger.close()
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)

    def start_wandb(self):
        try:
            import wandb  # only tracking needs it

            run_name = os.path.basename(os.path.normpath(self.run_dir))
            wandb_run = wandb.init(project=self.args.wandb_project_name, entity=self.args.wandb_entity,
                                   config=self.config["args"], name=run_name, dir=self.run_dir, save_code=True,
                                   id=self.config["wandb_id"], resume="allow")
        except Exception as e:  # not installed, not logged in, offline, a bad WANDB_* setting, ...
            if not self.args.resume:
                shutil.rmtree(self.run_dir, ignore_errors=True)  # the run never started: leave nothing behind
            raise ConfigError(f"--track: wandb could not start ({first_line(e)}); run `wandb login`, "
                              "or set WANDB_MODE=offline to log locally") from None
        wandb_run.define_metric("global_step")
        wandb_run.define_metric("*", step_metric="global_step")
        self.config["wandb_id"] = wandb_run.id
        return wandb_run

    def start_tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter  # only --tensorboard needs it
        except ImportError:
            if not self.args.resume:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        # purge_step: events after the checkpoint, from a session that was then killed, are dropped
        return SummaryWriter(self.run_dir, purge_step=self.global_step + 1 if self.args.resume else None)

    def start_envs(self) -> tuple[Optional[gym.vector.SyncVectorEnv], Optional[np.ndarray]]:
        """The training envs and their first observations (None, None when there is nothing to train)."""
        if self.update >= self.num_updates:
            return None, None
        if self.eval_missed and not self.args.eval_every:
            self.eval_missed = False  # --eval-every is off now: no evaluation is due
        if self.eval_missed and self.evaluate() is not None:  # the one a stop cut short, due at this step
            self.save()  # made: a kill from here on must not make it again
        envs = make_vector_env(self.args.env_id, self.args.num_envs)
        next_obs, _ = envs.reset(seed=self.env_seed)
        if not np.isfinite(next_obs).all():
            self.fail("the environment returned a non-finite observation at reset")
        envs.action_space.seed(self.env_seed)
        self.start_time, self.eval_time = time.time(), 0.0
        return envs, next_obs

    @property
    def stopping(self) -> bool:
        """A stop was requested: the loop should end at its next safe point."""
        return self.stop.requested

    def track_episodes(self, global_step: int, obs: np.ndarray, rewards: np.ndarray, dones: np.ndarray,
                       info: dict) -> None:
        """Add one vector step's raw rewards to each env's episode; note the episodes that ended. A
        non-finite observation (the final one of an episode that ended included) or reward stops the
        run as of its last update, before any network sees it."""
        final_obs = info["final_obs"][dones] if dones.any() else []
        if not (np.isfinite(obs).all() and np.isfinite(rewards).all() and all(np.isfinite(o).all() for o in final_obs)):
            self.fail(f"the environment returned a non-finite observation or reward at global step {global_step}")
        self.episode_return += rewards
        self.episode_length += 1
        for i in np.flatnonzero(dones):
            self.pending.append((global_step, float(self.episode_return[i]), int(self.episode_length[i])))
        self.episode_return[dones] = 0.0
        self.episode_length[dones] = 0

    def session_train_time(self) -> float:
        return time.time() - self.start_time - self.eval_time

    def end_update(self, update: int, global_step: int, metrics: dict, status: str) -> None:
        """Count and log the rollout's episodes and the update's metrics; evaluate and checkpoint when
        due; flush the logs; print a progress line every PROGRESS_EVERY_S seconds and at the end."""
        for step, episode_return, episode_length in self.pending:
            self.logger.log(step, {"charts/episodic_return": episode_return, "charts/episodic_length": episode_length})
            self.recent_returns.append(episode_return)
            self.episodes += 1
        self.pending.clear()
        previous_step, self.global_step, self.update = self.global_step, global_step, update
        sps = (global_step - self.start_step) / max(self.session_train_time(), 1e-9)
        self.logger.log(global_step, {"charts/SPS": sps, **metrics})
        last = update == self.num_updates  # the end of training saves and evaluates anyway
        if not last and self.args.eval_every and global_step // self.args.eval_every > previous_step // self.args.eval_every:
            self.evaluate()
        if not last and self.args.checkpoint_every and global_step // self.args.checkpoint_every > previous_step // self.args.checkpoint_every:
            self.save()
        self.logger.flush()
        now = time.time()
        if now - self.last_print >= PROGRESS_EVERY_S or last:
            self.last_print = now
            recent = f"{np.mean(self.recent_returns):.1f}" if self.recent_returns else "n/a"
            print(f"{ALGO} step {global_step}/{self.target_steps} ({100 * global_step / self.target_steps:.0f}%) "
                  f"| {sps:.0f} SPS | ETA {format_seconds((self.target_steps - global_step) / sps)} "
                  f"| return(100) {recent} | {status}", flush=True)

    def evaluate(self, video_dir: Optional[str] = None) -> Optional[list[float]]:
        """Evaluate the current policy and log it at the current step (eval/episodic_return, eval/return_mean);
        None, and nothing logged, when a stop request cuts it short (a saved run makes it on --resume)."""
        start = time.time()
        returns = evaluate(self.agent, self.args.env_id, self.args.eval_episodes, self.args.seed, self.device,
                           video_dir, self.stop)
        self.eval_time += time.time() - start
        self.eval_missed = returns is None
        if returns is None:
            return None
        for r in returns:
            self.logger.log(self.global_step, {"eval/episodic_return": r})
        self.logger.log(self.global_step, {"eval/return_mean": float(np.mean(returns))})
        return returns

    def save(self) -> None:
        """model.pt: everything --load-model and --resume read back. The records logged so far reach
        the disk first, so that no kill leaves a checkpoint ahead of metrics.jsonl."""
        self.logger.flush(sync=True)
        state = self.state()
        del state["discounted_return"]  # a resumed run restarts its episodes, and these with them
        save_checkpoint(os.path.join(self.run_dir, "model.pt"), {
            "algo": ALGO,
            "version": CHECKPOINT_VERSION,
            "args": self.config["args"],
            **state,
            "progress": {"global_step": self.global_step, "update": self.update, "episodes": self.episodes,
                         "recent_returns": list(self.recent_returns),
                         "train_time": self.earlier_time + self.session_train_time(),
                         "log_time": time.time() - self.logger.start, "eval_missed": self.eval_missed},
            "rng": rng_state(),
        })

    def finish(self, envs: Optional[gym.vector.SyncVectorEnv]) -> dict:
        """Save model.pt, evaluate (unless stopped, before or during it), write summary.json, close the
        logs; the summary."""
        train_time = self.earlier_time + self.session_train_time()
        if envs is not None:
            envs.close()
        self.save()
        summary = {
            "algo": ALGO,
            "env_id": self.args.env_id,
            "seed": self.args.seed,
            "total_timesteps": self.target_steps,
            "global_step": self.global_step,
            "wall_time_s": round(train_time, 3),
            "sps": round(self.global_step / train_time, 1) if self.global_step else None,
            "episodes": self.episodes,
            "final_return_mean": float(np.mean(self.recent_returns)) if self.recent_returns else None,
        }
        interrupted, eval_returns = self.stop.requested, None  # a stop before the final evaluation
        if self.args.eval_episodes > 0 and not interrupted:
            video_dir = os.path.join(self.run_dir, "videos") if self.args.capture_video else None
            eval_returns = self.evaluate(video_dir)
            interrupted = eval_returns is None  # a stop cut the final evaluation short: --resume makes it
        summary.update({"interrupted": interrupted, "signal": signal.Signals(self.stop.signum).name if interrupted else None,
                        "sha256": self.config["sha256"]})
        if eval_returns is not None:
            summary["eval_return_mean"] = float(np.mean(eval_returns))
            summary["eval_return_std"] = float(np.std(eval_returns))
        write_json(os.path.join(self.run_dir, "summary.json"), summary)
        if self.wandb_run is not None:
            self.wandb_run.summary.update({k: v for k, v in summary.items() if v is not None})
        self.close_logs(exit_code=128 + self.stop.signum if interrupted else 0)
        final = f"{summary['final_return_mean']:.1f}" if summary["final_return_mean"] is not None else "n/a"
        evaluation = f" | eval {summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f}" if "eval_return_mean" in summary else ""
        print(f"{ALGO} {'stopped' if interrupted else 'done'}: {self.global_step} steps in {format_seconds(train_time)} "
              f"| final return(100) {final}{evaluation} | {self.run_dir}", flush=True)
        if interrupted:
            print(f"{ALGO}: saved {os.path.join(self.run_dir, 'model.pt')}; continue with: "
                  f"python {os.path.basename(__file__)} --resume {self.run_dir}", flush=True)
        return summary


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def flag_value(argv: list[str], flag: str) -> Optional[str]:
    """The value given to `flag` in argv (`--flag value` or `--flag=value`; `_` or `-`), else None."""
    value = None
    for i, arg in enumerate(argv):
        name, eq, rest = arg.replace("_", "-").partition("=") if arg.startswith("--") else (arg, "", "")
        if name == flag:
            value = argv[i][len(name) + 1:] if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    return value


def parse_args(argv: Optional[list[str]] = None) -> Args:
    """The command line as Args. With --resume RUN_DIR the run's config.json supplies every flag not
    given; with --load-model the checkpoint supplies the env id, network sizes and normalization flags
    not given (main reports a given flag that contradicts the checkpoint)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    resume, load_model = flag_value(argv, "--resume"), flag_value(argv, "--load-model")
    defaults = Args()
    if resume is not None and load_model is not None:
        raise ConfigError("--resume continues a run from its own model.pt: it takes no --load-model")
    if resume is not None:
        defaults = replace(defaults, **{**args_from(read_run_config(resume)["args"]), "resume": resume})
    elif load_model is not None and os.path.isfile(load_model):
        saved = read_checkpoint(load_model, "--load-model")["args"]
        defaults = replace(defaults, **args_from(saved, MODEL_KEYS))
    messages = io.StringIO()  # a parse error's box: made one line below
    try:
        with contextlib.redirect_stderr(messages):
            args = tyro.cli(Args, args=argv, default=defaults)
    except SystemExit as e:
        if e.code in (0, None):  # --help
            raise
        raise ConfigError(tyro_error(argv, defaults)) from None
    sys.stderr.write(messages.getvalue())  # warnings about a command line that parsed
    return args


def tyro_error(argv: list[str], defaults: Args) -> str:
    """What tyro says of a command line it cannot parse (an unknown flag, a missing or wrong-typed
    value), as one line: the command line parsed again, unwrapped (COLUMNS), its box made one line."""
    boxed, columns = io.StringIO(), os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100000"
    try:
        with contextlib.redirect_stderr(boxed):
            tyro.cli(Args, args=argv, default=defaults)
    except SystemExit:
        pass
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return one_line(boxed.getvalue())


def one_line(boxed: str) -> str:
    """The first paragraph under the title of tyro's box (Unicode or ASCII), without the frame, the
    rules, the colour codes and the help below; without a box, the first paragraph."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in boxed.splitlines()]
    title = next((i for i, line in enumerate(lines) if line.startswith("╭")), None)  # the frame's top
    if title is None:  # ASCII: the title, then a rule of '-'
        title = next((i - 1 for i, line in enumerate(lines) if i and line and not line.strip("-")), -1)
    paragraph: list[str] = []
    for line in lines[title + 1:]:
        text = line.strip("│ ")
        if not text.strip("─-"):  # an empty line or a rule
            if paragraph:
                break
            continue
        paragraph.append(text)
    message = " ".join(paragraph).removeprefix("Error parsing ")
    return f"{message or 'the command line could not be parsed'} (see --help)"


def quiet_warnings() -> None:
    """Each warning once, as one plain line: gymnasium's come with colour codes and repeat for every
    env it makes; MuJoCo prints its model compiler's notes (HalfCheetah: `settotalmass`) once per env."""
    seen: set[str] = set()

    def show(message, category=None, filename=None, lineno=None, file=None, line=None) -> None:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(message)).removeprefix("WARN: ").strip()
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)

    warnings.showwarning = show
    try:
        import mujoco

        mujoco.set_mju_user_warning(lambda text: show(f"mujoco: {text}"))
    except ImportError:
        pass


def cli() -> int:
    """`python <script>.py ...`: exit code 0 done, 1 training error, 2 bad input, 130 / 143 stopped by
    SIGINT / SIGTERM (the run is saved and can be resumed)."""
    quiet_warnings()
    stop = StopRequest()
    stop.install()
    try:
        args = parse_args()
        if "--cuda" in sys.argv[1:] and not torch.cuda.is_available():  # asked for, not only the default
            print("warning: --cuda: CUDA is not available; running on the CPU", file=sys.stderr)
        summary = main(args, stop)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:  # torch reports a failed allocation as a RuntimeError
        if isinstance(e, RuntimeError) and "allocate" not in str(e) and "out of memory" not in str(e):
            raise
        size = re.search(r"allocate [\d.]+ \w+", str(e))
        print(f"error: out of memory{f' (tried to {size.group(0)})' if size else ''}: "
              "smaller --num-envs, --num-steps or --hidden-sizes?", file=sys.stderr)
        return 1
    return 128 + stop.signum if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(cli())

