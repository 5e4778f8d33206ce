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
    return (
        f"_Measured on {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores, flags: {env.get('cpu_flags', '')}), "
        f"torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}; {_when(env)}._\n"
    )


def _when(env: dict | None) -> str:
    """When and from which commit a figure was produced, and whether the machine was loaded (``environment()``)."""
    if not env or "generated_at" not in env:
        return "generated before results recorded their time and commit"
    load = env.get("loadavg") or {}
    loads = [x[0] for x in (load.get("process_start"), load.get("now")) if x]
    # the rule of slimtorch.measure.env, applied to the recorded numbers (older files flagged a run whose
    # only load was its own threads): other work at the start, or more at the end than its threads explain
    from slimtorch.measure.env import loaded as busy

    threads = (env.get("threads") or {}).get("torch") or 0
    loaded = (
        busy(load.get("process_start"), load.get("now"), threads, env.get("cpu_count"))
        if load
        else env.get("loaded_machine")
    )
    warn = (
        f", **load average up to {max(loads):.1f}: speed figures suspect**"
        if loaded
        else (f", load average ≤ {max(loads):.1f}" if loads else "")
    )
    dirty = " (+ uncommitted changes)" if env.get("uncommitted_changes") else ""
    return f"generated {env['generated_at']} from {str(env.get('commit'))[:10]}{dirty}{warn}"


