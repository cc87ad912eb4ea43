"""The decisions inside the remediations: how far to scale, which library versions go."""

from __future__ import annotations

import pytest

from streams.policy.remedies import (
    ScalePlan,
    scale_plan,
    scale_target,
    scaled_size,
    versions_to_remove,
)


@pytest.mark.parametrize(
    ("workers", "autoscale_max", "target"),
    [
        (4, None, 6),  # +50%
        (2, None, 3),
        (1, None, 2),  # at least one more
        (0, None, 1),
        (3, None, 5),  # rounded up
        (6, 8, 8),  # capped at the autoscale max
        (8, 8, None),  # nothing left to grow
    ],
)
def test_scale_target(workers, autoscale_max, target):
    assert scale_target(workers, autoscale_max) == target


@pytest.mark.parametrize(
    ("workers", "autoscale_min", "autoscale_max", "plan"),
    [
        (4, None, None, ScalePlan(6)),  # a fixed size grows by half
        (0, 2, 8, ScalePlan(3, 8)),  # an autoscaling cluster keeps autoscaling, floor raised
        (0, 4, 8, ScalePlan(6, 8)),
        (0, 6, 8, ScalePlan(7, 8)),  # 9 wanted; the floor stays below the max
        (0, 7, 8, None),  # floor max - 1: nothing left to grow
        (0, 0, 1, None),
        (0, None, 4, ScalePlan(1, 4)),  # no floor given: from zero
    ],
)
def test_scale_plan(workers, autoscale_min, autoscale_max, plan):
    assert scale_plan(workers, autoscale_min, autoscale_max) == plan


@pytest.mark.parametrize(
    ("workers", "autoscale_min", "autoscale_max", "size"),
    [(6, None, None, 6), (0, 7, 8, 7), (3, None, 8, 0)],
)
def test_scaled_size_is_the_floor_of_an_autoscaling_cluster(
    workers, autoscale_min, autoscale_max, size
):
    assert scaled_size(workers, autoscale_min, autoscale_max) == size


@pytest.mark.parametrize(
    ("installing", "attached", "removed"),
    [
        # the alerted version goes
        ("pandas==2.1.0", {"pandas==2.2.0": "FAILED"}, ("pandas==2.2.0",)),
        # a second attempt: the failed fallback goes; the first one left at the last restart
        ("pandas==2.0.3", {"pandas==2.1.0": "FAILED"}, ("pandas==2.1.0",)),
        # already leaving at the next restart: not uninstalled again
        ("pandas==2.1.0", {"pandas==2.2.0": "UNINSTALL_ON_RESTART"}, ()),
        # other packages and non-PyPI libraries stay; the version being installed stays
        (
            "pandas==2.0.3",
            {
                "numpy==1.26.4": "INSTALLED",
                "dbfs:/jars/x.jar": "INSTALLED",
                "pandas==2.0.3": "PENDING",
                "Pandas==2.2.0": "FAILED",
            },
            ("Pandas==2.2.0",),
        ),
        ("pandas==2.1.0", {}, ()),
    ],
)
def test_versions_to_remove(installing, attached, removed):
    assert versions_to_remove(installing, attached) == removed
