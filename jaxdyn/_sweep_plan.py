"""Planning a sweep: sort the grid points by a cost proxy, cut them into chunks, deal them to devices.

Pure NumPy (no solve, no JAX): unit-tested on its own. Adaptive solves under `vmap` cost as much as
their slowest member, so points are sorted by a cost proxy and batches of `batch` consecutive
sorted points are dealt round-robin to the devices: device d gets batches d, d + D, d + 2D, ... of
every chunk (the same cost mix on every device), and a batch has the same members whatever the
number of devices (vectorised math rounds differently with different batch companions).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """The execution layout of a sweep of `n_points` grid points.

    - `order`: grid indices sorted by cost (stable); chunk c holds `order[c*chunk_size:(c+1)*chunk_size]`.
    - `chunk_size`, `n_chunks`, `batch` (points per vmapped batch on a device), `n_devices`,
      `padded` (slots per chunk: a multiple of `n_devices * batch`).
    - `deal`: slot -> position in the sorted chunk; `inverse`: position -> slot.
    """

    order: np.ndarray
    chunk_size: int
    n_chunks: int
    batch: int
    n_devices: int
    padded: int
    deal: np.ndarray
    inverse: np.ndarray

    def chunk_points(self, c: int) -> np.ndarray:
        """Grid indices of chunk c, in cost order (no padding)."""
        return self.order[c * self.chunk_size:(c + 1) * self.chunk_size]

    def chunk_slots(self, c: int) -> np.ndarray:
        """Grid indices of chunk c in device-slot order, padded with its last point: slots
        `[d * padded / D, (d + 1) * padded / D)` go to device d."""
        pts = self.chunk_points(c)
        pad = np.concatenate([pts, np.full(self.padded - pts.size, pts[-1])])
        return pad[self.deal]

    def unslot(self, c: int) -> np.ndarray:
        """Indices into a chunk's slot-ordered results that give `chunk_points(c)`'s order."""
        return self.inverse[: self.chunk_points(c).size]


def plan_sweep(cost, *, n_devices: int, chunk_size: int | None = None,
               batch_size: int | None = None, accelerator: bool = False) -> SweepPlan:
    """The layout for points of the given `cost` (1-D, one value per grid point).

    Defaults: `chunk_size` 1024 on accelerators, 256 on CPU; `batch_size` the whole local chunk on
    accelerators, 32 on CPU (capped at the local chunk).

    Example:
        >>> p = plan_sweep(np.array([3.0, 1.0, 2.0, 0.0]), n_devices=2, chunk_size=4, batch_size=1)
        >>> p.chunk_points(0), p.chunk_slots(0)   # cheapest first; devices get alternate points
    """
    cost = np.asarray(cost, float)
    if cost.ndim != 1 or cost.size < 1:
        raise ValueError(f"cost must be a non-empty 1-D array, got shape {cost.shape}")
    if int(n_devices) < 1:
        raise ValueError(f"n_devices must be >= 1, got {n_devices}")
    P, D = cost.size, int(n_devices)
    chunk_size = int(chunk_size or (1024 if accelerator else 256))
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    chunk_size = min(chunk_size, P)
    if batch_size is None:
        batch_size = -(-chunk_size // D) if accelerator else 32
    B = max(1, min(int(batch_size), -(-chunk_size // D)))
    padded = -(-chunk_size // (D * B)) * (D * B)
    local_len = padded // D
    deal = np.arange(padded).reshape(local_len // B, D, B).transpose(1, 0, 2).reshape(-1)
    return SweepPlan(order=np.argsort(cost, kind="stable"), chunk_size=chunk_size,
                     n_chunks=-(-P // chunk_size), batch=B, n_devices=D, padded=padded,
                     deal=deal, inverse=np.argsort(deal))
