from tests.fixtures.messaging import *  # noqa: F403
