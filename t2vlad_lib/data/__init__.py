"""Data: the DigitClips generator, the released-format reader, and the Dataset/collate.

Data flows one way: pixels/waveforms -> experts (``render``, ``experts``, ``appearance``) -> released
format on disk (``digitclips``) -> validated split (``released``) -> padded batches (``dataset``).
"""

from .dataset import RetrievalBatch, RetrievalDataset, WordTokenizer
from .digitclips import ensure_digitclips, generate_digitclips, render
from .released import LAYOUTS, RELEASED_DIMS, Layout, SplitData, get_layout, load_split

__all__ = [
    "ensure_digitclips", "generate_digitclips", "render", "load_split", "get_layout", "Layout", "LAYOUTS",
    "RELEASED_DIMS", "SplitData", "RetrievalDataset", "RetrievalBatch", "WordTokenizer",
]
