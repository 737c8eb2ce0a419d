"""Control vectors and centroids in W: fitting recovers known directions, PCA, k-means, file IO."""
import csv
import pickle

import numpy as np
import pytest
import torch

from render2style.scripts import fit_control_vectors
from render2style.stylegan2 import demo_generator
from render2style.teacher.control_vectors import (
    compute_centroids,
    fit_directions,
    kmeans,
    load_vectors,
    pca_directions,
    sample_w,
    save_vectors,
)


@pytest.fixture(scope="module")
def G():
    return demo_generator(0)


def _unit(v):
    return v / v.norm()


def test_lstsq_recovers_known_directions_with_correlated_attributes():
    gen = torch.Generator().manual_seed(0)
    d_true = torch.stack([_unit(torch.randn(512, generator=gen)) for _ in range(2)])
    a = torch.randn(1000, 1, generator=gen)
    labels = torch.cat([a, 0.7 * a + 0.5 * torch.randn(1000, 1, generator=gen)], dim=1)  # correlated
    latents = 0.2 * torch.randn(1000, 512, generator=gen) + 1.5 + labels @ (3.0 * d_true)
    dirs = fit_directions(latents, labels, "lstsq")
    assert dirs.shape == (2, 512)
    assert torch.allclose(dirs.norm(dim=1), torch.ones(2))
    assert (dirs * d_true).sum(dim=1).min() > 0.98


def test_mean_diff_recovers_known_direction_from_binary_labels():
    gen = torch.Generator().manual_seed(1)
    d_true = _unit(torch.randn(512, generator=gen))
    labels = (torch.rand(600, 1, generator=gen) > 0.4).float()
    latents = 0.3 * torch.randn(600, 512, generator=gen) + labels * 4.0 * d_true
    dirs = fit_directions(latents, labels, "mean_diff", names=["smile"])
    assert float(dirs[0] @ d_true) > 0.97


def test_mean_diff_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="'age'.*binary"):
        fit_directions(torch.randn(10, 512), torch.arange(10.0)[:, None], "mean_diff", names=["age"])


def test_constant_attribute_is_a_clear_error():
    with pytest.raises(ValueError, match="'glasses'.*both classes"):
        fit_directions(torch.randn(10, 512), torch.ones(10, 1), "mean_diff", names=["glasses"])


def test_pca_directions_are_orthonormal(G):
    dirs = pca_directions(G, n=8, n_samples=1000, seed=0)
    assert dirs.shape == (8, 512)
    assert torch.allclose(dirs @ dirs.T, torch.eye(8), atol=1e-5)


def test_pca_first_direction_has_the_largest_variance(G):
    w = sample_w(G, 1000, seed=0)
    dirs = pca_directions(G, n=3, n_samples=1000, seed=0)
    var = ((w - w.mean(0)) @ dirs.T).var(dim=0)
    assert var[0] >= var[1] >= var[2]


def test_kmeans_centroids_are_deterministic_for_a_seed(G):
    a = compute_centroids(G, k=4, n_samples=800, seed=3)
    b = compute_centroids(G, k=4, n_samples=800, seed=3)
    c = compute_centroids(G, k=4, n_samples=800, seed=4)
    assert a.shape == (4, 512)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_kmeans_finds_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    true = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=gen) for c in true])
    found = kmeans(x, 3, seed=0)
    dist = torch.cdist(true, found)
    assert dist.min(dim=1).values.max() < 0.1


@pytest.mark.parametrize("suffix", [".pt", ".npy"])
def test_save_load_round_trip(tmp_path, suffix):
    v = torch.randn(3, 512)
    save_vectors(tmp_path / f"v{suffix}", v, ["a", "b", "c"])
    loaded, names = load_vectors(tmp_path / f"v{suffix}", style_dim=512)
    assert torch.equal(loaded, v)
    assert names == (["a", "b", "c"] if suffix == ".pt" else ["0", "1", "2"])


def test_load_rejects_vectors_of_another_style_dim(tmp_path):
    save_vectors(tmp_path / "v.pt", torch.randn(3, 256))
    with pytest.raises(ValueError, match=r"v\.pt: vectors have dimension 256.*style_dim is 512"):
        load_vectors(tmp_path / "v.pt", style_dim=512)


def test_save_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="expected vectors"):
        save_vectors(tmp_path / "v.pt", torch.randn(2, 3, 512))
    with pytest.raises(ValueError, match="2 names for 3 vectors"):
        save_vectors(tmp_path / "v.pt", torch.randn(3, 512), ["a", "b"])


def test_script_fits_directions_from_a_latent_csv(tmp_path):
    gen = torch.Generator().manual_seed(2)
    d_true = _unit(torch.randn(512, generator=gen))
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["latent", "smile"])
        for i in range(60):
            label = i % 2
            w = 0.2 * torch.randn(10, 512, generator=gen) + label * 2.0 * d_true  # a W+ target
            np.save(tmp_path / f"w{i}.npy", w.numpy())
            writer.writerow([f"w{i}.npy", label])
    out = tmp_path / "cv.pt"
    fit_control_vectors.main(["--labels", str(tmp_path / "labels.csv"), "--method", "mean_diff",
                              "--out", str(out)])
    vectors, names = load_vectors(out, style_dim=512)
    assert names == ["smile"]
    assert float(vectors[0] @ d_true) > 0.97


def test_script_seed_column_uses_the_official_z_convention(tmp_path, G):
    with open(tmp_path / "labels.csv", "w") as f:
        f.write("seed,a\n" + "".join(f"{s},{s % 3}\n" for s in range(8)))
    latents, labels, names = fit_control_vectors.read_labels(tmp_path / "labels.csv", G)
    z = torch.from_numpy(np.random.RandomState(5).randn(512)).float()
    assert torch.allclose(latents[5], G.style(z[None])[0], atol=1e-5)
    assert names == ["a"] and labels[5, 0] == 2


def test_script_unsupervised_fallback_also_writes_centroids(tmp_path):
    out = tmp_path / "cv.pt"
    written = fit_control_vectors.main(["--unsupervised", "4", "--centroids", "3", "--n_samples", "500",
                                        "--out", str(out)])
    vectors, names = load_vectors(out, 512)
    centroids, _ = load_vectors(written["centroids"], 512)
    assert vectors.shape == (4, 512) and names[0] == "pc00"
    assert centroids.shape == (3, 512) and written["centroids"].endswith("cv_centroids.pt")


def test_vectors_files_that_are_not_vectors_are_named(tmp_path):
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    ints = tmp_path / "ints.npy"
    np.save(ints, np.ones((2, 4), dtype=np.int64))
    class Payload:
        def __reduce__(self):
            return (print, ("never runs",))
    bad_pt = tmp_path / "payload.pt"
    bad_pt.write_bytes(pickle.dumps({"vectors": Payload()}))
    for path, message in ((pickled, "without running pickled code"), (ints, "dtype int64"),
                          (bad_pt, "payload.pt: expected a dict")):
        with pytest.raises(ValueError, match=message):
            load_vectors(path)
