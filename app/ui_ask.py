"""Ask page: a question in; the answer with inline citations, per-sentence verdicts,
evidence with the cited span highlighted, reasoning paths drawn, cost and latency.

While the model writes, its raw text (with [n] markers) streams into a draft; once the
answer is verified, the draft gives way to the checked answer."""

from __future__ import annotations

import html
import re
from typing import Any

import streamlit as st

from app.ui_common import components, dot_graph, page
from core.answer import Answer, Evidence, Sentence
from core.llm.base import TextSink

BADGES = {"supported": ":green-badge[supported]", "unsupported": ":red-badge[unsupported]",
          "unverified": ":gray-badge[unverified]"}
MODES = {"auto": "auto (router decides)", "rag": "chunk RAG", "tog": "Think-on-Graph",
         "direct": "no retrieval", "search": "passages only (no LLM call)"}
RETRIEVERS = {"ppr": "PageRank over the entity graph", "hybrid": "dense + BM25",
              "dense": "dense (embeddings)", "bm25": "BM25"}
_WORD = re.compile(r"\w+")


DRAFT_NOTE = "Draft: the model is writing; each sentence is checked against the sources next."
RETRY_NOTE = "Writing the answer again ..."


class AnswerDraft:
    """The answer as the model writes it, in one placeholder (a `TextSink`): markdown
    with the raw [n] markers, redrawn on each piece; a restart (a retry, a rectify round)
    starts it over."""

    def __init__(self, placeholder: Any) -> None:
        self.placeholder = placeholder
        self.text = ""

    def write(self, delta: str) -> None:
        self.text += delta
        with self.placeholder.container():
            st.caption(DRAFT_NOTE)
            # A line break per model line ("Answer: ..." then the sentences).
            st.markdown(self.text.strip().replace("\n", "  \n") + " ▌")

    def restart(self) -> None:
        self.text = ""
        self.placeholder.caption(RETRY_NOTE)

    def clear(self) -> None:
        self.placeholder.empty()


def ask(question: str, mode: str, stream: TextSink | None = None) -> Answer:
    from flows.qa import answer_question

    return answer_question(question, mode=mode, components=components(), stream=stream)


def best_span(chunk: str, claim: str) -> tuple[int, int]:
    """The chunk sentence sharing most words with the claim (what the citation points at)."""
    words = {w.casefold() for w in _WORD.findall(claim)}
    best, span = -1, (0, 0)
    for m in re.finditer(r"[^.!?\n]+[.!?]?", chunk):
        overlap = len(words & {w.casefold() for w in _WORD.findall(m.group())})
        if overlap > best:
            best, span = overlap, (m.start(), m.end())
    return span


def highlighted(ev: Evidence, claims: list[str]) -> str:
    spans = sorted({best_span(ev.text, c) for c in claims})
    out, pos = [], 0
    for start, end in spans:
        if start < pos:
            continue
        out += [html.escape(ev.text[pos:start]), "<mark>", html.escape(ev.text[start:end]),
                "</mark>"]
        pos = end
    out.append(html.escape(ev.text[pos:]))
    # An HTML block: markdown syntax in the chunk (a "# heading") is shown as written.
    return '<div style="white-space: pre-wrap">' + "".join(out) + "</div>"


def sentence_line(s: Sentence, markers: dict[str, str]) -> str:
    cites = "".join(f"[{markers[c]}]" for c in s.citations if c in markers)
    v = s.verification
    score = f" {v.score:.2f}" if v.score is not None else ""
    if v.label == "unsupported" and not cites:
        cites = "(no supporting evidence)"
    return f"{s.text} **{cites}** {BADGES.get(v.label, v.label)}{score}"


