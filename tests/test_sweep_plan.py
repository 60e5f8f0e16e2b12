"""The sweep planner (pure NumPy, no solves): every point once, sorted batches, fair dealing."""

import numpy as np
import pytest

from jaxdyn._sweep_plan import plan_sweep


@pytest.mark.parametrize("P, D, chunk, batch", [(10, 1, 4, 2), (10, 2, 4, 2), (37, 4, 16, 3),
                                                 (5, 3, None, None), (1, 2, 8, 4)])
def test_every_point_once_and_undealing_inverts(P, D, chunk, batch):
    rng = np.random.default_rng(P * 100 + D)
    cost = rng.normal(size=P)
    p = plan_sweep(cost, n_devices=D, chunk_size=chunk, batch_size=batch)
    seen = np.concatenate([p.chunk_points(c) for c in range(p.n_chunks)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(P))  # each grid point exactly once
    assert np.all(np.diff(cost[seen]) >= 0)  # chunks in cost order
    assert p.padded % (D * p.batch) == 0 and p.padded >= p.chunk_size
    for c in range(p.n_chunks):
        slots = p.chunk_slots(c)
        np.testing.assert_array_equal(slots[p.unslot(c)], p.chunk_points(c))


def test_batches_are_consecutive_sorted_points_dealt_round_robin():
    cost = np.arange(16.0)[::-1]  # grid point 15 is the cheapest
    p = plan_sweep(cost, n_devices=2, chunk_size=16, batch_size=2)
    slots = p.chunk_slots(0).reshape(2, -1, 2)  # (device, batch, member)
    ranks = np.argsort(np.argsort(cost))[slots]  # cost rank of every slot
    # device 0 gets sorted batches 0, 2, 4, 6; device 1 gets 1, 3, 5, 7
    np.testing.assert_array_equal(ranks[0, :, 0] // 2, [0, 2, 4, 6])
    np.testing.assert_array_equal(ranks[1, :, 0] // 2, [1, 3, 5, 7])
    assert np.all(np.diff(ranks, axis=-1) == 1)  # batch members are consecutive in cost


def test_batch_members_do_not_depend_on_the_device_count():
    cost = np.random.default_rng(1).uniform(size=24)
    def batches(D):
        p = plan_sweep(cost, n_devices=D, chunk_size=24, batch_size=3)
        return sorted(map(tuple, p.chunk_slots(0).reshape(-1, 3).tolist()))
    assert batches(1) == batches(2) == batches(4)


def test_padding_repeats_the_last_point_and_bad_input():
    p = plan_sweep(np.arange(5.0), n_devices=2, chunk_size=5, batch_size=2)
    assert p.padded == 8
    slots = p.chunk_slots(0)
    assert sorted(slots.tolist()) == [0, 1, 2, 3, 4, 4, 4, 4]
    with pytest.raises(ValueError, match="chunk_size"):
        plan_sweep(np.arange(3.0), n_devices=1, chunk_size=-1)
    with pytest.raises(ValueError, match="cost"):
        plan_sweep(np.zeros((2, 2)), n_devices=1)
