from tests.fixtures.openai_fake import openai_fake  # noqa: F401  (fixture)
