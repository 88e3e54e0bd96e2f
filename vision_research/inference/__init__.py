"""Fast inference for ``vr eval``, ``vr predict`` and ``vr benchmark --backend``: batch norms folded, graphs
compiled by Inductor with frozen weights, onnxruntime, int8 post-training quantisation — each built from the same
module and checked against it in the tests (:mod:`.backends`, :mod:`.folding`, :mod:`.quantize`).

The backends' names are listed here, without importing torch (``vr ... --help`` shows them); the rest is imported
from its module on first use."""

import lazy_loader

BACKENDS = {  # name: what it runs
    "eager": "the module as trained",
    "fused": "batch norms folded into the convolutions",
    "compile": "torch.compile (Inductor) with frozen weights",
    "onnxruntime": "the ONNX export on onnxruntime's CPU provider",
    "int8": "PT2E int8 quantisation (x86 quantiser), compiled by Inductor",
}

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "backends": (
            "build_forward",
            "build_from_batches",
            "check_backend",
            "compile_frozen",
            "compiling_pays",
            "serving",
        ),
        "fixed_batch": ("FixedBatch",),
        "folding": ("count_batch_norms", "fold_batch_norms"),
        "quantize": ("quantize_int8",),
    },
)
