"""The article's response model."""

from pydantic import BaseModel


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int
