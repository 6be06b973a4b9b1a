"""Issue 28 item 4: one word per concept. A *method* makes the gradients (weightings and
aggregators alike), a *schedule* picks the batches, and the *algorithm* is a schedule holding
its method. ``weighting``, the method's old name, still works where users wrote it, with a
``FutureWarning`` naming the new one; both names at once is refused."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from m3l import mtl
from m3l.errors import ConfigError
from m3l.mtl.algorithms.base import describe
from tests.mtl.conftest import FAST, LeNet


def test_joint_takes_method():
    method = mtl.GradNorm()
    joint = mtl.Joint(method=method)
    assert joint.method is method and mtl.Joint(method).method is method
    assert repr(joint) == "Joint(method=GradNorm)"
    assert describe(joint) == "Joint(method=GradNorm(alpha=1.5, lr=0.025, parameters='last'), mode='max_size_cycle')"
    assert (
        describe(mtl.Sequential(epochs_per_task=2))
        == "Sequential(method=EqualWeighting(), epochs_per_task=2, order=None)"
    )


def test_the_old_keyword_weighting_works_and_warns_naming_method():
    method = mtl.UncertaintyWeighting()
    with pytest.warns(
        FutureWarning, match=r"Joint\(weighting=\.\.\.\) is deprecated .*write Joint\(method=\.\.\.\)"
    ) as seen:
        joint = mtl.Joint(weighting=method, mode="min_size")
    assert joint.method is method and joint.mode == "min_size"
    assert seen[0].filename == __file__  # the warning points at the user's line
    # the same run description as the new keyword: an old script logs what a new one does
    assert describe(joint) == describe(mtl.Joint(method=method, mode="min_size"))
    with pytest.warns(FutureWarning, match=r"Schedule\(weighting=\.\.\.\)"):
        assert mtl.Schedule(weighting=method).method is method


def test_both_keywords_are_refused_naming_both():
    with pytest.raises(
        ConfigError, match=r"Joint got both method= and weighting=: weighting is the old name of method"
    ):
        mtl.Joint(method=mtl.GradNorm(), weighting=mtl.EqualWeighting())


def test_the_old_attributes_warn_and_give_the_method():
    joint = mtl.Joint(mtl.GradNorm())
    with pytest.warns(FutureWarning, match=r"Joint\.weighting is deprecated .*write Joint\.method"):
        assert joint.weighting is joint.method
    other = mtl.FAMO()
    with pytest.warns(FutureWarning, match=r"Joint\.weighting"):
        joint.weighting = other
    assert joint.method is other
    module = mtl.MultiTaskModule(LeNet(), [mtl.Task("t", torch.nn.Linear(50, 10), torch.nn.CrossEntropyLoss())])
    with pytest.warns(FutureWarning, match=r"MultiTaskModule\.weighting is deprecated .*write MultiTaskModule\.method"):
        assert module.weighting is module.method is module.algorithm.method


def test_a_schedule_written_for_uses_weighting_is_still_asked():
    class EveryStep(mtl.Alternating):
        def uses_weighting(self, present, all_names):
            return True

    with pytest.warns(FutureWarning, match=r"EveryStep\.uses_weighting is deprecated .*EveryStep\.uses_method"):
        assert EveryStep().uses_method(["a"], ["a", "b"])
    assert not mtl.Alternating().uses_method(["a"], ["a", "b"])
    with pytest.warns(FutureWarning, match=r"Alternating\.uses_weighting"):
        assert mtl.Alternating().uses_weighting(["a", "b"], ["a", "b"])


def test_a_config_with_the_old_key_weighting_builds_and_warns():
    old = OmegaConf.create({"_target_": "m3l.mtl.Joint", "weighting": {"_target_": "m3l.mtl.GradNorm", "alpha": 0.5}})
    with pytest.warns(FutureWarning, match=r"write Joint\(method=\.\.\.\)"):
        joint = instantiate(old)
    assert isinstance(joint.method, mtl.GradNorm) and joint.method.alpha == 0.5
    both = OmegaConf.create(
        {"_target_": "m3l.mtl.Joint", "method": {"_target_": "m3l.mtl.FAMO"}, "weighting": {"_target_": "m3l.mtl.FAMO"}}
    )
    with pytest.raises(Exception, match=r"both method= and weighting="):  # Hydra wraps the ConfigError
        instantiate(both)


def test_a_checkpoint_with_the_method_under_weighting_loads():
    """A state dict written while ``MultiTaskModule.method`` was named ``weighting``."""

    def module():
        head = torch.nn.Linear(50, 10)
        return mtl.MultiTaskModule(
            LeNet(), [mtl.Task("t", head, torch.nn.CrossEntropyLoss())], algorithm=mtl.Joint(mtl.UncertaintyWeighting())
        )

    written = module()
    with torch.no_grad():
        written.method.log_vars.fill_(0.25)
    state = {k.replace("method.", "weighting.", 1): v for k, v in written.state_dict().items()}
    assert "weighting.log_vars" in state and not any(k.startswith("method.") for k in state)
    read = module()
    read.load_state_dict(state)  # strict: nothing missing, nothing unexpected
    assert torch.equal(read.method.log_vars, written.method.log_vars)
    assert "method.log_vars" in read.state_dict()


def test_a_fit_with_the_new_names_warns_of_no_old_one(tmp_path, tasks, adam):
    """Nothing of m3l (nor Lightning walking the module's attributes) reaches a deprecated name."""
    module = mtl.MultiTaskModule(LeNet(), tasks, algorithm=mtl.Joint(mtl.GradNorm()), optimizer=adam)
    data = mtl.MultiTaskDataModule.from_tasks(tasks)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        L.Trainer(fast_dev_run=2, logger=False, default_root_dir=tmp_path, enable_model_summary=True, **FAST).fit(
            module, datamodule=data
        )
    old = [str(w.message) for w in seen if issubclass(w.category, FutureWarning) and "weighting" in str(w.message)]
    assert not old
    assert module.method.last_weights.shape == (2,)


def test_an_old_command_line_override_names_the_new_key():
    """``net.algorithm.weighting._target_=...`` (the docs' command before the rename) against the
    packaged configs, whose key is now ``method``: the error says what to write."""
    from m3l.config import compose
    from m3l.config.messages import composition_error

    with pytest.raises(Exception) as raised:
        compose("mtl_multimnist", ["net.algorithm.weighting._target_=m3l.mtl.GradNorm"])
    assert composition_error(raised.value) == (
        "net.algorithm.weighting: `weighting` is the old name of `method` (m3l.mtl.Joint): "
        "write net.algorithm.method instead."
    )
    cfg = compose("mtl_multimnist", ["net.algorithm.method._target_=m3l.mtl.GradNorm"])
    assert isinstance(instantiate(cfg.net.algorithm).method, mtl.GradNorm)


def test_every_schedule_and_method_is_importable_from_m3l_mtl():
    """Aggregators as the weightings: ``from m3l.mtl import UPGrad``; ``mtl.algorithms.UPGrad`` stays."""
    from m3l.mtl import UPGrad, algorithms

    assert UPGrad is algorithms.UPGrad
    assert set(algorithms.__all__) <= set(mtl.__all__)
    assert all(getattr(mtl, name) is getattr(algorithms, name) for name in algorithms.__all__)
    assert issubclass(mtl.MGDAUB, mtl.GradientAggregator) and issubclass(mtl.GradNorm, mtl.Method)


@pytest.mark.slow
def test_importing_m3l_mtl_imports_no_torchjd():
    """The aggregators' modules name torchjd only when one is built: ``import m3l.mtl`` stays as cheap."""
    import subprocess
    import sys

    code = "import sys, m3l.mtl; from m3l.mtl import UPGrad; print('torchjd' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
