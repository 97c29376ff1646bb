"""Vector search cost models: the work of one query (FLOPs, bytes, accesses) and its latency.

A corpus of D chunks is indexed as D embedding vectors of dimension e, each element
``b`` bytes. Every function is pure and broadcasts over ``n_chunks`` (floats or numpy arrays).

Two halves:

- **work** (``flat_cost``, ``ivf_cost``, ``hnsw_cost``): distance evaluations, FLOPs, bytes
  read, index memory, and the structure the latency needs (stages streamed, lists started,
  graph nodes expanded);
- **latency** (one registered function per index kind, :data:`LATENCY_MODELS`, selected by
  :func:`search_latency`): how the device turns that work into time for one query, and the
  throughput of many queries batched.

Conventions (FAISS's layouts, Johnson, Douze & Jegou 2019, arXiv 1702.08734):

- A distance costs 2 FLOPs per dimension (one multiply-accumulate): inner product, or L2 via
  ||x||^2 - 2 x.y + ||y||^2 with the vector norms precomputed.
- "bytes scanned" counts vector codes and graph links read; the top-k selection is counted as
  one compare per candidate (``selection_compares``, priced as vector ops; FAISS keeps a k-heap
  per query) and reading the k result ids is left out as negligible.
- Ids are 8 bytes (FAISS ``idx_t`` is int64) where an index stores them: a flat index stores
  none (a vector's id is its position); IVF stores one per vector in its inverted lists.
- IVF centroids are fp32 whatever the vectors' dtype (FAISS's coarse quantiser is a flat
  float index); HNSW links are 4-byte node ids (FAISS ``storage_idx_t`` is int32).

Random access (graph search, the start of each inverted list) is priced with the device's
``memory.random_access_latency_s`` where its profile gives one, else with a documented default
per device kind (:data:`DEFAULT_RANDOM_ACCESS_LATENCY`); :class:`RandomAccess` records which.
On a CPU one query runs on one core (one thread in hnswlib / FAISS), so it streams at the
device's bandwidth (and vector peak) x the elementwise efficiency / cores; on a GPU a single
query is spread over many thread blocks (CAGRA's multi-CTA mode for small batches, Ootomo et
al. 2024, arXiv 2308.15136, section 4.3), so it streams at the whole device's rate and only
the chain of dependent accesses stays serial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hwsim.model.ops import Op
from hwsim.perf.roofline import BOUNDS, OpTime, time_op
from hwsim.profiles.hardware import HardwareProfile

FLOPS_PER_DIM = 2.0  # one multiply-accumulate per dimension and candidate
ID_BYTES = 8.0  # FAISS idx_t (int64)
CENTROID_BYTES_PER_ELEMENT = 4.0  # fp32 coarse centroids
LINK_BYTES = 4.0  # int32 neighbour ids in an HNSW adjacency list
PQ_CODEBOOK_BYTES_PER_ELEMENT = 4.0  # fp32 PQ centroids
# HNSW upper levels: greedy search with ef = 1 (Malkov & Yashunin 2018, arXiv 1603.09320,
# Algorithm 5). The paper shows the expected number of hops per level is bounded by a
# constant (section 4.2); one hop per level, each evaluating the node's M neighbours, is the
# assumption taken here (upper levels are a small share of the work for ef_search >> 1).
HNSW_HOPS_PER_UPPER_LEVEL = 1.0

# Fallback random-access latency per device kind when a profile has none (value, source).
DEFAULT_RANDOM_ACCESS_LATENCY: dict[str, tuple[float, str]] = {
    "cpu": (
        100e-9,
        "default for a CPU: ~100 ns DRAM load-to-use latency (Intel Core i7 / Xeon 5500 "
        "Performance Analysis Guide: ~60 ns local, ~100 ns remote DRAM; current server parts "
        "measure ~80-120 ns in pointer chases)",
    ),
    "gpu": (
        500e-9,
        "default for a GPU: ~500 ns HBM/GDDR load latency, mid-range of the ~400-600 ns GPU "
        "pointer-chase microbenchmarks report (Jia et al. 2018, arXiv 1804.06826; Luo et al. "
        "2024, arXiv 2402.13499)",
    ),
    "tpu": (
        500e-9,
        "default for a TPU: the GPU's HBM figure (~500 ns), no TPU pointer-chase measurement "
        "found; graph search is not a TPU workload",
    ),
}


Amount = np.ndarray | float


@dataclass(frozen=True)
class SearchCost:
    """One query against an index of ``n_chunks`` vectors (fields broadcast over n_chunks)."""

    index: str
    distance_evaluations: np.ndarray | float
    flops: np.ndarray | float
    bytes_scanned: np.ndarray | float
    index_bytes: np.ndarray | float  # resident: vectors + centroids / links + ids
    # -- structure for the latency models --------------------------------------------------
    # streamed stages run one after another: (name, FLOPs, bytes, selection compares)
    stages: tuple[tuple[str, Amount, Amount, Amount], ...] = ()
    selection_compares: np.ndarray | float = 0.0  # top-k (or top-nprobe) candidates compared
    list_starts: float = 0.0  # IVF: inverted lists opened (one random access each)
    expansions: np.ndarray | float = 0.0  # HNSW: nodes whose neighbour list is read
    vector_bytes: float = 0.0  # bytes of one stored vector (HNSW visits)
    link_bytes: np.ndarray | float = 0.0  # HNSW: adjacency bytes read in all
    searched_fraction: np.ndarray | float = 1.0  # vectors whose distance is computed / D

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
class RandomAccess:
    """What one query sees of the device's memory: latency of a dependent random access and
    the streaming rates of the one core it runs on."""

    latency_s: float
    source: str
    from_profile: bool
    per_query_bytes_per_s: float  # bandwidth x elementwise memory fraction (/ cores: CPU)
    per_query_flops_per_s: float  # vector peak x elementwise compute fraction (/ cores: CPU)
    parallel_fetch: bool  # the neighbours of one graph node are fetched concurrently


@dataclass(frozen=True)
class SearchTime:
    time_s: np.ndarray  # latency of one query
    bound: np.ndarray  # 'compute', 'memory' or 'latency' (random accesses dominate)
    throughput_qps: np.ndarray | float = float("nan")  # many queries batched on the device
    breakdown: dict[str, np.ndarray] = field(default_factory=dict)  # seconds per part
    random_access: RandomAccess | None = None  # None: no random accesses priced
    dependent_accesses: np.ndarray | float = 0.0  # random accesses one after another


def random_access(hw: HardwareProfile) -> RandomAccess:
    """The profile's random-access latency, or the documented default for its kind."""
    given = hw.memory.random_access_latency_s
    if given is not None:
        latency, source, from_profile = given.value, f"{hw.id} profile: {given.source}", True
    else:
        latency, source = DEFAULT_RANDOM_ACCESS_LATENCY[hw.kind]
        source, from_profile = f"{hw.id} profile has none; {source}", False
    curve = hw.efficiency.for_class("elementwise")
    cores = max(hw.on_chip.cores.value, 1.0) if hw.kind == "cpu" else 1.0
    return RandomAccess(
        latency_s=latency,
        source=source,
        from_profile=from_profile,
        per_query_bytes_per_s=hw.bandwidth_bytes_per_s * curve.memory_fraction / cores,
        per_query_flops_per_s=hw.vector_peak_flops_per_s("fp32") * curve.compute_fraction / cores,
        parallel_fetch=hw.kind != "cpu",
    )


