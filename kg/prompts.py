"""Prompt templates of the knowledge-graph stages, as named constants.

The extraction prompt is the single-call format of Distill-SynthKG: one chunk with its
document context in, entities + propositions + triples out. The teacher workflow
(`kg/distill`) writes training data in exactly this format, so a distilled student can
replace the base model without any code change.
"""

from __future__ import annotations

EXTRACTION_SYSTEM = (
    "You build a knowledge graph from text. Read the passage and return JSON with:\n"
    '- "entities": the people, organisations, places, works, events, concepts and other '
    "named things in the passage; each with a short name as written, a one-word type "
    "(Person, Organization, Location, Work, Event, Date, Concept, ...) and a short "
    "description taken from the passage;\n"
    '- "propositions": short self-contained statements of the facts in the passage, with '
    "every pronoun replaced by the name it refers to;\n"
    '- "triples": [subject, predicate, object] facts where subject and object are entity '
    "names from your list and the predicate is a short verb phrase; \"p\" is the index of "
    "the proposition the triple comes from.\n"
    "Use only facts stated in the passage. Do not invent anything."
)

EXTRACTION_USER = (
    "Document: {title}\n"
    "{context}"
    "Passage:\n\"\"\"\n{text}\n\"\"\"\n"
    "Return the JSON."
)

# One worked example: small models follow a shown format far better than a described one.
EXTRACTION_EXAMPLE_USER = (
    "Document: Ada Lovelace\n"
    "Passage:\n\"\"\"\nAda Lovelace was an English mathematician. She worked with Charles "
    "Babbage on the Analytical Engine.\n\"\"\"\nReturn the JSON."
)
EXTRACTION_EXAMPLE_OUTPUT = (
    '{"entities": [{"name": "Ada Lovelace", "type": "Person", "description": "English '
    'mathematician"}, {"name": "Charles Babbage", "type": "Person", "description": "worked '
    'with Ada Lovelace"}, {"name": "Analytical Engine", "type": "Machine", "description": '
    '"machine Babbage and Lovelace worked on"}, {"name": "England", "type": "Location", '
    '"description": "country"}], "propositions": ["Ada Lovelace was an English '
    'mathematician.", "Ada Lovelace worked with Charles Babbage on the Analytical Engine."], '
    '"triples": [{"subject": "Ada Lovelace", "predicate": "nationality", "object": "England", '
    '"p": 0}, {"subject": "Ada Lovelace", "predicate": "occupation", "object": '
    '"mathematician", "p": 0}, {"subject": "Ada Lovelace", "predicate": "worked with", '
    '"object": "Charles Babbage", "p": 1}, {"subject": "Ada Lovelace", "predicate": '
    '"worked on", "object": "Analytical Engine", "p": 1}]}'
)

# The compact format (kg/triples.py): one fact per line, about 12 tokens a fact. The example
# keeps every subject and object as written in its passage, since ends that are not in the
# passage are dropped (a triple "Ada Lovelace | nationality | England" from "English" would be).
EXTRACTION_LINES_SYSTEM = (
    "You extract the facts of a passage as triples, one per line:\n"
    "subject | predicate | object\n"
    "Subject and object are names, things, dates or numbers written in the passage, one "
    "thing each: for \"A and B\" write one triple for A and one for B. The predicate is a "
    "short verb phrase. Replace pronouns with the name they refer to. Use only facts "
    "stated in the passage. Write nothing else."
)
EXTRACTION_LINES_EXAMPLE_USER = (
    "Document: Ada Lovelace\n"
    "Passage:\n\"\"\"\nAda Lovelace was an English mathematician born in London in 1815. She "
    "was taught by Mary Somerville and Augustus De Morgan and worked with Charles Babbage on "
    "the Analytical Engine.\n\"\"\"\n"
    "Return the triples."
)
EXTRACTION_LINES_EXAMPLE_OUTPUT = (
    "Ada Lovelace | occupation | mathematician\n"
    "Ada Lovelace | born in | London\n"
    "Ada Lovelace | born in year | 1815\n"
    "Ada Lovelace | taught by | Mary Somerville\n"
    "Ada Lovelace | taught by | Augustus De Morgan\n"
    "Ada Lovelace | worked with | Charles Babbage\n"
    "Ada Lovelace | worked on | Analytical Engine"
)
EXTRACTION_LINES_USER = (
    "Document: {title}\n"
    "{context}"
    "Passage:\n\"\"\"\n{text}\n\"\"\"\n"
    "Return the triples."
)

EXTRACTION_CONTEXT = "Previous passage (context only, do not extract from it): {previous}\n"

JUDGE_SYSTEM = (
    "You check facts against a passage. For each numbered fact answer true if the passage "
    "states or directly implies it, false otherwise. Return JSON: {\"verdicts\": [true, ...]} "
    "with exactly one verdict per fact, in order."
)

JUDGE_USER = "Passage:\n\"\"\"\n{text}\n\"\"\"\nFacts:\n{facts}\nReturn the JSON."
