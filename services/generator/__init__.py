"""Debate generation: panels of OpenAI-compatible teachers, the ReConcile and Du et al. debate
protocols, an async engine with per-endpoint limits, and a worker that runs queued jobs.
The SIMULATED panel that tests, demo and benchmarks talk to is its own part, `services/teachers`.

- `panel`: the validated panel YAML (agents, endpoints, limits, prices; keys by env-var name).
- `protocols`: prompt building, topology, stopping rules and the team vote.
- `client`, `limits`: calls, retries, token buckets, circuit breaker, preflight.
- `engine`: many debates in flight; every finished turn written to the store as it completes.
- `jobrun`, `worker`: job leases, resume, drain on SIGTERM; `python -m services.generator`.
"""