def time_search(hw: HardwareProfile, cost: SearchCost) -> SearchTime:
    """Streamed-roofline time of one query (vector peak, memory bandwidth, efficiency curve):
    every byte scanned priced at bandwidth. Right for a flat scan; optimistic for HNSW, whose
    accesses are dependent and random (:func:`search_latency` prices those)."""
    t = time_op(hw, cost.op())
    return SearchTime(np.asarray(t.total_s, dtype=float), np.asarray(BOUNDS)[t.bound])


# -- latency models, one per index kind ------------------------------------------------------
LatencyModel = Callable[[HardwareProfile, SearchCost], SearchTime]
LATENCY_MODELS: dict[str, LatencyModel] = {}


def register_latency(kind: str) -> Callable[[LatencyModel], LatencyModel]:
    """Register the latency model of index kind ``kind`` (one per kind)."""

    def wrap(fn: LatencyModel) -> LatencyModel:
        if kind in LATENCY_MODELS:
            raise ValueError(f"latency model {kind!r} registered twice")
        LATENCY_MODELS[kind] = fn
        return fn

    return wrap


def search_latency(hw: HardwareProfile, cost: SearchCost) -> SearchTime:
    """Latency (and batched throughput) of one query with the model of ``cost.index``."""
    return LATENCY_MODELS[cost.index](hw, cost)


