"""Export: ONNX (fp32, checked in ONNX Runtime) and ``torch.export`` (.pt2) artifacts.

INT8 ONNX files come from :func:`slimtorch.deploy.to_int8`.
"""

from slimtorch.export.onnx import Parity, check_parity, export_onnx, export_pt2, onnx_module_names, ort_session

__all__ = ["Parity", "check_parity", "export_onnx", "export_pt2", "onnx_module_names", "ort_session"]
