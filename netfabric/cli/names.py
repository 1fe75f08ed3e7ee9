"""Docker's generated container names: ``adjective_surname`` (moby's namesgenerator scheme,
with a shorter list of words), for ``run`` without ``--name``."""

from __future__ import annotations

import random

__all__ = ["random_name"]

LEFT = (
    "admiring", "adoring", "affectionate", "amazing", "awesome", "blissful", "bold", "brave",
    "charming", "clever", "compassionate", "competent", "condescending", "confident", "cool",
    "cranky", "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic",
    "elastic", "elated", "elegant", "eloquent", "epic", "fervent", "festive", "flamboyant",
    "focused", "friendly", "frosty", "gallant", "gifted", "goofy", "gracious", "happy",
    "hardcore", "heuristic", "hopeful", "hungry", "infallible", "inspiring", "jolly",
    "jovial", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest", "musing",
    "mystifying", "naughty", "nervous", "nice", "nifty", "nostalgic", "objective",
    "optimistic", "peaceful", "pedantic", "pensive", "practical", "priceless", "quirky",
    "quizzical", "recursing", "relaxed", "reverent", "romantic", "sad", "serene", "sharp",
    "silly", "sleepy", "stoic", "strange", "stupefied", "suspicious", "sweet", "tender",
    "thirsty", "trusting", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly",
    "wonderful", "xenodochial", "youthful", "zealous", "zen",
)

RIGHT = (
    "agnesi", "albattani", "allen", "archimedes", "babbage", "banach", "bardeen", "bartik",
    "bell", "bhabha", "blackwell", "bohr", "booth", "borg", "bose", "brahmagupta", "brown",
    "carson", "cerf", "chandrasekhar", "chaplygin", "clarke", "curie", "darwin", "diffie",
    "dijkstra", "einstein", "elion", "engelbart", "euclid", "euler", "faraday", "fermat",
    "fermi", "feynman", "franklin", "galileo", "gauss", "goldberg", "goodall", "hamilton",
    "hawking", "heisenberg", "hermann", "hodgkin", "hopper", "hypatia", "jackson",
    "jennings", "johnson", "kalam", "keller", "kepler", "knuth", "lamport", "leakey",
    "lovelace", "lumiere", "mayer", "mccarthy", "mcclintock", "meitner", "mendel",
    "mirzakhani", "montalcini", "moore", "morse", "napier", "newton", "nobel", "noether",
    "pasteur", "payne", "perlman", "pike", "poincare", "ramanujan", "ritchie", "sammet",
    "shannon", "shockley", "sinoussi", "stonebraker", "swartz", "tesla", "thompson",
    "torvalds", "turing", "vaughan", "villani", "visvesvaraya", "wilbur", "wiles",
    "williams", "wilson", "wing", "wozniak", "wright", "yalow", "yonath",
)


def random_name(rng: random.Random | None = None, *, retry: int = 0) -> str:
    """A name like ``focused_hopper``; after a clash (``retry`` > 0) a digit is added, as
    Docker does. Never ``boring_wozniak`` ("Steve Wozniak is not boring")."""
    rng = rng or random.SystemRandom()
    while True:
        name = f"{rng.choice(LEFT)}_{rng.choice(RIGHT)}"
        if name != "boring_wozniak":
            break
    return f"{name}{rng.randrange(10)}" if retry else name
