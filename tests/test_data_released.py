"""The released-format reader on the shipped MSRVTT-layout fixture and DigitClips sample, and bad input."""

from __future__ import annotations

import codecs
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from t2vlad_lib.data import pickles
from t2vlad_lib.data.released import LAYOUTS, RELEASED_DIMS, Layout, get_layout, load_split, read_pickle

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"
MSRVTT = SAMPLES / "msrvtt-fixture"
DIGITS = SAMPLES / "digitclips-sample"


def _load(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


def _save(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


@pytest.fixture
def msrvtt(tmp_path: Path) -> Path:
    dst = tmp_path / "msrvtt"
    shutil.copytree(MSRVTT, dst)
    return dst


@pytest.mark.parametrize("layout", ["msrvtt-1k-a", "msrvtt-1k-b", "msrvtt-full"])
def test_msrvtt_layouts_read(layout):
    expected_files = {"msrvtt-1k-a": ("train_list_jsfusion.txt", "val_list_jsfusion.txt")}
    for split, fname in LAYOUTS[layout].splits.items():
        data = load_split(MSRVTT, split, layout=layout, verbose=False)
        ids = (MSRVTT / fname).read_text().split()
        assert data.video_ids == ids
        assert data.dims == RELEASED_DIMS
        for e, feats in data.features.items():
            raw = _load(MSRVTT / f"features.{e}.pkl")
            for v, x in zip(ids, feats, strict=True):
                if isinstance(raw[v], float):
                    assert math.isnan(raw[v]) and x is None
                else:
                    np.testing.assert_array_equal(x, raw[v])
        caps = _load(MSRVTT / "raw-captions.pkl")
        assert data.captions == [[" ".join(c) for c in caps[v]] for v in ids]
    if layout in expected_files:
        assert LAYOUTS[layout].splits["test"] == expected_files[layout][1]


def test_jsfusion_caption_index_read():
    data = load_split(MSRVTT, "test", layout="msrvtt-1k-a", verbose=False)
    table = _load(MSRVTT / "jsfusion_val_caption_idx.pkl")
    assert data.caption_index == [table[v] for v in data.video_ids]
    assert [len(c) for c in data.captions] == [20, 20, 19, 20]
    assert load_split(MSRVTT, "test", layout="msrvtt-full", verbose=False).caption_index is None


def test_digitclips_sample_reads_with_its_dataset_json():
    lay = get_layout(DIGITS)
    assert lay.experts == {"appearance": 64, "motion": 32, "scene": 48, "audio": 32}
    assert lay.max_text_tokens == 32
    sizes = {"train": 32, "val": 16, "test": 16}
    for split, n in sizes.items():
        data = load_split(DIGITS, split, verbose=False)
        assert len(data) == n
        assert all(len(c) == 6 for c in data.captions)
        shapes = {"appearance": (12, 64), "motion": (6, 32), "scene": (3, 48), "audio": (12, 32)}
        for e, (t, d) in shapes.items():
            assert all(x is None or x.shape == (t, d) for x in data.features[e])
            assert all(x is not None for x in data.features[e]) or e == "audio"
    assert load_split(DIGITS, "test", verbose=False).caption_index is not None


def test_missing_count_is_printed(capsys):
    load_split(MSRVTT, "train", layout="msrvtt-full", experts=["face", "rgb"])
    out = capsys.readouterr().out
    assert "features.face.pkl: 3 of 6 train videos have no face" in out


def test_missing_file(msrvtt):
    (msrvtt / "features.flow.pkl").unlink()
    with pytest.raises(FileNotFoundError, match="features.flow.pkl"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)
    (msrvtt / "val_list_jsfusion.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val_list_jsfusion.txt"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", experts=["rgb"], verbose=False)
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        load_split(msrvtt, "test", verbose=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_split(msrvtt / "nope", "test", layout="msrvtt-1k-a")


def test_wrong_dimension(msrvtt):
    table = dict(_load(msrvtt / "features.rgb.pkl"))
    table["video7011"] = np.zeros((2, 2047), np.float32)
    _save(table, msrvtt / "features.rgb.pkl")
    with pytest.raises(ValueError, match=r"features.rgb.pkl: video 'video7011' has feature dimension 2047; "
                                         r"expected 2048"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_inside_present_expert(msrvtt, bad):
    table = dict(_load(msrvtt / "features.s3d.pkl"))
    x = np.ones((3, 1024), np.float32)
    x[1, 5] = bad
    table["video7013"] = x
    _save(table, msrvtt / "features.s3d.pkl")
    with pytest.raises(ValueError, match="features.s3d.pkl: video 'video7013' has NaN or inf"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)


def test_video_without_captions(msrvtt):
    caps = dict(_load(msrvtt / "raw-captions.pkl"))
    caps["video7010"] = []
    _save(caps, msrvtt / "raw-captions.pkl")
    with pytest.raises(ValueError, match="raw-captions.pkl: video 'video7010' has no captions"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)


def test_video_without_any_features(msrvtt):
    for e in ["rgb", "audio"]:
        table = dict(_load(msrvtt / f"features.{e}.pkl"))
        table["video7011"] = float("nan")
        _save(table, msrvtt / f"features.{e}.pkl")
    with pytest.raises(ValueError, match="video 'video7011' of val_list_jsfusion.txt has no features"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", experts=["rgb", "audio"], verbose=False)


def test_split_with_unknown_ids(msrvtt):
    with open(msrvtt / "val_list_jsfusion.txt", "a") as f:
        f.write("video9999\n")
    with pytest.raises(ValueError, match=r"val_list_jsfusion.txt: 1 of 5 ids are unknown .*video9999"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)


def test_duplicate_ids_bad_index_and_unknown_split(msrvtt):
    table = dict(_load(msrvtt / "jsfusion_val_caption_idx.pkl"))
    table["video7012"] = 19  # that video has 19 captions: 0..18
    _save(table, msrvtt / "jsfusion_val_caption_idx.pkl")
    with pytest.raises(ValueError, match="video 'video7012' has caption index 19; expected 0..18"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", experts=["rgb"], verbose=False)
    with pytest.raises(ValueError, match="no split 'val'"):
        load_split(msrvtt, "val", layout="msrvtt-1k-a")
    with open(msrvtt / "test_list_full.txt", "a") as f:
        f.write("video7010\n")
    with pytest.raises(ValueError, match="'video7010' is listed twice"):
        load_split(msrvtt, "test", layout="msrvtt-full", verbose=False)


def test_absent_key_is_missing_and_counted(msrvtt, capsys):
    table = dict(_load(msrvtt / "features.rgb.pkl"))
    del table["video7010"]
    _save(table, msrvtt / "features.rgb.pkl")
    data = load_split(msrvtt, "test", layout="msrvtt-1k-a", experts=["rgb", "flow"])
    assert data.features["rgb"][0] is None and data.features["flow"][0] is not None
    assert "1 of 4 test videos have no rgb (missing) (1 absent from the file)" in capsys.readouterr().out


# --- pickles that would run code, and files that are not pickles ---------------------------------------


class _RunsCode:
    """Unpickling this calls ``fn(*args)``: what a malicious feature file would do."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("how", ["os.system", "builtins.exec"])
def test_pickle_that_would_run_code_is_refused(msrvtt, how):
    marker = msrvtt / "marker"
    payload = (_RunsCode(os.system, f"touch {marker}") if how == "os.system"
               else _RunsCode(exec, f"open({str(marker)!r}, 'w').write('ran')"))
    fn = payload.fn
    table = dict(_load(msrvtt / "features.rgb.pkl"))
    table["video7011"] = payload
    _save(table, msrvtt / "features.rgb.pkl")
    refused = re.escape(f"features.rgb.pkl: refused global {fn.__module__}.{fn.__name__}")
    with pytest.raises(ValueError, match=refused):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)
    with pytest.raises(ValueError, match=refused):
        read_pickle(msrvtt / "features.rgb.pkl")
    assert not marker.exists()  # refused before anything was called


def _py2_numpy1_pickle(x: np.ndarray) -> bytes:
    """A float32 array as python 2 + numpy 1.x wrote it: ``numpy.core`` path, raw data as a py2 str."""
    dtype = b"cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    shape = b"K" + bytes([x.shape[0]]) + b"K" + bytes([x.shape[1]]) + b"\x86"
    data = x.astype("<f4").tobytes()
    return (b"\x80\x02}U\x05videoc" + b"numpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b"
            + b"\x87R(K\x01" + shape + dtype + b"\x89T" + len(data).to_bytes(4, "little") + data + b"tbs.")


def test_numpy_arrays_of_every_pickle_flavour_load(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    value = {"v": x, "k": np.int64(3), "s": {1, 2}, "nan": float("nan"), "words": [["a", "red"], ["7"]],
             "n": -12, "e": np.zeros((0, 4), np.float32), "u": np.array(["ab", "c"]),
             "f": np.asfortranarray(x)}
    for protocol in (0, 2, 3, 4, 5):  # 2: _codecs.encode for bytes; 5: numpy._core.numeric._frombuffer
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        got = read_pickle(path)
        for key in ("v", "e", "u", "f"):
            assert type(got[key]) is np.ndarray and got[key].dtype == value[key].dtype
            np.testing.assert_array_equal(got[key], value[key])
        assert got["k"] == 3 and got["s"] == {1, 2} and math.isnan(got["nan"])
        assert got["words"] == value["words"] and got["n"] == -12
    (tmp_path / "dumps.pkl").write_bytes(x.dumps())  # numpy's own ndarray.dumps
    np.testing.assert_array_equal(read_pickle(tmp_path / "dumps.pkl"), x)
    old = tmp_path / "py2.pkl"
    old.write_bytes(_py2_numpy1_pickle(x))  # non-ASCII raw bytes: read again with encoding="latin1"
    np.testing.assert_array_equal(read_pickle(old)["video"], x)


def test_every_prefix_of_a_pickle_is_refused_as_incomplete(tmp_path):
    """The opcode scan reads each argument like the unpickler: no prefix of a pickle passes as complete."""
    value = {"v": np.ones((1, 2), np.float32), "w": [["a"]] * 2, "t": (1, 2.5, None), "b": b"\xff"}
    for protocol in (0, 2, 4):  # text lines (PUT/GET), 1/4-byte lengths, frames and MEMOIZE
        data = pickle.dumps(value, protocol=protocol)
        for n in range(len(data)):
            (tmp_path / "cut.pkl").write_bytes(data[:n])
            with pytest.raises(ValueError, match="cut.pkl: not a readable pickle"):
                read_pickle(tmp_path / "cut.pkl")


class _Built(_RunsCode):
    """Unpickling this calls ``fn(*args)`` and then BUILDs (``__setstate__``) the result with ``state``."""

    def __init__(self, fn, args, state):
        super().__init__(fn, *args)
        self.state = state

    def __reduce__(self):
        return self.fn, self.args, self.state


_reconstruct = pickles._numpy_core("multiarray", "_reconstruct")
# a small file -> what it asks for (measured before this loader: > 60 s, 2.2 GB, 1.8 GB, exit 139, 1 GB,
# exit 139, 2 GB); each is refused in milliseconds
BOMBS = {
    "punycode": (_RunsCode(codecs.encode, "\u00e9" * 150_000, "punycode"),  # 300 KB, quadratic decoding
                 "refused _codecs.encode with codec 'punycode'"),
    "bytearray": (_RunsCode(bytearray, 2_000_000_000), "refused bytearray of int"),
    "object_array": (_RunsCode(np.ndarray, (200_000_000,), "O"), "refused a call of numpy.ndarray"),
    "deep_key": (b"\x80\x02}K\x00" + b"\x85" * 1_000_000 + b"Ns.",  # {((((0,),),)...): None}, 1e6 deep
                 "refused containers nested more than 100 deep"),
    "memo": (b"\x80\x02Nr\xff\xff\xff\x03.", "refused memo index 67108863"),  # a memo of 2**26 slots
    "short_object_list": (_Built(_reconstruct, (np.ndarray, (0,), b"b"),  # numpy reads past the list
                                 (1, (20_000_000,), np.dtype(object), False, [])),
                          r"refused an array of dtype \|O"),
    "reconstruct": (_RunsCode(_reconstruct, np.ndarray, (2_000_000_000,), b"b"),
                    r"refused an array of shape \(2000000000,\) \(more bytes than the file's"),
}
_CHILD = """
import importlib.util, json, resource, sys, time, tracemalloc
spec = importlib.util.spec_from_file_location("pickles", sys.argv[1])  # numpy only: starts in a blink
pickles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pickles)
vm = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, vm + 2**30))  # a regression fails, the machine does not
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
start = time.perf_counter()
try:
    pickles.read_pickle(sys.argv[2])
    error = ""
except ValueError as err:
    error = str(err)
print(json.dumps({"error": error, "seconds": time.perf_counter() - start,
                  "traced": tracemalloc.get_traced_memory()[1],
                  "rss": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) * 1024}))
"""


@pytest.mark.parametrize("name", BOMBS)
def test_pickle_bombs_are_refused_in_a_second_and_100_mb(tmp_path, name):
    """Each bomb is read by a fresh process (a segfault or a 2 GB array must not take pytest with it)."""
    payload, expected = BOMBS[name]
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(payload if isinstance(payload, bytes) else pickle.dumps(payload, protocol=2))
    assert path.stat().st_size <= 1_000_008
    proc = subprocess.run([sys.executable, "-c", _CHILD, pickles.__file__, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert re.search(re.escape(f"{name}.pkl: ") + expected, out["error"]), out["error"]
    assert out["seconds"] < 1.0 and out["traced"] < 100e6 and out["rss"] < 100e6, out


def test_a_structure_that_holds_itself_is_refused_and_shared_values_load(tmp_path):
    loop: list = []
    loop.append(loop)
    _save({"v": loop}, tmp_path / "loop.pkl")
    with pytest.raises(ValueError, match=r"loop.pkl: refused an object filled after it went into another"):
        read_pickle(tmp_path / "loop.pkl")
    words, x = ["a", "red", "seven"], np.ones((2, 3), np.float32)
    _save({"v1": [words, words], "v2": [words], "x": x, "y": (x, x)}, tmp_path / "shared.pkl")
    got = read_pickle(tmp_path / "shared.pkl")
    assert got["v1"] == [words, words] and got["v2"] == [words] and type(got["y"][1]) is np.ndarray


@pytest.mark.parametrize("damage", ["truncated", "text", "list"])
def test_unreadable_or_wrong_pickle(msrvtt, damage):
    path = msrvtt / ("raw-captions.pkl" if damage == "list" else "features.rgb.pkl")
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        expected = r"features.rgb.pkl: not a readable pickle \(UnpicklingError: pickle data was truncated\)"
    elif damage == "text":
        path.write_text("video7010 0.1 0.2\n")
        expected = r"features.rgb.pkl: not a readable pickle \(UnpicklingError: invalid load key"
    else:
        _save(list(_load(path).items()), path)
        expected = r"raw-captions.pkl: holds a list; expected a dict video_id -> list of captions"
    with pytest.raises(ValueError, match=expected):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)


# --- features, captions, caption index -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (np.full((2, 2048), "a"), "has an array of dtype <U1; expected a numeric"),
    (np.zeros((2, 2048), np.complex64), "has an array of dtype complex64; expected a numeric"),
    (np.zeros((2, 3, 2048), np.float32), r"has shape \(2, 3, 2048\); expected \(T, D\) with T >= 1"),
    (np.array(1.0, np.float32), r"has shape \(\); expected \(T, D\)"),
    (np.full((1, 2048), 1e300), "has NaN or inf inside a present feature"),  # inf once cast to float32
])
def test_feature_of_wrong_dtype_or_shape(msrvtt, value, expected):
    table = dict(_load(msrvtt / "features.rgb.pkl"))
    table["video7011"] = value
    _save(table, msrvtt / "features.rgb.pkl")
    with pytest.raises(ValueError, match=r"features.rgb.pkl: video 'video7011' " + expected):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)


@pytest.mark.parametrize(("value", "expected"), [
    ("a red seven moves left", "has captions of type str; expected a list of captions, each a list of words"),
    (["a", "red", "seven"], r"has one flat list of 3 words \['a', 'red', 'seven'\]; expected a list of "
                            r"captions, each a list of words \(or a string\) \(wrap one caption's words"),
    ([["a", "red"], ["a", 7]], r"has caption #1 of type list \(\['a', 7\]\); expected a list of captions"),
    ([[b"a", b"red\xff"]], r"caption #0: b'red\\xff' is not valid UTF-8 \(byte 3\); expected UTF-8 text"),
    ([["\u200b", "\u2060"], ["a"]], r"has an empty caption \(#0: '\\u200b \\u2060'\); expected words"),
    ([bytearray(b"x" * 1000)], r"has caption #0 of type bytearray \(bytearray\); expected a list of"),
    ([["a", ["b", ["c", ["d"]]]]], r"has caption #0 of type list \(\['a', \['b', list\]\]\); expected"),
])
def test_captions_that_are_not_a_list_of_captions(msrvtt, value, expected):
    caps = dict(_load(msrvtt / "raw-captions.pkl"))
    caps["video7011"] = value
    _save(caps, msrvtt / "raw-captions.pkl")
    with pytest.raises(ValueError, match=r"raw-captions.pkl: video 'video7011',? " + expected):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)


def test_captions_are_measured_before_their_words_are_joined(msrvtt):
    """1e5 references to one 20k-character word: 500 KB on disk, 2 GB once joined (refused before)."""
    caps = dict(_load(msrvtt / "raw-captions.pkl"))
    caps["video7011"] = [["w" * 20_000] * 100_000]
    _save(caps, msrvtt / "raw-captions.pkl")
    tracemalloc.start()
    with pytest.raises(ValueError, match="raw-captions.pkl: video 'video7011', caption #0 has 2000099999 "
                                         "characters; expected at most 10000"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", experts=["rgb"], verbose=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100e6
    # many captions just under the limit: the split's captions are bounded by the file's size too
    caps["video7011"] = [["w" * 4999, "w" * 4999]] * 2000  # 20 M characters from a 30 KB file
    _save(caps, msrvtt / "raw-captions.pkl")
    with pytest.raises(ValueError, match=r"video 'video7011', caption #\d+: the split's captions add up to "
                                         "more than 32 characters per byte of the file"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", experts=["rgb"], verbose=False)


def test_word_lists_caption_strings_and_utf8_bytes_are_read(msrvtt):
    caps = dict(_load(msrvtt / "raw-captions.pkl"))
    caps["video7010"] = ["a red seven", "  a blue two "]
    caps["video7011"] = [["a", "caf\u00e9"], [b"na\xc3\xafve", b"digit"], "dog"]
    _save(caps, msrvtt / "raw-captions.pkl")
    data = load_split(msrvtt, "test", layout="msrvtt-full", verbose=False)
    assert data.captions[:2] == [["a red seven", "a blue two"], ["a caf\u00e9", "na\u00efve digit", "dog"]]


@pytest.mark.parametrize("value", [2.7, True, "3", np.float64(1.0), None])
def test_caption_index_must_be_an_integer(msrvtt, value):
    table = dict(_load(msrvtt / "jsfusion_val_caption_idx.pkl"))
    table["video7012"] = value
    _save(table, msrvtt / "jsfusion_val_caption_idx.pkl")
    expected = re.escape(f"jsfusion_val_caption_idx.pkl: video 'video7012' has caption index {value!r} "
                         f"({type(value).__name__}); expected an integer 0..18")
    with pytest.raises(ValueError, match=expected):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", experts=["rgb"], verbose=False)
    table["video7012"] = np.int64(18)  # numpy integers are integers
    _save(table, msrvtt / "jsfusion_val_caption_idx.pkl")
    data = load_split(msrvtt, "test", layout="msrvtt-1k-a", experts=["rgb"], verbose=False)
    assert data.caption_index[2] == 18 and type(data.caption_index[2]) is int


# --- split lists ------------------------------------------------------------------------------------------


def test_ids_shared_between_splits(msrvtt):
    with open(msrvtt / "val_list_jsfusion.txt", "a") as f:
        f.write("video6513\nvideo3\n")
    expected = (r"val_list_jsfusion.txt \(test\) and .*train_list_jsfusion.txt \(train\) share 2 video ids, "
                r"e.g. \['video3', 'video6513'\]; expected disjoint splits")
    with pytest.raises(ValueError, match=expected):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", experts=["rgb"], verbose=False)
    with pytest.raises(ValueError, match=r"train_list_jsfusion.txt \(train\) and .*val_list_jsfusion.txt"):
        load_split(msrvtt, "train", layout="msrvtt-1k-a", experts=["rgb"], verbose=False)
    # two splits naming one list file: model selection would happen on the test split
    same = Layout("val-is-test", RELEASED_DIMS, {"val": "test_list_full.txt", "test": "test_list_full.txt"})
    for split, other in (("val", "test"), ("test", "val")):
        expected = rf"test_list_full.txt: the list of both the {split} and the {other} split \(layout "
        with pytest.raises(ValueError, match=expected + r"'val-is-test'\); expected a list of its own"):
            load_split(msrvtt, split, layout=same, verbose=False)


def test_empty_or_non_utf8_split_list(msrvtt):
    (msrvtt / "val_list_jsfusion.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="val_list_jsfusion.txt: the split list is empty; expected one"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)
    (msrvtt / "val_list_jsfusion.txt").write_bytes(b"video7010\nvideo\xff7011\n")
    with pytest.raises(ValueError, match=r"val_list_jsfusion.txt: line 2 is not valid UTF-8 \(byte 0xff\); "
                                         "expected UTF-8 text"):
        load_split(msrvtt, "test", layout="msrvtt-1k-a", verbose=False)


# --- dataset.json -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("edit", "expected"), [
    ("{not json", r"invalid JSON \(Expecting property name enclosed in double quotes at line 1, column 2\)"),
    ([1, 2], "holds a JSON list; expected an object with keys 'experts' and 'splits'"),
    ({"experts": None}, "key 'experts' is missing; expected a non-empty object expert -> D_e"),
    ({"splits": None}, "key 'splits' is missing; expected a non-empty object split -> list file name"),
    ({"splits": ["train_list.txt"]}, r"key 'splits' is \[\"train_list.txt\"\]; expected a non-empty object"),
    ({"experts": {"motion": "32"}}, "key 'experts' is {\"motion\": \"32\"}; expected a non-empty object"),
    ({"max_text_tokens": 2.5}, "key 'max_text_tokens' is 2.5; expected an integer >= 3"),
    ({"fuse_captions": "yes"}, "key 'fuse_captions' is \"yes\"; expected true or false"),
    ({"splits": {"test": "/etc/passwd"}}, "key 'splits' is {\"test\": \"/etc/passwd\"}; expected a non-empty "
                                          "object split -> list file name relative to the dataset directory"),
    ({"captions": "../raw-captions.pkl"}, "key 'captions' is \"../raw-captions.pkl\"; expected a file name "
                                          "relative to the dataset directory"),
])
def test_malformed_dataset_json(tmp_path, edit, expected):
    meta = json.loads((DIGITS / "dataset.json").read_text())
    if isinstance(edit, dict):
        for key, value in edit.items():
            meta.pop(key) if value is None else meta.__setitem__(key, value)
        text = json.dumps(meta)
    else:
        text = edit if isinstance(edit, str) else json.dumps(edit)
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "dataset.json")) + ": " + expected):
        load_split(tmp_path, "test", verbose=False)


def test_a_dataset_json_or_split_list_that_is_a_directory(tmp_path):
    (tmp_path / "dataset.json").mkdir()
    with pytest.raises(ValueError, match=r"dataset.json: cannot be read \(Is a directory\); expected a UTF"):
        load_split(tmp_path, "test", verbose=False)
    shutil.rmtree(tmp_path)
    shutil.copytree(DIGITS, tmp_path)
    (tmp_path / "val_list.txt").unlink()
    (tmp_path / "val_list.txt").mkdir()
    with pytest.raises(ValueError, match=r"val_list.txt: cannot be read \(Is a directory\); expected a"):
        load_split(tmp_path, "val", verbose=False)
