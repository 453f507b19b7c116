"""One router per resource; `services.api.main` includes them by name."""
