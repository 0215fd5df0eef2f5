"""benchmarks.common: tutorial expert shapes are those of DigitClips; RESULTS.md tables read back."""

import pytest

from benchmarks.common import RESULTS, TUTORIAL_EXPERTS, markdown_table, read_table, write_section


def test_tutorial_experts_are_digitclips_shapes():
    # DigitClips: 12 appearance frame pairs, 6 motion segments, 3 scene tokens, 12 audio windows (M = 33)
    assert TUTORIAL_EXPERTS == {"appearance": (12, 64), "motion": (6, 32), "scene": (3, 48),
                                "audio": (12, 32)}
    assert sum(t for t, _ in TUTORIAL_EXPERTS.values()) == 33


def test_read_table_round_trip(tmp_path):
    path = tmp_path / "RESULTS.md"
    rows = [{"N": 1000, "method": "faiss IVF-Flat (nlist 31)", "nprobe": 4, "recall@10": 0.622},
            {"N": 1000, "method": "torch exact chunked", "nprobe": "", "recall@10": 1.0}]
    write_section("retrieval", "### 4. Retrieval\n\n" + markdown_table(rows) + "\n\n_Run by hand._", path)
    write_section("other", markdown_table([{"a": 1}]), path)
    assert read_table("retrieval", path) == [
        {"N": 1000.0, "method": "faiss IVF-Flat (nlist 31)", "nprobe": 4.0, "recall@10": 0.622},
        {"N": 1000.0, "method": "torch exact chunked", "nprobe": None, "recall@10": 1.0},
    ]
    assert read_table("other", path) == [{"a": 1.0}]


def test_read_table_errors_name_the_file_and_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("notable", "no table here", path)
    with pytest.raises(KeyError, match="no section 'missing'"):
        read_table("missing", path)
    with pytest.raises(ValueError, match="section 'notable' has no markdown table"):
        read_table("notable", path)
    write_section("ragged", "| a | b |\n|---|---|\n| 1 |", path)
    with pytest.raises(ValueError, match="has 1 cells, the header 2"):
        read_table("ragged", path)


def test_the_stored_retrieval_table_reads():
    rows = read_table("retrieval", RESULTS)
    assert {r["N"] for r in rows} >= {1_000_000.0}
    assert all(0.0 <= r["recall@10"] <= 1.0 for r in rows)
