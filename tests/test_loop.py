"""engine.loop.fit: the weights of a hand-written loop, callbacks at the right moments, a resumed start."""

import torch
from torch import nn

from t2vlad_lib.engine.loop import EVENTS, Callback, fit


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(24, 3, generator=g), torch.randn(3, 1, generator=g)
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    batches = [(x[i : i + 8], x[i : i + 8] @ w) for i in range(0, 24, 8)]
    return model, opt, sched, batches


def test_fit_gives_the_weights_and_rows_of_a_hand_written_loop():
    model, opt, sched, batches = _problem()
    state = fit(model, opt, lambda epoch: batches, lambda b: ((model(b[0]) - b[1]) ** 2).mean(), 5,
                scheduler=sched, grad_clip=0.5)
    ref, ref_opt, ref_sched, _ = _problem()
    rows = []
    for _ in range(5):  # the naive loop
        losses, lr = [], ref_opt.param_groups[0]["lr"]
        for x, y in batches:
            loss = ((ref(x) - y) ** 2).mean()
            ref_opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
            ref_opt.step()
            losses.append(loss.item())
        ref_sched.step()
        rows.append((lr, sum(losses) / len(losses)))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters(), strict=True))
    assert [(r["lr"], r["train_loss"]) for r in state.history] == rows
    assert [r["epoch"] for r in state.history] == [1, 2, 3, 4, 5] and state.step == 15
    assert rows[-1][1] < rows[0][1] / 2  # it learns


def test_callbacks_see_each_event_in_order_with_the_state_of_that_moment():
    model, opt, _, batches = _problem()
    seen = []

    class Record(Callback):
        pass

    for event in EVENTS:
        setattr(Record, event, lambda self, s, e=event: seen.append((e, s.epoch, s.step, len(s.history))))

    class AddColumn(Callback):
        def on_epoch_end(self, s):
            s.row["val"] = 10 * s.epoch  # a callback extends the epoch's row

    state = fit(model, opt, lambda epoch: batches[:2], lambda b: model(b[0]).mean(), 2,
                callbacks=[Record(), AddColumn()])
    expect = [  # (event, epoch, steps so far, rows in the history)
        ("on_fit_start", 0, 0, 0),
        ("on_epoch_start", 0, 0, 0),
        ("on_step_start", 0, 0, 0), ("on_step_end", 0, 1, 0),
        ("on_step_start", 0, 1, 0), ("on_step_end", 0, 2, 0),
        ("on_epoch_end", 0, 2, 1),
        ("on_epoch_start", 1, 2, 1),
        ("on_step_start", 1, 2, 1), ("on_step_end", 1, 3, 1),
        ("on_step_start", 1, 3, 1), ("on_step_end", 1, 4, 1),
        ("on_epoch_end", 1, 4, 2),
        ("on_fit_end", 1, 4, 2),
    ]
    assert seen == expect
    assert [r["val"] for r in state.history] == [0, 10]


def test_a_resumed_fit_continues_the_epochs_steps_and_history():
    model, opt, _, batches = _problem()
    earlier = [{"epoch": 1, "step": 3}]
    state = fit(model, opt, lambda epoch: batches, lambda b: model(b[0]).mean(), 3, start_epoch=1, step=3,
                history=earlier)
    assert [(r["epoch"], r["step"]) for r in state.history] == [(1, 3), (2, 6), (3, 9)]
    assert earlier == [{"epoch": 1, "step": 3}]  # the caller's list is not changed
