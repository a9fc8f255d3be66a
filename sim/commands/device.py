"""``hyflexpim device [NAME|FILE]``: the statistics of an RRAM device model.

Prints the per-level means and sigmas of SLC and MLC cells (in units of dG and of each
mode's own level spacing), the bit error rate per mode, the error of an INT8 weight
stored in SLC vs MLC cells (through an ideal shift-and-add, both offset removals), the
output error of a 64 x 64 layer through the golden array model (ADC included), and
optionally a PNG of the level distributions with the read thresholds.
"""

import sys
from pathlib import Path

from ..cli import UsageError

NAME = "device"
HELP = "per-level sigma, BER and SLC vs MLC weight error of an RRAM device model; PNG of its levels"


def add_arguments(p):
    p.add_argument("device", nargs="?", default=None, metavar="NAME|FILE",
                   help="a device name (see --list) or a JSON device table "
                        "(default: neurram-1d, the NeuRRAM one-day fit)")
    p.add_argument("--ber", type=float, default=None,
                   help="re-calibrate the noise scale to this 2-bit MLC BER (default: the device's own)")
    p.add_argument("--read-noise", type=float, default=None, metavar="R",
                   help="per-read noise sigma as a fraction of G_on (e.g. 0.01; default off)")
    p.add_argument("--png", default=None, metavar="FILE", help="write the level distributions here")
    p.add_argument("--save", default=None, metavar="FILE",
                   help="write the device as a JSON table (a template for your own cells)")
    p.add_argument("--layer-seeds", type=int, default=4, metavar="N",
                   help="noise seeds of the 64 x 64 layer measurement, 0 to skip (default 4)")
    p.add_argument("--list", action="store_true", help="list the named devices and exit")


def _check_out(path, what):
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {p} is a directory")
    if not p.parent.is_dir():
        raise UsageError(f"{what} {p}: folder {p.parent} does not exist")
    return p


def layer_error(dev, seeds=4, *, vectors=128, shape=(64, 64), offset="reference"):
    """Mean |y - x @ W| of a random INT8 layer in SLC and MLC through the golden model."""
    import numpy as np
    from ...models.array import program_matrix
    out = {}
    for md in ("slc", "mlc"):
        errs = []
        for s in range(seeds):
            rng = np.random.default_rng(1000 + s)
            W = rng.integers(-128, 128, shape)
            x = rng.integers(-128, 128, (vectors, shape[0]))
            y = program_matrix(W, md, device=dev, seed=s, offset=offset).run(x)
            errs.append(np.abs(y.astype(np.int64) - x @ W).mean())
        out[md] = float(np.mean(errs))
    return out


def weight_error_mc(dev, offset, programmings=64):
    """RMS error of every INT8 weight stored in SLC and MLC cells, Monte Carlo with the
    fast model's per-cell statistics (clipping at G >= 0 included), no ADC."""
    import numpy as np
    from ...models.noise import effective_weights
    q = np.tile(np.arange(-128, 128), (programmings, 1))
    rng = np.random.default_rng(0)
    return {md: float(np.sqrt(np.mean((effective_weights(q, dev, rng, col_modes=[md] * 256,
                                                         offset=offset) - q) ** 2)))
            for md in ("slc", "mlc")}


