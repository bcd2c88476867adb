"""A loopback Hugging Face Hub for tests (standard library only; a test fixture, not a product).

`HubServer` speaks the part of the Hub HTTP protocol that the unmodified huggingface_hub,
datasets and transformers clients use to create repos, commit (NDJSON + classic LFS), list,
tag and download. See `server.py` for the routes and `fixtures.py` for the pytest fixture.
"""

from .server import HubServer, client_env

__all__ = ["HubServer", "client_env"]
