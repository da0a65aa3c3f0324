"""Semantic search: chunks of conversations, call transcripts, ticket notes and clinic documents,
embedded and searched by vector and full text in one statement."""
