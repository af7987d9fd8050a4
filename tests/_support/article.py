"""The article's response model and its seven texts: what most end-to-end tests extract.

``corral bench`` keeps its own copy (the package never imports its tests). ``Person`` has no docstring
on purpose, like that copy: a docstring becomes the schema's description, which changes the requests
(and their cache keys) the tests send and check.
"""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["ARTICLE_TEXTS", "Person"]

ARTICLE_TEXTS = [
    "My name is John and I am 20 years old",
    "My name is Mary and I am 21 years old",
    "My name is Bob and I am 22 years old",
    "My name is Alice and I am 23 years old",
    "My name is Jane and I am 24 years old",
    "My name is Joe and I am 25 years old",
    "My name is Jill and I am 26 years old",
]


class Person(BaseModel):
    name: str
    age: int
