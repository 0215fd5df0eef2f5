"""The course map of notebook 00: the paper's Fig. 2 (sec. 3.1) redrawn as boxes and arrows, each box marked
with the notebook that builds it.

The picture is data (:data:`BOXES`, :data:`ARROWS`) so that ``tests/test_figures.py`` can check it: every
arrow starts and ends on the border of its boxes, crosses no other arrow and passes through no other box.
Symbols follow the course's notation table (notebook 00): B, L, H, E, T_e, M, D, K, G.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ARROWS", "BOXES", "KINDS", "Arrow", "Box", "draw_course_map"]

# kind -> (fill colour, legend text)
KINDS = {
    "input": ("#ffffff", "frozen input (nothing trained)"),
    "text": ("#fde2c8", "text side"),
    "video": ("#dbe9f6", "video side"),
    "shared": ("#e6dcf2", "shared by text and video"),
    "score": ("#e2f0d9", "similarities and training"),
}


@dataclass(frozen=True)
class Box:
    """A box centred at (x, y), w x h data units; ``notebooks`` are the notebooks that build it."""

    x: float
    y: float
    w: float
    h: float
    kind: str
    title: str
    body: str
    notebooks: str

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1)."""
        return self.x - self.w / 2, self.y - self.h / 2, self.x + self.w / 2, self.y + self.h / 2


@dataclass(frozen=True)
class Arrow:
    """A polyline from box ``src`` to box ``dst`` through ``points`` (first and last on the two borders)."""

    src: str
    dst: str
    points: tuple[tuple[float, float], ...]
    label: str = ""


W, H = 4.2, 1.4  # the usual box size
BOXES: dict[str, Box] = {
    # text column (x = 3), top to bottom
    "caption": Box(3.0, 10.0, W, H, "input", "caption", "L wordpieces incl. [CLS], [SEP]", "02"),
    "text_encoder": Box(3.0, 8.3, W, H, "text", "text encoder",
                        "MiniLM, frozen (paper: BERT):\nL token states (B, L, H)", "02"),
    "text_proj": Box(3.0, 6.6, W, H, "text", "projection H → D",
                     "a Linear layer: text tokens\n$z_i^{text}$ (B, L, D)", "04"),
    # video column (x = 11.6)
    "experts": Box(11.6, 10.0, W, H, "input", "E experts",
                   "expert e: $T_e$ segments\n(B, $T_e$, $D_e$)", "00"),
    "video_proj": Box(11.6, 8.3, W, H, "video", "projection $D_e$ → D",
                      "a Linear per expert, concatenated:\n$M = \\Sigma_e T_e$ tokens", "03"),
    "attention": Box(11.6, 6.6, W, H, "video", "self-attention",
                     "one layer over the M tokens:\nvideo tokens $z_i^{video}$ (B, M, D)", "03"),
    "video_global": Box(16.7, 8.3, W, H, "video", "global branch",
                        "per expert: max-pool over $T_e$,\nthen GEU → $F_e^{video}$ (B, E, D)", "03"),
    # the shared VLAD between the two columns
    "vlad": Box(7.3, 4.6, 12.8, 1.55, "shared", "VLAD with shared centers, eqs. (1)-(3)",
                "assignment $c_k, b_k$ and residual centers $c'_k$: K + G centers, "
                "the G ghost blocks dropped\ntext tokens → $g_k^{text}$ → t (B, K·D);   "
                "video tokens → $g_k^{video}$ → v (B, K·D)", "01, 04"),
    # below the VLAD: global text head on the left, the similarities in the middle
    "text_global": Box(3.0, 2.6, W, H, "text", "global text head",
                       "$F_e^{text}$ = GEU$_e$(t)  (B, E, D)\n$w_e$ = softmax$_e$(Linear(t))  (B, E)", "05"),
    "s_local": Box(8.6, 2.6, W, H, "score", "local similarity",
                   "$s_{local}$ = <t, v>   ($N_t$, $N_v$)", "04"),
    "score": Box(8.6, 0.9, W, H, "score", "the score", "s = ($s_{local}$ + $s_{global}$) / 2", "05"),
    "loss": Box(13.4, 0.9, W, H, "score", "training", "ranking loss on s,\nboth directions", "06"),
    "s_global": Box(8.6, -0.8, 6.0, H, "score", "global similarity, eq. (4)",
                    "$s_{global}$ = $\\Sigma_e w_e m_e \\cos(F_e^{text}, F_e^{video})$ / $\\Sigma_e w_e m_e$",
                    "05"),
}


