from tests.fixtures.media import *  # noqa: F403
from tests.fixtures.messaging import *  # noqa: F403
