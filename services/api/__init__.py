"""The magdi REST API (FastAPI): `services.api.main.create_app`, served by `magdi serve`."""
