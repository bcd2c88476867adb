"""Reviewed safety configs in production: their lifecycle, the API keys bound to them, and the
OpenAI-compatible server."""
