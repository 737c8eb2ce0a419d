"""Weights by name: the registry, the cache folder and the download (full, resumed, checked), against a local
HTTP server on 127.0.0.1 that honours Range requests (no network)."""
import hashlib
import http.server
import re
import socket
import threading

import pytest
import torch

from render2style import pretrained
from render2style.pretrained import (
    KNOWN_WEIGHTS,
    KnownWeights,
    MissingWeightsError,
    require_known_weights,
    resolve_weights,
    weights_cache_dir,
    weights_record,
)

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: more than one read chunk


class Server(http.server.ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes); honours ``Range: bytes=N-`` unless ``ranges`` is False (``shift``: a
    206 starts that many bytes after the byte asked for, as its Content-Range says); sends ``content_type``
    when set; logs requests."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.ranges, self.requests = {}, True, []
        self.shift, self.content_type = 0, None

    def url(self, path):
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's name)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if self.path not in server.files:
            self.send_error(404, "Not Found")
            return
        data, start = server.files[self.path], 0
        found = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if found and server.ranges:
            start = int(found.group(1))
            if start >= len(data):
                self.send_error(416, "Range Not Satisfiable")
                return
            start = max(start + server.shift, 0)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        if server.content_type:
            self.send_header("Content-Type", server.content_type)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("RENDER2STYLE_CACHE", str(folder))
    monkeypatch.delenv("RENDER2STYLE_OFFLINE", raising=False)
    return folder


def register(monkeypatch, url, data=PAYLOAD, **fields):
    fields = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **fields}
    info = KnownWeights("tiny-weights.bin", "the test server", url=url, **fields)
    monkeypatch.setitem(KNOWN_WEIGHTS, "tiny", info)
    return info


def test_full_download_lands_in_the_cache_once(server, cache, monkeypatch):
    server.files["/w.bin"] = PAYLOAD
    register(monkeypatch, server.url("/w.bin"))
    path = resolve_weights("tiny")
    assert path == cache / "tiny-weights.bin" and path.read_bytes() == PAYLOAD
    assert list(cache.iterdir()) == [path]  # no .part left
    assert resolve_weights("tiny") == path and len(server.requests) == 1  # second use: from the cache
    assert server.requests[0] == ("/w.bin", None)


def test_partial_download_resumes_with_a_range_request(server, cache, monkeypatch):
    server.files["/w.bin"] = PAYLOAD
    register(monkeypatch, server.url("/w.bin"))
    cache.mkdir()
    (cache / "tiny-weights.bin.part").write_bytes(PAYLOAD[:300_000])
    path = resolve_weights("tiny")
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/w.bin", "bytes=300000-")]
    assert not (cache / "tiny-weights.bin.part").exists()


def test_a_process_waits_for_another_ones_download(server, cache, monkeypatch):
    """While another process holds the file's download claim, no second download starts; its file is used."""
    from render2style.utils.claims import claim
    server.files["/w.bin"] = PAYLOAD
    register(monkeypatch, server.url("/w.bin"))
    cache.mkdir()
    found = []
    with claim(cache / "tiny-weights.bin.lock") as mine:
        assert mine
        waiter = threading.Thread(target=lambda: found.append(resolve_weights("tiny")))
        waiter.start()
        waiter.join(timeout=1.5)
        assert waiter.is_alive() and not found  # still waiting for the claim
        (cache / "tiny-weights.bin").write_bytes(PAYLOAD)  # the other process finishes
    waiter.join(timeout=30)
    assert found == [cache / "tiny-weights.bin"] and server.requests == []


def test_a_server_that_ignores_the_range_restarts_the_download(server, cache, monkeypatch):
    server.files["/w.bin"], server.ranges = PAYLOAD, False
    register(monkeypatch, server.url("/w.bin"))
    cache.mkdir()
    (cache / "tiny-weights.bin.part").write_bytes(b"x" * 1000)  # would corrupt the file if appended to
    assert resolve_weights("tiny").read_bytes() == PAYLOAD


