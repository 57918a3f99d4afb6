"""Lightning tasks (LightningModules) and the callbacks that feed the run store."""

from nde_lab.train.base import LabTask
from nde_lab.train.metrics import MetricsRecorder
from nde_lab.train.node import NeuralODETask

__all__ = ["LabTask", "MetricsRecorder", "NeuralODETask"]
