"""Profiles, overrides, unknown keys, the optimisers and checkpoint files."""

import pytest
import torch

from t2vlad_lib.checkpoint import CheckpointError, check_config, load_checkpoint, save_checkpoint
from t2vlad_lib.config import available_profiles, load_config
from t2vlad_lib.optim import Lookahead, make_optimizer, make_scheduler


def test_profiles_load_and_match_the_paper_where_they_should():
    assert {"tutorial", "fast", "msrvtt-1ka"} <= set(available_profiles())
    paper = load_config("msrvtt-1ka")
    assert (paper.model["dim"], paper.model["num_clusters"], paper.batch_size) == (768, 9, 64)
    assert (paper.loss.name, paper.loss.margin, paper.optim.name, paper.optim.lr) == (
        "max_margin",
        0.02,
        "ranger",
        1e-4,
    )
    assert paper.text.model == "bert-base-uncased" and not paper.text.freeze
    for name in ("tutorial", "fast"):
        cfg = load_config(name)
        assert cfg.text.model == "minilm" and cfg.text.freeze and cfg.profile == name
        cfg.model_config({"appearance": 64}, 384)  # every model key is a ModelConfig field


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        "fast", ["epochs=7", "model.num_clusters=16", "optim.lr=0.003", "data.experts=[motion]"]
    )
    assert cfg.epochs == 7 and cfg.model["num_clusters"] == 16 and cfg.optim.lr == 0.003
    assert cfg.data.experts == ["motion"]
    assert load_config("fast", {"model.sharing": "separate"}).model["sharing"] == "separate"


@pytest.mark.parametrize(
    "override, where",
    [("epoch=3", "top level"), ("model.clusters=3", "'model'"), ("optim.learning_rate=1", "'optim'")],
)
def test_unknown_keys_list_the_valid_ones(override, where):
    with pytest.raises(ValueError) as err:
        load_config("fast", [override])
    msg = str(err.value)
    assert where in msg and "valid keys" in msg
    assert override.split("=")[0].split(".")[-1] in msg


def test_unknown_profile_and_bad_override():
    with pytest.raises(ValueError, match="valid: .*tutorial"):
        load_config("tutorail")
    with pytest.raises(ValueError, match="key=value"):
        load_config("fast", ["epochs"])


def test_lookahead_interpolates_every_k_steps():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = Lookahead(torch.optim.SGD([p], lr=0.1), k=2, alpha=0.5)
    for _ in range(2):
        p.grad = torch.tensor([1.0])
        opt.step()
    # fast: 1 -> 0.9 -> 0.8; slow: 1 + 0.5 * (0.8 - 1) = 0.9, and fast is reset to slow
    assert torch.allclose(p.data, torch.tensor([0.9]))
    state = opt.state_dict()
    q = torch.nn.Parameter(torch.tensor([5.0]))
    other = Lookahead(torch.optim.SGD([q], lr=0.1), k=2, alpha=0.5)
    other.load_state_dict(state)
    assert other.steps == 2 and torch.allclose(other.slow[0][0], torch.tensor([0.9]))


def test_step_decay_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    for name in ("ranger", "adamw", "radam"):
        opt = make_optimizer([p], name, lr=1.0, weight_decay=0.0)
        sched = make_scheduler(opt, decay=0.9, every_epochs=5)
        lrs = []
        for _ in range(11):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert (
            lrs[4] == pytest.approx(1.0) and lrs[5] == pytest.approx(0.9) and lrs[10] == pytest.approx(0.81)
        )
    with pytest.raises(ValueError, match="valid: ranger"):
        make_optimizer([p], "ranger2", 1.0, 0.0)


def test_checkpoint_atomic_truncated_and_mismatch(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "config": {"seed": 0, "model": {"dim": 8}}})
    good = path.read_bytes()
    # a truncated copy is refused with a clear message
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)

    # a failing write leaves the previous good file untouched and no temp file behind
    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"model": Boom(), "config": {}})
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "last.pt"]
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    with pytest.raises(CheckpointError, match=r"model.dim: 8 in checkpoint vs 16 now"):
        check_config(path, {"seed": 0, "model": {"dim": 8}}, {"seed": 0, "model": {"dim": 16}})
    check_config(path, {"device": "cuda", "model": {}}, {"device": "cpu", "model": {}})  # runtime keys pass
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