def show_answer(a: Answer) -> None:
    markers = {e.id: e.marker for e in a.evidence} | {f.id: f.marker for f in a.facts}
    if a.cannot_answer:
        st.warning("The sources do not support an answer.")
    if a.short_answer:
        st.markdown(f"### {a.short_answer}")
    for s in a.sentences or [Sentence(text=a.answer)]:
        st.markdown(sentence_line(s, markers))
    if a.candidates:
        with st.expander(f"SuRe candidates ({len(a.candidates)})"):
            for cand in a.candidates:
                verdict = ":green-badge[valid]" if cand.valid else ":red-badge[rejected]"
                st.markdown(f"**{cand.answer}** {verdict} {cand.wins} pairwise wins  \n"
                            f"{cand.summary}")
    c = st.columns(5)
    c[0].metric("mode", a.mode)
    c[1].metric("LLM calls", a.cost.llm_calls)
    c[2].metric("tokens", a.cost.prompt_tokens + a.cost.completion_tokens)
    c[3].metric("seconds", f"{a.cost.seconds:.1f}")
    c[4].metric("supported", f"{a.support:.0%}")
    if a.rounds:
        st.caption("Verification rounds: " + "; ".join(
            f"{r.index}: {r.diagnosis} -> {r.action}" for r in a.rounds))
    if a.paths:
        st.subheader("Reasoning paths")
        edges = [(t.subject, t.predicate, t.object) for p in a.paths for t in p.triples]
        st.graphviz_chart(dot_graph(edges, highlight={t.name for t in a.topic_entities}))
        for step in a.steps:
            kept = ", ".join(k.name for k in step.kept) or "—"
            st.caption(f"depth {step.depth}: frontier "
                       f"{', '.join(f.name for f in step.frontier)}; kept {kept}; "
                       f"sufficient: {step.sufficient} {step.note}")
    if a.facts:
        st.subheader("Facts")
        for f in a.facts:
            st.markdown(f"**[{f.marker}]** {f.triple.text()} (from `{f.triple.chunk_id}`)")
    if a.evidence:
        st.subheader("Evidence")
        for ev in a.evidence:
            claims = [s.text for s in a.sentences if ev.id in s.citations]
            with st.expander(f"[{ev.marker}] {ev.doc_id} — {ev.source}, score {ev.score:.2f}",
                             expanded=bool(claims)):
                st.markdown(highlighted(ev, claims), unsafe_allow_html=True)
                st.caption(f"chunk `{ev.id}`")


def search(question: str, retriever: str) -> dict[str, Any]:
    from flows.search import search_passages

    return search_passages(question, retriever, 5, components())


def show_search(data: dict[str, Any]) -> None:
    """`kgrag search`'s result: ranked passages, linked entities, seeds, the fallback."""
    st.caption(f"{RETRIEVERS.get(data['retriever'], data['retriever'])}, "
               f"{data['seconds'] * 1000:.0f} ms, no LLM call")
    if data.get("note"):
        st.info(data["note"])
    if data.get("seeds"):
        st.markdown("**Linked entities:** " + ", ".join(
            f"{s['name']} ({s['via']}, {s['passages']} passages)" for s in data["seeds"][:8]))
    if not data["hits"]:
        st.warning("No passages: ingest documents first (Ingest page or `kgrag ingest`).")
    for i, h in enumerate(data["hits"], 1):
        with st.expander(f"{i}. score {h['score']:.4g} — {h['doc_id']}", expanded=i <= 2):
            st.markdown(f'<div style="white-space: pre-wrap">{html.escape(h["text"])}</div>',
                        unsafe_allow_html=True)
            st.caption(f"chunk `{h['chunk_id']}`")


@page
def render() -> None:
    st.title("Ask")
    with st.form("ask"):
        question = st.text_input("Question", placeholder="Who shared the 1903 Nobel Prize in "
                                 "Physics with Marie Curie?")
        mode = st.selectbox("Mode", list(MODES), format_func=MODES.__getitem__)
        retriever = st.selectbox("Passages by (passages-only mode)", list(RETRIEVERS),
                                 format_func=RETRIEVERS.__getitem__)
        submitted = st.form_submit_button("Ask", type="primary")
    if submitted and question.strip():
        if mode == "search":
            st.session_state.pop("answer", None)
            st.session_state["search"] = search(question.strip(), retriever)
        else:
            st.session_state.pop("search", None)
            with st.spinner("Thinking on the graph ..."):
                draft = AnswerDraft(st.empty())
                try:
                    st.session_state["answer"] = ask(question.strip(), mode, draft)
                finally:  # the verified answer (or the error) takes its place
                    draft.clear()
    answer = st.session_state.get("answer")
    if answer is not None:
        show_answer(answer)
    found = st.session_state.get("search")
    if found is not None:
        show_search(found)
