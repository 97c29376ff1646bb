"""``rag:`` section of a scenario YAML: corpus, chunking, embedder, index, search device.

Counts may carry decimal or binary suffixes: ``corpus_tokens: 2M`` (2,000,000),
``params: 110M``, ``n_chunks: 64Ki`` (65,536). Each index kind is one class with a ``cost``
method; ``kind`` selects it (a discriminated union, no dispatch chain).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from hwsim.errors import ProfileError
from hwsim.profiles.loader import format_validation_error
from hwsim.rag.embedding import BERT_BASE_DIM, BERT_BASE_LAYERS, BERT_BASE_PARAMS
from hwsim.rag.search_cost import SearchCost, flat_cost, hnsw_cost, ivf_cost

STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

_COUNT = re.compile(
    r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?\s*"
    r"(tokens?|params?|parameters|chunks?)?\s*$"
)
_FACTORS = {
    None: 1,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
VECTOR_DTYPES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}  # bytes per element


def parse_count(value: Any) -> Any:
    """'2M' -> 2000000, '64Ki' -> 65536, '110M params' -> 110000000; ints pass through."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value  # let the schema reject it with its own message
    if isinstance(value, str):
        match = _COUNT.match(value)
        if not match:
            raise ValueError(
                f"cannot read {value!r} as a count; use an integer with an optional "
                "k/M/G (x1000) or Ki/Mi/Gi (x1024) suffix, e.g. 2M or 64Ki"
            )
        value = float(match[1]) * _FACTORS[match[2]]
    if value != int(value):
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


Count = Annotated[int, BeforeValidator(parse_count), Field(ge=1)]


class Embedding(BaseModel):
    """The query encoder. Defaults: a BERT-base-class embedder (110M params, 768-dim)."""

    model_config = STRICT
    params: Count = BERT_BASE_PARAMS
    dim: int = Field(default=BERT_BASE_DIM, ge=1)
    layers: int = Field(default=BERT_BASE_LAYERS, ge=1)
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    hardware: str | None = None  # None: the search device


class _Index(BaseModel):
    model_config = STRICT
    vector_dtype: Literal["fp32", "fp16", "bf16", "int8"] = "fp32"

    @property
    def bytes_per_element(self) -> float:
        return VECTOR_DTYPES[self.vector_dtype]


class FlatIndex(_Index):
    """Exhaustive (exact) search over every vector."""

    kind: Literal["flat"] = "flat"

    def cost(self, n_chunks, dim: int, top_k: int = 1) -> SearchCost:
        return flat_cost(n_chunks, dim, self.bytes_per_element)


class IvfIndex(_Index):
    """Inverted file (IVF-Flat, or IVF-PQ with ``pq_m``): ``nprobe`` of ``nlist`` k-means
    lists are scanned. Defaults are cuVS's (RAPIDS ``cuvs.neighbors.ivf_flat``:
    ``IndexParams(n_lists=1024)``, ``SearchParams(n_probes=20)``); FAISS's ``IndexIVF`` has
    ``nprobe = 1`` and no default nlist (its guideline: 4 sqrt(D) to 16 sqrt(D) lists).
    ``pq_m`` sub-quantisers of ``pq_nbits`` bits (FAISS ``IndexIVFPQ`` default nbits = 8,
    cuVS ``pq_bits = 8``) store each vector as pq_m x pq_nbits / 8 bytes."""

    kind: Literal["ivf"]
    nlist: int = Field(default=1024, ge=1)
    nprobe: int = Field(default=20, ge=1)
    pq_m: int | None = Field(default=None, ge=1)
    pq_nbits: int = Field(default=8, ge=1, le=16)

    @model_validator(mode="after")
    def _probe_within_lists(self) -> IvfIndex:
        if self.nprobe > self.nlist:
            raise ValueError(f"nprobe ({self.nprobe}) must be <= nlist ({self.nlist})")
        return self

    def cost(self, n_chunks, dim: int, top_k: int = 1) -> SearchCost:
        return ivf_cost(
            n_chunks,
            dim,
            self.bytes_per_element,
            self.nlist,
            self.nprobe,
            pq_m=self.pq_m,
            pq_nbits=self.pq_nbits,
        )


class HnswIndex(_Index):
    """Graph index. Defaults are FAISS's: ``IndexHNSWFlat(d, M = 32)`` and ``efSearch = 16``
    (faiss/impl/HNSW.h); FAISS searches with ef = max(efSearch, k), and so does the cost
    here. hnswlib's defaults are M = 16 and ef = 10."""

    kind: Literal["hnsw"]
    m: int = Field(default=32, ge=2)
    ef_search: int = Field(default=16, ge=1)

    def cost(self, n_chunks, dim: int, top_k: int = 1) -> SearchCost:
        ef = max(self.ef_search, int(top_k))
        return hnsw_cost(n_chunks, dim, self.bytes_per_element, self.m, ef)


