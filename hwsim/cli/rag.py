"""``hwsim rag``: whole corpus in context vs retrieval (RAG), side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hwsim.cli.common import (
    console,
    deployment_flags,
    err_console,
    fail,
    handle_errors,
    print_json,
)
from hwsim.cli.context import check_plot_path
from hwsim.cli.plan import build_scenario
from hwsim.errors import ProfileError

if TYPE_CHECKING:  # hwsim.rag is imported when the command runs: other commands skip it
    from hwsim.rag.spec import RagSpec

INDEX_KINDS = ("flat", "ivf", "hnsw")


def build_rag_spec(
    rag: dict | None,
    where: str,
    base: Path | None,
    *,
    corpus_tokens: str | None = None,
    top_k: int | None = None,
    chunk_tokens: int | None = None,
    index: str | None = None,
    search_hardware: str | None = None,
    index_params: dict | None = None,
    rerank_model: str | None = None,
    rerank_top: int | None = None,
    rounds: int | None = None,
    followup_tokens: int | None = None,
    recent_tokens: str | None = None,
    window: int | None = None,
) -> RagSpec:
    """Flags over the scenario's ``rag:`` section; hardware paths are relative to the file.

    ``index_params``: index fields (nlist, nprobe, pq_m, m, ef_search) set over the file's
    ``index:`` (None values skipped); a field the index kind lacks is an error naming it."""
    data = dict(rag or {})
    if rag is None and corpus_tokens is None:
        raise ProfileError(
            "no 'rag:' section; add one (see examples/rag-vs-long-context.yaml) or give "
            "--corpus-tokens",
            file=where,
        )
    if corpus_tokens is not None:
        data.pop("n_chunks", None)
        data["corpus_tokens"] = corpus_tokens
    for key, value in (
        ("top_k", top_k),
        ("chunk_tokens", chunk_tokens),
        ("search_hardware", search_hardware),
        ("rounds", rounds),
        ("followup_tokens", followup_tokens),
    ):
        if value is not None:
            data[key] = value
    if index is not None:
        given = data.get("index")
        old: dict = given if isinstance(given, dict) else {}
        if old.get("kind", "flat") != index:  # a new kind keeps only the vector dtype
            old = {k: v for k, v in old.items() if k == "vector_dtype"}
        data["index"] = {**old, "kind": index}
    params = {k: v for k, v in (index_params or {}).items() if v is not None}
    if params:
        given = data.get("index")
        data["index"] = {**(given if isinstance(given, dict) else {}), **params}
    if rerank_model is not None or rerank_top is not None:
        given = data.get("rerank")
        rr: dict = dict(given) if isinstance(given, dict) else {}
        if rerank_model is not None:
            rr["model"] = rerank_model
        if rerank_top is not None:
            rr["top"] = rerank_top
        if "model" not in rr:
            raise ProfileError("--rerank-top needs --rerank-model (or rag.rerank.model)")
        data["rerank"] = rr
    if recent_tokens is not None or window is not None:
        given = data.get("working_memory")
        wm: dict = dict(given) if isinstance(given, dict) else {}
        if recent_tokens is not None:
            wm["recent_tokens"] = recent_tokens
        if window is not None:
            wm["window"] = window
        data["working_memory"] = wm
    if base is not None:
        data = _resolve_paths(data, base)
    from hwsim.rag.spec import parse_rag_section

    return parse_rag_section(data, where)


def _resolve_paths(data: dict, base: Path) -> dict:
    def resolve(ref):
        if isinstance(ref, str) and ref.endswith((".yaml", ".yml")) and (base / ref).is_file():
            return str(base / ref)
        return ref

    out = {**data, "search_hardware": resolve(data.get("search_hardware"))}
    if out["search_hardware"] is None:
        del out["search_hardware"]
    if isinstance(data.get("embedding"), dict) and "hardware" in data["embedding"]:
        out["embedding"] = {**data["embedding"], "hardware": resolve(data["embedding"]["hardware"])}
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    @deployment_flags
    def rag(
        scenario: Path | None = typer.Argument(
            None, help="scenario YAML with a rag: section (see examples/rag-vs-long-context.yaml)"
        ),
        model: str | None = typer.Option(None, help="model id, YAML path or config.json"),
        hardware: str | None = typer.Option(None, help="LLM hardware id or YAML path"),
        corpus_tokens: str | None = typer.Option(
            None, help="corpus size in tokens (2M = 2,000,000; 64Ki = 65,536)"
        ),
        top_k: int | None = typer.Option(None, help="chunks retrieved per question"),
        chunk_tokens: int | None = typer.Option(None, help="tokens per chunk"),
        index: str | None = typer.Option(None, help="vector index: flat | ivf | hnsw"),
        search_hardware: str | None = typer.Option(
            None, help="device running the vector search (hardware id or YAML; default cpu)"
        ),
        nlist: int | None = typer.Option(None, help="IVF: inverted lists (default 1024)"),
        nprobe: int | None = typer.Option(None, help="IVF: lists probed (default 20)"),
        pq_m: int | None = typer.Option(
            None, help="IVF-PQ: sub-quantisers, bytes per vector at 8 bits (default: IVF-Flat)"
        ),
        hnsw_m: int | None = typer.Option(None, help="HNSW: links per node (default 32)"),
        ef_search: int | None = typer.Option(None, help="HNSW: search beam (default 16)"),
        rerank_model: str | None = typer.Option(
            None, help="cross-encoder that re-ranks the candidates (model id, YAML, config.json)"
        ),
        rerank_top: int | None = typer.Option(
            None, help="candidates retrieved and re-ranked down to top-k (default 32)"
        ),
        rounds: int | None = typer.Option(
            None, help="retrieval rounds (iterative / multi-hop retrieval; default 1)"
        ),
        followup_tokens: int | None = typer.Option(
            None, help="tokens of each LLM-generated follow-up query (rounds > 1; default 32)"
        ),
        recent_tokens: str | None = typer.Option(
            None,
            help="working + long-term memory: the most recent tokens kept in the prompt, the "
            "older part retrieved from (adds a third approach)",
        ),
        window: int | None = typer.Option(
            None, help="working + long-term memory: serve the model with a sliding window"
        ),
        gen_len: int | None = typer.Option(None, help="generated tokens per answer"),
        batch: int | None = typer.Option(None, help="concurrent sequences on the LLM"),
        plot: Path | None = typer.Option(
            None, help="write TTFT, cost and memory against corpus size (e.g. FILE.png)"
        ),
        force: bool = typer.Option(False, help="overwrite an existing --plot file"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
        deployment: dict | None = None,
    ) -> None:
        """Compare the whole corpus in context with retrieval of top-k chunks: TTFT, TPOT,
        memory, cost per query, users per GPU, and where each stops fitting.

        The workload's prompt_len is ignored: the corpus and the rag: section set the prompt.
        """
        if scenario is not None and not scenario.exists():
            raise ProfileError("scenario file not found", file=str(scenario))
        if index is not None and index not in INDEX_KINDS:
            raise ProfileError(f"--index {index!r}; allowed: {', '.join(INDEX_KINDS)}")
        sc = build_scenario(
            scenario, deployment, model=model, hardware=hardware, gen_len=gen_len, batch=batch
        )
        where = str(scenario) if scenario else "command line"
        spec = build_rag_spec(
            sc.rag,
            where,
            scenario.parent if scenario else None,
            corpus_tokens=corpus_tokens,
            top_k=top_k,
            chunk_tokens=chunk_tokens,
            index=index,
            search_hardware=search_hardware,
            index_params={
                "nlist": nlist,
                "nprobe": nprobe,
                "pq_m": pq_m,
                "m": hnsw_m,
                "ef_search": ef_search,
            },
            rerank_model=rerank_model,
            rerank_top=rerank_top,
            rounds=rounds,
            followup_tokens=followup_tokens,
            recent_tokens=recent_tokens,
            window=window,
        )
        if plot is not None:
            check_plot_path(plot, force)
        from hwsim.rag.pipeline import compare_setup, make_setup

        setup = make_setup(
            sc.model,
            sc.hardware,
            spec,
            batch=sc.workload.batch,
            gen_len=sc.workload.gen_len,
            tpot_slo_s=sc.slo.tpot_p95_s,
            spec=sc.deployment,
        )
        result = compare_setup(setup)
        if json_out:
            print_json(result.to_dict())
        else:
            console.print(result)
        if plot is not None:
            from hwsim.rag.plot import plot_approaches

            try:
                plot_approaches(setup, float(spec.total_corpus_tokens), plot)
            except OSError as exc:
                fail(f"--plot {plot}: cannot write ({exc.strerror or exc})")
            err_console.print(f"wrote {plot}", highlight=False)
