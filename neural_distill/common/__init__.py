"""``neural_distill.common``: the model wrapper of the reference documents' API.

Scripts written for that API import it next to ``Distillation``::

    from neural_distill import Distillation, common
    distiller.student_model = common.Model(student)   # or the model itself
    model = distiller.fit()                           # a common.Model again
    model.save('./saved')                             # ./saved/best_model.pt (PyTorch)
    torch_model = model.model

Importing this module loads no framework: the wrapped model's framework is already loaded.
``neural_distill.common.criterion`` is :mod:`neural_distill.criterion` under the documents' path.
"""

# unwrap/like/unwrap_all live below the layers that unwrap models; kept here by their old path.
from neural_distill.core.wrapped_model import WrappedModel, like, unwrap, unwrap_all  # noqa: F401
from neural_distill.run.saving import save_model


class Model(WrappedModel):
    """A PyTorch ``nn.Module`` or a ``keras.Model``, wrapped.

    Accepted wherever a student or teacher model is (it is unwrapped on assignment). ``.model``
    is the framework model, ``.framework`` its framework ('torch' or 'tensorflow'), ``.save(path)``
    writes it as documented in docs/saving.md; calling the wrapper calls the model, and other
    attributes are read from the model.
    """

    def save(self, root):
        """Write the model under the folder ``root``; returns the file written."""
        return save_model(self._model, root)
