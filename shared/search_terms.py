"""A search query's words: language, stop words, and the terms the lexical arm matches.

Materials and questions come in several languages (English and German most,
Hebrew, Arabic, French, Spanish too), and the chunks' full-text index uses
PostgreSQL's 'simple' configuration (lower-cased words, no stemming), so one
index serves them all. The query side is where language matters:

- the query's language is guessed from its script (Hebrew, Arabic) or, for
  Latin script, from which language's stop words it holds most (English on a
  tie), and only that language's stop words are dropped: "die" is a German
  article but an English verb, "also" a German adverb;
- each remaining word is stemmed by that language's Snowball stemmer in
  PostgreSQL and matched as the stem prefix (``schedul:*`` finds "scheduler"
  and "scheduling") or as the word itself, whichever is longer, since a stem
  is not always a prefix of its word ("memory" -> "memori"; German "Häuser"
  -> "haus");
- one-letter words are never terms (``b:*`` matched most of the corpus), and
  prefixes shorter than ``MIN_PREFIX`` are matched as whole words only.

Terms are plain strings of Unicode letters and digits, so the tsquery text
built from them can never hold an operator.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["MIN_PREFIX", "Term", "detect_language", "normalise", "query_terms", "words"]

MIN_PREFIX = 4
MAX_TERMS = 32  # a 1000-character query is not 160 separate questions

_WORD = re.compile(r"[^\W_]+")
_HEBREW = re.compile(r"[\u0590-\u05ff]")
_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f]")


def _listed(words: str) -> frozenset[str]:
    return frozenset(words.split())


# The most frequent function words of each language: enough to tell the
# languages apart in a short question and to drop what carries no topic.
STOP_WORDS: dict[str, frozenset[str]] = {
    "english": _listed(
        """a about above after again all also am an and any are as at be because been
        before being below between both but by can could did do does doing down during
        each else few for from further had has have having he her here hers him his how
        i if in into is it its itself just me more most my no nor not of off on once only
        or other our ours out over own same she should so some such than that the their
        theirs them then there these they this those through to too under until up very
        was we were what when where which while who whom whose why will with would you
        your yours explain describe tell"""
    ),
    "german": _listed(
        """aber alle allem allen aller alles als also am an ander andere anderen auch auf
        aus bei beim bin bis bist da damit dann das dass dein deine dem den denn der des
        dessen dich die dies diese diesem diesen dieser dieses dir doch dort du durch ein
        eine einem einen einer eines er es etwas euch euer für gegen hat hatte hier hin
        hinter ich ihm ihn ihnen ihr ihre im in ist ja jede jedem jeden jeder jedes jetzt
        kann kein keine können man mein meine mich mir mit muss nach nicht nichts noch nun
        nur ob oder ohne sehr sein seine sich sie sind so solche soll über um und uns
        unser unter viel vom von vor war waren warum was weil welche welchem welchen
        welcher welches wenn wer werden wie wieso wir wird wo woher wohin zu zum zur
        zwischen gibt erkläre erklären"""
    ),
    "french": _listed(
        """au aux avec ce ces comment dans de des du elle en est et eux il je la le les leur
        lui ma mais me même mes moi mon ne nos notre nous on ou où par pas pour qu que qui
        quoi quel quelle sa se ses son sont sur ta te tes toi ton tu un une vos votre vous
        y"""
    ),
    "spanish": _listed(
        """al como con cómo cuál de del el ella ellos en es esta este la las lo los más mi
        no nos o para pero por qué que se sin sobre su sus también un una uno y ya"""
    ),
    "hebrew": _listed(
        """של את על עם זה זו זאת הוא היא הם הן אני אתה את אנחנו אתם יש אין לא כן גם או אבל
        כי אם מה מי איך למה מתי איפה כל עוד רק כמו אל מן בין לפי אחרי לפני כדי היה היו
        להיות"""
    ),
    "arabic": _listed(
        """في من على إلى عن مع هذا هذه ذلك تلك هو هي هم أنا أنت نحن و أو ثم لكن لا لم لن
        ما ماذا كيف لماذا متى أين هل كل قد التي الذي الذين كان كانت يكون بين عند"""
    ),
}

# PostgreSQL text search configurations with a Snowball stemmer for these
# languages; Hebrew has none and is matched by whole words and prefixes.
_CONFIGURATIONS = {
    "english": "english",
    "german": "german",
    "french": "french",
    "spanish": "spanish",
    "arabic": "arabic",
    "hebrew": "simple",
}

_STEMS = text(
    "SELECT word, (SELECT string_agg(lexeme, ' ') "
    "FROM unnest(to_tsvector(CAST(:configuration AS regconfig), word))) "
    "FROM unnest(CAST(:words AS text[])) AS word"
)


def normalise(value: str) -> str:
    """NFKC (ligatures such as "ﬁ" become "fi") and case-folded, as the index sees words."""
    return unicodedata.normalize("NFKC", value).casefold()


def words(value: str) -> list[str]:
    """The runs of letters and digits of ``value``, normalised."""
    return _WORD.findall(normalise(value))


def detect_language(tokens: list[str]) -> str:
    """The query's language: by script for Hebrew and Arabic, else by stop words."""
    joined = "".join(tokens)
    if _HEBREW.search(joined):
        return "hebrew"
    if _ARABIC.search(joined):
        return "arabic"
    hits = {
        language: sum(token in stop for token in tokens)
        for language, stop in STOP_WORDS.items()
        if language not in ("hebrew", "arabic")
    }
    best = max(hits.values(), default=0)
    if best == 0 or hits["english"] == best:
        return "english"
    # A fixed order breaks ties, so the same question is always read the same way.
    return next(language for language in hits if hits[language] == best)


@dataclass(frozen=True)
class Term:
    """One query word as the index matches it: a whole word, or a prefix."""

    word: str
    match: str  # what is matched in the 'simple' index
    prefix: bool

    def tsquery(self) -> str:
        """The term as 'simple' tsquery text: one quoted operand, ``:*`` for a prefix."""
        escaped = self.match.replace("\\", "\\\\").replace("'", "''")
        return f"'{escaped}'" + (":*" if self.prefix else "")


def _common_prefix(first: str, second: str) -> str:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return first[:length]


def query_terms(session: Session, query: str) -> tuple[str, list[Term]]:
    """The query's language and its distinct terms, in the order they first appear."""
    tokens = words(query)
    language = detect_language(tokens)
    stop = STOP_WORDS[language]
    kept: list[str] = []
    for token in tokens:
        if len(token) > 1 and token not in stop and token not in kept:
            kept.append(token)
    kept = kept[:MAX_TERMS]
    if not kept:
        return language, []
    rows = session.execute(_STEMS, {"configuration": _CONFIGURATIONS[language], "words": kept})
    stems: dict[str, str | None] = {word: stem for word, stem in rows}
    terms: list[Term] = []
    for token in kept:
        stem = stems.get(token)
        if stem is None:  # a stop word of the stemmer's own, longer list
            continue
        # The longer of the stem's common prefix with the word and ... the word:
        # "scheduling" -> schedul:*, "memory" -> memor:*, "häuser" -> häuser.
        prefix = _common_prefix(stem.split(" ")[0], token)
        if len(prefix) >= MIN_PREFIX:
            terms.append(Term(token, prefix, prefix=True))
        else:
            terms.append(Term(token, token, prefix=len(token) >= MIN_PREFIX))
    return language, terms
