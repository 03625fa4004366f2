"""``load_int8`` never runs code from a ``.pt2`` file.

torch.export.load unpickles the parts of an archive that its configs mark ``use_pickle``, and
retries sample inputs that are not plain tensors with ``weights_only=False``. A crafted archive
whose pickle creates a file shows that the unguarded loader runs it and that ``load_int8``
refuses the archive before anything is unpickled.
"""

import json
import pathlib
import pickle
import zipfile

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")

from torch import nn  # noqa: E402

from neural_distill import ModelError  # noqa: E402
from neural_distill.adapters.torch import quantization as q  # noqa: E402


class _Payload:
    """Unpickling it touches ``marker``: stands for any code an attacker would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.fixture
def program(tmp_path):
    torch.manual_seed(0)
    exported = torch.export.export(nn.Linear(4, 3), (torch.randn(2, 4),))
    exported.example_inputs = None  # as export() writes it
    path = tmp_path / "good.pt2"
    torch.export.save(exported, str(path))
    return path


def _rewrite(source, target, change):
    """Copy the archive, letting ``change(inner_name, data)`` return new data (or a dict of
    extra files to add when called with name None)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        root = old.namelist()[0].split("/", 1)[0]
        for info in old.infolist():
            inner = info.filename.split("/", 1)[1]
            new.writestr(info.filename, change(inner, old.read(info.filename)))
        for inner, data in (change(None, None) or {}).items():
            new.writestr(f"{root}/{inner}", data)
    return target


def _pickled_weight(marker):
    def change(inner, data):
        if inner is None:
            return {"data/weights/weight_9": pickle.dumps(_Payload(marker))}
        if inner.endswith("_weights_config.json"):
            config = json.loads(data)
            entry = config["config"]["weight"]
            entry.update(path_name="weight_9", use_pickle=True)
            return json.dumps(config).encode()
        return data
    return change


def _pickled_sample_inputs(marker):
    def change(inner, data):
        if inner is not None and inner.startswith("data/sample_inputs/"):
            return pickle.dumps(_Payload(marker))
        return data
    return change


def _opaque_constant(marker):
    def change(inner, data):
        if inner is None:
            return {"data/constants/opaque_obj_0": pickle.dumps(_Payload(marker))}
        if inner.endswith("_constants_config.json"):
            return json.dumps({"config": {"c": {"path_name": "opaque_obj_0",
                                                "is_param": False, "use_pickle": False,
                                                "tensor_meta": None}}}).encode()
        return data
    return change


def test_a_program_written_by_export_loads(program):
    module = q.load_int8(program)
    assert module(torch.zeros(2, 4)).shape == (2, 3)


@pytest.mark.parametrize("craft,words", [
    (_pickled_weight, "marks 'weight' as use_pickle"),
    (_pickled_sample_inputs, "it stores example inputs"),
    (_opaque_constant, "'c' is stored as 'opaque_obj_0'"),
], ids=["use_pickle-weight", "sample-inputs", "opaque-constant"])
def test_an_archive_that_would_be_unpickled_is_refused(craft, words, program, tmp_path):
    marker = tmp_path / "code_ran"
    crafted = _rewrite(program, tmp_path / "crafted.pt2", craft(str(marker)))
    with pytest.raises(ModelError) as info:
        q.load_int8(crafted)
    text = str(info.value)
    assert words in text and "unpickling runs any code" in text and "crafted.pt2" in text
    assert not marker.exists()


def test_the_crafted_archive_does_run_code_through_torch_export_load(program, tmp_path):
    """The guard is needed: without it the use_pickle weight's pickle runs."""
    marker = tmp_path / "code_ran"
    crafted = _rewrite(program, tmp_path / "crafted.pt2", _pickled_weight(str(marker)))
    try:
        torch.export.load(str(crafted))
    except Exception:  # the payload is no tensor: loading fails after the code ran
        pass
    assert marker.exists()


def test_a_file_that_is_no_archive_is_a_model_error(tmp_path):
    path = tmp_path / "model.pt2"
    path.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(ModelError, match=r"not a torch.export program"):
        q.load_int8(path)