def _stage_times(hw: HardwareProfile, cost: SearchCost) -> list[tuple[str, OpTime]]:
    out = []
    for name, flops, nbytes, compares in cost.stages:
        op = Op(
            name=f"vector_search.{cost.index}.{name}",
            op_class="elementwise",
            flops=np.asarray(flops, dtype=float) + np.asarray(compares, dtype=float),
            act_read_bytes=nbytes,
            on_vector_units=True,
        )
        out.append((name, time_op(hw, op)))
    return out


def _bound(compute_s, memory_s, latency_s) -> np.ndarray:
    c, m, lat = (np.asarray(x, dtype=float) for x in (compute_s, memory_s, latency_s))
    return np.where(lat > np.maximum(c, m), "latency", np.where(c >= m, "compute", "memory"))


def _batched_qps(hw: HardwareProfile, flops, nbytes) -> np.ndarray:
    """Queries per second when enough queries run at once to keep the device busy: each query
    reads its own bytes and does its own FLOPs (elementwise efficiency)."""
    curve = hw.efficiency.for_class("elementwise")
    memory = np.asarray(nbytes, dtype=float) / (hw.bandwidth_bytes_per_s * curve.memory_fraction)
    compute = np.asarray(flops, dtype=float) / (
        hw.vector_peak_flops_per_s("fp32") * curve.compute_fraction
    )
    return 1.0 / np.maximum(np.maximum(memory, compute), 1e-300)


@register_latency("flat")
def flat_latency(hw: HardwareProfile, cost: SearchCost) -> SearchTime:
    """Exhaustive scan (FAISS ``IndexFlat``; Johnson, Douze & Jegou 2019, arXiv 1702.08734):
    one pass over the D e b vector bytes at memory bandwidth and 2 D e FLOPs plus D top-k
    compares, priced on the compute/memory roofline with the elementwise efficiency curve and
    one launch (:func:`hwsim.perf.roofline.time_op`).

    Throughput: a batch of queries shares one pass over the vectors (FAISS switches to a GEMM
    for 20 or more queries), so at large batches the scan is compute-bound:
    qps = vector peak x matmul compute fraction / FLOPs per query.
    """
    ((name, t),) = _stage_times(hw, cost)
    time = np.asarray(t.total_s, dtype=float)
    curve = hw.efficiency.for_class("matmul")
    qps = hw.vector_peak_flops_per_s("fp32") * curve.compute_fraction / np.maximum(cost.flops, 1)
    return SearchTime(
        time_s=time,
        bound=np.asarray(BOUNDS)[t.bound],
        throughput_qps=qps,
        breakdown={name: time},
    )


@register_latency("ivf")
def ivf_latency(hw: HardwareProfile, cost: SearchCost) -> SearchTime:
    """Inverted file (Jegou, Douze & Schmid 2011, "Product quantization for nearest neighbor
    search", IEEE TPAMI 33(1), section IV; FAISS ``IndexIVFFlat`` / ``IndexIVFPQ``):

        coarse quantiser: nlist centroids scanned (nlist e 4 bytes, 2 nlist e FLOPs, nlist
                          compares to pick nprobe), one launch;
        list scan:        nprobe lists of ~D / nlist codes each (e b bytes per vector for
                          IVF-Flat, m bytes for IVF-PQ, plus the PQ lookup tables), one launch;
        list starts:      each probed list starts at a random address: nprobe dependent
                          accesses on a CPU (FAISS scans one query's lists one after another
                          on one thread), one on a GPU (FAISS GPU / cuVS give each (query,
                          list) pair its own thread block, so lists start concurrently).

    latency = quantiser + list scan + list starts x random-access latency (affine in nprobe).
    Throughput: each query reads its own lists, so batching amortises nothing but launches:
    qps = 1 / max(bytes / bandwidth, FLOPs / vector peak) at elementwise efficiency.
    """
    ra = random_access(hw)
    (qname, tq), (sname, ts) = _stage_times(hw, cost)
    serial_starts = cost.list_starts if hw.kind == "cpu" else min(cost.list_starts, 1.0)
    starts_s = serial_starts * ra.latency_s
    quant_s = np.asarray(tq.total_s, dtype=float)
    scan_s = np.asarray(ts.total_s, dtype=float)
    time = quant_s + scan_s + starts_s
    return SearchTime(
        time_s=time,
        bound=_bound(tq.compute_s + ts.compute_s, tq.memory_s + ts.memory_s, starts_s),
        throughput_qps=_batched_qps(hw, cost.flops, cost.bytes_scanned),
        breakdown={qname: quant_s, sname: scan_s, "list starts": starts_s + 0.0 * time},
        random_access=ra,
        dependent_accesses=serial_starts,
    )


