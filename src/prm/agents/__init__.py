"""Agents: typed, scoped, audited tools over the real services, served over HTTP, as OpenAI
function schemas and over the Model Context Protocol (`/mcp`).

`registry.py` (what a tool is), `tools.py` (the catalogue), `execution.py` (validate, authorise,
run in a savepoint, record a tool run), `mcp_server.py` (the MCP transport), `runner.py` (an LLM's
tool-calling loop over the same executor). `service.py` is the published interface.
"""
