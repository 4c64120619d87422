"""The teaching wing: `plates teach` and what it is made of.

* :mod:`plates.teaching.prompts` — the versioned prompt set (``prompts/v1``) and one request per (record, mode).
* :mod:`plates.teaching.backends` — the teacher backend base class, its option declarations and the registry
  of backends by name (:mod:`~plates.teaching.backends.openai`, :mod:`~plates.teaching.backends.template`).
* :mod:`plates.teaching.gate` — the consistency gate: a teacher's text checked against the record's labels.
* :mod:`plates.teaching.stage` — the `plates teach` stage: the resumable run, its summary, its command line.

Requests to served models go through the core :mod:`plates.chat_client`, which `plates predict --endpoint`
uses too. This package imports only core modules and its own.
"""
