"""``hwsim rag``: whole corpus in context vs retrieval (RAG), side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from hwsim.cli.common import console, deployment_flags, handle_errors, print_json
from hwsim.cli.plan import build_scenario
from hwsim.errors import ProfileError
from hwsim.rag.pipeline import compare_rag
from hwsim.rag.spec import RagSpec, parse_rag_section

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
) -> RagSpec:
    """Flags over the scenario's ``rag:`` section; hardware paths are relative to the file."""
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
    ):
        if value is not None:
            data[key] = value
    if index is not None:
        given = data.get("index")
        old: dict = given if isinstance(given, dict) else {}
        if old.get("kind", "flat") != index:  # a new kind keeps only the vector dtype
            old = {k: v for k, v in old.items() if k == "vector_dtype"}
        data["index"] = {**old, "kind": index}
    if base is not None:
        data = _resolve_paths(data, base)
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
        gen_len: int | None = typer.Option(None, help="generated tokens per answer"),
        batch: int | None = typer.Option(None, help="concurrent sequences on the LLM"),
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
        )
        result = compare_rag(
            sc.model,
            sc.hardware,
            spec,
            batch=sc.workload.batch,
            gen_len=sc.workload.gen_len,
            tpot_slo_s=sc.slo.tpot_p95_s,
            spec=sc.deployment,
        )
        if json_out:
            print_json(result.to_dict())
            return
        console.print(result)
