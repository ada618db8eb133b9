"""The services the faces (CLI, API, app) call: search, the serving supervisor, library, events, rollout."""
