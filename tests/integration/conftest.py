"""End-to-end modules marked ``both_profiles`` run once per topic profile.

The profile reaches every stack through the environment (``PIPEMEDIC_TOPIC_PROFILE``, read by
:class:`streams.settings.Settings` in the test and in each worker it starts), so a module's
own fixtures take ``topic_profile`` to be built again for the second profile. Run the whole
integration suite on one profile with ``PIPEMEDIC_TOPIC_PROFILE=compact pytest tests/integration``.
"""

from __future__ import annotations

import os

import pytest

from streams.policy.routing import PROFILES

ENV = "PIPEMEDIC_TOPIC_PROFILE"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_profiles") is None:
        return
    if "topic_profile" in metafunc.fixturenames:
        metafunc.parametrize("topic_profile", PROFILES, indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def topic_profile(request: pytest.FixtureRequest):
    """The topic profile this module's stacks use: its parameter, else the environment's."""
    profile = getattr(request, "param", None) or os.environ.get(ENV, "default")
    patch = pytest.MonkeyPatch()
    patch.setenv(ENV, profile)
    yield profile
    patch.undo()
