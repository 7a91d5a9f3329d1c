"""LoRA training, kohya-compatible: ``train_lora(TrainConfig(...))`` writes a LoRA any A1111/ComfyUI/diffusers reads.

>>> from loradeck.train import TrainConfig, train_lora
>>> result = train_lora(TrainConfig(data=Path("my_style"), base="demo", name="mystyle", trigger="mystyle"))
>>> result.lora_path
"""

from loradeck.train.config import TrainConfig
from loradeck.train.data_scan import DataProblem, DatasetError
from loradeck.train.loop import TrainingDiverged, TrainProgress, TrainResult, train_lora

__all__ = [
    "DataProblem",
    "DatasetError",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingDiverged",
    "train_lora",
]
