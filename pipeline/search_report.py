"""The search in the report: every candidate against the budget, the chosen one marked, and why.

:func:`variant_budget_fields` gives every variant of ``report.json`` its ``flash_bytes``,
``ram_bytes``, ``macs``, ``compression`` and ``fits``; :func:`render_search` the Markdown;
:func:`plot_budget` accuracy against flash and against RAM with the budget drawn in.
"""

from __future__ import annotations

from pathlib import Path


def _ram_of(entry: dict) -> int | None:
    tflm = entry.get("tflm") or {}
    return tflm.get("arena_bytes")


def variant_budget_fields(entry: dict, model_path: Path, search: dict | None, budget: dict | None) -> dict:
    """The budget figures of one ``report.json`` variant: the search's measurements for its
    candidates, else flash = the file, RAM = the TFLM arena when checked, MACs from the flatbuffer."""
    cand = next((c for c in (search or {}).get("candidates", []) if c["name"] == entry["name"]), None)
    if cand is not None:
        return {"flash_bytes": cand["flash_bytes"], "ram_bytes": cand["ram_bytes"], "macs": cand["macs"],
                "compression": cand["compression"], "fits": cand["fits"]}
    macs = None
    if model_path.is_file():
        from tinyfarm.tflite_macs import total_macs

        try:
            macs = total_macs(model_path.read_bytes())
        except Exception:  # noqa: BLE001 - a figure for the report, never a reason to fail it
            macs = None
    flash, ram = entry.get("size_bytes"), _ram_of(entry)
    fits = None
    if budget and flash is not None:
        if flash > budget["flash_bytes"] or (ram is not None and ram > budget["ram_bytes"]):
            fits = False
        elif ram is not None:
            fits = True  # (flash fits and RAM was not measured on TFLM: unknown, None)
    return {"flash_bytes": flash, "ram_bytes": ram, "macs": macs, "compression": None, "fits": fits}


def compression_note(compression: dict | None) -> str:
    """``lut 4-bit ×3, prune ×1`` — the methods and bit widths of a compressed model's tensors."""
    if not compression:
        return "uncompressed"
    counts: dict[str, int] = {}
    for t in compression.get("tensors", []):
        what = f"{t['method']} {t['bits']}-bit" if t["method"] == "lut" else t["method"]
        counts[what] = counts.get(what, 0) + 1
    return ", ".join(f"{k} ×{n}" for k, n in sorted(counts.items())) or "uncompressed"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _b(x: int | None) -> str:
    return "—" if x is None else f"{x:,}"


def render_search(search: dict, plot_name: str | None) -> list[str]:
    """Markdown lines: the budget, the candidates table, the choice (or the miss), the encodings."""
    b = search["budget"]
    floor = f"; accuracy floor {_pct(b['floor'])} on {b['select_on']} ({b['floor_source']})" if b.get("floor") else ""
    lines = ["## Fitting the target", "",
             f"Budget: {b['flash_bytes']:,} B flash and {b['ram_bytes']:,} B RAM (arena + decompression "
             f"memory) on **{b['board']}**{floor}. Goal: the **{b['goal']}** model. Flash is the `.tflite` "
             "as stored (TFLM weight compression when it pays); RAM is the smallest TFLM arena plus the "
             "memory DECODE writes weights into (host TFLM); accuracy is LiteRT's reference kernels on "
             "the uncompressed int8 model, which every compressed model matches bit for bit on TFLM.", "",
             f"| candidate | method | {b['select_on']} acc | test acc | flash (B) | RAM (B) | MACs | "
             "storage | fits |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for c in search["candidates"]:
        mark = " **(chosen)**" if c["name"] == search.get("chosen") else ""
        fits = "yes" if c["fits"] and c["keeps_floor"] else ("no (floor)" if c["fits"] else "no")
        lines.append(f"| {c['name']}{mark} | {c.get('method') or ''} | {_pct(c['accuracy'])} | "
                     f"{_pct(c['test_accuracy'])} | {_b(c['flash_bytes'])} | {_b(c['ram_bytes'])} | "
                     f"{_b(c['macs'])} | {compression_note(c['compression'])} | {fits} |")
    lines += ["", ("**Chosen:** " if search["met"] else "**Not met:** ") + search["why"] + "."]
    enc = [c for c in search["candidates"] if sum(1 for e in c["encodings"].values() if e) > 1]
    if enc:
        lines += ["", "The same int8 weights stored three ways, each run on the host TFLM over the whole "
                      "test split and compared with the uncompressed model:", "",
                  "| candidate | uncompressed (B) | LUT (B) | pruning encoding (B) | auto (B) | bit-identical |",
                  "|---|---:|---:|---:|---:|---|"]
        for c in enc:
            e = c["encodings"]

            def size(k: str) -> str:
                return "—" if not e.get(k) else f"{e[k]['bytes']:,}"

            same = [f"{k} {e[k]['identical']}/{e[k]['compared']}" for k in ("lut", "prune", "auto") if e.get(k)]
            lines.append(f"| {c['name']} | {size('none')} | {size('lut')} | {size('prune')} | {size('auto')} "
                         f"| {', '.join(same)} |")
    if plot_name:
        lines += ["", f"![accuracy against flash and RAM]({plot_name})"]
    return lines


def plot_budget(search: dict, path: Path, title: str) -> Path:
    """Two panels — accuracy against flash, against RAM — with the budget and floor drawn in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    b = search["budget"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110, sharey=True)
    for ax, key, limit, label in ((axes[0], "flash_bytes", b["flash_bytes"], "flash"),
                                  (axes[1], "ram_bytes", b["ram_bytes"], "RAM: arena + decompression")):
        for c in search["candidates"]:
            if c.get(key) is None:
                continue
            chosen = c["name"] == search.get("chosen")
            ax.scatter(c[key], 100 * c["accuracy"], s=110 if chosen else 45,
                       marker="*" if chosen else "o", color="tab:red" if chosen else "tab:blue", zorder=3)
            ax.annotate(c["name"].removeprefix("search_"), (c[key], 100 * c["accuracy"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        ax.axvline(limit, color="tab:green", linestyle="--", label=f"budget {limit:,} B")
        if b.get("floor"):
            ax.axhline(100 * b["floor"], color="tab:orange", linestyle=":", label=f"floor {100 * b['floor']:.2f}%")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=2))  # 4, 8, 16, 32 ... KiB
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1024:g} KiB"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"accuracy on {b['select_on']} (%)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from tinyfarm.atomic_files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