def test_a_complete_part_file_is_checked_and_used(server, cache, monkeypatch):
    server.files["/w.bin"] = PAYLOAD
    register(monkeypatch, server.url("/w.bin"))
    cache.mkdir()
    (cache / "tiny-weights.bin.part").write_bytes(PAYLOAD)  # the server answers 416
    assert resolve_weights("tiny").read_bytes() == PAYLOAD
    assert server.requests == [("/w.bin", f"bytes={len(PAYLOAD)}-")]  # not downloaded again


@pytest.mark.parametrize("part, fields", [(PAYLOAD, {"size": None, "sha256": None}), (PAYLOAD + b"more", {})],
                         ids=["complete-unchecked", "too-long"])
def test_a_part_file_the_server_will_not_resume_is_downloaded_again(server, cache, monkeypatch, part, fields):
    """HTTP 416 on a .part the registry cannot vouch for (no size or checksum, or not matching them): the
    .part is deleted and the download starts over once, instead of failing on every later run."""
    server.files["/w.bin"] = PAYLOAD
    register(monkeypatch, server.url("/w.bin"), **fields)
    cache.mkdir()
    (cache / "tiny-weights.bin.part").write_bytes(part)
    assert resolve_weights("tiny").read_bytes() == PAYLOAD
    assert server.requests == [("/w.bin", f"bytes={len(part)}-"), ("/w.bin", None)]
    assert sorted(cache.iterdir()) == [cache / "tiny-weights.bin"]


def test_a_206_from_another_byte_restarts_the_download(server, cache, monkeypatch):
    server.files["/w.bin"], server.shift = PAYLOAD, -100_000  # Content-Range: bytes 200000-...
    register(monkeypatch, server.url("/w.bin"))
    cache.mkdir()
    (cache / "tiny-weights.bin.part").write_bytes(PAYLOAD[:300_000])
    assert resolve_weights("tiny").read_bytes() == PAYLOAD
    assert server.requests == [("/w.bin", "bytes=300000-"), ("/w.bin", None)]


@pytest.mark.parametrize("partial", [False, True], ids=["fresh", "resumed"])
def test_an_html_page_is_refused_and_nothing_is_cached(server, cache, monkeypatch, partial):
    """A quota / confirmation page (Content-Type text/html) for an entry without a checksum never becomes
    the weights file: a clear error, and neither the file nor a .part is left in the cache."""
    server.files["/w.bin"] = b"<html><body>Google Drive - Quota exceeded</body></html>" * 100
    server.content_type = "text/html; charset=utf-8"
    register(monkeypatch, server.url("/w.bin"), size=None, sha256=None)
    cache.mkdir()
    if partial:
        (cache / "tiny-weights.bin.part").write_bytes(b"x" * 1000)
    with pytest.raises(MissingWeightsError, match=r"tiny-weights.bin: http://127.0.0.1:\d+/w.bin sent an HTML "
                                                  r"page \(Content-Type: text/html; charset=utf-8\).*quota.*by hand"):
        resolve_weights("tiny")
    assert not any(cache.iterdir())


def test_an_http_error_names_the_part_file_it_keeps(server, cache, monkeypatch):
    register(monkeypatch, server.url("/missing.bin"))
    cache.mkdir()
    (cache / "tiny-weights.bin.part").write_bytes(b"x" * 1000)
    with pytest.raises(MissingWeightsError, match=r"HTTP 404.*partial download .*cache/tiny-weights.bin.part "
                                                  r"\(1000 bytes\) is kept"):
        resolve_weights("tiny")


@pytest.mark.parametrize("fault", ["checksum", "size"])
def test_a_mismatch_deletes_the_download_and_says_so(server, cache, monkeypatch, fault):
    served = PAYLOAD[:-1] + b"X" if fault == "checksum" else PAYLOAD + b"extra"
    server.files["/w.bin"] = served
    info = register(monkeypatch, server.url("/w.bin"))
    with pytest.raises(ValueError, match=f"{fault} mismatch.*deleted") as e:
        resolve_weights("tiny")
    assert (info.sha256 if fault == "checksum" else str(len(PAYLOAD))) in str(e.value)
    assert not any(cache.iterdir())  # neither the file nor its .part


