"""Moving the weights along the optimizer's update line, and keeping probes side-effect free.

Imports torch only. The Trainer glue (``hf_gen.trainer``) uses these pieces on a recompute step:

* :class:`LineSnapshot` keeps one copy of the trainable parameters taken just before the optimizer
  step (``theta0``). After the step the live parameters are ``theta1 = theta0 - a0 * d``, so any
  point on the line is ``lerp(theta0, theta1, a / a0)``, and the final weights are set from the
  copy, never by adding and subtracting perturbations.
* :class:`RngState` records the random state before a training forward and replays it for the
  probe forwards, so dropout masks are identical at every point of one fit.
* :class:`BufferGuard` restores module buffers (BatchNorm running statistics, counters) that a probe
  forward in train mode would otherwise update.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

__all__ = ["BufferGuard", "LineSnapshot", "RngState", "directional_dot", "reshard"]


def _full(value: torch.Tensor) -> torch.Tensor:
    """A reduction over a DTensor (FSDP2 shards) made whole on every rank; a plain tensor as it is."""
    full_tensor = getattr(value, "full_tensor", None)
    return full_tensor() if callable(full_tensor) else value


def directional_dot(
    vectors: Sequence[torch.Tensor | None], first: Sequence[torch.Tensor], second: Sequence[torch.Tensor]
):
    """``sum_i <vectors_i, first_i - second_i>``, accumulated in float64; ``None`` when every vector is ``None``.

    Works on local shards: for FSDP2's DTensor parameters the per-tensor sums are partial and are completed over the
    device mesh, so every rank gets the whole dot product. Large tensors are taken in chunks, so the temporary stays
    small (an embedding matrix is often the largest parameter); no host synchronisation.
    """
    total = None
    for vector, a, b in zip(vectors, first, second, strict=True):
        if vector is None:
            continue
        if _CHUNK < a.numel() and all(
            type(t) is torch.Tensor or isinstance(t, torch.nn.Parameter) for t in (vector, a, b)
        ):
            pieces = zip(*(t.reshape(-1).split(_CHUNK) for t in (vector, a, b)), strict=True)
            term = sum(torch.sub(x, y).mul_(v).sum(dtype=torch.float64) for v, x, y in pieces)
        else:
            term = _full(torch.sub(a, b).mul_(vector).sum(dtype=torch.float64))
        total = term if total is None else total + term
    return total


_CHUNK = 1 << 20


class LineSnapshot:
    """One copy of the trainable parameters, taken before the optimizer step, and moves along the step's line.

    Positions are distances ``a`` in lr units of group 0 (``hf_gen.core``): the copy is ``a = 0``, and the
    optimizer's step at lr ``a0`` puts the live parameters at ``a = a0``, so ``theta(a) = lerp(theta0, theta1,
    a / a0)``.

    Args:
        params: The parameters the optimizer updates.
        a0: The lr of the step the live parameters will take (or have taken) from the copy.
        device: Where to keep the copy (``None``: beside the parameters; ``"cpu"`` for models that do not
            fit twice on the accelerator).
    """

    def __init__(self, params: Sequence[torch.Tensor], a0: float, device: torch.device | str | None = None) -> None:
        self.params = list(params)
        self.a0 = float(a0)
        self.device = device
        with torch.no_grad():
            self.theta0 = [p.detach().to(device=device or p.device, copy=True) for p in self.params]
        self.theta1: list[torch.Tensor] | None = None
        self.step: list[torch.Tensor] | None = None
        self._fraction = 1.0  # where the live parameters are, as a / a0 (after the step: 1)

    def local_state(self) -> list[torch.Tensor]:
        """The copy as plain CPU tensors (each rank's own shards under FSDP2), for a checkpoint."""
        return [getattr(t, "to_local", lambda t=t: t)().detach().cpu() for t in self.theta0]

    @classmethod
    def from_local_state(
        cls,
        params: Sequence[torch.Tensor],
        saved: Sequence[torch.Tensor],
        a0: float,
        device: torch.device | str | None = None,
    ) -> LineSnapshot:
        """A snapshot whose copy is ``saved`` (from :meth:`local_state`), laid out like ``params`` again, with the live
        parameters at ``a0``."""
        snapshot = cls.__new__(cls)
        snapshot.params, snapshot.a0, snapshot.device = list(params), float(a0), device
        snapshot.theta1, snapshot.step, snapshot._fraction = None, None, 1.0
        snapshot.theta0 = []
        for p, local in zip(snapshot.params, saved, strict=True):
            if hasattr(p, "device_mesh"):  # FSDP2 shard: put the rank's piece back into the parameter's layout
                from torch.distributed.tensor import DTensor

                piece = local.to(device=p.to_local().device, dtype=p.dtype)
                snapshot.theta0.append(DTensor.from_local(piece, p.device_mesh, p.placements, run_check=False))
            else:
                snapshot.theta0.append(local.to(device=device or p.device, dtype=p.dtype))
        return snapshot

    def slope_numerator(self, grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """``<grads, theta0 - theta>`` with the live parameters as ``theta``."""
        live = [p.detach() for p in self.params]
        theta0 = [t.to(p.device, non_blocking=True) for t, p in zip(self.theta0, live, strict=True)]
        return directional_dot(grads, theta0, live)

    def keep_theta1(self) -> None:
        """Copy the post-step parameters aside, so that points other than ``theta1`` can be visited exactly."""
        if self.theta1 is None:
            with torch.no_grad():
                self.theta1 = [p.detach().to(device=self.device or p.device, copy=True) for p in self.params]

    @contextlib.contextmanager
    def at_start(self) -> Iterator[None]:
        """Run the body with the parameters at ``a = 0`` (the copy), then put the live ones back, bitwise: the two
        are exchanged, one parameter-sized temporary at a time."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    @torch.no_grad()
    def _swap(self) -> None:
        for p, t0 in zip(self.params, self.theta0, strict=True):
            live = p.detach().clone()
            p.copy_(t0)
            t0.copy_(live)

    @torch.no_grad()
    def return_to_start(self) -> list[torch.Tensor]:
        """Put ``theta0`` back in the parameters and return the step ``theta0 - theta1`` (``a0 * d``).

        Used by exact GeN, which differentiates at ``theta0``; the step is kept to set the final weights.
        """
        self.step = [t0.to(p.device) - p.detach() for p, t0 in zip(self.params, self.theta0, strict=True)]
        for p, t0 in zip(self.params, self.theta0, strict=True):
            p.copy_(t0)
        return self.step

    @torch.no_grad()
    def move_to(self, a: float) -> None:
        """Set the parameters to the point ``a`` of the line, ``lerp(theta0, theta1, a / a0)``.

        With ``theta1`` kept (:meth:`keep_theta1`) the point is computed from the two copies. Without it the live
        parameters are rescaled about ``theta0``: no second copy, at the price of one rounding per move (so only
        ``a > 0`` can be reached). Moving to where the parameters are leaves them untouched.
        """
        fraction = a / self.a0
        if self.theta1 is not None:
            for p, t0, t1 in zip(self.params, self.theta0, self.theta1, strict=True):
                p.copy_(t0).lerp_(t1.to(p.device), fraction)
        elif fraction != self._fraction:
            if not fraction > 0.0:
                raise ValueError(f"without keep_theta1() only points with a > 0 can be visited, got {a}")
            ratio = fraction / self._fraction
            for p, t0 in zip(self.params, self.theta0, strict=True):
                t0 = t0.to(p.device, non_blocking=True)
                p.sub_(t0).mul_(ratio).add_(t0)
        self._fraction = fraction

    @torch.no_grad()
    def finish(self, a: float) -> None:
        """Set the final weights to the point ``a`` of the line and release the copies."""
        fraction = a / self.a0
        if self.step is not None:
            for p, t0, step in zip(self.params, self.theta0, self.step, strict=True):
                p.copy_(t0).sub_(step, alpha=fraction)
        elif self.theta1 is None:
            if fraction != self._fraction:
                ratio = fraction / self._fraction
                for p, t0 in zip(self.params, self.theta0, strict=True):
                    p.copy_(t0.to(p.device).lerp_(p, ratio))  # in place on the copy, which is released next
        else:
            self.move_to(a)
        self.theta0, self.theta1, self.step = [], None, None

    def release(self) -> None:
        """Drop the copies, leaving the live parameters where they are."""
        self.theta0, self.theta1, self.step = [], None, None


class RngState:
    """The CPU and accelerator random state at one moment, to replay later without disturbing the streams."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.cpu = torch.get_rng_state()
        self.accel = None
        if self.device.type != "cpu":
            module = torch.get_device_module(self.device.type)
            self.accel = module.get_rng_state(self.device)

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the body with the recorded state; the global streams are left as they were."""
        devices = [] if self.accel is None else [self.device]
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.set_rng_state(self.cpu)
            if self.accel is not None:
                torch.get_device_module(self.device.type).set_rng_state(self.accel, self.device)
            yield


def reshard(module: torch.nn.Module) -> None:
    """Return FSDP2-sharded modules to their sharded state after no-grad forwards.

    FSDP2 keeps a root module's parameters gathered after a forward (a backward usually follows); after probe
    forwards nothing follows, and the next forward must gather the weights as they are then.
    """
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6 keeps it in the composable namespace
        from torch.distributed._composable.fsdp import FSDPModule
    for sub in module.modules():
        if isinstance(sub, FSDPModule):
            sub.reshard()


class BufferGuard:
    """Snapshot of a module's buffers; :meth:`restore` puts them back bitwise."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.saved = [(b, b.detach().clone()) for b in module.buffers()]

    @torch.no_grad()
    def restore(self) -> None:
        for buffer, copy in self.saved:
            buffer.copy_(copy)