Index = Annotated[Union[FlatIndex, IvfIndex, HnswIndex], Field(discriminator="kind")]  # noqa: UP007


class Rerank(BaseModel):
    """Cross-encoder re-ranking of the top ``top`` candidates down to ``top_k``.

    ``model``: any model hwsim can price (an encoder such as ``longformer-large``, a YAML or a
    config.json; or a decoder used as a scorer); each candidate is one prefill of question +
    chunk tokens (gen_len 0), ``batch`` candidates per forward pass. ``top`` default 32 is
    assumed (RAG frameworks rerank a few dozen candidates); ``batch`` default 32 is
    sentence-transformers' ``CrossEncoder.predict(batch_size=32)``. ``hardware``: where it
    runs; default the LLM's hardware.
    """

    model_config = STRICT
    model: str
    top: Count = 32
    batch: Count = 32
    hardware: str | None = None


class WorkingMemory(BaseModel):
    """Working plus long-term memory: the most recent ``recent_tokens`` of the corpus stay in
    the prompt (working memory) and only the older part is chunked, indexed and retrieved
    from (long-term memory), as in the essay's closing designs (a recent window under full
    attention, older context stored outside and queried; cf. Memorizing Transformers, Wu et
    al. 2022, arXiv 2203.08913, and MemGPT, Packer et al. 2023, arXiv 2310.08560).
    ``window``: serve the model with a sliding window of that many keys on every layer (its
    cache then holds at most ``window`` tokens); unset: the model as it is."""

    model_config = STRICT
    recent_tokens: Count = 8192
    window: Count | None = None


class RagSpec(BaseModel):
    """Retrieval pipeline. Give the corpus as ``corpus_tokens`` or ``n_chunks`` (not both).

    Defaults (assumed, typical of RAG tutorials and frameworks): 512-token chunks, top 8,
    64-token questions, exact flat search on the ``cpu`` profile, no re-ranking, one round.

    ``rounds`` > 1 is iterative (multi-hop) retrieval: every round after the first has the
    LLM generate a follow-up query of ``followup_tokens`` tokens (priced at the RAG prompt's
    decode step; 0: the follow-up is not generated by the LLM), then embeds it (priced as a
    ``question_tokens`` query), searches and re-ranks again.

    ``working_memory`` adds a third approach: recent context in the prompt plus retrieval from
    the older part (:class:`WorkingMemory`).
    """

    model_config = STRICT
    corpus_tokens: Count | None = None
    n_chunks: Count | None = None
    chunk_tokens: Count = 512
    top_k: Count = 8
    question_tokens: Count = 64
    embedding: Embedding = Embedding()
    index: Index = FlatIndex()
    search_hardware: str = "cpu"
    search_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    rerank: Rerank | None = None
    rounds: Count = 1
    followup_tokens: int = Field(default=32, ge=0)
    working_memory: WorkingMemory | None = None

    @model_validator(mode="after")
    def _one_corpus_size(self) -> RagSpec:
        if (self.corpus_tokens is None) == (self.n_chunks is None):
            raise ValueError("give exactly one of corpus_tokens or n_chunks")
        return self

    @model_validator(mode="after")
    def _consistent_retrieval(self) -> RagSpec:
        if self.rerank is not None and self.rerank.top < self.top_k:
            raise ValueError(
                f"rerank.top ({self.rerank.top}) must be >= top_k ({self.top_k}): the "
                "reranker keeps top_k of the candidates it scores"
            )
        pq_m = getattr(self.index, "pq_m", None)
        if pq_m is not None and self.embedding.dim % pq_m:
            raise ValueError(
                f"index.pq_m ({pq_m}) must divide the embedding dim ({self.embedding.dim})"
            )
        return self

    @property
    def candidates(self) -> int:
        """Vectors each search returns: the reranker's candidates, else top_k."""
        return self.rerank.top if self.rerank is not None else self.top_k

    @property
    def total_corpus_tokens(self) -> int:
        if self.corpus_tokens is not None:
            return self.corpus_tokens
        return self.n_chunks * self.chunk_tokens  # type: ignore[operator]

    @property
    def embedding_hardware(self) -> str:
        return self.embedding.hardware or self.search_hardware

    def chunks_for(self, corpus_tokens):
        """Chunks a corpus of ``corpus_tokens`` splits into (the last one may be partial)."""
        return np.ceil(np.asarray(corpus_tokens, dtype=float) / self.chunk_tokens)


class _Section(BaseModel):
    model_config = STRICT
    rag: RagSpec


def parse_rag_section(data: Any, file: str) -> RagSpec:
    """Validate a scenario's ``rag:`` mapping; errors name ``file`` and ``rag.<field>``."""
    if data is None:
        raise ProfileError("no 'rag:' section (see examples/rag-vs-long-context.yaml)", file=file)
    try:
        return _Section.model_validate({"rag": data}).rag
    except ValidationError as exc:
        raise ProfileError(format_validation_error(exc), file=file) from None
