"""The outside world, each behind a small Protocol with a real and an offline implementation."""
