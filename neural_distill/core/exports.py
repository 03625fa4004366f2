"""Framework-neutral pieces of quantization-aware training that both backends share: what an
export wrote, and the layer mappings generated for layer-by-layer distillation."""

from dataclasses import dataclass, field

from neural_distill.errors import ModelError


@dataclass
class ExportInfo:
    """What ``export`` wrote: sizes in bytes of the file and of the weights it stores."""

    path: str
    file_bytes: int
    weight_bytes: int
    float_weight_bytes: int = 0
    int8: bool = False
    int8_layers: list = field(default_factory=list)  # Keras: the layers running int8

    @property
    def compression(self):
        """How many times smaller the stored weights are than the float model's."""
        return self.float_weight_bytes / self.weight_bytes if self.weight_bytes else 0.0


def same_name_mappings(candidates, teacher_names):
    """``[[name], ...]`` for the student layers (``candidates``) the teacher has by name."""
    mappings = [[name] for name in candidates if name in set(teacher_names)]
    if not mappings:
        raise ModelError(
            f"IntermediateLayersKnowledgeDistillationLossConfig: layer_mappings is empty and no "
            f"layer with weights exists under the same name in the student and the teacher "
            f"(student layers: {', '.join(candidates[:20]) or 'none'}). Give layer_mappings.")
    return mappings


def require_teachers(teachers):
    if not teachers:
        raise ModelError("IntermediateLayersKnowledgeDistillationLossConfig: layer_mappings is "
                         "empty and there is no teacher to generate them from. Give "
                         "layer_mappings, a teacher_model, or add a "
                         "QuantizationAwareTrainingConfig (its float copy is the teacher).")
