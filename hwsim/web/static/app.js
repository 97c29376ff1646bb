// The hwsim planning page: builds a scenario from the form (or takes pasted YAML), calls the
// JSON API and shows the answer. Plain JavaScript, no build step; every value shown is set as
// text (never as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
let PLOTS = [];
let currentPlan = null; // {id, data}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body),
  };
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch (_e) { data = null; }
  if (!res.ok) {
    throw new Error((data && data.error) || `${res.status} ${res.statusText}`);
  }
  return {data, headers: res.headers};
}

function showError(el, err) {
  el.textContent = err ? `error: ${err.message || err}` : "";
  el.hidden = !err;
}

// -- the form ------------------------------------------------------------------------------

async function loadProfiles() {
  const {data} = await api("/api/profiles");
  PLOTS = data.plots;
  const model = $("model");
  for (const m of data.models) {
    const opt = document.createElement("option");
    opt.value = m.id;
    opt.textContent = `${m.id} (${(m.params / 1e9).toFixed(1)}B)`;
    model.append(opt);
  }
  model.value = data.models.some((m) => m.id === "llama-3.1-8b") ? "llama-3.1-8b" : data.models[0].id;
  const preset = new Set(["h100-sxm", "h200-sxm", "a100-80gb-sxm", "l40s", "mi300x"]);
  const box = $("hardware");
  for (const hw of data.hardware) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.name = "hardware";
    input.value = hw.id;
    input.checked = preset.has(hw.id);
    label.title = hw.name + (hw.price_per_hour_usd ? `, $${hw.price_per_hour_usd}/GPU-hour` : ", no price");
    label.append(input, " " + hw.id);
    box.append(label);
  }
}

const num = (id) => {
  const text = $(id).value.trim();
  return text === "" ? null : Number(text);
};
const checked = (name) => [...document.querySelectorAll(`input[name=${name}]:checked`)].map((e) => e.value);

function scenarioFromForm() {
  const hardware = checked("hardware");
  const tp = $("tp").value.split(",").map((s) => s.trim()).filter((s) => s).map(Number);
  const candidates = {hardware, tp, weight_dtype: checked("weight_dtype"), kv_dtype: checked("kv_dtype")};
  const slo = {headroom_fraction: (num("headroom") || 0) / 100};
  if (num("ttft-ms") !== null) slo.ttft_p95_s = num("ttft-ms") / 1000;
  if (num("tpot-ms") !== null) slo.tpot_p95_s = num("tpot-ms") / 1000;
  return {
    name: $("name").value.trim() || "web-plan",
    model: $("model").value,
    hardware: hardware[0] || "",
    traffic: {
      arrivals: {kind: "poisson", rate: {kind: "constant", rate_per_s: num("rate")}},
      prompt_tokens: {kind: "lognormal", mean: num("prompt-mean"), p95: num("prompt-p95")},
      output_tokens: {kind: "lognormal", mean: num("output-mean"), p95: num("output-p95")},
    },
    slo,
    candidates,
    serving: {simulate_top: num("simulate-top") ?? 0},
  };
}

// A mapping as YAML (JSON strings are valid YAML double-quoted scalars).
function toYaml(value, indent = "") {
  const scalar = (v) => (typeof v === "string" && /^[A-Za-z0-9_.\-]+$/.test(v) && !/^(true|false|null|yes|no|on|off|[\d.\-]+)$/i.test(v)) ? v : JSON.stringify(v);
  const lines = [];
  for (const [key, v] of Object.entries(value)) {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      lines.push(`${indent}${key}:`, toYaml(v, indent + "  "));
    } else if (Array.isArray(v)) {
      lines.push(`${indent}${key}: [${v.map(scalar).join(", ")}]`);
    } else {
      lines.push(`${indent}${key}: ${scalar(v)}`);
    }
  }
  return lines.join("\n");
}

function setMode(mode) {
  $("form-fields").hidden = mode !== "form";
  $("yaml-fields").hidden = mode !== "yaml";
  $(mode === "form" ? "mode-form" : "mode-yaml").checked = true;
}

// -- the answer ----------------------------------------------------------------------------

