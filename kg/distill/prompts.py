"""Prompt templates of the SynthKG teacher workflow (several calls per chunk).

Step 1 decontextualises the chunk (pronouns and aliases resolved with the document title
and the previous chunk), step 2 splits it into propositions, step 3 extracts the entities
and triples of each proposition. Every step is JSON-schema constrained. The assembled
result is written in the single-call format of `kg.prompts.EXTRACTION_*`, which is what the
student learns to produce in one call.
"""

from __future__ import annotations

from typing import Any

DECONTEXT_SYSTEM = (
    "You rewrite a passage so that it can be read alone. Replace every pronoun (he, she, "
    "it, they, his, its, this, ...) and every short alias with the full name it refers to, "
    "using the document title and the previous passage. Keep every fact and the wording "
    "otherwise; add no new facts. Return JSON: {\"text\": \"<the rewritten passage>\"}."
)
DECONTEXT_USER = (
    "Document: {title}\n"
    "{context}"
    "Passage:\n\"\"\"\n{text}\n\"\"\"\nReturn the JSON."
)
DECONTEXT_CONTEXT = "Previous passage: {previous}\n"

PROPOSITIONS_SYSTEM = (
    "You split a passage into propositions: short, self-contained statements of one fact "
    "each, with full names instead of pronouns, in the order of the passage. Use only facts "
    "stated in the passage. Return JSON: {\"propositions\": [\"...\", ...]}."
)
PROPOSITIONS_USER = "Document: {title}\nPassage:\n\"\"\"\n{text}\n\"\"\"\nReturn the JSON."

TRIPLES_SYSTEM = (
    "You turn one statement into knowledge-graph facts. Return JSON with \"entities\": the "
    "named things in the statement, each with a short name as written, a one-word type "
    "(Person, Organization, Location, Work, Event, Date, Concept, ...) and a short "
    "description from the statement; and \"triples\": [subject, predicate, object] facts "
    "of the statement, where subject and object are entity names from your list and the "
    "predicate is a short verb phrase. Use only what the statement says."
)
TRIPLES_USER = (
    "Document: {title}\nStatement: {proposition}\n"
    "(from the passage: \"{text}\")\nReturn the JSON."
)

_STRING: dict[str, Any] = {"type": "string"}

DECONTEXT_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"text": _STRING}, "required": ["text"],
}
PROPOSITIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"propositions": {"type": "array", "items": _STRING}},
    "required": ["propositions"],
}
TRIPLES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": _STRING, "type": _STRING, "description": _STRING},
                "required": ["name", "type", "description"],
            },
        },
        "triples": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"subject": _STRING, "predicate": _STRING, "object": _STRING},
                "required": ["subject", "predicate", "object"],
            },
        },
    },
    "required": ["entities", "triples"],
}
