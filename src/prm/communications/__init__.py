"""Communications: every inbound and outbound message, the channel configuration, the sandbox outbox."""
