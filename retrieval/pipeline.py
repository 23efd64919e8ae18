"""Question answering end to end:

    Personalized PageRank of the question (no LLM call; its seeds are the topic entities)
    -> route (direct | chunk RAG | Think-on-Graph) -> retrieve
    -> answer with sentence citations -> verify each sentence -> diagnose (KALMV)
    -> at most N rectify rounds (re-retrieve wider, or regenerate) -> `Answer`

With a `stream` (a `TextSink`), `ask` writes each round's answer text to it while the
model generates it, before verification; each later round restarts it. What the caller
shows from it is a draft: the `Answer` returned is the verified result.

The stages are constructor arguments (protocol-typed), so each can be tested and swapped
alone; `QuestionAnsweringPipeline.from_parts` wires the defaults the settings describe.

    >>> qa = QuestionAnsweringPipeline.from_parts(settings, graph, embedder, llm,
    ...                                           chunk_index, entity_index)  # doctest: +SKIP
    >>> qa.ask("Who did Marie Curie marry?").answer                          # doctest: +SKIP
    'Marie Curie married Pierre Curie.'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from core import timing
from core.answer import (
    Answer,
    CandidateRecord,
    Cost,
    LinkedEntityRecord,
    Mode,
    ReasoningPath,
    Round,
    SearchStep,
    Sentence,
    Triple,
)
from core.errors import KgragError, LLMOutputError
from core.llm.base import ChatModel, TextBuffer, TextSink, Usage
from core.models import Entity
from core.protocols import Embedder, GraphStore, VectorIndex
from core.settings import Settings
from retrieval.checker import make_checker
from retrieval.chunk_rag import ChunkRetriever, ScoredChunk
from retrieval.generate import AnswerGenerator, Generated, Sources
from retrieval.linking import EntityLinker, LinkedEntity
from retrieval.passages import PassageRetriever
from retrieval.ppr import PageRank, PageRankRetriever
from retrieval.pruning import make_scorer
from retrieval.router import HeuristicRouter, LLMRouter, QueryRouter, Route
from retrieval.sure import SuReGenerator
from retrieval.tog import (
    HeuristicSufficiency,
    LLMSufficiency,
    SufficiencyCheck,
    ThinkOnGraphReasoner,
    is_passage_hop,
    unique_triples,
)
from retrieval.verify import Diagnoser, Diagnosis, GroundingVerifier

log = logging.getLogger(__name__)

AskMode = Literal["auto", "rag", "tog", "direct"]
MAX_FACTS = 15


@dataclass
class Retrieved:
    """The evidence of one retrieval: chunks, graph paths, the search trace."""

    chunks: list[ScoredChunk] = field(default_factory=list)
    paths: list[ReasoningPath] = field(default_factory=list)
    steps: list[SearchStep] = field(default_factory=list)
    note: str = ""

    def facts(self) -> list[Triple]:
        """The extracted facts on the paths (passage hops are not facts)."""
        return [t for t in unique_triples(self.paths) if not is_passage_hop(t)]


@dataclass
class Attempt:
    """One generate-and-verify round, kept whole so the best one can be returned."""

    retrieved: Retrieved
    sources: Sources
    generated: Generated
    sentences: list[Sentence]
    diagnosis: Diagnosis

    def quality(self) -> tuple[bool, float, float]:
        return (not self.generated.cannot_answer, self.diagnosis.support,
                self.diagnosis.relevance)


class QuestionAnsweringPipeline:
    """Answers questions over the graph and the chunk index; see the module docstring."""

    def __init__(
        self,
        *,
        linker: EntityLinker,
        router: QueryRouter,
        chunk_retriever: ChunkRetriever,
        reasoner: ThinkOnGraphReasoner,
        generator: AnswerGenerator,
        verifier: GroundingVerifier | None,
        diagnoser: Diagnoser,
        usage_sources: Sequence[ChatModel] = (),
        pagerank: PageRankRetriever | None = None,
        rag_top_k: int = 5,
        tog_chunks: int = 4,
        max_rounds: int = 1,
        default_mode: AskMode = "auto",
    ) -> None:
        self.linker = linker
        self.router = router
        self.chunk_retriever = chunk_retriever
        self.reasoner = reasoner
        self.generator = generator
        self.verifier = verifier
        self.diagnoser = diagnoser
        self.usage_sources = list(dict.fromkeys(usage_sources))
        self.pagerank = pagerank
        self.rag_top_k = rag_top_k
        self.tog_chunks = tog_chunks
        self.max_rounds = max_rounds
        self.default_mode = default_mode

    @classmethod
    def from_parts(
        cls,
        settings: Settings,
        graph: GraphStore,
        embedder: Embedder,
        llm: ChatModel,
        chunk_index: VectorIndex,
        entity_index: VectorIndex | None = None,
        checker_llm: ChatModel | None = None,
        retriever: PassageRetriever | None = None,
        pagerank: PageRankRetriever | None = None,
    ) -> QuestionAnsweringPipeline:
        """The pipeline the settings describe, on the given stores and models.

        `checker_llm` is a dedicated grounding checker (MiniCheck on vLLM); default `llm`.
        `retriever` ranks chunk RAG's passages (default dense); `pagerank` links the topic
        entities and ranks what Think-on-Graph explores (default: name/vector linking and
        no PageRank).
        """
        s = settings
        scorer = make_scorer(s.tog_pruning, embedder, llm)
        sufficiency: SufficiencyCheck = (LLMSufficiency(llm) if s.tog_sufficiency == "llm"
                                         else HeuristicSufficiency())
        checker = make_checker(s, embedder, checker_llm or llm)
        return cls(
            linker=EntityLinker(graph, entity_index, embedder, threshold=s.link_threshold,
                                max_entities=s.link_max_entities),
            router=LLMRouter(llm) if s.qa_router == "llm" else HeuristicRouter(),
            chunk_retriever=ChunkRetriever(graph, chunk_index, embedder, s.rag_top_k,
                                           retriever),
            pagerank=pagerank,
            reasoner=ThinkOnGraphReasoner(
                graph, scorer, sufficiency=sufficiency, width=s.tog_width, depth=s.tog_depth,
                entities_per_relation=s.tog_entities_per_relation, chunks=s.tog_chunks),
            generator=(SuReGenerator(llm, candidates=s.sure_candidates)
                       if s.answer_method == "sure"
                       else AnswerGenerator(llm, max_tokens=s.answer_max_tokens,
                                            output=s.answer_format)),
            verifier=GroundingVerifier(checker, s.grounding_threshold) if checker else None,
            diagnoser=Diagnoser(embedder, s.relevance_threshold),
            usage_sources=[llm, *([checker_llm] if checker_llm else [])],
            rag_top_k=s.rag_top_k,
            tog_chunks=s.tog_chunks,
            max_rounds=s.verify_max_rounds,
            default_mode=s.qa_mode,
        )

    # ------------------------------------------------------------------ the loop

    def ask(self, question: str, mode: AskMode | None = None,
            stream: TextSink | None = None) -> Answer:
        """Answer `question`; `mode` overrides the router (`auto`: route per question).
        `stream` gets the answer text as it is generated (see the module docstring)."""
        question = " ".join(question.split())
        if not question:
            raise KgragError("the question is empty", hint='ask something: kgrag ask "..."')
        with timing.timings(reuse=True) as stages:
            started, usage_before = time.perf_counter(), self.usage()
            answer = self._ask(question, mode, stream)
            answer.cost = self.cost(usage_before, time.perf_counter() - started)
        answer.cost.timings = {k: round(v, 4) for k, v in stages.items()}
        return answer

    def _ask(self, question: str, mode: AskMode | None, stream: TextSink | None) -> Answer:
        with timing.stage("plan"):  # entity linking, the question's PageRank, the router
            linked, route, rank = self.plan(question, mode)
        answer = Answer(question=question, mode=route.mode, route=route.reason,
                        topic_entities=[LinkedEntityRecord(span=e.span, id=e.entity.id,
                                                           name=e.entity.name,
                                                           score=e.score, via=e.via)
                                        for e in linked])
        if route.mode == "direct":
            try:
                with timing.stage("generate"):
                    generated = self.generator.direct(question)
            except LLMOutputError as exc:
                log.warning("direct answer returned unusable output: %s", exc)
                generated = Generated([Sentence(text="The model returned no usable answer.")])
            if stream is not None:  # a JSON call: its answer is written whole
                stream.write(generated.text)
            answer.sentences = generated.sentences
            answer.answer = generated.text
        else:
            self.answer_from_evidence(answer, question, route.mode, linked, rank, stream)
        return answer

    def plan(self, question: str, mode: AskMode | None = None
             ) -> tuple[list[LinkedEntity], Route, PageRank | None]:
        """The topic entities, the route (the caller's mode, or the router's choice) and,
        with a PageRank retriever, the question's PageRank, whose seeds are the topic
        entities (the name/vector linker when it links none)."""
        requested = mode or self.default_mode
        rank = None
        if self.pagerank is not None and requested in ("auto", "tog", "rag"):
            rank = self.pagerank.rank(question, self.rag_top_k * (2 + self.max_rounds))
        linked: list[LinkedEntity] = []
        if requested in ("auto", "tog"):
            linked = self.seed_topics(rank) or self.linker.link(question)
        if requested == "auto":
            return linked, self.router.route(question, linked), rank
        return linked, Route(cast(Mode, requested), "chosen by the caller"), rank

    def seed_topics(self, rank: PageRank | None) -> list[LinkedEntity]:
        """PageRank's linked seeds as topic entities, the most specific first."""
        if rank is None:
            return []
        seeds = [s for s in rank.search.seeds if s.via != "fact"]
        return [LinkedEntity(Entity(id=s.id, name=s.name), s.span, round(s.similarity, 4),
                             s.via) for s in seeds[: self.linker.max_entities]]

    def evidence(self, question: str, mode: AskMode | None = None) -> Retrieved:
        """Retrieval only, no generation (for other frameworks' retrievers)."""
        linked, route, rank = self.plan(" ".join(question.split()), mode)
        if route.mode == "direct":
            return Retrieved(note=f"no retrieval: {route.reason}")
        return self.retrieve(question, route.mode, linked, rank=rank)

    def answer_from_evidence(self, answer: Answer, question: str, mode: Mode,
                             linked: Sequence[LinkedEntity], rank: PageRank | None = None,
                             stream: TextSink | None = None) -> None:
        level = 0
        attempt = self.attempt(question, self.retrieve(question, mode, linked, level, rank),
                               stream=stream)
        answer.rounds.append(self.round(0, "answer", attempt))
        best = attempt
        for i in range(1, self.max_rounds + 1):
            label = attempt.diagnosis.label
            if label == "ok":
                break
            regenerated = answer.rounds[-1].action == "regenerate"
            if stream is not None:
                stream.restart()  # the draft shown so far was not good enough
            if label == "retrieval_error" or regenerated:  # a second rewrite rarely helps
                level += 1
                attempt = self.attempt(question,
                                       self.retrieve(question, mode, linked, level, rank),
                                       stream=stream)
                answer.rounds.append(self.round(i, "re-retrieve", attempt))
            else:
                attempt = self.attempt(question, attempt.retrieved, strict=True,
                                       stream=stream)
                answer.rounds.append(self.round(i, "regenerate", attempt))
            # A rewrite that verifies no better does not replace the answer before it:
            # on HaluEval (bench/README.md, qa_latency seed 11) the strict rewrite of an
            # unsupported short answer was twice a sentence where the first was the span.
            if attempt.quality() > best.quality():
                best = attempt
        answer.sentences = best.sentences
        answer.answer = best.generated.text
        answer.short_answer = best.generated.short_answer
        answer.candidates = [CandidateRecord(**c) for c in best.generated.rationale]
        answer.cannot_answer = best.generated.cannot_answer
        answer.evidence = best.sources.evidence
        answer.facts = best.sources.facts
        answer.paths = used_paths(best.retrieved.paths, best.sentences)
        answer.steps = best.retrieved.steps
        answer.diagnosis = best.diagnosis.label

    def attempt(self, question: str, retrieved: Retrieved, *, strict: bool = False,
                stream: TextSink | None = None) -> Attempt:
        """Generate from `retrieved` (written to `stream` as it comes), then verify."""
        sources = Sources.number(retrieved.chunks, retrieved.facts()[:MAX_FACTS])
        draft = TextBuffer(stream) if stream is not None else None
        try:
            with timing.stage("generate"):
                generated = self.generator.generate(question, sources, strict=strict,
                                                    stream=draft)
        except LLMOutputError as exc:
            log.warning("answer generation returned unusable output: %s", exc)
            generated = Generated([Sentence(text="The model returned no usable answer.")],
                                  cannot_answer=True)
        if draft is not None and not draft.pieces:  # a generator that does not stream
            draft.write(generated.text)
        sentences = generated.sentences
        with timing.stage("verify"):
            if self.verifier is not None:
                sentences = self.verifier.verify(sentences, sources,
                                                 cannot_answer=generated.cannot_answer,
                                                 question=question)
            diagnosis = self.diagnoser.diagnose(question, sources, sentences,
                                                generated.cannot_answer)
        return Attempt(retrieved, sources, generated, sentences, diagnosis)

    @staticmethod
    def round(index: int, action: Literal["answer", "re-retrieve", "regenerate"],
              attempt: Attempt) -> Round:
        d = attempt.diagnosis
        note = "; ".join(x for x in (attempt.retrieved.note, d.note) if x)
        return Round(index=index, action=action, diagnosis=d.label,
                     relevance=round(d.relevance, 4), support=round(d.support, 4), note=note,
                     short_answer=attempt.generated.short_answer)

    # ------------------------------------------------------------------ retrieval

    def retrieve(self, question: str, mode: Mode, linked: Sequence[LinkedEntity],
                 level: int = 0, rank: PageRank | None = None) -> Retrieved:
        """Evidence for `mode`; each `level` above 0 searches wider and deeper (KALMV
        re-retrieval after a retrieval error). `rank`: the question's PageRank."""
        with timing.stage("retrieve"):
            return self._retrieve(question, mode, linked, level, rank)

    def _retrieve(self, question: str, mode: Mode, linked: Sequence[LinkedEntity],
                  level: int, rank: PageRank | None) -> Retrieved:
        k = self.rag_top_k * (1 + level)
        if mode == "rag":
            return Retrieved(self.top_chunks(question, k, rank), note=f"chunk retrieval, top {k}")
        if not linked:
            return Retrieved(self.top_chunks(question, k, rank),
                             note="no topic entity linked: fell back to chunk retrieval")
        search = self.reasoner.search(question, linked,
                                      width=self.reasoner.width + level,
                                      depth=self.reasoner.depth + level, rank=rank)
        note = f"think-on-graph: {search.stop_reason}; " + (
            "with chunk retrieval" if search.paths
            else "no path found: fell back to chunk retrieval")
        limit = max(self.tog_chunks, self.rag_top_k) * (1 + level)
        if rank is None:
            # Hybrid context (ToG-2 / KAG): the chunks the graph reached, plus the
            # question's nearest chunks, which cover what extraction missed.
            chunks = [*search.chunks, *self.chunk_retriever.retrieve(question, k)]
            return Retrieved(self.rank(question, chunks, limit), search.paths, search.steps,
                             note)
        # With PageRank: its top passages are the backbone (they already weigh the graph);
        # the passages the kept paths came from join them, up to half the context.
        top = self.top_chunks(question, limit, rank)
        have = {c.chunk.id for c in top}
        own = [c for c in search.chunks if c.source == "graph-path" and c.chunk.id not in have]
        own = own[: max(1, limit // 2)]
        return Retrieved([*top[: limit - len(own)], *own], search.paths, search.steps, note)

    def top_chunks(self, question: str, k: int, rank: PageRank | None) -> list[ScoredChunk]:
        """Chunk retrieval's top k, taken from the question's PageRank when the chunk
        retriever is the PageRank one (computed once per question)."""
        if rank is not None and self.chunk_retriever.retriever is self.pagerank and \
                len(rank.search.hits) >= k:
            return self.chunk_retriever.chunks(rank.search.hits[:k])
        return self.chunk_retriever.retrieve(question, k)

    def rank(self, question: str, chunks: Sequence[ScoredChunk], limit: int
             ) -> list[ScoredChunk]:
        """Unique chunks by similarity to the question; chunks a kept path came from get a
        small bonus (they hold the facts the paths cite)."""
        unique: dict[str, ScoredChunk] = {}
        for c in chunks:
            unique.setdefault(c.chunk.id, c)
        items = list(unique.values())
        sims = self.chunk_retriever.similarity(question, [c.chunk.text for c in items])
        scored = [ScoredChunk(c.chunk, s + (0.1 if c.source == "graph-path" else 0.0),
                              c.source) for c, s in zip(items, sims, strict=True)]
        return sorted(scored, key=lambda c: -c.score)[: max(1, limit)]

    # ------------------------------------------------------------------ cost

    def usage(self) -> Usage:
        total = Usage()
        for model in self.usage_sources:
            u = getattr(model, "usage", None)
            if isinstance(u, Usage):
                total = Usage(calls=total.calls + u.calls,
                              cached_calls=total.cached_calls + u.cached_calls,
                              failed_calls=total.failed_calls + u.failed_calls,
                              prompt_tokens=total.prompt_tokens + u.prompt_tokens,
                              completion_tokens=total.completion_tokens + u.completion_tokens,
                              seconds=total.seconds + u.seconds)
        return total

    def cost(self, before: Usage, seconds: float) -> Cost:
        spent = self.usage() - before
        return Cost(llm_calls=spent.calls, cached_calls=spent.cached_calls,
                    prompt_tokens=spent.prompt_tokens,
                    completion_tokens=spent.completion_tokens,
                    llm_seconds=round(spent.seconds, 3), seconds=round(seconds, 3))


def used_paths(paths: Sequence[ReasoningPath], sentences: Sequence[Sentence]
               ) -> list[ReasoningPath]:
    """The reasoning paths the answer rests on: those with a fact, or the passage of a
    step, that an answer sentence cites."""
    cited = {c for s in sentences for c in s.citations}
    return [p for p in paths
            if any((not is_passage_hop(t) and t.id in cited) or t.chunk_id in cited
                   for t in p.triples)]
