"""The PNG plots of ``make sim``: confusion matrix, accuracy versus weight noise, ADC counts per layer."""

import numpy as np

__all__ = ["plot_all"]


def plot_all(out_dir, *, labels, predictions, sweep, plain_sweep, quantized, chip_mean, block_counts, table):
    """Write the three plots into ``out_dir``; returns ``{name: path}``.

    ``sweep`` and ``plain_sweep`` (the network trained without weight noise) are
    ``[(weight_sigma, [accuracies over seeds])]``, possibly empty; ``block_counts`` the chip
    model's signed ADC counts per block (mapping-table index -> ``(n, cols)``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {name: out_dir / f"{name}.png" for name in ("confusion_matrix", "accuracy_vs_weight_noise", "adc_counts")}

    classes = int(max(labels.max(), predictions.max())) + 1
    cm = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"chip model, test split: {np.trace(cm) / cm.sum():.1%} correct")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(paths["confusion_matrix"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for points, label in ((sweep, "noise-aware training"), (plain_sweep, "trained without weight noise")):
        if points:
            acc = [np.asarray(a) * 100 for _, a in points]
            ax.errorbar(
                [100 * f for f, _ in points],
                [a.mean() for a in acc],
                yerr=[a.std() for a in acc],
                marker="o",
                capsize=3,
                label=f"chip model, Gaussian weight noise: {label}",
            )
    ax.axhline(quantized * 100, color="gray", linestyle="--", label="quantised, ideal")
    ax.axhline(chip_mean * 100, color="tab:red", linestyle=":", label="physical model (programming + relaxation)")
    ax.set_xlabel("weight noise σ (% of w_max conductance)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy versus weight noise")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths["accuracy_vs_weight_noise"], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, table.layers, figsize=(5 * table.layers, 3.8))
    for layer, ax in enumerate(np.atleast_1d(axes)):
        idx = [table.blocks.index(b) for b in table.layer_blocks(layer)]
        counts = np.concatenate([block_counts[i].ravel() for i in idx])
        mc = table.blocks[idx[0]].max_count
        ax.hist(counts, bins=np.arange(-mc - 0.5, mc + 1.5, max(1, (2 * mc + 1) // 64)), color="tab:blue")
        ax.set_yscale("log")
        ax.set_xlabel(f"signed ADC count (max_count {mc})")
        ax.set_ylabel("neuron conversions")
        ax.set_title(f"layer {layer}: {len(idx)} block(s), {(np.abs(counts) >= mc).mean():.2%} at full scale")
    fig.tight_layout()
    fig.savefig(paths["adc_counts"], dpi=110)
    plt.close(fig)
    return paths
