"""``corral serve``: extraction as an HTTP service that streams results as they complete.

    models   what goes over the wire (pydantic: request bodies, status, records, errors; the OpenAPI)
    errors   ApiError: a refusal with its HTTP status
    submit   reading a job from a request: JSON or multipart, size and item limits, schema checks
    jobs     the job manager: durable runs owned by the server, followed from the store by cursor
    stored   the server's jobs in the run store: open, release, results by cursor, their record
    app      the FastAPI app: routes, bearer auth, error bodies, NDJSON and SSE streams, the page
    main     start-up and shutdown: one backend, one set of limits, one store, uvicorn on our socket
    page/    the web page (index.html, page.js, page.css): submit a job, watch its records arrive

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart); nothing here is imported by
``corral`` itself until ``corral serve`` runs.
"""

__all__: list[str] = []
