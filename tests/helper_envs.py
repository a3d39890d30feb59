"""Tiny environments that exercise the scripts' error paths and loops; registered on import, so the
scripts can reach them with the `module:EnvName-vN` form (this folder on PYTHONPATH)."""

import gymnasium as gym
import numpy as np


class NaNRewardEnv(gym.Env):
    """Box observations and actions; the reward turns NaN after a few steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if self.t > 5 else 0.0
        return np.zeros(3, np.float32), reward, False, self.t >= 20, {}


class DictObsEnv(NaNRewardEnv):
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, (3,), np.float32)})


class ImageObsEnv(NaNRewardEnv):
    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)


class MultiDiscreteActionEnv(NaNRewardEnv):
    action_space = gym.spaces.MultiDiscrete([2, 3])




class DriftingObsEnv(gym.Env):
    """Observations whose offset and scale drift from episode to episode, so that running
    normalization statistics keep moving; the reward asks the policy to read the observation
    (act with the sign of the first coordinate's deviation), so moving statistics move the policy."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.episode = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return self._observe(), {}

    def _observe(self):
        self.z = self.np_random.normal(size=3)
        return (2.0 * self.episode + (1.0 + 0.5 * self.episode) * self.z).astype(np.float32)

    def step(self, action):
        reward = float(np.clip(action[0], -1.0, 1.0) * np.sign(self.z[0]))
        self.t += 1
        return self._observe(), reward, False, self.t >= 16, {}


for name, cls in [("NaNReward-v0", NaNRewardEnv), ("DictObs-v0", DictObsEnv),
                  ("ImageObs-v0", ImageObsEnv), ("MultiDiscreteAction-v0", MultiDiscreteActionEnv),
                  ("DriftingObs-v0", DriftingObsEnv)]:
    gym.register(id=name, entry_point=cls, disable_env_checker=True)