def _down(src: str, dst: str, x: float | None = None, label: str = "") -> Arrow:
    """A vertical arrow from the bottom of ``src`` to the top of ``dst`` at ``x`` (default: src's centre)."""
    a, b = BOXES[src], BOXES[dst]
    x = a.x if x is None else x
    return Arrow(src, dst, ((x, a.bounds[1]), (x, b.bounds[3])), label)


def _up(src: str, dst: str) -> Arrow:
    a, b = BOXES[src], BOXES[dst]
    return Arrow(src, dst, ((a.x, a.bounds[3]), (a.x, b.bounds[1])))


_vg, _sg, _tg, _ex = BOXES["video_global"], BOXES["s_global"], BOXES["text_global"], BOXES["experts"]
ARROWS: list[Arrow] = [
    _down("caption", "text_encoder"),
    _down("text_encoder", "text_proj"),
    _down("text_proj", "vlad"),
    _down("experts", "video_proj"),
    _down("video_proj", "attention"),
    _down("attention", "vlad"),
    Arrow("experts", "video_global", ((_ex.bounds[2], _ex.y), (_vg.x, _ex.y), (_vg.x, _vg.bounds[3]))),
    _down("vlad", "text_global", 3.0, "t"),
    _down("vlad", "s_local", 7.8, "t"),
    _down("vlad", "s_local", 9.4, "v"),
    _down("s_local", "score"),
    _up("s_global", "score"),
    Arrow("score", "loss", ((BOXES["score"].bounds[2], 0.9), (BOXES["loss"].bounds[0], 0.9))),
    Arrow("text_global", "s_global", ((_tg.x, _tg.bounds[1]), (_tg.x, _sg.y), (_sg.bounds[0], _sg.y)),
          "$F_e^{text}$, $w_e$"),
    Arrow("video_global", "s_global", ((_vg.x, _vg.bounds[1]), (_vg.x, _sg.y), (_sg.bounds[2], _sg.y)),
          "$F_e^{video}$, $m_e$"),
]


def draw_course_map(ax=None):
    """Draw the course map on ``ax`` (a new 12.5 x 8 inch figure when None) and return the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
    from matplotlib.path import Path

    if ax is None:
        _, ax = plt.subplots(figsize=(12.5, 8))
    fig = ax.figure
    ax.set(xlim=(0.7, 19.0), ylim=(-1.6, 10.8))
    ax.axis("off")
    for box in BOXES.values():
        x0, y0, _, _ = box.bounds
        ax.add_patch(FancyBboxPatch((x0, y0), box.w, box.h, boxstyle="round,pad=0,rounding_size=0.15",
                                    fc=KINDS[box.kind][0], ec="0.35", lw=1))
        ax.text(box.x, box.y + box.h / 2 - 0.12, f"{box.title}  · nb {box.notebooks}", ha="center", va="top",
                fontsize=9, fontweight="bold")
        ax.text(box.x, box.y - 0.14, box.body, ha="center", va="center", fontsize=9, linespacing=1.5)
    for arrow in ARROWS:
        verts = list(arrow.points)
        codes = [Path.MOVETO] + [Path.LINETO] * (len(verts) - 1)
        ax.add_patch(FancyArrowPatch(path=Path(verts, codes), arrowstyle="-|>", mutation_scale=12,
                                     color="0.25", lw=1.1, shrinkA=0, shrinkB=0))
        if arrow.label:
            (x0, y0), (x1, y1) = verts[-2], verts[-1]
            across = y0 == y1  # a horizontal last segment: label above it, else right of it
            x, y = (x0 + x1) / 2 + (0 if across else 0.12), (y0 + y1) / 2 + (0.22 if across else 0)
            ax.text(x, y, arrow.label, ha="center" if across else "left", va="center", fontsize=9.5,
                    color="0.15")
    handles = [Patch(fc=colour, ec="0.35", label=text) for colour, text in KINDS.values()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), fontsize=9,
              title="box colours; 'nb NN' = the notebook that builds the box", title_fontsize=9)
    ax.set_title("The course map: T2VLAD (the paper's Fig. 2), one box per piece you build", fontsize=11)
    return fig
