"""`sync_invoices serve`: the HTTP API of SPEC s.10 and the dashboard, one idea per module:

    app         assembles the FastAPI application: routes, middleware, error answers, the dashboard
    routes      the endpoints of /api/v1: each calls `service` / `reports` and wraps the result
    answers     the envelope {"success", "data", "message"} and the HTTP status of every error
    auth        the bearer token, compared in constant time
    models      request bodies, validated field by field, and the envelope for the OpenAPI document
    documents   `data` built from the service's results: a push's result, a run with its live progress
    guards      bounded request bodies and security headers (pure ASGI middleware)
    context     what every request shares: the settings, the MIS (opened on first use), the runs
    runs        pushes and verifies running in threads of `serve`, their live progress and their stop
    schedule    `--push-every` / `--verify-every`: durations and the timer threads
    server      uvicorn, the listening socket, SIGTERM stopping the runs gracefully
    static/     the dashboard: plain HTML, CSS and JavaScript, no CDN, no build step

Only the `serve` command (and `demo --serve`) imports this package, so the other commands start as
fast as before: FastAPI, pydantic and uvicorn are never loaded by them.
"""
