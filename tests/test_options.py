"""train_encoder options: pSp names, real booleans, demo defaults, opts stored as a plain dict."""
import argparse

import pytest

from render2style.options.train_options import DEMO_DEFAULTS, TrainOptions, opts_to_dict, str2bool

REAL = ["--renders", "r", "--targets", "t", "--exp_dir", "e"]


def parse(*args):
    return TrainOptions().parse(list(args))


@pytest.mark.parametrize("text, value", [("False", False), ("false", False), ("0", False), ("no", False),
                                         ("True", True), ("yes", True), ("1", True), ("on", True)])
def test_train_decoder_parses_its_value(text, value):
    assert parse(*REAL, "--train_decoder", text).train_decoder is value


def test_boolean_flag_forms():
    assert parse(*REAL, "--train_decoder").train_decoder is True
    assert parse(*REAL).train_decoder is False
    assert parse(*REAL).start_from_latent_avg is True
    assert parse(*REAL, "--no-start_from_latent_avg").start_from_latent_avg is False
    assert parse(*REAL, "--start_from_latent_avg", "False").start_from_latent_avg is False
    assert parse(*REAL, "--mask_losses", "true").mask_losses is True


def test_bad_boolean_is_an_error():
    with pytest.raises(argparse.ArgumentTypeError):
        str2bool("maybe")
    with pytest.raises(SystemExit):
        parse(*REAL, "--train_decoder", "maybe")


def test_psp_defaults():
    o = parse(*REAL)
    assert (o.learning_rate, o.optim_name, o.l2_lambda, o.lpips_lambda, o.id_lambda) == (1e-4, "ranger", 1.0, 0.8, 0.1)
    assert o.w_norm_lambda == 0.0 and o.latent_lambda == 1.0
    assert o.encoder_type == "GradualStyleEncoder" and o.input_nc == 3 and o.output_size == 1024
    assert o.lpips_type == "alex" and o.amp == "none" and o.demo is False
    # pSp's encoder architecture: IR-SE50, 512-wide map2style blocks sized for a 256 input
    assert (o.encoder_num_layers, o.style_channels, o.resolution) == (50, 512, 256)


def test_dataset_alias_and_new_options():
    o = parse(*REAL, "--dataset", "facesynthetics", "--amp", "bf16", "--latent_layer_weights", "1,0.5,0.25",
              "--seed", "7", "--resume", "x.pt")
    assert o.dataset_type == "facesynthetics" and o.amp == "bf16" and o.seed == 7 and o.resume == "x.pt"
    assert o.latent_layer_weights == [1.0, 0.5, 0.25]


def test_demo_defaults_apply_only_when_not_given():
    o = parse("--dataset", "renders")
    assert o.demo is True
    assert o.exp_dir == DEMO_DEFAULTS["exp_dir"] and o.output_size == 64 and o.workers == 0
    assert (o.encoder_num_layers, o.style_channels) == (18, 128)  # the light demo encoder
    o = parse("--dataset", "renders", "--max_steps", "5", "--exp_dir", "x")
    assert o.max_steps == 5 and o.exp_dir == "x" and o.resolution == 64
    # a real job keeps pSp's full-size defaults
    assert parse(*REAL).resolution == 256


def test_invalid_values_are_refused():
    with pytest.raises(SystemExit):
        parse(*REAL, "--input_nc", "5")
    with pytest.raises(SystemExit):
        parse(*REAL, "--optim_name", "sgd")
    with pytest.raises(SystemExit):
        parse(*REAL, "--amp", "fp8")
    with pytest.raises(SystemExit):
        parse(*REAL, "--resolution", "8")
    with pytest.raises(SystemExit):
        parse(*REAL, "--style_channels", "0")


def test_opts_to_dict_is_plain():
    d = opts_to_dict(parse(*REAL, "--latent_layer_weights", "1,2"))
    allowed = (str, int, float, bool, list, type(None))
    assert all(isinstance(v, allowed) for v in d.values())
    assert d["train_decoder"] is False and d["latent_layer_weights"] == [1.0, 2.0]
