"""Long texts about many people, with what each says of whom: what a document's chunk looks like.

Each person has a paragraph of their own (in one of four phrasings, most with an age), opened by their
full name and naming them again by first name later on; the prose around them has what trips a crude
recogniser: sentences opened by capitalised common words ("Colleagues", "During", "Outside work"),
companies and cities, weekdays, and years that are no ages.
"""

from __future__ import annotations

import random
from typing import NamedTuple

__all__ = ["Figure", "document"]

FIRST = (
    "Maria", "Jonas", "Aiko", "Pedro", "Fatima", "Lukas", "Chen", "Amara", "Oskar", "Leila",
    "Tomasz", "Ingrid", "Rafael", "Sofia", "Kwame", "Elena", "Hugo", "Nadia", "Viktor", "Yara",
    "Mateo", "Greta", "Idris", "Lena", "Arjun", "Clara", "Emil", "Zainab", "Felix", "Hana",
    "Bruno", "Alma", "Dmitri", "Noor", "Julian", "Mei", "Anton", "Rosa", "Samir", "Ida",
)  # fmt: skip
LAST = (
    "Lopez", "Berg", "Tanaka", "Alves", "Haddad", "Meyer", "Wei", "Okafor", "Lind", "Rahimi",
    "Nowak", "Dahl", "Costa", "Russo", "Mensah", "Petrova", "Laurent", "Karimi", "Sokolov", "Farah",
    "Ruiz", "Vogel", "Bello", "Fischer", "Patel", "Moreau", "Novak", "Yusuf", "Wagner", "Sato",
    "Ferreira", "Holm", "Ivanov", "Aziz", "Keller", "Lin", "Kovac", "Diaz", "Saleh", "Ek",
)  # fmt: skip
_CITIES = ("Lisbon", "Oslo", "Kyoto", "Porto", "Beirut", "Hamburg", "Lagos", "Uppsala", "Valencia")
_JOBS = ("engineer", "nurse", "teacher", "architect", "chemist", "pilot", "baker", "lawyer", "designer")
_COMPANIES = ("Northwind Traders", "Harbor Bank", "Blue River Systems", "Atlas Motors", "Meridian Labs")
_DEPARTMENTS = ("logistics", "research", "accounts", "maintenance", "sales")


class Figure(NamedTuple):
    """One person of a document: the name it writes, their age (None: it gives none), their paragraph."""

    name: str
    age: int | None
    start: int
    end: int


def document(people: int = 40, *, seed: int = 1) -> tuple[str, list[Figure]]:
    """A text about ``people`` people (at most 40) and, for each, what it says of them."""
    rng = random.Random(seed)
    paragraphs: list[tuple[str, str, int | None]] = []
    for i in range(people):
        first, name = FIRST[i], f"{FIRST[i]} {LAST[i]}"
        age: int | None = rng.randint(19, 80)
        she = rng.choice((("She", "she", "her", "her"), ("He", "he", "him", "his")))
        city, job, company = rng.choice(_CITIES), rng.choice(_JOBS), rng.choice(_COMPANIES)
        year, dept = rng.randint(1990, 2022), rng.choice(_DEPARTMENTS)
        coda = " Ask around the neighbourhood and you will hear the same story told a dozen ways."
        form = i % 4
        if form == 0:
            text = (
                f"{name} is {age} years old and works as a {job} in {city}. {she[0]} moved there in {year} "
                f"after finishing {she[3]} degree. Colleagues describe {she[2]} as careful and patient. "
                f"Later, {first} took charge of the {dept} team at {company}, where the work of the week "
                "is planned every Monday morning over coffee. The team has grown every year since, "
                "and the new office by the station finally has room for all of them, plants and "
                "bicycles included."
            )
        elif form == 1:
            text = (
                f"{name}, {age}, grew up near {city}. During the {year // 10 * 10}s {she[1]} trained as "
                f"a {job}; today {she[1]} runs a small workshop with {she[3]} sister. Outside work, "
                f"{first} restores old bicycles and volunteers on Saturdays at the city library, "
                "where the children's corner is always busy. Neighbours bring broken frames to the "
                "door, and most of them leave with a bicycle that rides better than it ever did, and "
                "a cup of tea besides."
            )
        elif form == 2:
            age = None
            text = (
                f"Born in {year}, {name} has spent most of {she[3]} career at {company} in {city}. "
                f"Everyone in the office knows {first} as the one who fixes what others have given up "
                f"on, and nobody has ever heard {she[2]} complain about the long hours in {dept}. "
                "The walls of that corner are covered in thank-you cards from people across the "
                "building and beyond it."
            )
        else:
            text = (
                f"{name} (aged {age}) joined {company} as a {job} in {year}. Before that, {she[1]} "
                f"lived in {city} for a decade. Friends say {first} never misses the Thursday market, "
                f"and the stall holders keep the best bread of the morning aside for {she[2]}. "
                "Most weekends end with a long walk by the water and a book read on a bench until "
                "the light goes, whatever the season."
            )
        paragraphs.append((text + coda if i % 3 == 0 else text, name, age))
    figures: list[Figure] = []
    at = 0
    for text, name, age in paragraphs:
        figures.append(Figure(name, age, at, at + len(text)))
        at += len(text) + 2
    return "\n\n".join(text for text, _, _ in paragraphs), figures