def _mb(n: int | None) -> str:
    return "-" if not n else (f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB")


def deep_compression(d: dict) -> list[str]:
    out = [
        "## Deep Compression (`bench/deep_compression.py`)\n",
        "| network | dense | .slim file | ratio | kept | error dense → decoded | paper: ratio, error | decode (weights/s) | load .slim / dense |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, n in d.get("networks", {}).items():
        p = n["paper"]
        out.append(
            f"| {key} | {n['dense_bytes'] / 1024:.0f} KB | {n['slim_bytes'] / 1024:.1f} KB | **{n['ratio']:.1f}×** "
            f"| {n['weights_kept_pct']:.1f} % | {n['error_dense_pct']:.2f} % → **{n['error_decoded_pct']:.2f} %** "
            f"| {p['ratio']}×, {p['error_dense']} % → {p['error_compressed']} % | {n['decode_weights_per_second'] / 1e6:.1f} M "
            f"| {n['load_seconds']['slim'] * 1e3:.1f} ms / {n['load_seconds']['dense_safetensors'] * 1e3:.1f} ms |"
        )
    for key, n in d.get("networks", {}).items():
        sel = n.get("selection")
        if sel:
            sp = n["splits"]
            cands = "; ".join(
                f"{c['name']}: {c['slim_bytes'] / 1024:.1f} KB, {c['val_error_pct']:.2f} %" for c in sel["candidates"]
            )
            out.append(
                f"\n* {key}: chosen on validation ({sp['validation']} of the training digits, seed "
                f"{sp['validation_seed']}; trained on {sp['train']}): **{sel['chosen']}** by the rule "
                f'"{sel["rule"]}" (dense validation error {sel["dense_val_error_pct"]:.2f} %'
                f"{'' if sel['met'] else '; no candidate met it, the most accurate was taken'}). "
                f"Candidates (size, validation error): {cands}. Test error read once, for the chosen file."
            )
            for e in n.get("earlier_runs") or []:
                old = "; ".join(
                    f"{c['name']}: {c['slim_bytes'] / 1024:.1f} KB, {c['val_error_pct']:.2f} %" for c in e["candidates"]
                )
                out.append(
                    f"  * an earlier run ({e.get('generated_at') or 'date unknown'}, recipe since changed) "
                    f"{'chose ' + e['chosen'] if e['met'] else 'had no candidate meeting the rule'} "
                    f"(dense validation error {e['dense_val_error_pct']:.2f} %): {old}."
                )
    for key, n in d.get("networks", {}).items():
        steps = n.get("waterfall", [])
        if steps:
            out += [
                f"\n**{key}, size waterfall** (each step re-encodes the same weights; `slimtorch.encode.waterfall`)\n",
                "| step | bytes | ratio |",
                "|---|---|---|",
            ]
            out += [f"| {r['step']} | {r['bytes']:,} | {r['ratio']:.1f}× |" for r in steps]
    for key, n in d.get("networks", {}).items():
        layers = n.get("layers", [])
        if not layers:
            continue
        cols = [
            "layer",
            "#weights",
            "weights kept %",
            "weight bits (P+Q)",
            "weight bits (P+Q+H)",
            "index bits",
            "ratio",
            "coding",
        ]
        out += [
            f"\n**{key}, per layer** (like the paper's Tables 2–3)\n",
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
        ]
        for r in layers:
            out.append(
                "| "
                + " | ".join(f"{r.get(c):.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols)
                + " |"
            )
    out.append("\n" + _env_line(d.get("environment")))
    return out


def _fid(f: dict) -> str:
    conf = f"{f['confident_agreement']:.3f} ({f['confident_n']})" if "confident_agreement" in f else "–"
    return f"{f.get('top1_agreement', float('nan')):.3f} | {conf} | {f.get('mean_kl', float('nan')):.3f}"


def int8(d: dict) -> list[str]:
    out = [
        "## INT8 deployment (`bench/int8.py`)\n",
        "Agreement: top-1 agreement with torch fp32 on the evaluation crops; confident: the same on the crops "
        "where fp32's top-1 probability is at least 0.5 (their number in brackets).\n",
    ]
    for model, key_b in (("mobilenet_v2", "b8"), ("minilm", "b32")):
        rows = d.get(model)
        if not rows:
            continue
        if model == "minilm":
            out += _minilm_table(rows)
            continue
        out += [
            f"**{model}**\n",
            _split_line(rows.get("eval_split"), "crops"),
            f"| variant | latency b1 ms | latency {key_b} ms | speed-up b1 / {key_b} vs fastest fp32 | agreement | confident agreement | mean KL | cosine mean | size |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
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
            out += [
                "Noise floor of the MobileNetV2 crops (torch, no INT8 anywhere):\n",
                "| perturbation | agreement | confident agreement | mean KL |",
                "|---|---|---|---|",
            ]
            out += [f"| {k} | {_fid(f)} |" for k, f in d["mobilenet_noise_floor"].items()]
            floor = d.get("mobilenet_activation_floor") or {}
            old = " [earlier split: the 528 crops of 12 evaluation photos]"
            out += [
                f"| {k} (fp32 weights; every Conv/Linear input fake-quantized, bench/int8.py "
                f"mobilenet_activation_floor){old} | {_fid(f)} |"
                for k, f in floor.items()
                if k.startswith("u8_")
            ]
            out += [
                f"| u8_activations_only_percentile_99.99, the {k} most sensitive tensor(s) kept float "
                f"({', '.join(r['float'])}){old} | {_fid(r['fidelity_eval'])} |"
                for k, r in (floor.get("top_k_tensors_float") or {}).items()
                if int(k) <= 3
            ]
            out += [
                f"| u8_activations_only_percentile_99.99, the {k} most sensitive tensors kept float{old} | "
                f"{_fid(r['fidelity_eval'])} |"
                for k, r in (floor.get("top_k_tensors_float") or {}).items()
                if int(k) > 3
            ]
            out.append("")
        if model == "mobilenet_v2" and d.get("mobilenet_sweep"):
            sweep = d["mobilenet_sweep"]
            if any("fidelity_selection" in r for r in sweep.values()):
                choice = d.get("mobilenet_sweep_choice") or {}
                out += [
                    "Static INT8 settings on ONNX Runtime, no fallback, scored on the selection photos (whole "
                    f"photos apart from calibration and test); chosen: **{choice.get('chosen')}** "
                    f"({choice.get('chosen_on')}):\n",
                    "| settings | selection agreement | selection confident agreement | selection KL |",
                    "|---|---|---|---|",
                ]
                out += [f"| {k} | {_fid(r['fidelity_selection'])} |" for k, r in sweep.items()]
            else:
                out += [
                    "Static INT8 settings on ONNX Runtime, no fallback (check: held-out crops of the calibration "
                    "photos; eval: the evaluation crops; **settings were picked on the eval crops**):\n",
                    "| settings | check agreement | check KL | eval agreement | eval confident agreement | eval KL |",
                    "|---|---|---|---|---|---|",
                ]
                for k, r in sweep.items():
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
            out.append(
                f"| {name} | {r['test_accuracy'] * 100:.2f} % | {r['latency_ms_b1']:.3f} | {_mb(r.get('size_bytes'))} |"
            )
    out.append(f"\nLoad average during the run: {d.get('loadavg_start')} → {d.get('loadavg_end')} (shared machine).\n")
    out.append(_env_line(d.get("environment")))
    return out


def _split_line(split: dict | None, what: str) -> str:
    if not split:
        return (
            f"**Settings and fallback were chosen on the same {what} the fidelity is reported on** (no "
            "selection split recorded for this run).\n"
        )
    return (
        f"Calibration / selection / test: {split['calibration']} / {split['selection']} / {split['test']} {what}, "
        f"disjoint: {split['disjoint']}; settings and fallback chosen on selection, fidelity on test.\n"
    )


def _minilm_table(rows: dict) -> list[str]:
    """MiniLM INT8: cosine of the sentence embeddings with torch fp32 on the test sentences, next to the noise floor."""
    split = rows.get("eval_split")
    out = ["**minilm** (all-MiniLM-L6-v2 sentence embeddings)\n", _split_line(split, "sentences")]
    if split:
        out.append(
            f"Sentences: {split.get('text', '')}; per split by source {split.get('sources')}; "
            f"document groups {split.get('document_groups')}; cut to {split.get('seq_len')} tokens "
            f"(truncated: {split.get('truncated_to_32_tokens')}).\n"
        )
    sel = rows.get("selection") or {}
    if sel.get("smooth_alpha_sweep_all_int8"):
        sweep = ", ".join(f"{a}: {r['cosine_mean']:.4f}" for a, r in sel["smooth_alpha_sweep_all_int8"].items())
        out.append(
            f"SmoothQuant α (all-INT8 cosine mean on the selection sentences): {sweep}; chosen "
            f"**{sel.get('smooth_alpha_chosen')}**.\n"
        )
    out += [
        "| variant | latency b1 ms | latency b32 ms | speed-up b1 / b32 vs fastest fp32 | test cosine mean | "
        "test cosine min | size | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
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
        out.append(
            f"| {name} | {r['latency_ms_b1']:.2f} | {r.get('latency_ms_b32', float('nan')):.1f} "
            f"| {r.get('speedup_b1_vs_fastest_fp32', float('nan')):.2f}× / "
            f"{r.get('speedup_b32_vs_fastest_fp32', float('nan')):.2f}× | {f.get('cosine_mean', float('nan')):.4f} "
            f"| {f.get('cosine_min', float('nan')):.4f} | {_mb(r.get('size_bytes'))} | {'; '.join(note)} |"
        )
    for k, f in (rows.get("noise_floor") or {}).items():
        out.append(f"| noise floor: {k} (torch, no INT8) | | | | {f['cosine_mean']:.6f} | {f['cosine_min']:.6f} | | |")
    out += ["", f"_{_when(rows.get('environment'))}._\n"]
    return out


def structured(d: dict) -> list[str]:
    out = [
        "## Structured pruning (`bench/structured.py`)\n",
        "| model | variant | MAC reduction | fidelity | speed-up b1 eager / ORT | speed-up b32 eager / ORT | notes |",
        "|---|---|---|---|---|---|---|",
    ]

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
            out.append(
                f"| {model} | {name} | {x(v.get('mac_reduction'))} | {fid} "
                f"| {x(sp.get('batch1_eager'))} / {x(sp.get('batch1_onnxruntime'))} "
                f"| {x(sp.get('batch32_eager'))} / {x(sp.get('batch32_onnxruntime'))} | {note} |"
            )
    out.append("")
    out += [f"* {model}: {_when(m.get('environment'))}" for model, m in d.items() if isinstance(m, dict)]
    return out + [""]


def fuzz(d: dict) -> list[str]:
    out = [
        "## Fuzzing (`bench/fuzz.py`)\n",
        "| format | inputs | crashes | hangs > 1 s | slowest input | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in d.get("formats", {}).items():
        out.append(
            f"| {name} | {f['inputs']:,} | {f['crashes']} | {f['hangs_over_1s']} | {f['slowest_input_s']:.2f} s | {f.get('peak_rss_mib_so_far', 0):.0f} MiB |"
        )
    return out + [""]


def distributed(d: dict) -> list[str]:
    runs = d.get("runs", {})
    out = [
        "## Distributed (`bench/distributed.py`)\n",
        f"{d.get('task', '')}\n",
        "| configuration | train seconds | test accuracy |",
        "|---|---|---|",
    ]
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
    out = [
        "### Sensitivity sweep fanned out over processes\n",
        f"{s['task']}.\n",
        "| configuration | sweep seconds | wall seconds (with start-up) |",
        "|---|---|---|",
    ]
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
                out.append(
                    f"* {key}: run before the selection split existed (choices and the reported agreement on "
                    "the same crops); to be re-run"
                )
            singles = {k: v for k, v in n.get("best_single_knob", {}).items()}
            knob = "; ".join(
                f"{k}: "
                + (
                    f"{v['name']} {v['latency_ms']:.2f} ms, agreement {100 * v['agreement']:.1f} %"
                    if v
                    else "none met the budget"
                )
                for k, v in singles.items()
            )
            ort = n.get("original_latency_ms_ort_fp32")
            ort_s = (
                f", {ort:.2f} ms on ONNX Runtime fp32 (the fastest fp32 runtime: the chosen model is "
                f"{ort / n['chosen']['latency']['b1']['median_ms']:.2f}× faster than that)"
                if ort and n.get("chosen")
                else ""
            )
            test = ""
            if n.get("test_agreement") is not None:
                test = (
                    f" On the test photos, used once: agreement **{100 * n['test_agreement']:.1f} %** (drop "
                    f"{n['test_drop_pp']:.2f} pp: budget {'met' if n['budget_met_on_test'] else '**missed**'} on test)."
                )
            out.append(
                f"* **{key}**, target latency, max drop {n['max_drop_pp']} pp ({n.get('metric', '')}; {n.get('data', '')}), "
                f"budget {n['budget_s'] / 60:.0f} min: {n['message']} after {n['n_candidates']} candidates in "
                f"{n['search_seconds'] / 60:.1f} min; original {n['original_latency_ms']:.2f} ms (torch eager){ort_s}.{test} "
                f"Best single knobs: {knob}."
            )
            continue
        ref = n.get("reference", {})
        sel = n.get("selection_split")
        if sel and n.get("test_accuracy") is not None:
            test = (
                f" Chosen on a selection split of {sel['n']} training images the original was not trained on; "
                f"on the {sel['test_n']} test images, used once: **{100 * n['test_accuracy']:.2f} %** against the "
                f"original's {100 * n['test_baseline_accuracy']:.2f} % (drop {n['test_drop_pp']:.2f} pp: budget "
                f"{'met' if n['budget_met_on_test'] else '**missed**'} on test)."
            )
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
    out = [
        "Fallback frontier, MobileNetV2: layers kept float in the fallback's sensitivity order, fidelity on "
        "the evaluation crops of the earlier split (528 crops of 12 photos, ranked on crops of the calibration "
        "photos), speed-up over ORT fp32 timed in the same run (`mobilenet_fallback_frontier`):\n",
        "| float layers | agreement | confident agreement | mean KL | speed-up b1 | speed-up b8 |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in f["rows"].items():
        if k.startswith("float_"):
            out.append(
                f"| {len(r['float_layers'])} | {_fid(r['fidelity_eval'])} | {r['speedup_b1_vs_ort_fp32']:.2f}x | "
                f"{r['speedup_b8_vs_ort_fp32']:.2f}x |"
            )
    return out + [""]


def _adaround_table(a: dict) -> list[str]:
    """AdaRound vs round-to-nearest (``bench/int8.py mobilenet_adaround``, fidelity only)."""
    out = [
        "AdaRound vs ORT's round-to-nearest, MobileNetV2 (fidelity only; earlier split: check = held-out crops "
        "of the calibration photos, eval = the 528 crops of 12 evaluation photos; AdaRound saw the 64 "
        "calibration crops):\n",
        "| variant | check agreement | check KL | eval agreement | eval confident agreement | eval KL | AdaRound s |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in a["static"].items():
        c, e = r["fidelity_calib_check"], r["fidelity_eval"]
        secs = (r.get("adaround") or {}).get("seconds")
        out.append(
            f"| {k} | {c['top1_agreement']:.3f} | {c['mean_kl']:.3f} | {_fid(e)} | {f'{secs:.0f}' if secs else '–'} |"
        )
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
    out = [
        "## A user's LSTM through dynamic INT8 (`bench/user_models.py`)\n",
        f"{lstm['model']}, {lstm['params'] / 1e6:.2f} M parameters, weights: {lstm['weights']}; inputs: "
        f"{lstm['inputs']}. {_loadavg(d)}: {d['load_note']}.\n",
        "| variant | size | latency b1 / b32 (ms) | held-out cosine mean / min | float layers |",
        "|---|---|---|---|---|",
    ]
    for name, r in v.items():
        f = r.get("fidelity_held_out") or {}
        cos = f"{f['cosine_mean']:.4f} / {f['cosine_min']:.4f}" if f else "reference"
        size = (
            _mb(r["size_bytes"])
            if r.get("size_bytes")
            else (_mb(lstm["fp32_onnx_bytes"]) + " (ONNX)" if name == "ort_fp32" else "")
        )
        out.append(
            f"| {name} | {size} | {r['latency_ms']['b1']:.2f} / {r['latency_ms']['b32']:.1f} | {cos} | "
            f"{', '.join(r.get('float_layers') or []) or '–'} |"
        )
    ok = lstm["meets_targets"]
    out += [
        "",
        f"slimtorch's default ({lstm['int8_variant']}): **{lstm['int8_size_ratio'] * 100:.0f} %** of the fp32 "
        f"ONNX file (target ≤ {t['int8_size_ratio_max'] * 100:.0f} %: {'met' if ok['size'] else 'missed'}), "
        f"**{lstm['speedup_b1']:.2f}× / {lstm['speedup_b32']:.2f}×** faster than the fastest fp32 runtime at "
        f"batch 1 / 32 ({lstm['fastest_fp32']['b1']} / {lstm['fastest_fp32']['b32']}; target ≥ {t['speedup_min']}×), "
        f"held-out cosine **{lstm['cosine_mean']:.4f}** (target ≥ {t['cosine_min']}).",
        "",
        "Input spread (std of the log-mel field) against fidelity, all-INT8 vs with the fallback:",
        "",
        "| log std | all-INT8 cosine | with fallback: cosine, float layers, size |",
        "|---|---|---|",
    ]
    for k, row in lstm.get("input_sensitivity", {}).items():
        a, b = row["all_int8"], row["with_fallback"]
        out.append(
            f"| {k.removeprefix('log_std_')} | {a['cosine_mean']:.4f} | {b['cosine_mean']:.4f}, "
            f"{', '.join(b['float_layers']) or '–'}, {_mb(b['size_bytes'])} |"
        )
    return out + [""]


def _llm_rows(d: dict, names: list[str] | None = None) -> list[str]:
    rows = d.get("rows", {})
    fp = (rows.get("fp32") or {}).get("perplexity")
    rtn = {4: (rows.get("rtn_w4g128") or {}).get("perplexity"), 3: (rows.get("rtn_w3g128") or {}).get("perplexity")}
    out = [
        "| row | test perplexity | increase over fp32 | vs RTN's (magnitude's) increase | selection perplexity | whole file | "
        "quantized Linears | calibration | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
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
        vs = (
            f"{(p - fp) / (base - fp):.2f}×"
            if bits and base and fp and base > fp and not name.startswith("rtn")
            else "–"
        )
        out.append(
            f"| {name} | **{p:.2f}** | {inc} | {vs} | {r.get('selection_perplexity', float('nan')):.2f} | "
            f"{'–' if peer else _mb(r.get('size_bytes'))} | "
            f"{_mb(r.get('size_bytes')) if peer else _mb(r.get('quantized_linear_bytes'))} | "
            f"{r.get('calib_seconds', 0):.0f} s | "
            f"{r.get('peak_rss_mb') or 0:.0f} MB |"
        )
    return out


def llm(d: dict) -> list[str]:
    """SmolLM2-135M: weight-only quantization and pruning against fp32 and the peers (``bench/llm.py``)."""
    t = d.get("tokens", {})
    text = t.get("text", {})
    out = [
        "## Language models: SmolLM2-135M (`bench/llm.py`)\n",
        f"{d.get('model', '')}. Perplexity over {t.get('test_windows')} disjoint windows of {t.get('window')} "
        f"test tokens ({d.get('eval_tokens')} tokens); calibration {t.get('calib_windows')} windows "
        f"({d.get('calib_tokens')} tokens) from a disjoint stream; choices between variants on "
        f"{t.get('selection_tokens')} selection tokens. Text: {', '.join(text.get('sources', []))} "
        f"(document groups per split {text.get('groups')}, disjoint: {text.get('disjoint')}). "
        "Each row runs in its own process; peak RSS is that process's. The `*_streamed` rows calibrate "
        "layer-streamed in a process of their own that never loads the float model: their peak RSS and "
        "calibration time are that process's (imports + calibration; `peak_rss_phase` in the file), their "
        "perplexity is of the folder it wrote.\n",
    ]
    out += _llm_rows(d)
    out += llm_slim(d)
    out += ["", "Targets of the issue, checked on this file:", ""] + [f"* {t}" for t in llm_targets(d)]
    out += llm_deploy(d)
    out.append("\n" + _env_line(d.get("environment")))
    return out


def llm_slim(d: dict) -> list[str]:
    """Deep Compression of the decoder into one ``.slim`` file (the ``slim`` section and rows, ``bench/llm_slim.py``)."""
    s, rows = d.get("slim"), d.get("rows", {})
    if not s:
        return ["", "Deep Compression `.slim` file (`slim` row): not run."]
    fp = s.get("fp32_size_bytes") or 0
    b, g, ok = s.get("breakdown_bytes", {}), s.get("embedding_grid", {}), s.get("bit_exact", {})
    grid = f"{g.get('bits')}-bit group {g.get('group_size')}" + (", float zero" if g.get("float_zero") else "")

    def line(label, n, note=""):
        pct = f"{100 * n / fp:.2f} %" if n and fp else "–"
        return f"| {label} | {_mb(n)} | {pct} | {note} |"

    peer = (rows.get("peer_ort_default_w4g128") or {}).get("size_bytes")
    out = [
        "",
        f"**Deep Compression into one `.slim` file** (`slim` section; `bench/llm_slim.py`): SparseGPT 50 % + "
        f"4-bit group 128 decoder, embedding {grid} (chosen on the selection split), rANS-coded positions, codes, "
        f"zeros and float16 scales. Test perplexity **{s.get('perplexity', float('nan')):.2f}** (float32 "
        f"{s.get('fp32_perplexity', float('nan')):.2f}, same run); **{s.get('bits_per_weight', float('nan')):.2f} "
        "bits per weight** (file bits / weights of the quantized decoder Linears and the embedding). Decoded "
        f"bit for bit (codes, scales, zeros, float tensors; dequantized weights; logits): "
        f"{'yes' if ok and all(ok.get(k) for k in ('tensors', 'dequantized_weights', 'logits')) else '**no**'}. "
        f"Selection perplexity of the compressed decoder with the float32 embedding: "
        f"{(rows.get('slim') or {}).get('decoder_selection_perplexity', float('nan')):.2f}; with the chosen "
        f"embedding: {s.get('selection_perplexity', float('nan')):.2f}.\n",
        "| file | size | of float32 | note |",
        "|---|---|---|---|",
        line("**`.slim`**", s.get("size_bytes"), f"budget {_mb(s.get('size_budget_bytes'))}"),
        line("the same model as plain bit-packed integers", s.get("packed_bytes"), "computed: no entropy coding"),
        line(
            "the same model as slimtorch's int4 safetensors folder",
            s.get("int4_safetensors_bytes"),
            "float32 scales and embedding (that format packs Linears only)",
        ),
        line("float32 safetensors (the reference)", fp),
        line("ONNX Runtime int4 (`peer_ort_default_w4g128`)", peer, "its quantized Linears only, another model"),
        line(
            "slimtorch's int4 ONNX model (`deploy` section)",
            (d.get("deploy") or {}).get("int4_size_bytes"),
            "whole model, GPTQ w4g128 decoder (not sparse), its own embedding grid",
        ),
        "",
        f"Breakdown: embedding {_mb(b.get('embedding'))}, decoder codes {_mb(b.get('decoder_codes'))}, sparse "
        f"positions {_mb(b.get('decoder_indices'))}, scales {_mb(b.get('decoder_scales'))}, zeros "
        f"{_mb(b.get('decoder_zeros'))}, the rest (norms, container, manifest) {_mb(b.get('other'))}.",
        "",
    ]
    cands = (rows.get("slim") or {}).get("embedding_candidates") or []
    if cands:
        out += [
            "Embedding candidates (selection split, on the compressed model):",
            "",
            "| grid | coded | file (estimate) | fits | selection perplexity |",
            "|---|---|---|---|---|",
        ]
        for c in cands:
            name = f"{c['bits']}-bit g{c['group_size']}" + (" float zero" if c.get("float_zero") else "")
            out.append(
                f"| {name} | {_mb(c['coded_bytes'])} | {_mb(c['file_bytes_estimate'])} | "
                f"{'yes' if c['fits'] else 'no'} | {c['selection_perplexity']:.2f} |"
            )
    more = [k for k, r in rows.items() if k.startswith("slim_") and not r.get("error")]
    for k in more:
        r = rows[k]
        out.append(
            f"\n`{k}` ({r.get('config', {}).get('decoder')} decoder, {r.get('config', {}).get('grid')}): "
            f"{_mb(r.get('size_bytes'))}, {r.get('bits_per_weight', float('nan')):.2f} bits per weight, "
            f"test perplexity {r.get('perplexity', float('nan')):.2f}."
        )
    return out


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def llm_deploy(d: dict) -> list[str]:
    """The decoder on ONNX Runtime: int4 / int8 vs fp32 and onnxruntime-genai (the ``deploy`` section)."""
    dp = d.get("deploy")
    if not dp:
        return ["", "### Deployment on ONNX Runtime (`bench/llm_deploy.py`): not run."]
    fp = dp.get("fp32_size_bytes") or 0
    sp = dp.get("speed", {})
    cfg = dp.get("chosen_config", {})

    def row(label, key, ppl, size, note=""):
        s = sp.get(key, {})
        frac = f"{100 * size / fp:.1f} %" if size and fp else "–"
        return (
            f"| {label} | {_f(s.get('decode_tokens_per_s_median'), '{:.1f}')} | "
            f"{_f(s.get('prefill_ms_median'), '{:.0f}')} | {_f(ppl)} | {_mb(size)} | {frac} | {note} |"
        )

    env = dp.get("environment", {})
    out = [
        "",
        "### Deployment on ONNX Runtime (`bench/llm_deploy.py`, `deploy` section)\n",
        f"{dp.get('method')} exported with `slimtorch.deploy.lm.export_onnx` (MatMulNBits carrying the GPTQ "
        f"integers, GroupQueryAttention with a KV cache); embedding / tied lm_head "
        f"{cfg.get('embedding_bits')}-bit group {cfg.get('embedding_group_size')}, accuracy level "
        f"{cfg.get('accuracy_level')} (chosen on the selection split: smallest, then fastest, within "
        f"{dp.get('select_budget')} of the exact export's {_f(dp.get('selection_reference_perplexity'))}). "
        f"Batch 1, {dp.get('threads')} threads for every runtime, {dp.get('rounds')} interleaved rounds (median): "
        f"greedy decode of {dp.get('new_tokens')} tokens after a {dp.get('prompt_tokens')}-token prompt "
        f"(tokens/s of the cached steps, prefill excluded) and one {dp.get('prefill_tokens')}-token prefill. "
        f"Perplexity on the test windows above. Load average {dp.get('load_average_before')} → "
        f"{dp.get('load_average_after')}.\n",
        "| runtime | decode tokens/s | prefill ms | perplexity | size | of fp32 | |",
        "|---|---|---|---|---|---|---|",
        row("ONNX Runtime fp32 (slimtorch export)", "fp32", dp.get("fp32_perplexity"), fp),
        row("**ONNX Runtime int4 (slimtorch)**", "int4", dp.get("int4_perplexity"), dp.get("int4_size_bytes")),
        row(
            "ONNX Runtime int8 (slimtorch, RTN 8-bit g128)",
            "int8",
            dp.get("int8_perplexity"),
            dp.get("int8_size_bytes"),
        ),
        row(
            "PyTorch fp32 `generate` (eager, KV cache)",
            "pytorch_fp32",
            dp.get("fp32_perplexity"),
            dp.get("fp32_safetensors_bytes"),
            "same weights as fp32",
        ),
        row(
            "onnxruntime-genai fp32",
            "genai_fp32",
            dp.get("peer_genai_fp32_perplexity"),
            dp.get("peer_genai_fp32_size_bytes"),
            "peer",
        ),
        row(
            "onnxruntime-genai int4, lm_head fp32",
            "genai_int4",
            dp.get("peer_genai_int4_perplexity"),
            dp.get("peer_genai_int4_size_bytes"),
            "peer",
        ),
        row(
            "onnxruntime-genai int4, lm_head int4",
            "genai_int4_all",
            dp.get("peer_genai_int4_all_perplexity"),
            dp.get("peer_genai_int4_all_size_bytes"),
            "peer",
        ),
        "",
        f"Same integers, float kernels (accuracy level 0, float embedding): perplexity "
        f"{_f(dp.get('int4_exact_perplexity'))} vs PyTorch with the same QuantLinear layers "
        f"{_f(dp.get('pytorch_quantized_perplexity'))}.",
    ]
    if dp.get("peer", {}).get("error"):
        out.append(f"\nThe peer failed in this run: {dp['peer']['error']}")
    out += ["", "Targets of the deployment issue, checked on this file:", ""] + [f"* {t}" for t in deploy_targets(d)]
    out.append("\n" + _env_line(env))
    return out


def deploy_targets(d: dict) -> list[str]:
    dp, rows, out = d.get("deploy") or {}, d.get("rows", {}), []

    def check(label, ok, detail):
        out.append(
            f"{label}: {detail}: **{'met' if ok else 'missed'}**" if ok is not None else f"{label}: not measured"
        )

    f4, f32 = dp.get("int4_tokens_per_s"), dp.get("fp32_tokens_per_s")
    check(
        "int4 decode ≥ 3.5× fp32 ONNX Runtime",
        f4 and f32 and f4 >= 3.5 * f32,
        f"{_f(f4, '{:.1f}')} vs {_f(f32, '{:.1f}')} tokens/s ({_f(f4 and f32 and f4 / f32)}×)",
    )
    gptq = (rows.get("gptq_w4g128") or {}).get("perplexity")
    p4 = dp.get("int4_perplexity")
    check(
        "int4 file perplexity ≤ part 1's GPTQ w4g128 + 1.0",
        p4 and gptq and p4 <= gptq + 1.0,
        f"{_f(p4)} vs ≤ {_f(gptq and gptq + 1.0)}",
    )
    s4, fp = dp.get("int4_size_bytes"), dp.get("fp32_size_bytes")
    check("int4 file ≤ 20 % of fp32", s4 and fp and s4 <= 0.2 * fp, f"{_mb(s4)} vs ≤ {_mb(fp and 0.2 * fp)}")
    g4, gp4 = dp.get("peer_genai_int4_tokens_per_s"), dp.get("peer_genai_int4_perplexity")
    check(
        "faster than onnxruntime-genai int4 (fp32 lm_head) and lower perplexity",
        None if g4 is None or gp4 is None else bool(f4 > g4 and p4 < gp4),
        f"{_f(f4, '{:.1f}')} vs {_f(g4, '{:.1f}')} tokens/s, perplexity {_f(p4)} vs {_f(gp4)}",
    )
    ga = dp.get("peer_genai_int4_all_perplexity")
    check(
        "lower perplexity than onnxruntime-genai int4 with quantized lm_head",
        None if ga is None else bool(p4 < ga),
        f"{_f(p4)} vs {_f(ga)}",
    )
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
            out.append(
                f"{label}: {fmt.format(value)} vs ≤ {fmt.format(limit)}: **{'met' if value <= limit else 'missed'}**"
            )

    rtn4, rtn3, mag = ppl("rtn_w4g128"), ppl("rtn_w3g128"), ppl("magnitude_50")
    peers4 = [ppl(k) for k in rows if k.startswith("peer_") and "w4" in k and ppl(k) is not None]
    for m in ("gptq_w4g128", "awq_w4g128"):
        check(f"{m} perplexity ≤ fp32 + 0.7 × RTN's increase", ppl(m), rtn4 and fp + 0.7 * (rtn4 - fp))
        if peers4 and ppl(m) is not None:
            out.append(
                f"{m} below every 4-bit peer ({min(peers4):.2f} best): "
                f"**{'met' if ppl(m) < min(peers4) else 'missed'}**"
            )
    check("gptq_w3g128 perplexity ≤ fp32 + RTN's 3-bit increase / 3", ppl("gptq_w3g128"), rtn3 and fp + (rtn3 - fp) / 3)
    for m in ("wanda_50", "sparsegpt_50"):
        check(f"{m} perplexity ≤ fp32 + 0.1 × magnitude's increase", ppl(m), mag and fp + 0.1 * (mag - fp))
    llmc = ppl("peer_llmcompressor_sparsegpt_50")
    check("sparsegpt_50 below llmcompressor's SparseGPT on the same tokens", ppl("sparsegpt_50"), llmc)
    p = rows.get("peer_llmcompressor_gptq_w4g64") or {}
    # the layer-streamed rows measure the calibration process alone; the in-memory row also holds the model
    gnames = [
        n
        for n in ("gptq_w4g128_streamed", "gptq_w4g128_streamed_b4", "gptq_w4g128")
        if (rows.get(n) or {}).get("peak_rss_mb") and not rows[n].get("error")
    ]
    for gname in gnames:
        g = rows[gname]
        if not p.get("peak_rss_mb"):
            break
        check(
            f"GPTQ calibration peak RSS ≤ half of llmcompressor's (MB; {gname})",
            g["peak_rss_mb"],
            p["peak_rss_mb"] / 2,
            "{:.0f}",
        )
        busy = " (time taken on a loaded machine)" if g.get("calib_contended") else ""
        check(
            f"GPTQ calibration time ≤ llmcompressor's (s; {gname}, {g.get('threads') or (d.get('environment') or {}).get('torch_threads', '?')} thread(s)){busy}",
            g.get("calib_seconds"),
            p.get("calib_seconds"),
            "{:.0f}",
        )
    if not gnames or not p.get("peak_rss_mb"):
        out.append("GPTQ calibration memory and time against llmcompressor: not measured")
    s = d.get("slim") or {}
    if s.get("size_bytes") and s.get("fp32_size_bytes"):
        check(
            ".slim of 50 % sparse + 4-bit ≤ 10 % of the float32 size (MB)",
            s["size_bytes"] / 1e6,
            s["fp32_size_bytes"] / 1e7,
            "{:.1f}",
        )
        gptq = ppl("gptq_w4g128")
        check(".slim perplexity ≤ GPTQ w4g128's + 0.5", s.get("perplexity"), gptq and gptq + 0.5)
    else:
        out.append(".slim (Deep Compression) size and perplexity: not measured")
    return out


SECTIONS = [
    ("deep_compression", deep_compression),
    ("int8", int8),
    ("structured", structured),
    ("distributed", distributed),
    ("auto", auto),
    ("fuzz", fuzz),
    ("user_models", user_models),
    ("llm", llm),
]


def int8_headline(d: dict) -> list[str]:
    """slimtorch INT8 against the fastest fp32 runtime of the same run, one row per model."""
    out = [
        "## INT8 deployment (`bench/int8.py`)\n",
        "| model | batch | speed-up vs fastest fp32 | fidelity vs fp32 | size vs fp32 | float layers |",
        "|---|---|---|---|---|---|",
    ]
    for model, big, fid in (("mobilenet_v2", "b8", "agreement / KL"), ("minilm", "b32", "cosine")):
        rows = d.get(model) or {}
        r, base = rows.get("slimtorch_int8") or rows.get("slimtorch_int8_dynamic"), rows.get("ort_fp32")
        if not r or not base:
            continue
        f = r.get("fidelity", {})
        shown = (
            f"{f['top1_agreement'] * 100:.1f} % / {f['mean_kl']:.3f}"
            if fid.startswith("agreement")
            else f"{f['cosine_mean']:.4f} mean, {f['cosine_min']:.4f} min"
        )
        split = rows.get("eval_split")
        floor = next(iter((rows.get("noise_floor") or {}).values()), None)
        shown += (
            f" on {split['test']} held-out test {'sentences' if model == 'minilm' else 'crops'}"
            if split
            else " (**settings chosen on the reported crops**)"
        )
        tgt = (r.get("config") or {}).get("target") or {}
        checks = [
            ("min_agreement", "top1_agreement", 1, "agreement ≥ {:.0%}"),
            ("max_kl", "mean_kl", -1, "KL ≤ {}"),
            ("min_cosine", "cosine_mean", 1, "cosine ≥ {}"),
        ]
        marks = [
            fmt.format(tgt[key]) + (": met" if sign * (f[metric] - tgt[key]) >= 0 else ": **missed**")
            for key, metric, sign, fmt in checks
            if tgt.get(key) is not None and metric in f
        ]
        if marks and split:
            shown += f" (targets on test: {', '.join(marks)})"
        if floor and model == "minilm":
            shown += f"; fp32 under 8-bit input rounding: {floor['cosine_mean']:.6f}"
        elif floor:
            shown += (
                f"; fp32 under 8-bit input rounding: {floor['top1_agreement'] * 100:.1f} % / {floor['mean_kl']:.3f}"
            )
        env = rows.get("environment") or {}
        loaded = " (load average > 2 during the run)" if env.get("loaded_machine") else ""
        out.append(
            f"| {model} | 1 / {big[1:]} | {r['speedup_b1_vs_fastest_fp32']:.2f}× / "
            f"{r[f'speedup_{big}_vs_fastest_fp32']:.2f}×{loaded} | {fid}: {shown} | "
            f"{r['size_bytes'] / base['size_bytes'] * 100:.0f} % | {len(r.get('float_layers') or [])} |"
        )
    le = d.get("lenet5_mnist", {}).get("rows", {})
    if "slimtorch_int8" in le and "ort_fp32" in le:
        r, base = le["slimtorch_int8"], le["ort_fp32"]
        loaded = (
            " (load average > 2 during the run)"
            if (d["lenet5_mnist"].get("environment") or {}).get("loaded_machine")
            else ""
        )
        out.append(
            f"| lenet5 (MNIST) | 1 | {base['latency_ms_b1'] / r['latency_ms_b1']:.2f}×{loaded} | test accuracy "
            f"{r['test_accuracy'] * 100:.2f} % (drop {r['accuracy_drop_pp']:.2f} pp) | "
            f"{r['size_bytes'] / base['size_bytes'] * 100:.0f} % | – |"
        )
    out.append("")
    return out


_PROFILE_LABELS = {
    "integer_kernels": "integer kernels (non-depthwise)",
    "depthwise_int8": "depthwise convs, int8",
    "quantize_dequantize": "Quantize / Dequantize (incl. dynamic)",
    "float_compute": "float Conv / MatMul / Gemm (non-depthwise)",
    "depthwise_float": "depthwise convs, float",
    "layout": "layout (Transpose, Reorder, Reshape, ...)",
    "elementwise_other": "elementwise and other",
    "between_kernels": "between kernels (executor, profiler)",
}


def _cell(c: dict) -> str:
    return f"{c['ms']:.2f} ({c['pct']:.0f} %, {c['nodes']})" if c["nodes"] or c["ms"] > 0.005 else "–"


def _profile_model(name: str, p: dict) -> list[str]:
    """One model's per-category table (fp32 and INT8 at each batch), its slowest INT8 operators, its bounds."""
    batches = [k for k in p if k.startswith("b") and k[1:].isdigit()]
    head = " | ".join(f"ORT fp32 b{p[b]['batch']} | slimtorch INT8 b{p[b]['batch']}" for b in batches)
    out = [
        f"**{name}** (INT8 float layers: {', '.join(p.get('float_layers') or []) or 'none'}; the same as the "
        f"headline row: {p.get('float_layers_as_headline')})\n",
        f"| category | {head} |",
        "|---|" + "---|" * (2 * len(batches)),
    ]
    for cat in p[batches[0]]["ort_fp32"]["categories"]:
        cells = " | ".join(
            f"{_cell(p[b]['ort_fp32']['categories'][cat])} | {_cell(p[b]['slimtorch_int8']['categories'][cat])}"
            for b in batches
        )
        out.append(f"| {_PROFILE_LABELS.get(cat, cat)} | {cells} |")
    out.append(
        "| **total per run (profiled)** | "
        + " | ".join(
            f"**{p[b]['ort_fp32']['total_ms']:.2f}** | **{p[b]['slimtorch_int8']['total_ms']:.2f}**" for b in batches
        )
        + " |"
    )
    out.append(
        "| INT8 speed-up over ORT fp32: profiled / unprofiled, interleaved | "
        + " | ".join(
            f"{p[b]['speedup_profiled_vs_ort_fp32']:.2f}× | {p[b]['speedup_unprofiled_vs_ort_fp32']:.2f}×"
            for b in batches
        )
        + " |"
    )
    out.append("")
    for b in batches:
        ops = list(p[b]["slimtorch_int8"]["ops"].items())[:6]
        out.append(
            f"Slowest INT8 operators at batch {p[b]['batch']}: "
            + ", ".join(f"{k} {o['pct']:.0f} % ({o['nodes']})" for k, o in ops)
            + ".\n"
        )
    rows = list(p[batches[0]]["amdahl_speedup_vs_ort_fp32"])
    out += [
        "Amdahl bounds: the INT8 speed-up over ORT fp32 (unprofiled, interleaved) if only the named time went "
        "away or got faster, every other operator keeping its profiled share:\n",
        "| change | " + " | ".join(f"batch {p[b]['batch']}" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    out.append(
        "| as measured | " + " | ".join(f"{p[b]['speedup_unprofiled_vs_ort_fp32']:.2f}×" for b in batches) + " |"
    )
    for r in rows:
        out.append(f"| {r} | " + " | ".join(f"{p[b]['amdahl_speedup_vs_ort_fp32'][r]:.2f}×" for b in batches) + " |")
    need = []
    for b in batches:
        k = p[b]["integer_kernel_speedup_needed_alone"]
        need.append(
            f"batch {p[b]['batch']}: {p[b]['int8_share_to_remove_for_target'] * 100:.0f} % of the INT8 time "
            f"must go; integer kernels alone would have to get "
            + (f"{k:.1f}× faster" if k is not None else "faster than free: impossible")
        )
    out += ["", f"For {p[batches[0]]['target_speedup']}× ({'; '.join(need)}).\n"]
    return out


def _ratio(fp: dict, q: dict, float_cat: str, int_cat: str) -> float:
    """How much faster the integer kernels of ``int_cat`` run than the fp32 ops they replace: the fp32 model's
    ``float_cat`` time less what the INT8 model still spends on float layers of that kind (taken to cost the same)."""
    f, i = fp["categories"], q["categories"]
    return (f[float_cat]["ms"] - i[float_cat]["ms"]) / i[int_cat]["ms"] if i[int_cat]["ms"] else float("nan")


def _ceiling(g: dict | None) -> str:
    r = [
        v["u8s8_MatMulInteger"]["gop_s"] / v["fp32_MatMul"]["gop_s"]
        for v in (g or {}).values()
        if "u8s8_MatMulInteger" in v and "fp32_MatMul" in v
    ]
    return f"{min(r):.1f}–{max(r):.1f}×" if r else "not measured"


def _pcts(p: dict, batches: list[str], fn) -> str:
    return " / ".join(fn(p[b]) for b in batches)


def _diagnosis(mb: dict | None, lm: dict | None, ceiling: dict | None) -> list[str]:
    """The profile read out: which operators eat the INT8 time and what each speed item can gain at most."""
    out = ["**Diagnosis** (computed from the tables above; batch 1 / large batch):\n"]
    share = lambda cats: lambda r: f"{sum(r['slimtorch_int8']['categories'][c]['pct'] for c in cats):.0f} %"
    bound = lambda key: lambda r: f"{r['amdahl_speedup_vs_ort_fp32'][key]:.2f}×"
    speed = lambda fc, ic: lambda r: f"{_ratio(r['ort_fp32'], r['slimtorch_int8'], fc, ic):.1f}×"
    if mb:
        b = [k for k in mb if k.startswith("b") and k[1:].isdigit()]
        island = "Q/DQ, layout and float islands removed"
        first = [(r["slowest_nodes"][0], k) for k in b for r in [mb[k]["slimtorch_int8"]]]
        out += [
            f"- MobileNetV2: the integer pointwise / full convs take {_pcts(mb, b, share(['integer_kernels']))} of the "
            f"INT8 time and run {_pcts(mb, b, speed('float_compute', 'integer_kernels'))} "
            "faster than the fp32 convs they replace (float-kept layers taken to cost the same in both; the u8s8 "
            f"`MatMulInteger` over fp32 `MatMul` ceiling, `gemm_ceiling`, is {_ceiling(ceiling)}). The int8 **depthwise convs** take "
            f"{_pcts(mb, b, share(['depthwise_int8']))} for only "
            f"{_pcts(mb, b, speed('depthwise_float', 'depthwise_int8'))} "
            "over fp32 depthwise: they are the weakest integer kernel.",
            f"- The fallback's **float islands** cost {_pcts(mb, b, share(['float_compute', 'depthwise_float']))} of the "
            f"INT8 time in float convs, plus {_pcts(mb, b, share(['quantize_dequantize', 'layout']))} in the "
            "Quantize / Dequantize, Reorder (NCHWc ↔ NCHW) and Transpose (NCHW ↔ NHWC, ORT runs QLinearConv "
            "channels-last) nodes at their borders; the slowest single node is "
            + ", ".join(f"`{n['node']}` ({n['op']}, {n['pct']:.0f} % at batch {mb[k]['batch']})" for n, k in first)
            + (
                " (ORT's name for the first Conv + ReLU6, `features.0.0`, kept float with the first depthwise conv: "
                "both at 112×112)"
                if all(n["node"] == "hardtanh_nchwc" for n, _ in first)
                else ""
            )
            + ".",
            f"- Bounds: removing all Q/DQ, layout and float-island time gives at most {_pcts(mb, b, bound(island))}; "
            f"integer kernels alone (everything else free) {_pcts(mb, b, bound('only integer kernels left (everything else free)'))}; "
            "2.5× needs "
            + _pcts(mb, b, lambda r: f"{r['int8_share_to_remove_for_target'] * 100:.0f} %")
            + " of the INT8 time to go. So: at the large batch, getting the float islands to int8 (fidelity "
            "recovered by training, not by float layers) with their borders is enough on paper; at batch 1 it is "
            "not, and the depthwise and small pointwise integer kernels have to get faster too.",
        ]
    if lm:
        b = [k for k in lm if k.startswith("b") and k[1:].isdigit()]
        ops = lambda r: r["slimtorch_int8"]["ops"]  # noqa: E731
        mul = lambda r: (
            ops(r).get("Mul", {}).get("nodes", 0) - r["ort_fp32"]["ops"].get("Mul", {}).get("nodes", 0),  # noqa: E731
            100
            * (ops(r).get("Mul", {}).get("ms", 0) - r["ort_fp32"]["ops"].get("Mul", {}).get("ms", 0))
            / r["slimtorch_int8"]["total_ms"],
        )
        top_other = lambda r: ", ".join(
            f"{k} {o['pct']:.0f} %"
            for k, o in ops(r).items()  # noqa: E731
            if o["category"] == "elementwise_other" and o["pct"] >= 1
        )
        out += [
            f"- MiniLM: the integer GEMMs (`DynamicQuantizeMatMul`, activation quantization fused in) take only "
            f"{_pcts(lm, b, share(['integer_kernels']))} of the INT8 time and run "
            f"{_pcts(lm, b, speed('float_compute', 'integer_kernels'))} "
            "faster than the fp32 MatMuls they replace: the kernels are not the problem. The float ops around them "
            f"are: elementwise and other {_pcts(lm, b, share(['elementwise_other']))} (at the large batch: "
            f"{top_other(lm[b[-1]])}), float MatMuls {_pcts(lm, b, share(['float_compute']))} (the attention "
            "products, activation × activation, and the fallback's float layer), layout "
            f"{_pcts(lm, b, share(['layout']))}.",
            f"- SmoothQuant's per-channel input scaling is an explicit `Mul` before every smoothed Linear: "
            f"{mul(lm[b[0]])[0]} more `Mul` nodes than fp32, {_pcts(lm, b, lambda r: f'{mul(r)[1]:.0f} %')} of the INT8 "
            "time, pure INT8 overhead. BERT is post-LN: a LayerNorm's output is also the residual, so the scales "
            "cannot fold into it as in pre-LN decoders; one scale shared by Q, K and V and the attention output "
            "projection's folded into V's output rows (exact: the context is linear in V) leave 3 `Mul`s per layer "
            "of 6, so at most half of that share.",
            f"- Bounds: Q/DQ, layout and float MatMuls removed gives at most "
            f"{_pcts(lm, b, bound('Q/DQ, layout and float islands removed'))}; 2.5× needs "
            + _pcts(lm, b, lambda r: f"{r['int8_share_to_remove_for_target'] * 100:.0f} %")
            + " of the INT8 time to go, so the float elementwise ops (LayerNorm, GELU, Softmax, the SmoothQuant "
            "`Mul`s) have to get cheaper, in INT8 and not just in the GEMMs; faster integer GEMMs alone cannot "
            "reach it (2× faster: "
            f"{_pcts(lm, b, bound('integer kernels (incl. depthwise) 2x faster'))}).",
        ]
    return out + [""]


def int8_profile(d: dict) -> list[str]:
    """Where the time goes (``bench/int8.py profile``): per-category ORT profiles and the bounds they imply."""
    out = []
    for key, name in (("mobilenet_profile", "MobileNetV2"), ("minilm_profile", "all-MiniLM-L6-v2")):
        p = d.get(key)
        if not p or "error" in p:
            continue
        out += _profile_model(name, p)
        out.append(f"_{_when(p.get('environment'))}; {_loadavg(p)}._\n")
    ok = {k: d[k] for k in ("mobilenet_profile", "minilm_profile") if d.get(k) and "error" not in d[k]}
    if ok:
        out += _diagnosis(ok.get("mobilenet_profile"), ok.get("minilm_profile"), d.get("gemm_ceiling"))
    ab = d.get("minilm_opset_ab")
    if ab and "rows" in ab:
        out += _opset_ab(ab)
    ov = d.get("openvino_ab")
    if ov and "mobilenet_v2" in ov:
        out += _openvino_ab(ov)
    return out


def _openvino_ab(ov: dict) -> list[str]:
    """The same ONNX files on OpenVINO next to ONNX Runtime (``bench/int8.py openvino_ab``)."""
    out = [
        f"**A second runtime, measured** (`bench/int8.py openvino_ab`, OpenVINO {ov['openvino_version'].split('-')[0]}, "
        "1 thread, "
        "interleaved in one process with ONNX Runtime): the same fp32 and slimtorch INT8 ONNX files on both "
        "runtimes, plus OpenVINO's bf16 (AMX tiles on this CPU; not INT8). Speed-up against the fastest fp32 "
        "of the run (torch, ORT or OpenVINO); fidelity vs torch fp32 on the held-out test data.\n",
        "| model | variant | latency ms (small / large batch) | speed-up vs fastest fp32 | test fidelity |",
        "|---|---|---|---|---|",
    ]
    for model, (b1, b2) in (("mobilenet_v2", (1, 8)), ("minilm", (1, 32))):
        for k, r in (ov.get(model) or {}).get("rows", {}).items():
            f = r["fidelity"]
            fid = (
                f"agreement {100 * f['top1_agreement']:.1f} %, KL {f['mean_kl']:.4f}"
                if model == "mobilenet_v2"
                else f"cosine {f['cosine_mean']:.4f} mean / {f['cosine_min']:.4f} min"
            )
            out.append(
                f"| {model} | {k} | {r[f'latency_ms_b{b1}']:.2f} / {r[f'latency_ms_b{b2}']:.1f} (b{b1} / b{b2}) | "
                f"{r[f'speedup_b{b1}_vs_fastest_fp32']:.2f}× / {r[f'speedup_b{b2}_vs_fastest_fp32']:.2f}× | {fid} |"
            )
    out += ["", *_openvino_reading(ov), "", f"_{_when(ov.get('environment'))}; {_loadavg(ov)}._\n"]
    return out


def _openvino_reading(ov: dict) -> list[str]:
    """What the OpenVINO rows say about issue 23's targets, read from the numbers."""
    mb, lm = ov["mobilenet_v2"]["rows"], ov["minilm"]["rows"]
    on = {"ONNX Runtime": "slimtorch_int8_on_ort", "OpenVINO": "slimtorch_int8_on_openvino"}
    sp = {b: {rt: mb[k][f"speedup_b{b}_vs_fastest_fp32"] for rt, k in on.items()} for b in (1, 8)}
    best = {b: max(sp[b], key=sp[b].get) for b in sp}
    bf, lm_ov = lm["openvino_bf16_amx"], lm["slimtorch_int8_dynamic_all_int8_on_openvino"]
    return [
        f"Reading: the best INT8 MobileNetV2 is {sp[1][best[1]]:.2f}× at batch 1 ({best[1]}) and "
        f"{sp[8][best[8]]:.2f}× at batch 8 ({best[8]}); both runtimes run the same Q/DQ graph (fidelity in the "
        "table). OpenVINO runs the dynamic-INT8 MiniLM file (`DynamicQuantizeLinear` / `MatMulInteger`) at "
        f"{lm_ov['speedup_b1_vs_fastest_fp32']:.2f}× / {lm_ov['speedup_b32_vs_fastest_fp32']:.2f}× of the fastest "
        "fp32. OpenVINO's bf16 (AMX) runs MiniLM at "
        f"{bf['speedup_b1_vs_fastest_fp32']:.2f}× / {bf['speedup_b32_vs_fastest_fp32']:.2f}× (batch 1 / 32) at "
        f"cosine {bf['fidelity']['cosine_mean']:.5f} mean / {bf['fidelity']['cosine_min']:.5f} min, against "
        "INT8's fidelity target of 0.999 / 0.995 — but it is not INT8, and not what issue 23 measures."
    ]


def _opset_ab(ab: dict) -> list[str]:
    """The first fix the profile points to, A/B: MiniLM exported at opset 20 (one ``Gelu`` node) vs 18."""
    rows = ab["rows"]
    out = [
        "**First fix, measured** (`bench/int8.py minilm_opset_ab`): MiniLM exported at ONNX opset 20, where "
        "GELU is one `Gelu` node ORT runs as one kernel, instead of opset 18's Div / Erf / Add / Mul / Mul that "
        "ORT does not fuse back; fp32 exported both ways too, everything else the headline recipe (alpha "
        "sweep and fallback on the selection sentences), all timed interleaved in one process; speed-up against "
        "the fastest fp32 of the run (either opset or torch), cosine vs torch fp32 on "
        f"{rows['slimtorch_int8_opset18']['fidelity_test'].get('n')} test sentences:\n",
        "| variant | latency b1 ms | latency b32 ms | speed-up b1 / b32 vs fastest fp32 | vs ORT fp32 of the same "
        "opset | test cosine mean / min | float layers |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        sp = (
            f"{r['speedup_b1_vs_fastest_fp32']:.2f}× / {r['speedup_b32_vs_fastest_fp32']:.2f}×"
            if "speedup_b1_vs_fastest_fp32" in r
            else ""
        )
        same = (
            f"{r['speedup_b1_vs_ort_fp32_same_opset']:.2f}× / {r['speedup_b32_vs_ort_fp32_same_opset']:.2f}×"
            if "speedup_b1_vs_ort_fp32_same_opset" in r
            else ""
        )
        f = r.get("fidelity_test") or {}
        fid = (
            "reference"
            if "cosine_mean" not in f
            else f"{f['cosine_mean']:.5f}" + (f" / {f['cosine_min']:.5f}" if "cosine_min" in f else "")
        )
        out.append(
            f"| {k} | {r.get('latency_ms_b1', float('nan')):.2f} | {r.get('latency_ms_b32', float('nan')):.1f} | "
            f"{sp} | {same} | {fid} | {', '.join(r.get('float_layers') or []) if 'float_layers' in r else ''} |"
        )
    a, b = rows.get("slimtorch_int8_opset18", {}), rows.get("slimtorch_int8_opset20", {})
    if "latency_ms_b1" in a and "latency_ms_b1" in b:
        less = [100 * (1 - b[k] / a[k]) for k in ("latency_ms_b1", "latency_ms_b32")]
        out += [
            "",
            f"INT8 at opset 20 takes {less[0]:.0f} % / {less[1]:.0f} % less time than at opset 18 (batch 1 / 32) "
            f"(test cosine mean {a['fidelity_test']['cosine_mean']:.5f} → {b['fidelity_test']['cosine_mean']:.5f}); "
            "the bench's MiniLM recipe now exports at opset 20 (`MINILM_OPSET`).",
        ]
    out += ["", f"_{_when(ab.get('environment'))}; {_loadavg(ab)}._\n"]
    return out


def _update_int8_doc() -> None:
    """Replace the block between the profile markers in docs/int8.md with :func:`int8_profile`'s tables."""
    doc = ROOT / "docs" / "int8.md"
    text, d = doc.read_text(), _load("int8")
    begin, end = "<!-- profile:begin -->", "<!-- profile:end -->"
    if d is None or begin not in text or end not in text:
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(head + begin + "\n" + "\n".join(int8_profile(d)) + "\n" + end + tail)


def main() -> None:
    lines = [
        "# Benchmark results\n",
        "Generated by `bench/summarize.py` from `bench/results/*.json`; do not edit by hand "
        "(`bench/run_all.py` regenerates every results file, then this page). Each section says when and "
        "from which commit its figures were produced, and marks speed figures taken on a loaded machine. "
        "Each benchmark's own guide has the details: [pruning](pruning.md), [quantization](quantization.md), "
        "[distillation](distillation.md), [structured pruning](structured_pruning.md), [INT8](int8.md), "
        "[auto-compression](auto.md), [Deep Compression](deep_compression.md).\n",
    ]
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
    _update_int8_doc()


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
        block += deep_compression(
            {
                "networks": {
                    k: {**v, "layers": [], "waterfall": [], "selection": None}
                    for k, v in dc.get("networks", {}).items()
                }
            }
        )
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
        keep = [
            "fp32",
            "rtn_w4g128",
            "gptq_w4g128",
            "awq_w4g128",
            "hqq_w4g128",
            "rtn_w3g128",
            "gptq_w3g128",
            "w8a8_smoothquant",
            "magnitude_50",
            "wanda_50",
            "wanda_refit_50",
            "sparsegpt_50",
            "wanda_2_4",
            "sparsegpt_50_w4g128",
        ] + [k for k in lm["rows"] if k.startswith("peer_")]
        block += ["## Language models: SmolLM2-135M (`bench/llm.py`)\n"] + _llm_rows(lm, keep) + [""]
    if lm and lm.get("deploy"):  # the deployed decoder: table and targets, without the method paragraph
        dep = llm_deploy(lm)
        start = next(i for i, line in enumerate(dep) if line.startswith("| runtime"))
        block += ["## SmolLM2-135M deployed on ONNX Runtime (`bench/llm_deploy.py`)\n"] + dep[start:] + [""]
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + begin + "\n" + "\n".join(block).replace("## ", "### ") + "\n" + end + tail)


if __name__ == "__main__":
    main()
