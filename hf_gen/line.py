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
import math
import weakref
from collections.abc import Iterator, Sequence

import torch

from .core import WindowStats

__all__ = [
    "BufferGuard",
    "LineSnapshot",
    "Pace",
    "RngState",
    "WindowLosses",
    "WindowMeans",
    "directional_dot",
    "reshard",
]


def _full(value: torch.Tensor) -> torch.Tensor:
    """A reduction over a DTensor (FSDP2 shards) made whole on every rank; a plain tensor as it is."""
    full_tensor = getattr(value, "full_tensor", None)
    return full_tensor() if callable(full_tensor) else value


def directional_dot(
    vectors: Sequence[torch.Tensor | None], first: Sequence[torch.Tensor], second: Sequence[torch.Tensor]
):
    """``sum_i <vectors_i, first_i - second_i>``, accumulated in float64; ``None`` when every vector is ``None``.

    Works on local shards: for FSDP2's DTensor parameters the per-tensor sums are partial and are completed over the
    device mesh, so every rank gets the whole dot product. Plain tensors on one device are taken together in groups
    of at most ``_CHUNK`` elements (a few kernel launches per group instead of a few per tensor, which is what a
    small model on a GPU pays for); a larger tensor is taken alone, in chunks, so the temporaries stay small (an
    embedding matrix is often the largest parameter). No host synchronisation.
    """
    triples = [(v, a, b) for v, a, b in zip(vectors, first, second, strict=True) if v is not None]
    fused, single = [], []
    for t in triples:
        (fused if _fuse_on(t[1].device) and t[1].numel() <= _CHUNK and _plain(*t) else single).append(t)
    total = None
    for group in _groups(fused, lambda t: t[1], _CHUNK):
        vs, firsts, seconds = (list(column) for column in zip(*group, strict=True))
        products = torch._foreach_sub(firsts, seconds)
        torch._foreach_mul_(products, vs)
        term = torch.cat([x.reshape(-1) for x in products]).sum(dtype=torch.float64)
        total = term if total is None else total + term
    for vector, a, b in single:
        if _CHUNK < a.numel() and all(
            type(t) is torch.Tensor or isinstance(t, torch.nn.Parameter) for t in (vector, a, b)
        ):
            pieces = zip(*(t.reshape(-1).split(_CHUNK) for t in (vector, a, b)), strict=True)
            term = sum(torch.sub(x, y).mul_(v).sum(dtype=torch.float64) for v, x, y in pieces)
        else:
            term = _full(torch.sub(a, b).mul_(vector).sum(dtype=torch.float64))
        total = term if total is None else total + term
    return total


def _fuse_on(device: torch.device) -> bool:
    """Whether to use torch's fused ``_foreach`` kernels on ``device``. Not on the CPU: there they loop over the
    tensors one by one anyway, and the fused swap's and dot product's larger temporaries cost page faults."""
    return device.type != "cpu" or _FUSE_ON_CPU


_FUSE_ON_CPU = False  # the tests turn it on to check the fused path against the one-tensor path


def _plain(*tensors: torch.Tensor) -> bool:
    """Plain tensors (or parameters) on one device and of one dtype, which torch's fused ``_foreach`` kernels take."""
    first = tensors[0]
    return all(
        type(t) in (torch.Tensor, torch.nn.Parameter)  # not a DTensor, nor a parameter wrapping one
        and t.device == first.device
        and t.dtype == first.dtype
        for t in tensors
    )


def _groups(items: Sequence, tensor_of, limit: int) -> Iterator[list]:
    """``items`` in runs that share the device and dtype of ``tensor_of(item)`` and hold at most ``limit`` elements
    together (an item larger than ``limit`` is a run of its own); order is kept within each device and dtype."""
    by_kind: dict[tuple, list] = {}
    for item in items:
        tensor = tensor_of(item)
        by_kind.setdefault((tensor.device, tensor.dtype), []).append(item)
    for kind_items in by_kind.values():
        run, size = [], 0
        for item in kind_items:
            n = tensor_of(item).numel()
            if run and size + n > limit:
                yield run
                run, size = [], 0
            run.append(item)
            size += n
        if run:
            yield run