@register_latency("hnsw")
def hnsw_latency(hw: HardwareProfile, cost: SearchCost) -> SearchTime:
    """Graph search (HNSW, Malkov & Yashunin 2018, arXiv 1603.09320, Algorithms 2 and 5) priced
    as the pointer chase it is, not as streamed bytes.

    The query expands X = ef + (upper levels) nodes one after another (each step picks the
    closest unexpanded candidate, so the next address depends on the distances just
    computed) and visits V neighbours (``distance_evaluations``). Each expansion reads the
    node's adjacency list (a dependent random access); each visited vector is another:

        CPU (hnswlib / FAISS, one thread per query): every visit is a dependent access,
            latency = X t_ra + V (t_ra + e b / bw_q + 2 e / F_q) + links / bw_q + launch
        GPU (CAGRA-style, Ootomo et al. 2024, arXiv 2308.15136, section 4: the threads
            fetch and score all neighbours of the expanded nodes at once, but iterations are
            sequential): the neighbours of one node are fetched concurrently,
            latency = 2 X t_ra + V (e b / bw_q + 2 e / F_q) + links / bw_q + launch

    with t_ra the random-access latency and bw_q, F_q the rates one query streams at (a CPU
    core's share of the bandwidth and vector peak; the whole GPU, :func:`random_access`).
    Latency grows linearly in ef_search and t_ra and with D only through the ln(D) / ln(M)
    levels. Throughput: many queries at once hide the latency (one per core on a CPU;
    thousands of resident thread blocks on a GPU), so
    qps = min(cores / latency (CPU only), 1 / max(bytes / bandwidth, FLOPs / peak)).
    """
    ra = random_access(hw)
    visited = np.asarray(cost.distance_evaluations, dtype=float)
    expansions = np.asarray(cost.expansions, dtype=float)
    flops_per_visit = np.asarray(cost.flops, dtype=float) / np.maximum(visited, 1.0)
    vector_fetch = expansions if ra.parallel_fetch else visited
    dependent = expansions + vector_fetch
    chase_s = dependent * ra.latency_s
    stream_s = (visited * cost.vector_bytes + np.asarray(cost.link_bytes, dtype=float)) / (
        ra.per_query_bytes_per_s
    )
    compute_s = visited * flops_per_visit / ra.per_query_flops_per_s
    launch_s = hw.efficiency.for_class("elementwise").launch_overhead_s
    time = chase_s + stream_s + compute_s + launch_s
    qps = _batched_qps(hw, cost.flops, cost.bytes_scanned)
    if hw.kind == "cpu":
        qps = np.minimum(qps, hw.on_chip.cores.value / time)
    return SearchTime(
        time_s=time,
        bound=_bound(compute_s, stream_s, chase_s),
        throughput_qps=qps,
        breakdown={
            "random-access latency": chase_s,
            "vector + link bytes": stream_s,
            "distances": compute_s,
            "launch": launch_s + 0.0 * time,
        },
        random_access=ra,
        dependent_accesses=dependent,
    )


# -- work of one query ------------------------------------------------------------------------
def topk_compares(candidates) -> np.ndarray:
    """Compares of a top-k selection over ``candidates`` distances: one against the heap's
    worst per candidate (heap updates, ~k ln(candidates / k) of them, left out)."""
    return np.asarray(candidates, dtype=float)


