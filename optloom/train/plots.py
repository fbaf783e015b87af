"""PNG plots of a run folder: loss against steps and against training time, one line per
variant (mean over seeds), the seed spread (min..max) shaded, training loss faint behind."""
from __future__ import annotations

import math
from pathlib import Path

from .runner import RunResult


def _smooth(xs: list[float]) -> list[float]:
    """Debiased exponential moving average, its window about 1/20 of the curve."""
    alpha = min(0.3, max(0.02, 20 / max(len(xs), 1)))
    out, acc = [], 0.0
    for n, x in enumerate(xs, 1):
        acc = (1 - alpha) * acc + alpha * x
        out.append(acc / (1 - (1 - alpha) ** n))
    return out


def _aligned(runs: list[RunResult], steps_attr: str, vals_attr: str, times_attr: str):
    """Points shared by every seed: steps, mean time, mean/min/max of the value."""
    common = sorted(set.intersection(*(set(getattr(r, steps_attr)) for r in runs)))
    xs, ts, mean, lo, hi = [], [], [], [], []
    for s in common:
        vals, times = [], []
        for r in runs:
            i = getattr(r, steps_attr).index(s)
            vals.append(getattr(r, vals_attr)[i])
            times.append(getattr(r, times_attr)[i])
        if not all(math.isfinite(v) for v in vals):
            break
        xs.append(s)
        ts.append(sum(times) / len(times))
        mean.append(sum(vals) / len(vals))
        lo.append(min(vals))
        hi.append(max(vals))
    return xs, ts, mean, lo, hi


def plot_runs(runs: list[RunResult], labels: list[str], out_dir: Path, title: str,
              target: float | None = None) -> list[Path]:
    """Write ``loss_vs_steps.png`` and ``loss_vs_time.png``; return their paths ([] without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    for axis, fname, xlabel in (("steps", "loss_vs_steps.png", "optimizer steps"),
                                ("time", "loss_vs_time.png", "training time (s)")):
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        ymax = None
        for i, label in enumerate(labels):
            mine = [r for r in runs if r.label == label and r.val_steps]
            if not mine:
                continue
            c = colors[i % len(colors)]
            steps, times, mean, lo, hi = _aligned(mine, "val_steps", "val_loss", "val_time")
            x = steps if axis == "steps" else times
            if len(x) > 0:
                ax.plot(x, mean, color=c, lw=2, marker="o", ms=2.5, label=f"{label} (val)")
                if len(mine) > 1:
                    ax.fill_between(x, lo, hi, color=c, alpha=0.2, lw=0)
                ymax = max(ymax or mean[0], mean[0])
            tsteps, ttimes, tmean, _, _ = _aligned(mine, "steps", "train_loss", "train_time")
            if tsteps:
                ax.plot(tsteps if axis == "steps" else ttimes, _smooth(tmean), color=c, lw=0.8, alpha=0.45)
        if target is not None:
            ax.axhline(target, color="gray", ls=":", lw=1, label=f"target {target:g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss (validation bold, training faint)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ymax is not None:
            ax.set_ylim(top=ymax * 1.05)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_probe(runs: list[RunResult], labels: list[str], out_dir: Path, title: str) -> list[Path]:
    """Write ``probe.png``: per rule, the update's RMS, the gradient's RMS and the update's top
    singular value against steps (log scale; the mean over seeds), one colour per variant, one
    line style per rule. [] without matplotlib or probe data."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    stats = [("update_rms", "update RMS"), ("grad_rms", "gradient RMS"), ("update_top_sv", "update top singular value")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    drawn = False
    for i, label in enumerate(labels):
        mine = [r for r in runs if r.label == label and r.probe]
        if not mine:
            continue
        rules = sorted({k.rsplit(".", 1)[0] for r in mine for k in r.probe})
        for j, rule in enumerate(rules):
            for ax, (stat, _) in zip(axes, stats):
                series = [r.probe.get(f"{rule}.{stat}") for r in mine]
                series = [s for s in series if s]
                if not series:
                    continue
                n = min(len(s) for s in series)
                steps = mine[0].steps[:n]
                mean = [sum(s[k] for s in series) / len(series) for k in range(n)]
                ax.plot(steps, mean, color=colors[i % len(colors)], ls=styles[j % len(styles)], lw=1.2,
                        label=f"{label}: {rule}")
                drawn = True
    if not drawn:
        plt.close(fig)
        return []
    for ax, (_, name) in zip(axes, stats):
        ax.set_yscale("log")
        ax.set_xlabel("optimizer steps")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = out_dir / "probe.png"
    fig.savefig(path)
    plt.close(fig)
    return [path]
