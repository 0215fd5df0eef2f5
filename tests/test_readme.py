"""The README's result tables equal the tables of docs/results/ that the notebooks write (course.readme)."""

import pytest

from t2vlad_lib.course import readme


def test_sync_copies_the_named_table_and_refuses_a_missing_one(tmp_path):
    (tmp_path / "r.md").write_text("intro\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\ntext\n\n| c |\n|---|\n| 3 |")
    block = "x\n<!-- table: r.md 2 -->\n| c |\n|---|\n{} |\n<!-- end table -->\ny\n"
    assert readme.sync(block.format("| 9"), tmp_path) == block.format("| 3")
    with pytest.raises(ValueError, match="r.md has 2 tables; the marker asks for table 3"):
        readme.sync("<!-- table: r.md 3 -->\n<!-- end table -->", tmp_path)


def test_the_readme_tables_are_the_docs_results_tables():
    """Every result table of the README is a marked copy, and each copy equals its source today."""
    text = (readme.ROOT / "README.md").read_text()
    marked = readme._BLOCK.findall(text)
    assert marked, "the README marks no table copied from docs/results"
    assert readme.sync(text) == text, (
        "a README result table differs from its docs/results source: "
        "run `python -m t2vlad_lib.course.readme`")
