"""A small hand-drawn label map and vocabulary that the editing tests share.

Segment 1 has two parts, 2 is a ring around a one-pixel hole, 3 is two specks, 4 and 5 are
blocks; each test gives the ids their categories in its own table.
"""

import numpy as np

from napari_odise.vocabulary import Vocabulary

VOCABULARY = Vocabulary.parse("cat\ndog\ngrass (stuff)")
CAT, DOG, GRASS = VOCABULARY
MAP = np.array(
    [
        [1, 1, 0, 2, 2, 2, 0, 3],
        [1, 0, 0, 2, 0, 2, 0, 0],
        [1, 1, 0, 2, 2, 2, 0, 3],
        [0, 0, 0, 0, 0, 0, 0, 3],
        [4, 4, 4, 5, 5, 0, 1, 1],
        [4, 4, 4, 5, 5, 0, 1, 1],
    ],
    dtype=np.int32,
)
