"""The benchmarks' curves as PNGs for the README: ``python -m labkit.bench.plots bench/``.

Reads ``transports.json`` and ``load.json`` in that folder (written by ``labkit bench transports``
and ``labkit bench load``) and writes ``transports.png`` and ``load.png`` beside them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["plot_transports", "plot_load", "main"]


def _figure(ncols: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, ncols, figsize=(5.2 * ncols, 3.6), dpi=80)


def plot_transports(data: dict, path: Path) -> Path:
    """p99 delivery delay and p99 extra inter-token delay against clients, one line per transport;
    and the relay's CPU seconds per 1,000 tokens at the top level."""
    plt, fig, axes = _figure(3)
    rows = [r for r in data["results"] if r["transport"] != "http"]
    for transport in dict.fromkeys(r["transport"] for r in rows):
        mine = [r for r in rows if r["transport"] == transport]
        xs = [r["clients"] for r in mine]
        axes[0].plot(xs, [max(r["delivery_delay_ms"]["p99"], 0.01) for r in mine], marker="o", label=transport)
        extra = [r.get("extra_inter_token_delay_ms") for r in mine]
        if all(extra):
            axes[1].plot(xs, [max(e["p99"], 0.01) for e in extra], marker="o", label=transport)
    for ax, title in zip(axes[:2], ("p99 delivery delay (relay stamp -> client socket)", "p99 extra inter-token delay")):
        ax.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms", title=title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    cpu = data.get("cpu_s_per_1k_tokens") or {}
    names = [n for n in cpu if n != "raw"]
    axes[2].barh(names, [cpu[n]["relay"] for n in names], color="tab:gray")
    axes[2].set(xlabel="CPU s per 1,000 tokens (relay process)", title=f"CPU at {data['setup']['levels'][-1]} clients")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_load(data: dict, path: Path) -> Path:
    """Extra inter-token delay percentiles: the lab at 1 and 2 workers (1,000 SSE + 1,000 WS), and the
    lab's SSE alone beside each peer (1,000 SSE)."""
    plt, fig, axes = _figure(2)
    pcts = ("p50", "p90", "p99")

    def series(ax, phases: dict, title: str):
        for name, phase in phases.items():
            rows = phase["transports"].values()
            # the phase's own p99 over all its transports, the other percentiles of its first transport
            first = next(iter(rows))["extra_inter_token_delay_ms"]
            ys = [max(first[p], 0.01) for p in pcts[:-1]] + [max(phase["extra_p99_ms"] or 0.01, 0.01)]
            ax.plot(pcts, ys, marker="o", label=name)
        ax.set(yscale="log", ylabel="ms", title=title)
        ax.axhline(50, color="red", lw=0.8, ls="--", label="target p99 50 ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)

    series(axes[0], {f"{w} worker{'s' if w != '1' else ''}": p for w, p in data["workers"].items()},
           f"extra delay, {data['transports']['sse']['clients']} SSE + WS clients")
    if data.get("peers", {}).get("phases"):
        series(axes[1], data["peers"]["phases"], "extra delay, SSE only: lab vs usual relays")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(folder: str) -> list[Path]:
    folder, out = Path(folder), []
    for name, plot in (("transports", plot_transports), ("load", plot_load)):
        source = folder / f"{name}.json"
        if source.exists():
            out.append(plot(json.loads(source.read_text()), folder / f"{name}.png"))
    return out


if __name__ == "__main__":
    for written in main(sys.argv[1] if len(sys.argv) > 1 else "bench"):
        print(f"wrote {written}")
