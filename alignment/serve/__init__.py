"""``codealign serve``: a policy behind an OpenAI-compatible HTTP API.

``config`` (what the server enforces), ``app`` (routes and the order of checks), ``engine`` (the model and
the dynamic batcher), ``auth`` (bearer keys from :mod:`db.keys`), ``ratelimit`` (per-key limits through
``limits``), ``verify`` (completions run in the sandbox), ``protocol`` (the request body), ``errors``
(OpenAI's error shape). docs/serve.md is the user's guide.
"""
