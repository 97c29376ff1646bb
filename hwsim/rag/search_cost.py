"""Vector search cost models: distance FLOPs, bytes scanned and index memory for one query.

A corpus of D chunks is indexed as D embedding vectors of dimension e, each element
``b`` bytes. Every function is pure and broadcasts over ``n_chunks`` (floats or numpy arrays).

Conventions (FAISS's layouts, Johnson, Douze & Jegou 2019, arXiv 1702.08734):

- A distance costs 2 FLOPs per dimension (one multiply-accumulate): inner product, or L2 via
  ||x||^2 - 2 x.y + ||y||^2 with the vector norms precomputed.
- "bytes scanned" counts vector codes and graph links read; the top-k heap (D log k
  comparisons, no FLOPs) and reading the k result ids are left out as negligible.
- Ids are 8 bytes (FAISS ``idx_t`` is int64) where an index stores them: a flat index stores
  none (a vector's id is its position); IVF stores one per vector in its inverted lists.
- IVF centroids are fp32 whatever the vectors' dtype (FAISS's coarse quantiser is a flat
  float index); HNSW links are 4-byte node ids (FAISS ``storage_idx_t`` is int32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.model.ops import Op
from hwsim.perf.roofline import BOUNDS, time_op
from hwsim.profiles.hardware import HardwareProfile

FLOPS_PER_DIM = 2.0  # one multiply-accumulate per dimension and candidate
ID_BYTES = 8.0  # FAISS idx_t (int64)
CENTROID_BYTES_PER_ELEMENT = 4.0  # fp32 coarse centroids
LINK_BYTES = 4.0  # int32 neighbour ids in an HNSW adjacency list
# HNSW upper levels: greedy search with ef = 1 (Malkov & Yashunin 2018, arXiv 1603.09320,
# Algorithm 5). The paper shows the expected number of hops per level is bounded by a
# constant (section 4.2); one hop per level, each evaluating the node's M neighbours, is the
# assumption taken here (upper levels are a small share of the work for ef_search >> 1).
HNSW_HOPS_PER_UPPER_LEVEL = 1.0


@dataclass(frozen=True)
class SearchCost:
    """One query against an index of ``n_chunks`` vectors (fields broadcast over n_chunks)."""

    index: str
    distance_evaluations: np.ndarray | float
    flops: np.ndarray | float
    bytes_scanned: np.ndarray | float
    index_bytes: np.ndarray | float  # resident: vectors + centroids / links + ids

    def op(self) -> Op:
        """The query as an op descriptor for :func:`hwsim.perf.roofline.time_op`.

        Distances run on the vector units (fp32 accumulate); a single query is a GEMV-like
        scan, so the elementwise (streaming) efficiency curve applies.
        """
        return Op(
            name=f"vector_search.{self.index}",
            op_class="elementwise",
            flops=self.flops,
            act_read_bytes=self.bytes_scanned,
            on_vector_units=True,
        )


@dataclass(frozen=True)
class SearchTime:
    time_s: np.ndarray
    bound: np.ndarray  # 'compute' or 'memory'


def time_search(hw: HardwareProfile, cost: SearchCost) -> SearchTime:
    """Roofline time of one query on ``hw`` (vector peak, memory bandwidth, efficiency curve).

    HNSW's accesses are dependent and random; pricing them as streamed bytes is optimistic on
    devices whose memory latency, not bandwidth, limits pointer chasing.
    """
    t = time_op(hw, cost.op())
    return SearchTime(np.asarray(t.total_s, dtype=float), np.asarray(BOUNDS)[t.bound])


def flat_cost(n_chunks, dim: int, bytes_per_element: float) -> SearchCost:
    """Exhaustive search: every vector is compared.

    distance evaluations = D; FLOPs = 2 D e; bytes scanned = D e b; index = D e b.
    """
    d = np.asarray(n_chunks, dtype=float)
    vector_bytes = d * dim * bytes_per_element
    return SearchCost(
        index="flat",
        distance_evaluations=d,
        flops=FLOPS_PER_DIM * d * dim,
        bytes_scanned=vector_bytes,
        index_bytes=vector_bytes,
    )


def ivf_cost(n_chunks, dim: int, bytes_per_element: float, nlist: int, nprobe: int) -> SearchCost:
    """Inverted file (IVF-Flat): a coarse quantiser picks ``nprobe`` of ``nlist`` lists, whose
    vectors are then scanned exhaustively (lists assumed balanced: D / nlist vectors each).

    distance evaluations = nlist + nprobe D / nlist; FLOPs = 2 e x that;
    bytes scanned = nlist e 4 (centroids) + nprobe (D / nlist) e b;
    index = D e b + nlist e 4 + D x 8 (ids).
    """
    d = np.asarray(n_chunks, dtype=float)
    scanned_vectors = nprobe * d / nlist
    centroid_bytes = nlist * dim * CENTROID_BYTES_PER_ELEMENT
    return SearchCost(
        index="ivf",
        distance_evaluations=nlist + scanned_vectors,
        flops=FLOPS_PER_DIM * dim * (nlist + scanned_vectors),
        bytes_scanned=centroid_bytes + scanned_vectors * dim * bytes_per_element,
        index_bytes=d * dim * bytes_per_element + centroid_bytes + d * ID_BYTES,
    )


def hnsw_levels(n_chunks, m: int) -> np.ndarray:
    """Expected number of levels above the base layer: ln(D) / ln(M) (level multiplier
    mL = 1 / ln(M), Malkov & Yashunin 2018 section 4.1)."""
    d = np.maximum(np.asarray(n_chunks, dtype=float), 1.0)
    return np.log(d) / np.log(m)


def hnsw_cost(n_chunks, dim: int, bytes_per_element: float, m: int, ef_search: int) -> SearchCost:
    """Hierarchical navigable small-world graph (Malkov & Yashunin 2018, arXiv 1603.09320).

    Approximation of one query (Algorithm 5): greedy descent (ef = 1) through the
    ln(D)/ln(M) upper levels, one hop per level evaluating M neighbours, then a beam search
    on the base layer that expands ``ef_search`` nodes, each evaluating its Mmax0 = 2M
    neighbours (the paper's recommended base-layer degree):

        distance evaluations ~ 2 M ef_search + M ln(D) / ln(M)

    (capped at D). The 2 M ef_search term is an upper bound: the visited set skips
    neighbours already seen, so measured counts are lower. With ef_search fixed, cost grows
    with D only through the level count; the paper's O(log D) at fixed recall comes from
    raising ef_search with D (a parameter here). Bytes scanned = one vector per evaluation
    plus the adjacency list of every expanded node (2 M links on the base layer, M above).

    Index memory = D (e b + 2 M x 4): vectors plus base-layer links. Upper levels add about
    D / M nodes x M links x 4 B = 4 D bytes more, left out.
    """
    d = np.asarray(n_chunks, dtype=float)
    upper_hops = HNSW_HOPS_PER_UPPER_LEVEL * hnsw_levels(d, m)
    evaluations = np.minimum(2.0 * m * ef_search + m * upper_hops, d)
    links_read = (ef_search * 2.0 * m + upper_hops * m) * LINK_BYTES
    return SearchCost(
        index="hnsw",
        distance_evaluations=evaluations,
        flops=FLOPS_PER_DIM * dim * evaluations,
        bytes_scanned=evaluations * dim * bytes_per_element + links_read,
        index_bytes=d * (dim * bytes_per_element + 2.0 * m * LINK_BYTES),
    )