function fmtTime(s) {
  if (s === null || s === undefined || !isFinite(s)) return "-";
  if (s >= 1) return `${s.toFixed(2)} s`;
  if (s >= 1e-3) return `${(s * 1e3).toFixed(s >= 0.1 ? 0 : 1)} ms`;
  return `${(s * 1e6).toFixed(0)} µs`;
}
// dollars as the report writes them: cents from $1 up, three significant digits below
const fmtMoney = (x) => {
  if (x === null || x === undefined || !isFinite(x)) return "-";
  if (x < 1) return `$${Number(x.toPrecision(3))}`;
  return `$${x.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2})}`;
};
const fmtCount = (x) => (x === null || x === undefined) ? "-" : Math.round(x).toLocaleString("en-US");
const fmtFixed = (x, digits) => (x === null || x === undefined || !isFinite(x)) ? "-" : x.toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits});
const fmtBytes = (b) => {
  if (b === null || b === undefined || !isFinite(b)) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (b >= 1000 && i < units.length - 1) { b /= 1000; i++; }
  return `${b.toFixed(b >= 100 ? 0 : 1)} ${units[i]}`;
};

function fillTable(table, header, rows, rowClass) {
  table.replaceChildren();
  const head = table.insertRow();
  for (const h of header) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  rows.forEach((row, i) => {
    const tr = table.insertRow();
    if (rowClass) tr.className = rowClass(i);
    for (const cell of row) {
      const td = tr.insertCell();
      if (typeof cell === "object" && cell !== null) {
        td.textContent = cell.text;
        td.className = cell.cls || "";
      } else {
        td.textContent = cell;
      }
    }
  });
}

function simulatedText(sim) {
  if (!sim || Object.keys(sim).length === 0) return "-";
  return `TTFT p95 ${fmtTime(sim.ttft_p95_s)}, TPOT p95 ${fmtTime(sim.tpot_p95_s)}, ${sim.meets_slo ? "meets" : "MISSES"} SLO`;
}

function showPlan(id, data) {
  currentPlan = {id, data};
  $("results").hidden = false;
  $("recommendation").textContent = data.recommendation.sentence;
  const w = data.workload;
  $("workload").textContent = `workload: peak ${w.peak_rate_per_s} req/s, prompt mean ${fmtCount(w.prompt_mean)} tokens (p95 ${fmtCount(w.prompt_p95)}), output mean ${fmtCount(w.output_mean)} tokens`;
  const pareto = new Set(data.pareto);
  const feasible = data.candidates.filter((c) => c.feasible);
  const pruned = data.candidates.filter((c) => !c.feasible);
  fillTable(
    $("candidates"),
    ["#", "candidate (* Pareto)", "replicas", "GPUs", "cost/hour", "cost/1M out tokens",
      "max seqs/GPU at SLO", "in flight/GPU at peak", "TTFT p95 at peak (analytic)",
      "TPOT mean at peak (analytic)", "bound by", "priced by", "simulated"],
    feasible.map((c, i) => [
      String(i + 1), {text: c.candidate.label + (pareto.has(c.candidate.label) ? " *" : ""), cls: "text"},
      String(c.replicas),
      String(c.gpus), fmtMoney(c.cost_per_hour_usd), fmtMoney(c.cost_per_million_output_tokens_usd),
      fmtCount(c.users_per_gpu), fmtFixed(c.in_flight_per_gpu_at_load, 1),
      fmtTime(c.ttft_p95_at_load_s), fmtTime(c.tpot_at_load_s),
      {text: c.binding_constraint, cls: "text"}, {text: c.pricing || "-", cls: "text"},
      {text: simulatedText(c.simulated), cls: "text"},
    ]),
    (i) => (i === 0 ? "best" : ""),
  );
  $("pruned-summary").textContent = `pruned candidates (${pruned.length})`;
  fillTable($("pruned"), ["candidate", "why"], pruned.map((c) => [c.candidate.label, {text: c.reason, cls: "wrap"}]));
  $("rank").max = String(feasible.length);
  $("rank").value = "1";
  const base = `/api/plans/${encodeURIComponent(id)}`;
  $("download-report-html").href = `${base}/report.html`;
  $("download-report-zip").href = `${base}/report.zip`;
  $("download-plan-json").href = base;
  updateArtifactLinks();
  $("first-screen").replaceChildren();
  api(`${base}/summary`).then(({data: summary}) => {
    for (const row of summary.rows.slice(1)) { // the recommendation is the banner above
      const tr = $("first-screen").insertRow();
      const th = document.createElement("th");
      th.textContent = row.label;
      const td = tr.insertCell();
      td.className = "wrap";
      if (row.label.startsWith("launch")) {
        const code = document.createElement("code");
        code.textContent = row.text;
        td.append(code);
      } else {
        td.textContent = row.text;
      }
      tr.prepend(th);
    }
  }).catch((err) => showError($("error"), err));
  const plots = $("plots");
  plots.replaceChildren();
  for (const name of PLOTS) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "plot";
    img.alt = name;
    img.src = `${base}/plots/${name}.png`;
    const cap = document.createElement("figcaption");
    cap.textContent = name.replaceAll("_", " ");
    fig.append(img, cap);
    plots.append(fig);
  }
}

