"""Style mixing and latent operations (render2style.inference)."""
import pytest
import torch

from render2style.inference.latent_ops import crossover, interpolate
from render2style.inference.mixing import default_latent_mask, mix_styles, parse_latent_mask, random_styles
from render2style.stylegan2 import demo_generator


@pytest.fixture(scope="module")
def G():
    return demo_generator(0)


@pytest.fixture
def codes(G):
    return torch.randn(3, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(7))


def test_default_mask_scales_psp_fine_layers_to_n_latent():
    assert default_latent_mask(18) == list(range(8, 18))     # pSp's --latent_mask=8,...,17
    assert default_latent_mask(14) == list(range(7, 14))     # 256² generator
    assert default_latent_mask(10) == list(range(5, 10))     # demo generator


def test_parse_latent_mask_accepts_lists_and_ranges_and_rejects_out_of_range():
    assert parse_latent_mask("8,9, 12-14", 18) == [8, 9, 12, 13, 14]
    assert parse_latent_mask(None, 14) == default_latent_mask(14)
    with pytest.raises(ValueError, match="0-based"):
        parse_latent_mask("8-18", 18)


def test_variants_are_deterministic_for_a_seed(G, codes):
    a = mix_styles(codes, G, 4, seed=3)
    b = mix_styles(codes, G, 4, seed=3)
    c = mix_styles(codes, G, 4, seed=4)
    assert a.shape == (3, 4, G.n_latent, G.style_dim)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_variants_differ_from_the_input_only_in_masked_layers(G, codes):
    mask = [2, 5, 7]
    out = mix_styles(codes, G, 3, latent_mask=mask, seed=1)
    keep = [i for i in range(G.n_latent) if i not in mask]
    for k in range(3):
        assert torch.equal(out[:, k, keep], codes[:, keep])
        assert (out[:, k, mask] - codes[:, mask]).abs().amax(-1).min() > 1e-3
    # alpha = 1 (default): every masked layer of variant k is the k-th random style, for every input
    w = random_styles(G, 3, seed=1)
    assert torch.allclose(out[:, :, mask], w[None, :, None, :].expand(3, 3, 3, -1), atol=1e-6)


def test_alpha_blends_the_random_style_into_the_masked_layers(G, codes):
    mask = default_latent_mask(G.n_latent)
    out = mix_styles(codes, G, 2, latent_mask=mask, alpha=0.25, seed=5)
    w = random_styles(G, 2, seed=5)
    expected = 0.25 * w[None, :, None, :] + 0.75 * codes[:, None, mask]
    assert torch.allclose(out[:, :, mask], expected, atol=1e-6)


def test_truncation_zero_puts_the_masked_layers_on_the_mean(G, codes):
    mean = torch.randn(1, G.style_dim)
    out = mix_styles(codes, G, 2, latent_mask=[9], truncation=0.0, mean_latent=mean, seed=0)
    assert torch.allclose(out[:, :, 9], mean.expand(3, 2, -1), atol=1e-6)


def test_variants_do_not_depend_on_batching(G, codes):
    whole = mix_styles(codes, G, 2, seed=9)
    parts = torch.cat([mix_styles(codes[:1], G, 2, seed=9), mix_styles(codes[1:], G, 2, seed=9)])
    assert torch.equal(whole, parts)


def test_interpolation_endpoints_equal_the_input_codes(codes):
    a, b = codes[0], codes[1]
    frames = interpolate(a, b, 7)
    assert frames.shape == (7, *a.shape)
    assert torch.equal(frames[0], a) and torch.equal(frames[-1], b)
    assert torch.allclose(frames[3], (a + b) / 2, atol=1e-6)


def test_per_layer_interpolation_moves_only_the_chosen_layers(codes):
    a, b = codes[0], codes[1]
    frames = interpolate(a, b, 5, per_layer=[0, 1])
    assert torch.equal(frames[-1, :2], b[:2])
    assert torch.equal(frames[:, 2:], a[2:].expand(5, -1, -1))


def test_crossover_takes_coarse_layers_from_the_first_code(codes):
    a, b = codes[0], codes[1]
    out = crossover(a, b, 4)
    assert torch.equal(out[:4], a[:4]) and torch.equal(out[4:], b[4:])
    assert torch.equal(crossover(codes[:2], codes[1:], 3)[:, 3:], codes[1:, 3:])
    with pytest.raises(ValueError):
        crossover(a, b, a.shape[0] + 1)
