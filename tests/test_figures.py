"""The course map (notebook 00): it draws, every arrow joins the borders of its two boxes, no two arrows
cross, no arrow runs through a third box, and each of the notebooks 01-06 has a box."""

from __future__ import annotations

import itertools

import matplotlib
import pytest

from t2vlad_lib.course.figures import ARROWS, BOXES, KINDS, draw_course_map

matplotlib.use("Agg")


def _segments(arrow):
    return list(zip(arrow.points[:-1], arrow.points[1:], strict=True))


def _on_border(point, box, tol=1e-9):
    x, y = point
    x0, y0, x1, y1 = box.bounds
    inside = x0 - tol <= x <= x1 + tol and y0 - tol <= y <= y1 + tol
    return inside and min(abs(x - x0), abs(x - x1), abs(y - y0), abs(y - y1)) <= tol


def _overlap(u0, u1, lo, hi, closed):
    u0, u1 = sorted((u0, u1))
    return (u0 <= hi and u1 >= lo) if closed else (u0 < hi and u1 > lo)


def _cross(s, t):
    """True when two axis-parallel segments share a point."""
    (a, b), (c, d) = s, t
    return all(_overlap(a[i], b[i], min(c[i], d[i]), max(c[i], d[i]), True) for i in (0, 1))


def _through(segment, box):
    """True when an axis-parallel segment runs through the inside of a box."""
    (a, b), (x0, y0, x1, y1) = segment, box.bounds
    return _overlap(a[0], b[0], x0, x1, False) and _overlap(a[1], b[1], y0, y1, False)


def test_arrows_are_axis_parallel_and_join_the_borders_of_their_boxes():
    for arrow in ARROWS:
        assert all(a[0] == b[0] or a[1] == b[1] for a, b in _segments(arrow)), arrow
        assert _on_border(arrow.points[0], BOXES[arrow.src]), f"{arrow.src} -> {arrow.dst} starts off its box"
        assert _on_border(arrow.points[-1], BOXES[arrow.dst]), f"{arrow.src} -> {arrow.dst} ends off its box"


def test_no_arrow_crosses_another_or_runs_through_a_box():
    for p, q in itertools.combinations(ARROWS, 2):
        for s, t in itertools.product(_segments(p), _segments(q)):
            assert not _cross(s, t), f"arrows {p.src}->{p.dst} and {q.src}->{q.dst} cross or touch"
    for arrow in ARROWS:
        for name, box in BOXES.items():
            if name not in (arrow.src, arrow.dst):
                through = any(_through(s, box) for s in _segments(arrow))
                assert not through, f"arrow {arrow.src}->{arrow.dst} runs through box {name}"


def test_boxes_do_not_overlap_and_every_notebook_is_on_the_map():
    for (m, a), (n, b) in itertools.combinations(BOXES.items(), 2):
        assert a.bounds[2] <= b.bounds[0] or b.bounds[2] <= a.bounds[0] or a.bounds[3] <= b.bounds[1] \
            or b.bounds[3] <= a.bounds[1], f"boxes {m} and {n} overlap"
    built = {nb.strip() for box in BOXES.values() for nb in box.notebooks.split(",")}
    assert {f"0{i}" for i in range(1, 7)} <= built
    assert {box.kind for box in BOXES.values()} == set(KINDS)


@pytest.mark.parametrize("with_ax", [False, True])
def test_it_draws(with_ax):
    import matplotlib.pyplot as plt

    ax = plt.subplots()[1] if with_ax else None
    fig = draw_course_map(ax)
    ax = fig.axes[0]
    assert len(ax.patches) == len(BOXES) + len(ARROWS)
    assert ax.get_legend() is not None and len(ax.get_legend().get_texts()) == len(KINDS)
    plt.close(fig)