function updateArtifactLinks() {
  if (!currentPlan) return;
  const rank = Math.max(1, parseInt($("rank").value, 10) || 1);
  for (const a of document.querySelectorAll("a.artifact")) {
    a.href = `/api/plans/${encodeURIComponent(currentPlan.id)}/artifacts/${a.dataset.artifact}?rank=${rank}`;
  }
}

async function runPlan(event) {
  event.preventDefault();
  const button = $("plan-button");
  const yaml = $("mode-yaml").checked;
  showError($("error"), null);
  button.disabled = true;
  $("status").textContent = "planning…";
  const started = performance.now();
  try {
    const body = {scenario: yaml ? $("scenario-yaml").value : scenarioFromForm()};
    const {data, headers} = await api("/api/plan", body);
    showPlan(headers.get("X-Hwsim-Plan-Id"), data);
    $("status").textContent = `planned in ${((performance.now() - started) / 1000).toFixed(1)} s`;
    runContext();
  } catch (err) {
    $("status").textContent = "";
    showError($("error"), err);
  } finally {
    button.disabled = false;
  }
}

// -- context costs -------------------------------------------------------------------------

async function runContext() {
  if (!currentPlan) return;
  const best = currentPlan.data.recommendation.candidate.candidate;
  const body = {
    plan: currentPlan.id, // the plan's model on its recommended deployment
    lengths: $("context-lengths").value,
    compare_models: $("context-compare").value.split(",").map((s) => s.trim()).filter((s) => s),
  };
  $("context-target").textContent = best.label;
  showError($("context-error"), null);
  $("context-status").textContent = "pricing…";
  $("context-button").disabled = true;
  try {
    const {data, headers} = await api("/api/context", body);
    fillTable(
      $("context-table"),
      ["variant", "tokens", "KV/state per seq", "TTFT", "TPOT", "users/GPU", "$ per 1M prompt tok", "$ per 1M output tok", "fits"],
      data.length_tokens.map((n, i) => [
        data.variant[i], fmtCount(n), fmtBytes(data.kv_state_bytes_per_sequence[i]), fmtTime(data.ttft_s[i]),
        fmtTime(data.tpot_s[i]), fmtCount(data.users_per_gpu[i]),
        fmtMoney(data.cost_per_million_prompt_tokens_usd[i]), fmtMoney(data.cost_per_million_output_tokens_usd[i]),
        data.fits[i] ? "yes" : "no",
      ]),
    );
    const img = $("context-plot");
    img.src = `/api/contexts/${encodeURIComponent(headers.get("X-Hwsim-Context-Id"))}/plot.png`;
    img.hidden = false;
    $("context-status").textContent = "";
  } catch (err) {
    $("context-status").textContent = "";
    showError($("context-error"), err);
  } finally {
    $("context-button").disabled = false;
  }
}

// -- wiring --------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  $("plan-form").addEventListener("submit", runPlan);
  $("mode-form").addEventListener("change", () => setMode("form"));
  $("mode-yaml").addEventListener("change", () => setMode("yaml"));
  $("to-yaml").addEventListener("click", () => {
    $("scenario-yaml").value = toYaml(scenarioFromForm()) + "\n";
    setMode("yaml");
  });
  $("rank").addEventListener("input", updateArtifactLinks);
  $("context-button").addEventListener("click", runContext);
  try {
    await loadProfiles();
    document.body.dataset.ready = "true";
  } catch (err) {
    showError($("error"), err);
  }
});
