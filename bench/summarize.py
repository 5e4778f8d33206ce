"""Render ``docs/results.md`` from ``bench/results/*.json`` (the docs never hand-type a figure).

Run after any benchmark: ``.venv/bin/python bench/summarize.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUT = ROOT / "docs" / "results.md"


def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _env_line(env: dict | None) -> str:
    if not env:
        return ""
    v = env.get("versions", {})
    return (f"_Measured on {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores, flags: {env.get('cpu_flags', '')}), "
            f"torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}._\n")


def _when(env: dict | None) -> str:
    """When and from which commit a figure was produced, and whether the machine was loaded (``environment()``)."""
    if not env or "generated_at" not in env:
        return "generated before results recorded their time and commit"
    load = (env.get("loadavg") or {})
    loads = [x[0] for x in (load.get("process_start"), load.get("now")) if x]
    warn = f", **load average up to {max(loads):.1f}: speed figures suspect**" if env.get("loaded_machine") else (
        f", load average ≤ {max(loads):.1f}" if loads else "")
    dirty = " (+ uncommitted changes)" if env.get("uncommitted_changes") else ""
    return f"generated {env['generated_at']} from {str(env.get('commit'))[:10]}{dirty}{warn}"


def _mb(n: int | None) -> str:
    return "-" if not n else (f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB")


def deep_compression(d: dict) -> list[str]:
    out = ["## Deep Compression (`bench/deep_compression.py`)\n",
           "| network | dense | .slim file | ratio | kept | error dense → decoded | paper: ratio, error | decode (weights/s) | load .slim / dense |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, n in d.get("networks", {}).items():
        p = n["paper"]
        out.append(
            f"| {key} | {n['dense_bytes'] / 1024:.0f} KB | {n['slim_bytes'] / 1024:.1f} KB | **{n['ratio']:.1f}×** "
            f"| {n['weights_kept_pct']:.1f} % | {n['error_dense_pct']:.2f} % → **{n['error_decoded_pct']:.2f} %** "
            f"| {p['ratio']}×, {p['error_dense']} % → {p['error_compressed']} % | {n['decode_weights_per_second'] / 1e6:.1f} M "
            f"| {n['load_seconds']['slim'] * 1e3:.1f} ms / {n['load_seconds']['dense_safetensors'] * 1e3:.1f} ms |"
        )
    for key, n in d.get("networks", {}).items():
        layers = n.get("layers", [])
        if not layers:
            continue
        cols = ["layer", "#weights", "weights kept %", "weight bits (P+Q)", "weight bits (P+Q+H)", "index bits", "ratio", "coding"]
        out += [f"\n**{key}, per layer** (like the paper's Tables 2–3)\n", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in layers:
            out.append("| " + " | ".join(f"{r.get(c):.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols) + " |")
    out.append("\n" + _env_line(d.get("environment")))
    return out


def _fid(f: dict) -> str:
    conf = (f"{f['confident_agreement']:.3f} ({f['confident_n']})" if "confident_agreement" in f else "–")
    return f"{f.get('top1_agreement', float('nan')):.3f} | {conf} | {f.get('mean_kl', float('nan')):.3f}"


def int8(d: dict) -> list[str]:
    out = ["## INT8 deployment (`bench/int8.py`)\n",
           "Agreement: top-1 agreement with torch fp32 on the evaluation crops; confident: the same on the crops "
           "where fp32's top-1 probability is at least 0.5 (their number in brackets).\n"]
    for model, key_b in (("mobilenet_v2", "b8"), ("minilm", "b32")):
        rows = d.get(model)
        if not rows:
            continue
        if model == "minilm":
            out += _minilm_table(rows)
            continue
        out += [f"**{model}**\n", _split_line(rows.get("eval_split"), "crops"),
                f"| variant | latency b1 ms | latency {key_b} ms | speed-up b1 / {key_b} vs fastest fp32 | agreement | confident agreement | mean KL | cosine mean | size |",
                "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, r in rows.items():
            if not isinstance(r, dict) or "latency_ms_b1" not in r:
                continue
            f = r.get("fidelity", {})
            out.append(
                f"| {name} | {r['latency_ms_b1']:.2f} | {r.get(f'latency_ms_{key_b}', float('nan')):.2f} "
                f"| {r.get('speedup_b1_vs_fastest_fp32', float('nan')):.2f}× / {r.get(f'speedup_{key_b}_vs_fastest_fp32', float('nan')):.2f}× "
                f"| {_fid(f)} | {f.get('cosine_mean', float('nan')):.4f} | {_mb(r.get('size_bytes'))} |"
            )
            if r.get("float_layers"):
                out[-1] = out[-1][:-1] + f" float: {', '.join(r['float_layers'])} |"
        out.append("")
        if model == "mobilenet_v2" and d.get("mobilenet_noise_floor"):
            out += ["Noise floor of the MobileNetV2 crops (torch, no INT8 anywhere):\n",
                    "| perturbation | agreement | confident agreement | mean KL |", "|---|---|---|---|"]
            out += [f"| {k} | {_fid(f)} |" for k, f in d["mobilenet_noise_floor"].items()]
            floor = d.get("mobilenet_activation_floor") or {}
            out += [f"| {k} (fp32 weights; every Conv/Linear input fake-quantized, bench/int8.py "
                    f"mobilenet_activation_floor) | {_fid(f)} |" for k, f in floor.items() if k.startswith("u8_")]
            out += [f"| u8_activations_only_percentile_99.99, the {k} most sensitive tensor(s) kept float "
                    f"({', '.join(r['float'])}) | {_fid(r['fidelity_eval'])} |"
                    for k, r in (floor.get("top_k_tensors_float") or {}).items() if int(k) <= 3]
            out += [f"| u8_activations_only_percentile_99.99, the {k} most sensitive tensors kept float | "
                    f"{_fid(r['fidelity_eval'])} |"
                    for k, r in (floor.get("top_k_tensors_float") or {}).items() if int(k) > 3]
            out.append("")
        if model == "mobilenet_v2" and d.get("mobilenet_sweep"):
            out += ["Static INT8 settings on ONNX Runtime, no fallback (check: held-out crops of the calibration photos; "
                    "eval: the evaluation crops):\n",
                    "| settings | check agreement | check KL | eval agreement | eval confident agreement | eval KL |",
                    "|---|---|---|---|---|---|"]
            for k, r in d["mobilenet_sweep"].items():
                c, e = r["fidelity_check"], r["fidelity_eval"]
                out.append(f"| {k} | {c['top1_agreement']:.3f} | {c['mean_kl']:.3f} | {_fid(e)} |")
            out.append("")
        if model == "mobilenet_v2" and d.get("mobilenet_adaround", {}).get("static"):
            out += _adaround_table(d["mobilenet_adaround"])
        if model == "mobilenet_v2" and d.get("mobilenet_fallback_frontier", {}).get("rows"):
            out += _frontier_table(d["mobilenet_fallback_frontier"])
    le = d.get("lenet5_mnist", {}).get("rows", {})
    if le:
        out += ["**LeNet-5 / MNIST**\n", "| variant | test accuracy | latency b1 ms | size |", "|---|---|---|---|"]
        for name, r in le.items():
            out.append(f"| {name} | {r['test_accuracy'] * 100:.2f} % | {r['latency_ms_b1']:.3f} | {_mb(r.get('size_bytes'))} |")
    out.append(f"\nLoad average during the run: {d.get('loadavg_start')} → {d.get('loadavg_end')} (shared machine).\n")
    out.append(_env_line(d.get("environment")))
    return out


def _split_line(split: dict | None, what: str) -> str:
    if not split:
        return (f"**Settings and fallback were chosen on the same {what} the fidelity is reported on** (no "
                "selection split recorded for this run).\n")
    return (f"Calibration / selection / test: {split['calibration']} / {split['selection']} / {split['test']} {what}, "
            f"disjoint: {split['disjoint']}; settings and fallback chosen on selection, fidelity on test.\n")


def _minilm_table(rows: dict) -> list[str]:
    """MiniLM INT8: cosine of the sentence embeddings with torch fp32 on the test sentences, next to the noise floor."""
    split = rows.get("eval_split")
    out = ["**minilm** (all-MiniLM-L6-v2 sentence embeddings)\n", _split_line(split, "sentences")]
    if split:
        out.append(f"Sentences: {split.get('text', '')}; per split by source {split.get('sources')}; "
                   f"document groups {split.get('document_groups')}; cut to {split.get('seq_len')} tokens "
                   f"(truncated: {split.get('truncated_to_32_tokens')}).\n")
    sel = rows.get("selection") or {}
    if sel.get("smooth_alpha_sweep_all_int8"):
        sweep = ", ".join(f"{a}: {r['cosine_mean']:.4f}" for a, r in sel["smooth_alpha_sweep_all_int8"].items())
        out.append(f"SmoothQuant α (all-INT8 cosine mean on the selection sentences): {sweep}; chosen "
                   f"**{sel.get('smooth_alpha_chosen')}**.\n")
    out += ["| variant | latency b1 ms | latency b32 ms | speed-up b1 / b32 vs fastest fp32 | test cosine mean | "
            "test cosine min | size | notes |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in rows.items():
        if not isinstance(r, dict) or "latency_ms_b1" not in r:
            continue
        f = r.get("fidelity", {})
        note = []
        if r.get("float_layers"):
            note.append("float: " + ", ".join(r["float_layers"]))
        if "target_met_on_selection" in r:
            tgt = (r.get("config") or {}).get("target", {}).get("min_cosine")
            if tgt is not None:
                ok = f.get("cosine_mean", 0) >= tgt
                note.append(f"target cosine ≥ {tgt}: {'met' if ok else '**missed**'} on test")
        out.append(f"| {name} | {r['latency_ms_b1']:.2f} | {r.get('latency_ms_b32', float('nan')):.1f} "
                   f"| {r.get('speedup_b1_vs_fastest_fp32', float('nan')):.2f}× / "
                   f"{r.get('speedup_b32_vs_fastest_fp32', float('nan')):.2f}× | {f.get('cosine_mean', float('nan')):.4f} "
                   f"| {f.get('cosine_min', float('nan')):.4f} | {_mb(r.get('size_bytes'))} | {'; '.join(note)} |")
    for k, f in (rows.get("noise_floor") or {}).items():
        out.append(f"| noise floor: {k} (torch, no INT8) | | | | {f['cosine_mean']:.6f} | {f['cosine_min']:.6f} | | |")
    out += ["", f"_{_when(rows.get('environment'))}._\n"]
    return out


def structured(d: dict) -> list[str]:
    out = ["## Structured pruning (`bench/structured.py`)\n",
           "| model | variant | MAC reduction | fidelity | speed-up b1 eager / ORT | speed-up b32 eager / ORT | notes |",
           "|---|---|---|---|---|---|---|"]  # fmt: skip

    def x(v):
        return f"{v:.2f}×" if isinstance(v, int | float) else "–"

    for model, m in d.items():
        if not isinstance(m, dict):
            continue
        if m.get("error"):
            out.append(f"| {model} | | | **failed**: {str(m['error'])[:160]} | | | |")
            continue
        for name, v in m.get("variants", {}).items():
            if name == "dense":
                continue
            if v.get("error"):
                out.append(f"| {model} | {name} | | **failed**: {str(v['error'])[:160]} | | | |")
                continue
            sp = v.get("speedup") or {}
            if "accuracy_finetuned" in v:
                fid = f"accuracy {100 * v['accuracy_finetuned']:.2f} % (drop {v.get('accuracy_drop_pp', float('nan')):.2f} pp)"
                note = "fine-tuned with KD"
            elif "top1_agreement" in v:
                fid = f"top-1 agreement {100 * v['top1_agreement']:.1f} %, KL {v.get('mean_kl', float('nan')):.2f}"
                note = "**no fine-tuning**"
            elif "cosine_mean" in v:
                fid = f"cosine {v['cosine_mean']:.4f} mean, {v.get('cosine_min', float('nan')):.4f} min"
                note = "**no fine-tuning**" if m.get("no_finetuning") else ""
            else:
                fid, note = "not measured", ""
            if not sp:
                note += "; speed not measured"
            out.append(f"| {model} | {name} | {x(v.get('mac_reduction'))} | {fid} "
                       f"| {x(sp.get('batch1_eager'))} / {x(sp.get('batch1_onnxruntime'))} "
                       f"| {x(sp.get('batch32_eager'))} / {x(sp.get('batch32_onnxruntime'))} | {note} |")
    out.append("")
    out += [f"* {model}: {_when(m.get('environment'))}" for model, m in d.items() if isinstance(m, dict)]
    return out + [""]


def fuzz(d: dict) -> list[str]:
    out = ["## Fuzzing (`bench/fuzz.py`)\n", "| format | inputs | crashes | hangs > 1 s | slowest input | peak RSS |", "|---|---|---|---|---|---|"]
    for name, f in d.get("formats", {}).items():
        out.append(f"| {name} | {f['inputs']:,} | {f['crashes']} | {f['hangs_over_1s']} | {f['slowest_input_s']:.2f} s | {f.get('peak_rss_mib_so_far', 0):.0f} MiB |")
    return out + [""]


def distributed(d: dict) -> list[str]:
    runs = d.get("runs", {})
    out = ["## Distributed (`bench/distributed.py`)\n", f"{d.get('task', '')}\n", "| configuration | train seconds | test accuracy |", "|---|---|---|"]
    for name, r in runs.items():
        out.append(f"| {name} | {r['train_seconds']:.1f} | {r['accuracy'] * 100:.2f} % |")
    out.append(f"\nSpeed-up of 2 processes over 1: **{d.get('speedup_2_vs_1', float('nan')):.2f}×**.\n")
    return out + _sensitivity_sweep(d.get("sensitivity_sweep"))


def _loadavg(d: dict) -> str:
    start, end = d.get("loadavg_start"), d.get("loadavg_end")
    return f"load average (1 min) {start[0]:.1f} at the start, {end[0]:.1f} at the end" if start and end else ""


def _sensitivity_sweep(s: dict | None) -> list[str]:
    if not s:
        return []
    out = ["### Sensitivity sweep fanned out over processes\n", f"{s['task']}.\n",
           "| configuration | sweep seconds | wall seconds (with start-up) |", "|---|---|---|"]  # fmt: skip
    for name, r in s["runs"].items():
        out.append(f"| {name} | {r['sweep_seconds']:.1f} | {r['wall_seconds_incl_startup']:.1f} |")
    same = "equal" if s.get("curves_2_processes_equal_1_process_1_thread") else "**not** equal"
    out.append(
        f"\nSpeed-up of 2 processes (1 thread each) over 1 process with 1 thread: **{s['speedup_2_vs_1_thread']:.2f}×**, "
        f"with 2 threads: **{s['speedup_2_vs_2_threads']:.2f}×**; the 2-process curves are {same} to the "
        f"1-process ones. Measured with {_loadavg(s)} on {s['environment'].get('cpu_count', '?')} cores.\n"
    )
    return out


def auto(d: dict) -> list[str]:
    out = ["## Auto-compression (`bench/auto.py`)\n"]
    for key, n in d.get("networks", {}).items():
        if n.get("status") == "not run" or "chosen" not in n:
            out.append(f"* {key}: not run ({n.get('why', '')[:160]})")
            continue
        if n["target"] == "latency":
            if not n.get("selection_split"):
                out.append(f"* {key}: run before the selection split existed (choices and the reported agreement on "
                           "the same crops); to be re-run")
            singles = {k: v for k, v in n.get("best_single_knob", {}).items()}
            knob = "; ".join(f"{k}: " + (f"{v['name']} {v['latency_ms']:.2f} ms, agreement {100 * v['agreement']:.1f} %"
                                         if v else "none met the budget") for k, v in singles.items())
            out.append(
                f"* **{key}**, target latency, max drop {n['max_drop_pp']} pp ({n.get('metric', '')}; {n.get('data', '')}), "
                f"budget {n['budget_s'] / 60:.0f} min: {n['message']} after {n['n_candidates']} candidates in "
                f"{n['search_seconds'] / 60:.1f} min; original {n['original_latency_ms']:.2f} ms (torch eager). "
                f"Best single knobs: {knob}."
            )
            continue
        ref = n.get("reference", {})
        sel = n.get("selection_split")
        if sel and n.get("test_accuracy") is not None:
            test = (f" Chosen on a selection split of {sel['n']} training images the original was not trained on; "
                    f"on the {sel['test_n']} test images, used once: **{100 * n['test_accuracy']:.2f} %** against the "
                    f"original's {100 * n['test_baseline_accuracy']:.2f} % (drop {n['test_drop_pp']:.2f} pp: budget "
                    f"{'met' if n['budget_met_on_test'] else '**missed**'} on test).")
        else:
            test = " **Chosen and reported on the same test set** (run before the selection split existed)."
        small = n.get("at_least_as_small_as_reference")
        out.append(
            f"* **{key}**, target {n['target']}, max drop {n['max_drop_pp']} pp, budget {n['budget_s'] / 60:.0f} min: "
            f"{n['message']} after {n['n_candidates']} candidates in {n['search_seconds'] / 60:.1f} min "
            f"(reference {ref.get('bytes', 0) / 1024:.1f} KB from {ref.get('source', '?')}: "
            f"{'at least as small' if small else '**not reached**'}).{test}"
        )
    out += [f"* {key}: {_when(n.get('environment'))}" for key, n in d.get("networks", {}).items()]
    return out + [""]

def _frontier_table(f: dict) -> list[str]:
    out = ["Fallback frontier, MobileNetV2: layers kept float in the fallback's sensitivity order, fidelity on "
           "the evaluation crops, speed-up over ORT fp32 timed in the same run (`mobilenet_fallback_frontier`):\n",
           "| float layers | agreement | confident agreement | mean KL | speed-up b1 | speed-up b8 |",
           "|---|---|---|---|---|---|"]
    for k, r in f["rows"].items():
        if k.startswith("float_"):
            out.append(f"| {len(r['float_layers'])} | {_fid(r['fidelity_eval'])} | {r['speedup_b1_vs_ort_fp32']:.2f}x | "
                       f"{r['speedup_b8_vs_ort_fp32']:.2f}x |")
    return out + [""]


def _adaround_table(a: dict) -> list[str]:
    """AdaRound vs round-to-nearest (``bench/int8.py mobilenet_adaround``, fidelity only)."""
    out = ["AdaRound vs ORT's round-to-nearest, MobileNetV2 (fidelity only; check: held-out crops of the "
           "calibration photos; eval: the evaluation crops; AdaRound saw the 64 calibration crops):\n",
           "| variant | check agreement | check KL | eval agreement | eval confident agreement | eval KL | AdaRound s |",
           "|---|---|---|---|---|---|---|"]  # fmt: skip
    for k, r in a["static"].items():
        c, e = r["fidelity_calib_check"], r["fidelity_eval"]
        secs = (r.get("adaround") or {}).get("seconds")
        out.append(f"| {k} | {c['top1_agreement']:.3f} | {c['mean_kl']:.3f} | {_fid(e)} | "
                   f"{f'{secs:.0f}' if secs else '–'} |")
    for k, r in a.get("weights_only", {}).items():
        e = r.get("fidelity_eval", r)
        secs = r.get("adaround_s")
        out.append(f"| {k} (activations float) | – | – | {_fid(e)} | {f'{secs:.0f}' if secs else '–'} |")
    out.append("")
    return out


def user_models(d: dict) -> list[str]:
    """The LSTM speaker encoder through dynamic INT8 (``bench/user_models.py``)."""
    lstm, t = d["lstm"], d["targets"]
    v = lstm["variants"]
    out = ["## A user's LSTM through dynamic INT8 (`bench/user_models.py`)\n",
           f"{lstm['model']}, {lstm['params'] / 1e6:.2f} M parameters, weights: {lstm['weights']}; inputs: "
           f"{lstm['inputs']}. {_loadavg(d)}: {d['load_note']}.\n",
           "| variant | size | latency b1 / b32 (ms) | held-out cosine mean / min | float layers |",
           "|---|---|---|---|---|"]  # fmt: skip
    for name, r in v.items():
        f = r.get("fidelity_held_out") or {}
        cos = f"{f['cosine_mean']:.4f} / {f['cosine_min']:.4f}" if f else "reference"
        size = _mb(r["size_bytes"]) if r.get("size_bytes") else (_mb(lstm["fp32_onnx_bytes"]) + " (ONNX)" if name == "ort_fp32" else "")
        out.append(f"| {name} | {size} | {r['latency_ms']['b1']:.2f} / {r['latency_ms']['b32']:.1f} | {cos} | "
                   f"{', '.join(r.get('float_layers') or []) or '–'} |")
    ok = lstm["meets_targets"]
    out += ["", f"slimtorch's default ({lstm['int8_variant']}): **{lstm['int8_size_ratio'] * 100:.0f} %** of the fp32 "
            f"ONNX file (target ≤ {t['int8_size_ratio_max'] * 100:.0f} %: {'met' if ok['size'] else 'missed'}), "
            f"**{lstm['speedup_b1']:.2f}× / {lstm['speedup_b32']:.2f}×** faster than the fastest fp32 runtime at "
            f"batch 1 / 32 ({lstm['fastest_fp32']['b1']} / {lstm['fastest_fp32']['b32']}; target ≥ {t['speedup_min']}×), "
            f"held-out cosine **{lstm['cosine_mean']:.4f}** (target ≥ {t['cosine_min']}).", "",
            "Input spread (std of the log-mel field) against fidelity, all-INT8 vs with the fallback:", "",
            "| log std | all-INT8 cosine | with fallback: cosine, float layers, size |", "|---|---|---|"]  # fmt: skip
    for k, row in lstm.get("input_sensitivity", {}).items():
        a, b = row["all_int8"], row["with_fallback"]
        out.append(f"| {k.removeprefix('log_std_')} | {a['cosine_mean']:.4f} | {b['cosine_mean']:.4f}, "
                   f"{', '.join(b['float_layers']) or '–'}, {_mb(b['size_bytes'])} |")
    return out + [""]


def _llm_rows(d: dict, names: list[str] | None = None) -> list[str]:
    rows = d.get("rows", {})
    fp = (rows.get("fp32") or {}).get("perplexity")
    rtn = {4: (rows.get("rtn_w4g128") or {}).get("perplexity"), 3: (rows.get("rtn_w3g128") or {}).get("perplexity")}
    out = ["| row | test perplexity | increase over fp32 | vs RTN's (magnitude's) increase | selection perplexity | whole file | "
           "quantized Linears | calibration | peak RSS |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in names or list(rows):
        r = rows.get(name)
        if r is None:
            continue
        if r.get("error"):
            out.append(f"| {name} | **failed**: {str(r['error'])[:160]} | | | | | | | |")
            continue
        p = r.get("perplexity")
        peer = name.startswith("peer_")
        inc = f"+{p - fp:.2f}" if p is not None and fp is not None and name != "fp32" else "–"
        bits = 3 if "w3" in name else 4 if "w4" in name else None
        base = rtn.get(bits) if bits else None
        if name.endswith("_50") and not name.startswith("magnitude"):  # sparsity: against magnitude pruning's
            bits, base = "mag", (rows.get("magnitude_50") or {}).get("perplexity")
        vs = (f"{(p - fp) / (base - fp):.2f}×" if bits and base and fp and base > fp and not name.startswith("rtn")
              else "–")
        out.append(f"| {name} | **{p:.2f}** | {inc} | {vs} | {r.get('selection_perplexity', float('nan')):.2f} | "
                   f"{'–' if peer else _mb(r.get('size_bytes'))} | "
                   f"{_mb(r.get('size_bytes')) if peer else _mb(r.get('quantized_linear_bytes'))} | "
                   f"{r.get('calib_seconds', 0):.0f} s | "
                   f"{r.get('peak_rss_mb') or 0:.0f} MB |")
    return out


def llm(d: dict) -> list[str]:
    """SmolLM2-135M: weight-only quantization and pruning against fp32 and the peers (``bench/llm.py``)."""
    t = d.get("tokens", {})
    text = t.get("text", {})
    out = ["## Language models: SmolLM2-135M (`bench/llm.py`)\n",
           f"{d.get('model', '')}. Perplexity over {t.get('test_windows')} disjoint windows of {t.get('window')} "
           f"test tokens ({d.get('eval_tokens')} tokens); calibration {t.get('calib_windows')} windows "
           f"({d.get('calib_tokens')} tokens) from a disjoint stream; choices between variants on "
           f"{t.get('selection_tokens')} selection tokens. Text: {', '.join(text.get('sources', []))} "
           f"(document groups per split {text.get('groups')}, disjoint: {text.get('disjoint')}). "
           "Each row runs in its own process; peak RSS is that process's.\n"]  # fmt: skip
    out += _llm_rows(d)
    out += ["", "Targets of the issue, checked on this file:", ""] + [f"* {t}" for t in llm_targets(d)]
    out.append("\n" + _env_line(d.get("environment")))
    return out


def llm_targets(d: dict) -> list[str]:
    """Each target of the language-model issue, met / missed / not measured, from the rows."""
    rows = d.get("rows", {})

    def ppl(name):
        r = rows.get(name) or {}
        return None if r.get("error") else r.get("perplexity")

    fp, out = ppl("fp32"), []
    if fp is None:
        return ["fp32 row missing: nothing can be checked"]

    def check(label, value, limit, fmt="{:.2f}"):
        if value is None or limit is None:
            out.append(f"{label}: not measured")
        else:
            out.append(f"{label}: {fmt.format(value)} vs ≤ {fmt.format(limit)}: **{'met' if value <= limit else 'missed'}**")

    rtn4, rtn3, mag = ppl("rtn_w4g128"), ppl("rtn_w3g128"), ppl("magnitude_50")
    peers4 = [ppl(k) for k in rows if k.startswith("peer_") and "w4" in k and ppl(k) is not None]
    for m in ("gptq_w4g128", "awq_w4g128"):
        check(f"{m} perplexity ≤ fp32 + 0.7 × RTN's increase", ppl(m), rtn4 and fp + 0.7 * (rtn4 - fp))
        if peers4 and ppl(m) is not None:
            out.append(f"{m} below every 4-bit peer ({min(peers4):.2f} best): "
                       f"**{'met' if ppl(m) < min(peers4) else 'missed'}**")
    check("gptq_w3g128 perplexity ≤ fp32 + RTN's 3-bit increase / 3", ppl("gptq_w3g128"), rtn3 and fp + (rtn3 - fp) / 3)
    for m in ("wanda_50", "sparsegpt_50"):
        check(f"{m} perplexity ≤ fp32 + 0.1 × magnitude's increase", ppl(m), mag and fp + 0.1 * (mag - fp))
    llmc = ppl("peer_llmcompressor_sparsegpt_50")
    check("sparsegpt_50 below llmcompressor's SparseGPT on the same tokens", ppl("sparsegpt_50"), llmc)
    g, p = rows.get("gptq_w4g128") or {}, rows.get("peer_llmcompressor_gptq_w4g64") or {}
    if g.get("peak_rss_mb") and p.get("peak_rss_mb"):
        check("GPTQ calibration peak RSS ≤ half of llmcompressor's (MB)", g["peak_rss_mb"], p["peak_rss_mb"] / 2, "{:.0f}")
        check("GPTQ calibration time ≤ llmcompressor's (s)", g.get("calib_seconds"), p.get("calib_seconds"), "{:.0f}")
    else:
        out.append("GPTQ calibration memory and time against llmcompressor: not measured")
    return out


SECTIONS = [("deep_compression", deep_compression), ("int8", int8), ("structured", structured),
            ("distributed", distributed), ("auto", auto), ("fuzz", fuzz), ("user_models", user_models),
            ("llm", llm)]  # fmt: skip


def int8_headline(d: dict) -> list[str]:
    """slimtorch INT8 against the fastest fp32 runtime of the same run, one row per model."""
    out = ["## INT8 deployment (`bench/int8.py`)\n",
           "| model | batch | speed-up vs fastest fp32 | fidelity vs fp32 | size vs fp32 | float layers |",
           "|---|---|---|---|---|---|"]
    for model, big, fid in (("mobilenet_v2", "b8", "agreement / KL"), ("minilm", "b32", "cosine")):
        rows = d.get(model) or {}
        r, base = rows.get("slimtorch_int8") or rows.get("slimtorch_int8_dynamic"), rows.get("ort_fp32")
        if not r or not base:
            continue
        f = r.get("fidelity", {})
        shown = (f"{f['top1_agreement'] * 100:.1f} % / {f['mean_kl']:.3f}" if fid.startswith("agreement")
                 else f"{f['cosine_mean']:.4f} mean, {f['cosine_min']:.4f} min")
        split = rows.get("eval_split")
        floor = next(iter((rows.get("noise_floor") or {}).values()), None)
        shown += (f" on {split['test']} held-out test {'sentences' if model == 'minilm' else 'crops'}" if split
                  else " (**settings chosen on the reported crops**)")
        if floor:
            shown += f"; fp32 under 8-bit input rounding: {floor['cosine_mean']:.6f}"
        out.append(f"| {model} | 1 / {big[1:]} | {r['speedup_b1_vs_fastest_fp32']:.2f}× / "
                   f"{r[f'speedup_{big}_vs_fastest_fp32']:.2f}× | {fid}: {shown} | "
                   f"{r['size_bytes'] / base['size_bytes'] * 100:.0f} % | {len(r.get('float_layers') or [])} |")
    le = d.get("lenet5_mnist", {}).get("rows", {})
    if "slimtorch_int8" in le and "ort_fp32" in le:
        r, base = le["slimtorch_int8"], le["ort_fp32"]
        out.append(f"| lenet5 (MNIST) | 1 | {base['latency_ms_b1'] / r['latency_ms_b1']:.2f}× | test accuracy "
                   f"{r['test_accuracy'] * 100:.2f} % (drop {r['accuracy_drop_pp']:.2f} pp) | "
                   f"{r['size_bytes'] / base['size_bytes'] * 100:.0f} % | – |")
    out.append("")
    return out


def main() -> None:
    lines = ["# Benchmark results\n",
             "Generated by `bench/summarize.py` from `bench/results/*.json`; do not edit by hand. "
             "Each benchmark's own guide has the details: [pruning](pruning.md), [quantization](quantization.md), "
             "[distillation](distillation.md), [structured pruning](structured_pruning.md), [INT8](int8.md), "
             "[auto-compression](auto.md), [Deep Compression](deep_compression.md).\n"]  # fmt: skip
    for name, fn in SECTIONS:
        d = _load(name)
        if d is None:
            lines.append(f"## {name}\n\nNot run yet: `bench/{name}.py`.\n")
            continue
        try:
            lines += fn(d)
        except (KeyError, TypeError, ValueError) as exc:  # a half-written results file
            lines.append(f"## {name}\n\n`bench/results/{name}.json` could not be summarised ({exc!r}).\n")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")
    _update_readme()


def _update_readme() -> None:
    """Replace the block between the results markers in README.md with the headline tables."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin not in text or end not in text:
        return
    block = []
    dc = _load("deep_compression")
    if dc:
        block += deep_compression({"networks": {k: {**v, "layers": []} for k, v in dc.get("networks", {}).items()}})
    st = _load("structured")
    if st:
        block += structured(st)
    i8 = _load("int8")
    if i8:
        block += int8_headline(i8)
    au = _load("auto")
    if au and au.get("networks"):
        block += auto(au)
    lm = _load("llm")
    if lm and lm.get("rows"):
        keep = ["fp32", "rtn_w4g128", "gptq_w4g128", "awq_w4g128", "hqq_w4g128", "rtn_w3g128", "gptq_w3g128",
                "w8a8_smoothquant", "magnitude_50", "wanda_50", "sparsegpt_50", "wanda_2_4",
                "sparsegpt_50_w4g128"] + [k for k in lm["rows"] if k.startswith("peer_")]
        block += ["## Language models: SmolLM2-135M (`bench/llm.py`)\n"] + _llm_rows(lm, keep) + [""]
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + begin + "\n" + "\n".join(block).replace("## ", "### ") + "\n" + end + tail)


if __name__ == "__main__":
    main()
