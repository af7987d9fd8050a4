"""Data and helpers the tests share, imported like any module (fixtures live in the conftest files).

- ``ROOT``, ``EXAMPLES``, ``PERSON``: the repository, its examples, the article's schema as a CLI spec;
- ``Person``, ``ARTICLE_TEXTS``: the article's response model and its seven texts;
- ``run_args``, ``run_command``: ``corral run`` for the article against a simulator, as arguments for
  the ``corral`` fixture or as a process's argv (``CORRAL_PROCESS`` and the arguments);
- ``tests._support.cli``: ``corral`` in this process, its output captured (the ``corral`` fixture);
- ``tests._support.chat``: chat requests as corral sends them, for tests that talk to the simulator;
- ``tests._support.browser``: headless Chromium; ``tests._support.serving``: ``corral serve`` as a process;
- ``tests._support.pdf``: PDFs written by hand; ``tests._support.sqlite``: a store read with sqlite3;
- ``tests._support.sinks``: ``ListSink``, a job's records kept in memory.
"""

from tests._support.article import ARTICLE_TEXTS, Person
from tests._support.paths import CORRAL_PROCESS, EXAMPLES, PERSON, ROOT, run_args, run_command

__all__ = [
    "ARTICLE_TEXTS",
    "CORRAL_PROCESS",
    "EXAMPLES",
    "PERSON",
    "ROOT",
    "Person",
    "run_args",
    "run_command",
]
