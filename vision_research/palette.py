"""The Pascal VOC colour map, shared by the mask writer and the TensorBoard pictures."""

from __future__ import annotations

import functools


@functools.cache
def voc_palette() -> list[int]:
    """The Pascal VOC colour map (bit-interleaved class index; 255 = ignore drawn in cream), 256 × (r, g, b)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    palette[255 * 3 : 256 * 3] = [224, 224, 192]
    return palette
