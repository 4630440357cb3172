import pytest
import yaml

from cryodyna.config import dump_yaml, load_config
from cryodyna.config.schema import TrainAtomConfig
from cryodyna.errors import ConfigError


def test_defaults_overrides_and_file(tmp_path):
    c = load_config("train-atom")
    assert c == TrainAtomConfig()
    f = tmp_path / "c.yaml"
    f.write_text("loss:\n  clash_weight: 3\noptim:\n  lr: 0.001\n")
    c = load_config("train-atom", f, ["loss.clash_weight=5", "data.lowpass=8", "model.encoder_hidden=[64, 32]"])
    assert c.loss.clash_weight == 5 and c.optim.lr == 0.001 and c.data.lowpass == 8.0
    assert c.model.encoder_hidden == [64, 32]


def test_unknown_key_suggests_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'loss.clash_wieght'; did you mean 'loss.clash_weight'\?"):
        load_config("train-atom", overrides=["loss.clash_wieght=5"])
    f = tmp_path / "c.yaml"
    f.write_text("optimm:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="did you mean 'optim'"):
        load_config("train-atom", f)
    with pytest.raises(ConfigError, match=r"unknown config key 'lr'; did you mean 'optim.lr'\?"):  # a field without its section
        load_config("train-atom", overrides=["lr=1e-3"])


def test_invalid_values():
    with pytest.raises(ConfigError, match=r"'optim.lr'.*greater than 0"):
        load_config("train-atom", overrides=["optim.lr=-1"])
    with pytest.raises(ConfigError, match="'model.encoder'"):
        load_config("train-atom", overrides=["model.encoder=cnn"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config("train-atom", overrides=["loss.clash_weight"])
    with pytest.raises(ConfigError, match="unknown config kind"):
        load_config("train-nothing")


def test_yaml_dump_round_trip_with_descriptions(tmp_path):
    c = load_config("train-atom", overrides=["optim.precision=bf16"])
    text = dump_yaml(c)
    assert "# [Å] Low-pass resolution" in text
    f = tmp_path / "resolved.yaml"
    f.write_text(text)
    assert load_config("train-atom", f) == c
    assert yaml.safe_load(text)["optim"]["precision"] == "bf16"


def test_every_field_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                yield from walk(ann)
            else:
                yield name, field
    for name, field in walk(TrainAtomConfig):
        assert field.description, name


def test_a_run_recorded_before_a_setting_existed_keeps_the_value_it_was_trained_with(tmp_path):
    from cryodyna.config import dump_yaml
    from cryodyna.config.load import RECORD_DEFAULTS, load_run_config

    assert RECORD_DEFAULTS["model.displacement_scale"] == 1.0
    (tmp_path / "old.yaml").write_text("model:\n  z_dim: 4\n")  # written before model.displacement_scale existed
    assert load_run_config("train-atom", tmp_path / "old.yaml").model.displacement_scale == 1.0
    assert load_run_config("train-cg", tmp_path / "old.yaml").model.displacement_scale == 1.0
    (tmp_path / "new.yaml").write_text(dump_yaml(load_config("train-atom", None, ["model.displacement_scale=7"])))
    assert load_run_config("train-atom", tmp_path / "new.yaml").model.displacement_scale == 7.0
    (tmp_path / "density.yaml").write_text("optim:\n  epochs: 3\n")  # a setting the density generator does not have
    assert load_run_config("train-density", tmp_path / "density.yaml").optim.epochs == 3


def test_a_run_recorded_with_a_setting_since_removed_still_loads(tmp_path):
    from cryodyna.config.load import load_run_config

    (tmp_path / "old.yaml").write_text("optim:\n  refine_steps: 30\n  pose_lr_deg: 0.5\n  epochs: 3\n")
    cfg = load_run_config("train-atom", tmp_path / "old.yaml")
    assert cfg.optim.epochs == 3 and cfg.optim.posterior_candidates == 0  # evaluated with the encoder's latents
    with pytest.raises(ConfigError, match="refine_steps"):
        load_config("train-atom", tmp_path / "old.yaml")  # a user's config file still gets the error


def test_learning_rate_drops_for_the_last_epochs():
    from types import SimpleNamespace

    from cryodyna.config.schema import OptimConfig
    from cryodyna.train.loop import TrainingLoop

    loop = SimpleNamespace(cfg=OptimConfig(warmup_steps=4, lr_drop_epochs=2, lr_drop_factor=0.3), total_steps=50, steps_per_epoch=10)
    factors = [TrainingLoop._lr_factor(loop, step) for step in range(50)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0] and factors[4:30] == [1.0] * 26  # warm-up, then the full rate
    assert factors[30:] == [0.3] * 20  # the last two epochs (steps 30-49)
    loop.cfg = OptimConfig(warmup_steps=0)
    # off by default, also for the rate after the last step (a resumed run with more epochs starts from it)
    assert [TrainingLoop._lr_factor(loop, step) for step in range(51)] == [1.0] * 51