_CHUNK = 1 << 20
_SWAP_LIMIT = 1 << 24  # elements of the temporary a fused swap holds at once (64 MB in float32)


def local_copies(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Plain CPU copies of ``tensors`` (each rank's own shards of DTensors), for a checkpoint."""
    return [getattr(t, "to_local", lambda t=t: t)().detach().cpu() for t in tensors]


def laid_out_like(p: torch.Tensor, local: torch.Tensor, device, dtype: torch.dtype) -> torch.Tensor:
    """A saved local tensor (a rank's own shard under FSDP2) put back beside parameter ``p``: as a DTensor in ``p``'s
    layout when ``p`` is sharded, else on ``device`` (default: ``p``'s), in ``dtype``."""
    if hasattr(p, "device_mesh"):
        from torch.distributed.tensor import DTensor

        piece = local.to(device=p.to_local().device, dtype=dtype)
        # The global shape and stride are passed: a shard of an unevenly split tensor (FSDP2 pads the last ranks'
        # shards down to nothing) does not tell them, and a wrong guess hangs the next collective.
        mesh, placements = p.device_mesh, p.placements
        return DTensor.from_local(piece, mesh, placements, run_check=False, shape=p.shape, stride=p.stride())
    return local.to(device=device or p.device, dtype=dtype)


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
        self._run_cache = {}
        with torch.no_grad():
            if all(_fuse_on(p.device) and _plain(p) and torch.device(device or p.device) == p.device
                   for p in self.params):  # fmt: skip
                self.theta0 = [torch.empty_like(p.detach()) for p in self.params]
                for live, copies in self._runs(self.theta0):
                    torch._foreach_copy_(copies, live)
            else:  # an offloaded copy, or sharded parameters: one tensor at a time
                self.theta0 = [p.detach().to(device=device or p.device, copy=True) for p in self.params]
        self._settle()

    def _settle(self) -> None:
        """State every constructor sets once the copy exists."""
        self.theta1: list[torch.Tensor] | None = None
        self.step: list[torch.Tensor] | None = None
        self._fraction = 1.0  # where the live parameters are, as a / a0 (after the step: 1)
        # Plain tensors on an accelerator, each copy beside its parameter: torch's fused ``_foreach`` kernels take
        # them, a few kernel launches per run of one device and dtype instead of one or more per tensor (what a small
        # model on a GPU pays for). On the CPU, and for sharded (DTensor) or offloaded copies, one tensor at a time.
        self._fused = all(_fuse_on(p.device) and _plain(p, t0) for p, t0 in zip(self.params, self.theta0, strict=True))
        self._run_cache: dict[int, list[list[int]]] = {}

    def _runs(self, *others: Sequence[torch.Tensor], limit: int = 1 << 62):
        """The detached parameters and ``others`` (lists beside them), in runs of one device and dtype holding at
        most ``limit`` elements: ``(params, *others)`` lists per run."""
        if limit not in self._run_cache:
            self._run_cache[limit] = list(_groups(range(len(self.params)), lambda i: self.params[i], limit))
        for run in self._run_cache[limit]:
            yield ([self.params[i].detach() for i in run], *([other[i] for i in run] for other in others))

    def local_state(self) -> list[torch.Tensor]:
        """The copy as plain CPU tensors (each rank's own shards under FSDP2), for a checkpoint."""
        return local_copies(self.theta0)

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
        snapshot.theta0 = [laid_out_like(p, local, device, p.dtype) for p, local in zip(params, saved, strict=True)]
        snapshot._settle()
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
                if self._fused:
                    self.theta1 = [torch.empty_like(t0) for t0 in self.theta0]
                    for live, copies in self._runs(self.theta1):
                        torch._foreach_copy_(copies, live)
                else:
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
        if self._fused:  # the temporary is at most _SWAP_LIMIT elements, or the largest parameter
            for live, copies in self._runs(self.theta0, limit=_SWAP_LIMIT):
                kept = [torch.empty_like(x) for x in live]
                torch._foreach_copy_(kept, live)
                torch._foreach_copy_(live, copies)
                torch._foreach_copy_(copies, kept)
            return
        for p, t0 in zip(self.params, self.theta0, strict=True):
            live = p.detach().clone()
            p.copy_(t0)
            t0.copy_(live)

    @torch.no_grad()
    def return_to_start(self) -> list[torch.Tensor]:
        """Put ``theta0`` back in the parameters and return the step ``theta0 - theta1`` (``a0 * d``).

        Used by exact GeN, which differentiates at ``theta0``; the step is kept to set the final weights.
        """
        if self._fused:  # exact mode only: one fused call over all the tensors
            live = [p.detach() for p in self.params]
            self.step = torch._foreach_sub(self.theta0, live)
            torch._foreach_copy_(live, self.theta0)
            return self.step
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
        fused = self._fused  # then theta1 is beside the parameters too
        if self.theta1 is not None and fused:
            for live, copies, ends in self._runs(self.theta0, self.theta1):
                torch._foreach_copy_(live, copies)
                torch._foreach_lerp_(live, ends, fraction)
        elif self.theta1 is not None:
            for p, t0, t1 in zip(self.params, self.theta0, self.theta1, strict=True):
                p.copy_(t0).lerp_(t1.to(p.device), fraction)
        elif fraction != self._fraction:
            if not fraction > 0.0:
                raise ValueError(f"without keep_theta1() only points with a > 0 can be visited, got {a}")
            ratio = fraction / self._fraction
            if fused:
                for live, copies in self._runs(self.theta0):
                    torch._foreach_sub_(live, copies)
                    torch._foreach_mul_(live, ratio)
                    torch._foreach_add_(live, copies)
            else:
                for p, t0 in zip(self.params, self.theta0, strict=True):
                    t0 = t0.to(p.device, non_blocking=True)
                    p.sub_(t0).mul_(ratio).add_(t0)
        self._fraction = fraction

    @torch.no_grad()
    def finish(self, a: float) -> None:
        """Set the final weights to the point ``a`` of the line and release the copies."""
        fraction = a / self.a0
        if self.step is not None and self._fused:
            for live, copies, steps in self._runs(self.theta0, self.step):
                torch._foreach_copy_(live, copies)
                torch._foreach_sub_(live, steps, alpha=fraction)
        elif self.step is not None:
            for p, t0, step in zip(self.params, self.theta0, self.step, strict=True):
                p.copy_(t0).sub_(step, alpha=fraction)
        elif self.theta1 is None:
            if fraction != self._fraction and self._fused:
                ratio = fraction / self._fraction
                for live, copies in self._runs(self.theta0):
                    torch._foreach_lerp_(copies, live, ratio)  # in place on the copy, which is released next
                    torch._foreach_copy_(live, copies)
            elif fraction != self._fraction:
                ratio = fraction / self._fraction
                for p, t0 in zip(self.params, self.theta0, strict=True):
                    p.copy_(t0.to(p.device).lerp_(p, ratio))  # in place on the copy, which is released next
        else:
            self.move_to(a)
        self.theta0, self.theta1, self.step = [], None, None

    def release(self) -> None:
        """Drop the copies, leaving the live parameters where they are."""
        self.theta0, self.theta1, self.step = [], None, None


class WindowMeans:
    """The mean of the trainable parameters over a window of optimizer steps, and the previous window's mean
    (``gen_probe_batch="averages"``).

    The sum is kept in at least float32 (a bfloat16 sum of a hundred steps would round away the steps themselves),
    beside the parameters or on the CPU (``device="cpu"``). Sharded (DTensor) parameters keep sharded sums.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = device
        self.total: list[torch.Tensor] | None = None
        self.count = 0
        self.previous: list[torch.Tensor] | None = None

    @staticmethod
    def _wide(t: torch.Tensor) -> torch.dtype:
        return torch.promote_types(t.dtype, torch.float32)

    @torch.no_grad()
    def add(self, params: Sequence[torch.Tensor]) -> None:
        """Add the parameters as they are after an optimizer step to the open window."""
        live = [p.detach() for p in params]
        if self.total is None:
            self.total = [t.to(device=self.device or t.device, dtype=self._wide(t), copy=True) for t in live]
        elif _plain(*live, *self.total) and self.total[0].device == live[0].device:
            torch._foreach_add_(self.total, live)
        else:
            for t, p in zip(self.total, live, strict=True):
                t.add_(p.to(device=t.device, dtype=t.dtype))
        self.count += 1

    @torch.no_grad()
    def close(self) -> list[torch.Tensor]:
        """End the open window: its mean (the sum's memory, divided in place); the next window starts empty."""
        mean = [t.div_(self.count) for t in self.total]
        self.total, self.count = None, 0
        return mean

    @staticmethod
    @torch.no_grad()
    def put(params: Sequence[torch.Tensor], mean: Sequence[torch.Tensor]) -> None:
        """Set the parameters to a held mean (stored in the parameters' dtype, on their device)."""
        for p, m in zip(params, mean, strict=True):
            p.copy_(m.to(device=p.device, dtype=p.dtype))

    @staticmethod
    @torch.no_grad()
    def move(params: Sequence[torch.Tensor], start: Sequence[torch.Tensor], end: Sequence[torch.Tensor], c: float):
        """Set the parameters to ``start + c (end - start)`` (computed in the means' precision, then stored)."""
        for p, m0, m1 in zip(params, start, end, strict=True):
            p.copy_(torch.lerp(m0, m1, c).to(device=p.device, dtype=p.dtype))

    def local_state(self) -> dict:
        """The means and the open sum as plain CPU tensors (each rank's own shards under FSDP2), for a checkpoint."""
        state = {"count": self.count}
        if self.previous is not None:
            state["previous"] = local_copies(self.previous)
        if self.total is not None:
            state["total"] = local_copies(self.total)
        return state

    def load_local_state(self, params: Sequence[torch.Tensor], state: dict) -> None:
        """Restore what :meth:`local_state` saved, laid out like ``params`` (sharded again under FSDP2)."""

        def rebuilt(saved: list[torch.Tensor]) -> list[torch.Tensor]:  # the sums keep their own (wide) dtype
            return [laid_out_like(p, t, self.device, t.dtype) for p, t in zip(params, saved, strict=True)]

        self.previous = rebuilt(state["previous"]) if "previous" in state else None
        self.total = rebuilt(state["total"]) if "total" in state else None
        self.count = int(state.get("count", 0))


class Pace:
    """The steps' two clocks, kept beside :class:`WindowMeans` (``gen_pace_unit``): the sum of the lrs (group 0's
    level) of every optimizer step so far, and the number of steps; and their means over the open window and the
    reference one, as the weights' means are kept. :func:`hf_gen.core.line_pace` reads from them the lr a line through
    two windows' means was walked at. Plain floats: the same on every process.
    """

    def __init__(self) -> None:
        self.now = [0.0, 0.0]  # (sum of the lrs, steps) after the last step
        self.total = [0.0, 0.0]  # the open window's sum of ``now`` after each of its steps
        self.count = 0
        self.previous: list[float] | None = None  # the reference window's mean of the clocks

    def add(self, lr: float) -> None:
        """One optimizer step at ``lr``, in the open window."""
        self.now = [self.now[0] + float(lr), self.now[1] + 1.0]
        self.total = [t + n for t, n in zip(self.total, self.now, strict=True)]
        self.count += 1

    def close(self) -> list[float]:
        """End the open window: the mean of its clocks; the next window starts empty."""
        mean = [t / self.count for t in self.total]
        self.total, self.count = [0.0, 0.0], 0
        return mean

    def state(self) -> dict:
        return {"now": list(self.now), "total": list(self.total), "count": self.count, "previous": self.previous}

    def load_state(self, state: dict) -> None:
        self.now, self.total = [float(v) for v in state["now"]], [float(v) for v in state["total"]]
        self.count = int(state["count"])
        self.previous = None if state["previous"] is None else [float(v) for v in state["previous"]]


class WindowLosses:
    """The training losses of the open window's optimizer steps (``gen_undo_lost_windows``), kept on the device.

    Each step's training loss (the micro-batches' sum, as the Trainer normalises them) is held as a 0-d tensor;
    nothing is read until the window closes, so the steps do not wait for the device. At the close the losses are
    averaged over processes as one vector (one reduction per window), so the statistics are those of the global
    batch's losses, as one process on it would compute them. ``previous`` holds the statistics of the window the run is
    measured against (:func:`hf_gen.core.lost_ground`).
    """

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []
        self.previous: WindowStats | None = None

    @property
    def count(self) -> int:
        return len(self.steps)

    @torch.no_grad()
    def add(self, loss: torch.Tensor | None) -> None:
        """Add one optimizer step's training loss (a step without one is not counted)."""
        if loss is not None:
            self.steps.append(loss.detach().to(torch.float64, copy=True).reshape(()))  # its own copy

    @torch.no_grad()
    def close(self, reduce, settled: bool) -> WindowStats:
        """End the open window: the mean of its steps' losses and their sample variance, after ``reduce`` (which
        averages a vector over processes) has made each step's loss the global batch's."""
        steps, self.steps = self.steps, []
        if not steps:
            return WindowStats(math.nan, math.nan, 0, settled)
        losses = reduce(torch.stack(steps)).reshape(-1)  # a reduction may return one step's loss as a scalar
        var = losses.var() if len(steps) > 1 else torch.full_like(losses[0], math.nan)
        mean, var = torch.stack([losses.mean(), var]).tolist()
        return WindowStats(mean, var, len(steps), settled)

    def local_state(self) -> dict:
        """The open window's losses (this process's) and the previous window's statistics (the same on every
        process)."""
        state: dict = {"count": self.count}
        if self.steps:
            state["steps"] = torch.stack(self.steps).cpu()
        if self.previous is not None:
            state["previous"] = list(self.previous)
        return state

    def load_local_state(self, state: dict, device) -> None:
        self.steps = list(state["steps"].to(device).unbind()) if "steps" in state else []
        previous = state.get("previous")
        self.previous = (
            WindowStats(float(previous[0]), float(previous[1]), int(previous[2]), bool(previous[3]))
            if previous is not None
            else None
        )


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
    forwards nothing follows, and the next forward must gather the weights as they are then. The sharded modules
    are looked up once per model (``fully_shard`` changes modules in place, before training starts).
    """
    if module not in _SHARDED:
        try:
            from torch.distributed.fsdp import FSDPModule
        except ImportError:  # torch < 2.6 keeps it in the composable namespace
            from torch.distributed._composable.fsdp import FSDPModule
        _SHARDED[module] = [sub for sub in module.modules() if isinstance(sub, FSDPModule)]
    for sub in _SHARDED[module]:
        sub.reshard()


_SHARDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its FSDP2-sharded modules


class BufferGuard:
    """Snapshot of a module's buffers; :meth:`restore` puts them back bitwise."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.saved = [(b, b.detach().clone()) for b in module.buffers()]

    @torch.no_grad()
    def restore(self) -> None:
        for buffer, copy in self.saved:
            buffer.copy_(copy)
