from tests.fixtures.integration_peers import *  # noqa: F403