def flat_cost(n_chunks, dim: int, bytes_per_element: float) -> SearchCost:
    """Exhaustive search: every vector is compared.

    distance evaluations = D; FLOPs = 2 D e; bytes scanned = D e b; index = D e b.
    """
    d = np.asarray(n_chunks, dtype=float)
    vector_bytes = d * dim * bytes_per_element
    flops = FLOPS_PER_DIM * d * dim
    compares = topk_compares(d)
    return SearchCost(
        index="flat",
        distance_evaluations=d,
        flops=flops,
        bytes_scanned=vector_bytes,
        index_bytes=vector_bytes,
        stages=(("scan", flops, vector_bytes, compares),),
        selection_compares=compares,
        vector_bytes=dim * bytes_per_element,
    )


def ivf_cost(
    n_chunks,
    dim: int,
    bytes_per_element: float,
    nlist: int,
    nprobe: int,
    pq_m: int | None = None,
    pq_nbits: int = 8,
) -> SearchCost:
    """Inverted file: a coarse quantiser picks ``nprobe`` of ``nlist`` lists, whose vectors
    are then scanned exhaustively (lists assumed balanced: D / nlist vectors each).

    IVF-Flat (``pq_m`` None):
        distance evaluations = nlist + nprobe D / nlist; FLOPs = 2 e x that;
        bytes scanned = nlist e 4 (centroids) + nprobe (D / nlist) e b;
        index = D e b + nlist e 4 + D x 8 (ids).
    IVF-PQ (``pq_m`` sub-quantisers of 2^nbits centroids; Jegou et al. 2011 section III):
        per query, lookup tables of the query against every PQ centroid: 2^nbits x e
        multiply-adds (2^nbits e 4 bytes of codebooks read); each scanned code costs m table
        lookups and adds (m bytes read, m FLOPs):
        FLOPs = 2 nlist e + 2 2^nbits e + m nprobe D / nlist;
        bytes = nlist e 4 + 2^nbits e 4 + nprobe (D / nlist) m;
        index = D (m + 8) + nlist e 4 + 2^nbits e 4.
    """
    d = np.asarray(n_chunks, dtype=float)
    scanned_vectors = nprobe * d / nlist
    centroid_bytes = nlist * dim * CENTROID_BYTES_PER_ELEMENT
    quant_flops = FLOPS_PER_DIM * dim * nlist
    if pq_m is None:
        scan_flops = FLOPS_PER_DIM * dim * scanned_vectors
        scan_bytes = scanned_vectors * dim * bytes_per_element
        stored = d * dim * bytes_per_element
        code_bytes = dim * bytes_per_element
    else:
        ksub = 2.0**pq_nbits
        codebook_bytes = ksub * dim * PQ_CODEBOOK_BYTES_PER_ELEMENT
        scan_flops = FLOPS_PER_DIM * ksub * dim + pq_m * scanned_vectors
        scan_bytes = codebook_bytes + scanned_vectors * pq_m * pq_nbits / 8.0
        stored = d * pq_m * pq_nbits / 8.0 + codebook_bytes
        code_bytes = pq_m * pq_nbits / 8.0
    scanned = scan_bytes + 0.0 * d
    return SearchCost(
        index="ivf",
        distance_evaluations=nlist + scanned_vectors,
        flops=quant_flops + scan_flops,
        bytes_scanned=centroid_bytes + scan_bytes,
        index_bytes=stored + centroid_bytes + d * ID_BYTES,
        stages=(
            ("coarse quantiser", quant_flops, centroid_bytes, float(nlist)),
            ("list scan", scan_flops, scanned, topk_compares(scanned_vectors)),
        ),
        selection_compares=nlist + topk_compares(scanned_vectors),
        list_starts=float(nprobe),
        vector_bytes=code_bytes,
        searched_fraction=np.minimum(nprobe / nlist, 1.0) + 0.0 * d,
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
        expansions (nodes whose adjacency list is read, one after another)
                             ~ ef_search + ln(D) / ln(M)

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
    vector_bytes = dim * bytes_per_element
    return SearchCost(
        index="hnsw",
        distance_evaluations=evaluations,
        flops=FLOPS_PER_DIM * dim * evaluations,
        bytes_scanned=evaluations * vector_bytes + links_read,
        index_bytes=d * (vector_bytes + 2.0 * m * LINK_BYTES),
        selection_compares=evaluations,
        expansions=np.minimum(ef_search + upper_hops, np.maximum(d, 1.0)),
        vector_bytes=vector_bytes,
        link_bytes=links_read,
        searched_fraction=evaluations / np.maximum(d, 1.0),
    )
