"""Inbound webhooks: Twilio messaging and status callbacks, the voice agent's finished calls."""
