"""The trajectory of a sampling loop (provided): ``diffusion.Trajectory``, kept here.

It lives outside the exercise files so that the grader can hand the same class to
your loop and to the reference's (also where the reference is absent, in the
student release), and so that your ``diffusion.py`` imports it from one place.
"""

from __future__ import annotations

import torch


class Trajectory:
    """Records x_t and the predicted x̂_0 at chosen steps of a sampling loop (provided).

    Pass one to :func:`sample_loop` (or ``ddpm_sample`` / ``ddim_sample``); the loop calls
    ``record(t, x_t, x0_hat)`` before each step and ``finish(x_0)`` at the end.

    Args:
        timesteps: the timesteps t to keep; None keeps every step.

    After sampling:
        timesteps: list of the t of each frame (the final frame has t = −1).
        x_t, x0_hat: (F, B, C, H, W) CPU tensors, one frame per recorded step.
    """

    def __init__(self, timesteps=None) -> None:
        self.wanted = None if timesteps is None else {int(t) for t in timesteps}
        self.timesteps: list[int] = []
        self._x_t: list[torch.Tensor] = []
        self._x0_hat: list[torch.Tensor] = []

    def record(self, t: int, x_t: torch.Tensor, x0_hat: torch.Tensor) -> None:
        """Keep (x_t, x̂_0) of step t if t is wanted."""
        t = int(t)
        if self.wanted is None or t in self.wanted:
            self.timesteps.append(t)
            self._x_t.append(x_t.detach().float().cpu())
            self._x0_hat.append(x0_hat.detach().float().cpu())

    def finish(self, x0: torch.Tensor) -> None:
        """Add the final frame, always kept: the sample itself (as both x_t and x̂_0), with t = −1."""
        self.timesteps.append(-1)
        self._x_t.append(x0.detach().float().cpu())
        self._x0_hat.append(x0.detach().float().cpu())

    @property
    def x_t(self) -> torch.Tensor:
        return torch.stack(self._x_t) if self._x_t else torch.empty(0)

    @property
    def x0_hat(self) -> torch.Tensor:
        return torch.stack(self._x0_hat) if self._x0_hat else torch.empty(0)

    def __len__(self) -> int:
        return len(self.timesteps)
