"""Prompt templates of question answering, as named constants.

Each system prompt opens with its own role line, so a log (or a test's scripted model)
can tell the calls apart. They are short and show the output format: the default model is
a 0.5B one, which follows a shown format far better than a described one.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- ToG pruning

PRUNE_SYSTEM = (
    "You rank options for answering a question. Rate how useful each numbered option is "
    "for answering the question, from 0 (useless) to 10 (exactly what is needed). Return "
    'JSON: {"scores": [n, ...]} with exactly one score per option, in order.'
)

PRUNE_USER = "Question: {question}\nOptions:\n{options}\nReturn the JSON."

# --------------------------------------------------------------------------- ToG stop check

SUFFICIENCY_SYSTEM = (
    "You check whether knowledge is enough. Given a question and facts from a knowledge "
    'graph, answer {"sufficient": true} if the facts are enough to answer the question, '
    'otherwise {"sufficient": false}.'
)

SUFFICIENCY_USER = "Question: {question}\nFacts:\n{facts}\nReturn the JSON."

# --------------------------------------------------------------------------- router

ROUTER_SYSTEM = (
    "You route questions. Answer with JSON {\"route\": R} where R is \"direct\" when no "
    "lookup is needed (greetings, arithmetic, general knowledge), \"single\" when one "
    "document lookup answers it, and \"multi\" when it needs several connected facts "
    "(about two or more things, or a fact about something that is itself described)."
)

ROUTER_USER = "Question: {question}\nReturn the JSON."

# --------------------------------------------------------------------------- generation

ANSWER_SYSTEM = (
    "You answer questions using only the numbered sources. First give \"short_answer\": "
    "the answer alone, a few words (a name, place, date, number, or yes/no), no sentence. "
    "Then write one to three short "
    "sentences. Every sentence must list the sources it uses in \"citations\", like "
    "[\"1\"] or [\"2\", \"T1\"]. If the sources do not contain the answer, set "
    "\"cannot_answer\" to true and write one sentence starting \"The sources do not say\". "
    "Never use knowledge that is not in the sources."
)

ANSWER_STRICT = (
    " A previous answer said things the sources do not support: copy the facts from the "
    "sources closely and add nothing else."
)

ANSWER_USER = "Sources:\n{sources}\n\nQuestion: {question}\nReturn the JSON."

# One worked example, in the exact output format.
ANSWER_EXAMPLE_USER = (
    "Sources:\n[1] Ada Lovelace was an English mathematician. She worked with Charles "
    "Babbage on the Analytical Engine.\n[T1] Ada Lovelace worked with Charles Babbage\n\n"
    "Question: Who did Ada Lovelace work with?\nReturn the JSON."
)
ANSWER_EXAMPLE_OUTPUT = (
    '{"cannot_answer": false, "short_answer": "Charles Babbage", "sentences": [{"text": '
    '"Ada Lovelace worked with Charles Babbage on the Analytical Engine.", "citations": '
    '["1", "T1"]}]}'
)

# The compact answer format (retrieval/generate.py, `answer_format = "lines"`): plain
# text, decoded without a grammar; inline [n] markers are the citations.
ANSWER_LINES_SYSTEM = (
    "You answer questions using only the numbered sources. On the first line write "
    "\"Answer: \" and the answer alone, a few words (a name, place, date, number, or yes/no), "
    "no sentence. Then write one to three short sentences that support it, each ending "
    "with the sources it uses, like [1] or [2][T1]. If the sources do not contain the "
    "answer, write \"Answer: unknown\" and one sentence starting \"The sources do not say\". "
    "Never use knowledge that is not in the sources."
)
# The reminder closes the user turn: the 0.5B model skipped the "Answer:" line for 3 of 6
# HaluEval questions with the instruction in the system message alone; with it, only a
# refusal had none.
ANSWER_LINES_REMINDER = "\nStart your reply with \"Answer:\" and the short answer."
ANSWER_LINES_USER = "Sources:\n{sources}\n\nQuestion: {question}" + ANSWER_LINES_REMINDER
ANSWER_LINES_EXAMPLE_USER = (
    "Sources:\n[1] Ada Lovelace was an English mathematician. She worked with Charles "
    "Babbage on the Analytical Engine.\n[T1] Ada Lovelace worked with Charles Babbage\n\n"
    "Question: Who did Ada Lovelace work with?" + ANSWER_LINES_REMINDER
)
ANSWER_LINES_EXAMPLE_OUTPUT = (
    "Answer: Charles Babbage\n"
    "Ada Lovelace worked with Charles Babbage on the Analytical Engine [1][T1]."
)

# The short-first answer format (retrieval/generate.py, `answer_format = "short-first"`, the
# default): first the short answer alone, asked as plainly as a hand-written RAG recipe asks
# it, then, on the same prompt (its KV cache reused), the sentences that support it. On 20
# HaluEval questions the one-call lines prompt refused 6 answers the plain prompt got right
# (bench/README.md, qa_latency): a 0.5B model follows one instruction at a time best.
SHORT_SYSTEM = "Answer the question using the numbered sources. Answer with a short phrase only."
SHORT_USER = "Sources:\n{sources}\n\nQuestion: {question} Answer with a short phrase only."
SUPPORT_USER = (
    "Now write one short sentence from the sources that supports this answer, ending with "
    "the number of the source it uses, like [1] or [2][T1]."
)

DIRECT_SYSTEM = (
    "You answer questions briefly and directly, in one or two short sentences. Return JSON "
    '{"answer": "..."}.'
)

DIRECT_USER = "Question: {question}\nReturn the JSON."

# --------------------------------------------------------------------------- SuRe

SURE_CANDIDATES_SYSTEM = (
    "You propose answer candidates. Read the numbered sources and give up to {k} different "
    "short answers to the question (a name, date, number or short phrase each, a few words, "
    'no sentence), the most likely first. Return JSON {{"candidates": ["...", ...]}}.'
)

SURE_CANDIDATES_USER = "Sources:\n{sources}\n\nQuestion: {question}\nReturn the JSON."

SURE_CANDIDATES_EXAMPLE_USER = (
    "Sources:\n[1] Ada Lovelace was an English mathematician. She worked with Charles "
    "Babbage on the Analytical Engine.\n\nQuestion: Who did Ada Lovelace work with?\n"
    "Return the JSON."
)
SURE_CANDIDATES_EXAMPLE_OUTPUT = '{"candidates": ["Charles Babbage", "Analytical Engine"]}'

SURE_SUMMARY_SYSTEM = (
    "You summarise evidence. Using only the numbered sources, write one or two short "
    "sentences that explain why the given answer answers the question, and list the "
    "sources you used in \"citations\", like [\"1\"] or [\"2\", \"T1\"]. Return JSON "
    '{"summary": "...", "citations": ["..."]}.'
)

SURE_SUMMARY_USER = ("Sources:\n{sources}\n\nQuestion: {question}\nAnswer: {answer}\n"
                     "Return the JSON.")

SURE_VERIFY_SYSTEM = (
    "You check a summary. Answer {\"valid\": true} if the summary states facts that "
    "answer the question with the given answer, otherwise {\"valid\": false}."
)

SURE_VERIFY_USER = ("Question: {question}\nAnswer: {answer}\nSummary: {summary}\n"
                    "Return the JSON.")

SURE_RANK_SYSTEM = (
    "You compare two summaries. Which one answers the question better and more directly "
    'from facts? Return JSON {"better": "A"} or {"better": "B"}.'
)

SURE_RANK_USER = "Question: {question}\nSummary A: {a}\nSummary B: {b}\nReturn the JSON."

#: The refusal a generator writes when the sources do not answer the question.
CANNOT_ANSWER = "The sources do not say {what}."

# --------------------------------------------------------------------------- verification

GROUNDING_SYSTEM = (
    "You are a fact checker. Decide whether the claim is fully supported by the document: "
    "every fact in the claim must be stated in the document or follow directly from it. "
    'Return JSON {"supported": true} or {"supported": false}.'
)

GROUNDING_USER = "Document:\n\"\"\"\n{document}\n\"\"\"\nClaim: {claim}\nReturn the JSON."
