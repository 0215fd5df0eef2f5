"""The one figure style of the course (fastbook's ``setup_book``, in this repository)."""

from __future__ import annotations

__all__ = ["set_plot_style"]


def set_plot_style(dpi: int = 80) -> None:
    """The one figure style of the course: seaborn-like whitegrid, modest dpi PNGs, readable fonts."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.dpi": dpi,
            "savefig.dpi": dpi,
            "figure.figsize": (6.0, 3.6),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.frameon": False,
            "image.cmap": "viridis",
        }
    )
    try:  # PNG output in notebooks keeps the files small
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except Exception:  # pragma: no cover - outside IPython
        pass
