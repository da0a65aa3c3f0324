from tests.fixtures.media import *  # noqa: F403
