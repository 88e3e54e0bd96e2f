"""Fast inference for ``vr eval``, ``vr predict`` and ``vr benchmark --backend``: batch norms folded, graphs
compiled by Inductor with frozen weights, onnxruntime, int8 post-training quantisation — each built from the same
module and checked against it in the tests (:mod:`.backends`, :mod:`.folding`, :mod:`.quantize`)."""

from .backends import (
    BACKENDS,
    build_forward,
    build_from_batches,
    check_backend,
    compile_frozen,
    compiling_pays,
    serving,
)
from .fixed_batch import FixedBatch
from .folding import count_batch_norms, fold_batch_norms
from .quantize import quantize_int8
