"""``vr export``: a trained checkpoint as a file other runtimes load, checked against the eager model.

What is exported is the task's inference graph on normalised float input [N, C, H, W] (``graph.py``): classifier
logits, FCN class scores at the input's size (any height and width), a YOLO head's raw outputs — decoded and
NMS-filtered after the run by :func:`postprocess`, the task's own decoding. Formats (``formats.py``,
``onnx_format.py``): ONNX (``torch.onnx.export``, the dynamo exporter, run back with onnxruntime), TorchScript
(``torch.jit.trace``) and a torch.export program (``torch.export.save``). Each file gets a JSON sidecar
(``sidecar.py``) with what a user needs to feed it and read it, and the result of the check (``verify.py``).
"""

from .core import ExportReport, export
from .formats import FORMATS
from .sidecar import postprocess