def plot_levels(dev, path):
    """PNG of the SLC and MLC level distributions (dG above the floor), read thresholds."""
    import numpy as np
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 1, figsize=(7.5, 5.5), sharex=True)
    for ax, md in zip(axes, ("slc", "mlc")):
        mu, sg = dev.levels(md), dev.sigmas(md)
        lo = min(-dev.g_off, float((mu - 4 * sg).min()))
        hi = float((mu + 4 * sg).max())
        g = np.linspace(lo, hi, 1200)
        for i, (m, s) in enumerate(zip(mu, sg)):
            if s > 0:
                pdf = np.exp(-0.5 * ((g - m) / s) ** 2) / (s * np.sqrt(2 * np.pi)) / len(mu)
                pdf[g < -dev.g_off] = 0.0       # clipped at G = 0
                ax.plot(g, pdf, label=f"level {i}: sigma {s / dev.spacing(md):.3f} spacing")
                ax.fill_between(g, pdf, alpha=0.2)
            else:
                ax.axvline(m, lw=2, label=f"level {i} (no noise)")
        for t in (mu[:-1] + mu[1:]) / 2:
            ax.axvline(t, ls="--", c="k", lw=0.8)
        ax.axvline(-dev.g_off, ls=":", c="gray", lw=0.8)
        ax.set_title(f"{md.upper()}: BER {dev.ber(md):.3g}  (dashed: read thresholds, "
                     f"dotted: G = 0)", fontsize=9)
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("conductance above G_off, in units of dG = G_on - G_off")
    fig.suptitle(f"device {dev.name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def run(args):
    from ...models.device import DEVICE_NAMES, load_device, check_ber
    if args.list:
        for n in DEVICE_NAMES:
            print(f"{n:14s} {load_device(n).description}")
        return 0
    if args.ber is not None:
        check_ber(args.ber)
    if not 0 <= args.layer_seeds <= 64:
        raise UsageError(f"--layer-seeds must be an integer in 0..64, not {args.layer_seeds}")
    png = _check_out(args.png, "--png") if args.png else None
    save = _check_out(args.save, "--save") if args.save else None
    dev = load_device(args.device, ber=args.ber, read_noise=args.read_noise)
    print(f"device {dev.name}: {dev.description}")
    print(f"  G_off floor {dev.g_off:.5f} dG; sigma scale {dev.scale:.6g} x the fit; "
          f"read noise {'on' if dev.has_read_noise else 'off'}")
    for md in ("slc", "mlc"):
        mu, sg, rs = dev.levels(md), dev.sigmas(md), dev.read_sigmas(md)
        sp = dev.spacing(md)
        print(f"\n{md.upper()}  BER {dev.ber(md):.4g}")
        print(f"  {'level':>5} {'mean (dG)':>10} {'sigma (dG)':>11} {'sigma/spacing':>14}"
              f"{' read sigma (dG)':>17}")
        for i in range(len(mu)):
            print(f"  {i:>5} {mu[i]:>10.5f} {sg[i]:>11.5f} {sg[i] / sp:>14.4f} {rs[i]:>16.5f}")
    print("\nINT8 weight stored in cells, RMS error in weight units (ideal shift-and-add, no ADC)")
    print(f"  {'offset removal':26s} {'SLC':>8} {'MLC':>8} {'MLC/SLC':>8}   (Monte Carlo, clipping "
          f"included | analytic, no clipping)")
    for off, text in (("reference", "reference column (noisy)"),
                      ("nominal", "nominal floor (noiseless)")):
        mc = weight_error_mc(dev, off)
        an = {md: dev.weight_error(md, off) for md in ("slc", "mlc")}
        ratio = mc["mlc"] / mc["slc"] if mc["slc"] else float("nan")
        print(f"  {text:26s} {mc['slc']:8.3f} {mc['mlc']:8.3f} {ratio:8.2f}   | "
              f"{an['slc']:.3f} {an['mlc']:.3f}")
    if args.layer_seeds:
        print(f"\n64 x 64 layer through the golden array model (ADC, saturation), mean |y - x @ W| "
              f"over {args.layer_seeds} seeds x 128 random vectors")
        for off in ("reference", "nominal"):
            e = layer_error(dev, args.layer_seeds, offset=off)
            ratio = e["mlc"] / e["slc"] if e["slc"] else float("nan")
            print(f"  offset {off:9s}: SLC {e['slc']:10.1f}  MLC {e['mlc']:10.1f}  "
                  f"MLC/SLC {ratio:.2f}")
    if png:
        try:
            plot_levels(dev, png)
        except OSError as e:
            raise UsageError(f"cannot write --png {png}: {e.strerror or e}") from None
        print(f"\nwrote {png}", file=sys.stderr)
    if save:
        try:
            dev.save(save)
        except OSError as e:
            raise UsageError(f"cannot write --save {save}: {e.strerror or e}") from None
        print(f"wrote {save}", file=sys.stderr)
    return 0