def test_a_prefix_checksum_as_torchvision_names_carry_it(server, cache, monkeypatch):
    server.files["/w.bin"] = PAYLOAD
    register(monkeypatch, server.url("/w.bin"), size=None, sha256=hashlib.sha256(PAYLOAD).hexdigest()[:8])
    assert resolve_weights("tiny").read_bytes() == PAYLOAD
    register(monkeypatch, server.url("/w.bin"), size=None, sha256="00000000")
    (cache / "tiny-weights.bin").unlink()
    with pytest.raises(ValueError, match="checksum mismatch"):
        resolve_weights("tiny")


def test_http_404_names_the_file_and_the_url(server, cache, monkeypatch):
    register(monkeypatch, server.url("/missing.bin"))
    with pytest.raises(MissingWeightsError, match=r"tiny-weights.bin: downloading http://127.0.0.1:\d+/missing.bin "
                                                  r"failed \(HTTP 404"):
        resolve_weights("tiny")
    assert not (cache / "tiny-weights.bin").exists()


def test_offline_messages_name_the_file_the_url_and_the_cache(cache, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    register(monkeypatch, f"http://127.0.0.1:{port}/w.bin")
    with pytest.raises(MissingWeightsError, match=rf"tiny-weights.bin: cannot download http://127.0.0.1:{port}/w.bin"
                                                  r".*put it at .*cache/tiny-weights.bin"):
        resolve_weights("tiny")
    monkeypatch.setenv("RENDER2STYLE_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match=rf"RENDER2STYLE_OFFLINE is set: download .*:{port}/w.bin"):
        resolve_weights("tiny")


def test_paths_pass_through_and_unknown_names_stay_paths(tmp_path, cache):
    f = tmp_path / "mine.pt"
    f.write_bytes(b"1")
    assert resolve_weights(f) == f
    assert str(resolve_weights("no-such-name")) == "no-such-name"
    with pytest.raises(MissingWeightsError, match="no-such-name: weights file not found"):
        require_known_weights("no-such-name", "ir_se50")


def test_an_entry_without_a_link_says_where_to_get_it(cache):
    with pytest.raises(MissingWeightsError, match="w600k_mbf.onnx .*no direct download link.*insightface"):
        resolve_weights("arcface_mbf")


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RENDER2STYLE_CACHE", str(tmp_path / "c"))
    assert weights_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("RENDER2STYLE_CACHE")
    monkeypatch.setattr(pretrained.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_cache_dir() == tmp_path / "xdg" / "render2style"


def test_loaders_take_names(server, cache, monkeypatch):
    """A generator by name through stylegan2's loader (the path every tool's --stylegan_weights takes), its
    SHA-256 recorded under the cached file, and an ir_se50-style name through require_known_weights."""
    from render2style.stylegan2 import Generator, load_generator
    torch.manual_seed(0)
    G = Generator(size=8, style_dim=16, n_mlp=1, channel_multiplier=1, channel_max=16)
    src = cache.parent / "g.pt"
    torch.save({"g_ema": G.state_dict()}, src)
    data = src.read_bytes()
    server.files["/g.pt"] = data
    register(monkeypatch, server.url("/g.pt"), data=data)
    loaded, _ = load_generator("tiny")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), G.state_dict().values()))
    record = weights_record({"stylegan_weights": "tiny", "other": "demo"})
    assert record == {"stylegan_weights": {"path": str(cache / "tiny-weights.bin"),
                                           "sha256": hashlib.sha256(data).hexdigest()}}
    assert require_known_weights("tiny", "ir_se50") == cache / "tiny-weights.bin"


def test_registry_entries_are_complete():
    for name in ("ffhq-1024", "ir_se50", "psp_ffhq_encode"):
        info = KNOWN_WEIGHTS[name]
        assert info.url and info.url.startswith("https://") and info.licence != "unknown", name
    for name, info in KNOWN_WEIGHTS.items():
        assert info.sha256 is None or re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{64}", info.sha256), name
        if info.url and "download.pytorch.org" in info.url:
            assert info.file.split("-")[-1].split(".")[0] == info.sha256, name  # torchvision's name prefix
