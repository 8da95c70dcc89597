"""The mini corpus's language: one sentence grammar, a bilingual lexicon, and questions.

Every sentence is a statement ``NAME VERBED NUMBER COLOR NOUNS [PLACE] [TIME]``, e.g.
"Tom bought three red apples at the market on Monday." The slots give ~20 million distinct
sentences from ~100 words, so held-out test sentences are unseen combinations of seen words.
Each slot has a translation in German, Spanish and French, and each language has its own word
order and agreement (German time-before-object, Spanish/French postnominal adjectives agreeing
with the noun's gender), so the parallel text is real translation rather than word substitution.
Questions about one slot give the SQA / SC question-answer pairs.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

LANGS = ("en", "de", "es", "fr")

# common English names: Whisper misheard rarer ones on clean TTS speech (Ida -> "I'd", Emma ->
# "and the", Clara -> "Carbot"), which made names the main source of ground-truth WER
NAMES = ("Tom", "Mary", "John", "Sarah", "David", "Lucy", "Peter", "Kate", "James", "Alice",
         "Robert", "Laura", "Michael", "Helen", "Daniel", "Susan")

# en past, en base, de past, es past, fr passe compose
VERBS = (
    ("bought", "buy", "kaufte", "compró", "a acheté"),
    ("found", "find", "fand", "encontró", "a trouvé"),
    ("sold", "sell", "verkaufte", "vendió", "a vendu"),
    ("painted", "paint", "malte", "pintó", "a peint"),
    ("carried", "carry", "trug", "llevó", "a porté"),
    ("washed", "wash", "wusch", "lavó", "a lavé"),
    ("counted", "count", "zählte", "contó", "a compté"),
    ("moved", "move", "verschob", "movió", "a déplacé"),
    ("lost", "lose", "verlor", "perdió", "a perdu"),
    ("ordered", "order", "bestellte", "pidió", "a commandé"),
)

NUMBERS = (
    ("two", "zwei", "dos", "deux"), ("three", "drei", "tres", "trois"),
    ("four", "vier", "cuatro", "quatre"), ("five", "fünf", "cinco", "cinq"),
    ("six", "sechs", "seis", "six"), ("seven", "sieben", "siete", "sept"),
    ("eight", "acht", "ocho", "huit"), ("nine", "neun", "nueve", "neuf"),
)

# en, de (strong plural), es (masc pl, fem pl), fr (masc pl, fem pl)
COLORS = (
    ("red", "rote", ("rojos", "rojas"), ("rouges", "rouges")),
    ("green", "grüne", ("verdes", "verdes"), ("verts", "vertes")),
    ("blue", "blaue", ("azules", "azules"), ("bleus", "bleues")),
    ("yellow", "gelbe", ("amarillos", "amarillas"), ("jaunes", "jaunes")),
    ("black", "schwarze", ("negros", "negras"), ("noirs", "noires")),
    ("white", "weiße", ("blancos", "blancas"), ("blancs", "blanches")),
    ("brown", "braune", ("marrones", "marrones"), ("bruns", "brunes")),
    ("grey", "graue", ("grises", "grises"), ("gris", "grises")),
    ("purple", "lila", ("morados", "moradas"), ("violets", "violettes")),
)

# en plural, de plural, (es plural, gender), (fr plural, gender); gender 0 = masc, 1 = fem
NOUNS = (
    ("apples", "Äpfel", ("manzanas", 1), ("pommes", 1)),
    ("boxes", "Kisten", ("cajas", 1), ("boîtes", 1)),
    ("cups", "Tassen", ("tazas", 1), ("tasses", 1)),
    ("books", "Bücher", ("libros", 0), ("livres", 0)),
    ("chairs", "Stühle", ("sillas", 1), ("chaises", 1)),
    ("hats", "Hüte", ("sombreros", 0), ("chapeaux", 0)),
    ("balls", "Bälle", ("pelotas", 1), ("balles", 1)),
    ("bottles", "Flaschen", ("botellas", 1), ("bouteilles", 1)),
    ("shoes", "Schuhe", ("zapatos", 0), ("chaussures", 1)),
    ("cars", "Autos", ("coches", 0), ("voitures", 1)),
    ("flowers", "Blumen", ("flores", 1), ("fleurs", 1)),
    ("keys", "Schlüssel", ("llaves", 1), ("clés", 1)),
    ("pens", "Stifte", ("bolígrafos", 0), ("stylos", 0)),
    ("plates", "Teller", ("platos", 0), ("assiettes", 1)),
    ("shirts", "Hemden", ("camisas", 1), ("chemises", 1)),
    ("bags", "Taschen", ("bolsas", 1), ("sacs", 0)),
    ("lamps", "Lampen", ("lámparas", 1), ("lampes", 1)),
    ("stones", "Steine", ("piedras", 1), ("pierres", 1)),
)

PLACES = (
    ("at the market", "auf dem Markt", "en el mercado", "au marché"),
    ("in the park", "im Park", "en el parque", "au parc"),
    ("at the station", "am Bahnhof", "en la estación", "à la gare"),
    ("in the kitchen", "in der Küche", "en la cocina", "dans la cuisine"),
    ("at school", "in der Schule", "en la escuela", "à l'école"),
    ("in the garden", "im Garten", "en el jardín", "dans le jardin"),
    ("at the beach", "am Strand", "en la playa", "à la plage"),
    ("in the city", "in der Stadt", "en la ciudad", "en ville"),
    ("at the harbor", "am Hafen", "en el puerto", "au port"),
    ("in the library", "in der Bibliothek", "en la biblioteca", "à la bibliothèque"),
)

TIMES = (
    ("on Monday", "am Montag", "el lunes", "lundi"),
    ("on Tuesday", "am Dienstag", "el martes", "mardi"),
    ("on Wednesday", "am Mittwoch", "el miércoles", "mercredi"),
    ("on Thursday", "am Donnerstag", "el jueves", "jeudi"),
    ("on Friday", "am Freitag", "el viernes", "vendredi"),
    ("on Saturday", "am Samstag", "el sábado", "samedi"),
    ("on Sunday", "am Sonntag", "el domingo", "dimanche"),
    ("yesterday", "gestern", "ayer", "hier"),
)

QUESTION_KINDS = ("who", "how_many", "color", "what", "where", "when")


@dataclass(frozen=True)
class Sentence:
    """Slot indices into the lexicon; ``place`` / ``time`` are None when the slot is absent."""
    name: int
    verb: int
    number: int
    color: int
    noun: int
    place: int | None
    time: int | None

    def text(self, lang: str = "en") -> str:
        name, verb, num = NAMES[self.name], VERBS[self.verb], NUMBERS[self.number]
        color, noun = COLORS[self.color], NOUNS[self.noun]
        li = LANGS.index(lang)
        place = PLACES[self.place][li] if self.place is not None else None
        time = TIMES[self.time][li] if self.time is not None else None
        if lang == "en":
            words = [name, verb[0], num[0], color[0], noun[0], place, time]
        elif lang == "de":
            words = [name, verb[2], time, num[1], color[1], noun[1], place]
        else:
            plural, gender = noun[li]
            words = [name, verb[li + 1], num[li], plural, color[li][gender], place, time]
        return " ".join(w for w in words if w) + "."

    def question_kinds(self) -> tuple[str, ...]:
        drop = {"where"} if self.place is None else set()
        drop |= {"when"} if self.time is None else set()
        return tuple(k for k in QUESTION_KINDS if k not in drop)

    def question(self, kind: str) -> tuple[str, str]:
        """(question, answer) in English about one slot; the answer is a full sentence."""
        name, (past, base) = NAMES[self.name], VERBS[self.verb][:2]
        noun, num, color = NOUNS[self.noun][0], NUMBERS[self.number][0], COLORS[self.color][0]
        if kind == "who":
            return f"Who {past} the {noun}?", f"{name} {past} the {noun}."
        if kind == "how_many":
            return f"How many {noun} did {name} {base}?", f"{name} {past} {num} {noun}."
        if kind == "color":
            return f"What color were the {noun}?", f"The {noun} were {color}."
        if kind == "what":
            return f"What did {name} {base}?", f"{name} {past} {num} {color} {noun}."
        if kind == "where" and self.place is not None:
            return (f"Where did {name} {base} the {noun}?",
                    f"{name} {past} the {noun} {PLACES[self.place][0]}.")
        if kind == "when" and self.time is not None:
            return (f"When did {name} {base} the {noun}?",
                    f"{name} {past} the {noun} {TIMES[self.time][0]}.")
        raise ValueError(f"no {kind!r} question for {self.text()!r}")


def sample_sentences(n: int, rng: random.Random, p_place: float = 0.6,
                     p_time: float = 0.4) -> list[Sentence]:
    """``n`` distinct sentences drawn with ``rng`` (order is part of the determinism)."""
    seen: set[Sentence] = set()
    out: list[Sentence] = []
    while len(out) < n:
        s = Sentence(rng.randrange(len(NAMES)), rng.randrange(len(VERBS)),
                     rng.randrange(len(NUMBERS)), rng.randrange(len(COLORS)),
                     rng.randrange(len(NOUNS)),
                     rng.randrange(len(PLACES)) if rng.random() < p_place else None,
                     rng.randrange(len(TIMES)) if rng.random() < p_time else None)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
