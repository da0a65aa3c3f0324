"""Integrations: outbound event webhooks (Standard Webhooks) and n8n workflows.

Capabilities, one module each: `outbound.py` (endpoints, fan-out, signed delivery with retries),
`n8n.py` (per-organisation n8n configuration, triggered workflow runs, authenticated callbacks,
timeouts). Pure rules: `ssrf.py` (which targets may be called), `payloads.py` (thin event
payloads, the retry schedule). `service.py` is the published interface.
"""
