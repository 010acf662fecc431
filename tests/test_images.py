"""pipeline.ingest.images: listing a collection, reading every common format, square crops with padding."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import SpritesError
from pipeline.ingest.images import list_images, load_crop, to_uint8_array


def _noise(h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def _halves(w=40, h=20):
    """Left half black, right half white."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, w // 2:] = 255
    return a


class TestListImages:
    def test_folder_is_recursive_and_sorted(self, tiny_collection):
        (tiny_collection / "notes.txt").write_text("hello")
        (tiny_collection / ".hidden.png").write_bytes(b"x")
        (tiny_collection / ".git").mkdir()
        (tiny_collection / ".git" / "x.png").write_bytes(b"x")
        (tiny_collection / "UPPER.JPG").write_bytes(b"x")
        listing = list_images(str(tiny_collection))
        assert listing.root == tiny_collection
        assert len(listing.files) == 13
        assert listing.files == sorted(listing.files)
        assert "book1/quire2/img00.png" in listing.files and "UPPER.JPG" in listing.files
        assert not any(".hidden" in f or ".git" in f for f in listing.files)
        assert listing.ignored == [("notes.txt", "not an image (unsupported file type .txt)")]

    def test_glob_relative_to_non_magic_prefix(self, tiny_collection):
        listing = list_images(str(tiny_collection / "book1" / "**" / "*.png"))
        assert listing.root == tiny_collection / "book1"
        assert listing.files == ["img00.png", "img01.png", "img02.png",
                                 "quire2/img00.png", "quire2/img01.png", "quire2/img02.png"]

    def test_glob_one_level(self, tiny_collection):
        listing = list_images(str(tiny_collection / "book*" / "img00.png"))
        assert listing.root == tiny_collection
        assert listing.files == ["book1/img00.png", "book2/img00.png"]

    def test_single_file(self, tiny_collection):
        listing = list_images(str(tiny_collection / "book2" / "img01.png"))
        assert listing.root == tiny_collection / "book2" and listing.files == ["img01.png"]

    def test_missing(self, tmp_path):
        with pytest.raises(SpritesError, match="images not found.*ingest.images"):
            list_images(str(tmp_path / "nowhere"))

    def test_empty_folder(self, tmp_path):
        listing = list_images(str(tmp_path))
        assert listing.files == [] and listing.ignored == []


class TestFormats:
    """Every common file format and Pillow mode gives a uint8 crop of the right shape."""

    @pytest.mark.parametrize("ext, kwargs", [
        ("png", {}), ("bmp", {}), ("tif", {}), ("tiff", {"compression": "tiff_lzw"}),
        ("webp", {"lossless": True}), ("jpg", {"quality": 95}),
    ])
    def test_formats_read(self, tmp_path, ext, kwargs):
        a = _halves(32, 32)
        path = tmp_path / f"img.{ext}"
        Image.fromarray(a).save(path, **kwargs)
        r = load_crop(path, 32, 3)
        assert r.error is None
        assert r.crop.shape == (3, 32, 32) and r.crop.dtype == np.uint8
        assert (r.width, r.height) == (32, 32)
        assert np.abs(r.crop.transpose(1, 2, 0).astype(int) - a).max() <= 8  # jpeg loses a little
        assert r.checksum == hashlib.sha1(path.read_bytes()).hexdigest()

    def test_grey_to_colour_and_back(self, tmp_path):
        g = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
        Image.fromarray(g, mode="L").save(tmp_path / "g.png")
        rgb = load_crop(tmp_path / "g.png", 32, 3).crop
        assert rgb.shape == (3, 32, 32) and (rgb == g).all()
        grey = load_crop(tmp_path / "g.png", 32, 1).crop
        assert grey.shape == (1, 32, 32) and (grey[0] == g).all()

    def test_rgb_to_grey(self, tmp_path):
        a = np.zeros((16, 16, 3), np.uint8)
        a[..., 1] = 255
        Image.fromarray(a).save(tmp_path / "green.png")
        crop = load_crop(tmp_path / "green.png", 16, 1).crop
        assert crop.shape == (1, 16, 16)
        assert abs(int(crop[0, 8, 8]) - 150) <= 2  # ITU-R 601 luma of pure green

    def test_rgba_composited_over_white(self, tmp_path):
        a = np.zeros((16, 16, 4), np.uint8)
        a[:, :8] = (200, 0, 0, 255)   # opaque red on the left
        a[:, 8:] = (0, 0, 0, 0)       # transparent black on the right
        Image.fromarray(a, mode="RGBA").save(tmp_path / "rgba.png")
        crop = load_crop(tmp_path / "rgba.png", 16, 3).crop
        assert (crop[:, :, :8].transpose(1, 2, 0) == (200, 0, 0)).all()
        assert (crop[:, :, 8:] == 255).all()

    def test_half_transparent(self):
        img = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
        arr = to_uint8_array(img, 3)
        assert arr.shape == (4, 4, 3) and abs(int(arr[0, 0, 0]) - 127) <= 1

    def test_la_mode(self):
        img = Image.new("LA", (4, 4), (0, 0))
        assert (to_uint8_array(img, 1) == 255).all()

    def test_16_bit_gradient(self, tmp_path):
        g = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 1))
        Image.fromarray(g).save(tmp_path / "g16.png")
        assert Image.open(tmp_path / "g16.png").mode.startswith("I")
        r = load_crop(tmp_path / "g16.png", 64, 1)
        row = r.crop[0, 32].astype(int)
        assert row[0] == 0 and row[-1] == 255
        assert (np.diff(row) >= 0).all()
        assert np.abs(row - np.linspace(0, 255, 64)).max() <= 1

    def test_dark_16_bit_stays_dark(self, tmp_path):
        """16-bit values 0..252 are near black, not stretched as if they were 8-bit."""
        Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint16), (64, 1))).save(tmp_path / "dark.png")
        assert load_crop(tmp_path / "dark.png", 64, 1).crop.max() <= 1

    def test_32_bit_int_with_8_bit_values(self):
        img = Image.fromarray(np.array([[0, 128, 255]], dtype=np.int32), mode="I")
        assert to_uint8_array(img, 1)[0, :, 0].tolist() == [0, 128, 255]

    def test_float_mode(self):
        img = Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4), mode="F")
        arr = to_uint8_array(img, 1)
        assert arr[0, 0, 0] == 0 and arr[-1, -1, 0] == 255

    def test_palette_with_transparency(self, tmp_path):
        img = Image.new("P", (16, 16), 0)
        img.putpalette([0, 0, 255] + [255, 0, 0] + [0, 0, 0] * 254)
        img.paste(1, (0, 0, 8, 16))
        img.save(tmp_path / "p.png", transparency=0)
        assert Image.open(tmp_path / "p.png").mode == "P"
        crop = load_crop(tmp_path / "p.png", 16, 3).crop
        assert (crop[:, :, :8].transpose(1, 2, 0) == (255, 0, 0)).all()
        assert (crop[:, :, 8:] == 255).all()  # the transparent blue index became white

    def test_palette_opaque(self, tmp_path):
        Image.fromarray(_halves(32, 32)).convert("P", palette=Image.ADAPTIVE, colors=4).save(tmp_path / "p.png")
        crop = load_crop(tmp_path / "p.png", 32, 3).crop
        assert (crop[:, :, :16] == 0).all() and (crop[:, :, 16:] == 255).all()

    def test_cmyk_jpeg(self, tmp_path):
        Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
        r = load_crop(tmp_path / "c.jpg", 16, 3)
        assert r.error is None and r.crop.min() >= 250

    def test_exif_orientation_6(self, tmp_path):
        img = Image.fromarray(_halves(40, 20))   # stored 40 wide × 20 high, black on the left
        exif = img.getexif()
        exif[0x0112] = 6                          # display: rotate 90° clockwise
        img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
        r = load_crop(tmp_path / "rot.jpg", 16, 3)
        assert r.error is None
        assert (r.width, r.height) == (20, 40)   # as displayed
        assert r.content_box == (4, 0, 8, 16)    # tall: padded left and right
        column = r.crop[0, :, 8].astype(int)
        assert column[:7].max() < 40 and column[9:].min() > 215  # black on top, white below


class TestSquare:
    def _wide(self, tmp_path):
        """40 × 20, light grey (200) paper with a black block in the middle."""
        a = np.full((20, 40, 3), 200, np.uint8)
        a[6:14, 16:24] = 0
        Image.fromarray(a).save(tmp_path / "wide.png")
        return tmp_path / "wide.png"

    def test_wide_padded_top_bottom_with_border_colour(self, tmp_path):
        r = load_crop(self._wide(tmp_path), 20, 3)
        assert (r.width, r.height) == (40, 20)
        assert r.content_box == (0, 5, 20, 10)
        crop = r.crop.transpose(1, 2, 0)
        assert (crop[:5] == 200).all() and (crop[15:] == 200).all()
        assert crop[10, 10].max() < 60  # the block is still in the middle

    @pytest.mark.parametrize("pad, value", [("white", 255), ("black", 0)])
    def test_pad_colour_option(self, tmp_path, pad, value):
        crop = load_crop(self._wide(tmp_path), 20, 3, pad=pad).crop.transpose(1, 2, 0)
        assert (crop[:5] == value).all() and (crop[15:] == value).all()
        assert (crop[5:15, 0] == 200).all()

    def test_dark_paper_gets_dark_frame(self, tmp_path):
        a = np.full((10, 30), 10, np.uint8)
        a[3:7, 12:18] = 250
        Image.fromarray(a, mode="L").save(tmp_path / "dark.png")
        crop = load_crop(tmp_path / "dark.png", 30, 1).crop[0]
        assert (crop[:10] == 10).all() and (crop[20:] == 10).all()

    def test_tall_padded_left_right(self, tmp_path):
        Image.fromarray(_noise(30, 10)).save(tmp_path / "tall.png")
        r = load_crop(tmp_path / "tall.png", 30, 3)
        assert r.content_box == (10, 0, 10, 30)
        assert (r.crop[:, :, 10:20] == _noise(30, 10).transpose(2, 0, 1)).all()

    def test_upscale_and_downscale_keep_aspect(self, tmp_path):
        Image.fromarray(_noise(50, 100)).save(tmp_path / "big.png")
        Image.fromarray(_noise(5, 10)).save(tmp_path / "small.png")
        assert load_crop(tmp_path / "big.png", 20, 3).content_box == (0, 5, 20, 10)
        assert load_crop(tmp_path / "small.png", 20, 3).content_box == (0, 5, 20, 10)

    def test_one_pixel_line(self, tmp_path):
        Image.fromarray(_noise(1, 200)).save(tmp_path / "line.png")
        r = load_crop(tmp_path / "line.png", 16, 3)
        assert r.error is None and r.content_box[3] == 1 and r.crop.shape == (3, 16, 16)


class TestBadFiles:
    """load_crop never raises: a bad file gives an error string and no crop."""

    def test_random_bytes(self, tmp_path):
        (tmp_path / "bad.png").write_bytes(np.random.default_rng(0).bytes(2000))
        r = load_crop(tmp_path / "bad.png", 16, 3)
        assert r.crop is None and "not a readable image" in r.error and r.checksum

    def test_truncated_png(self, tmp_path):
        Image.fromarray(_noise(64, 64)).save(tmp_path / "full.png")
        data = (tmp_path / "full.png").read_bytes()
        (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
        r = load_crop(tmp_path / "half.png", 16, 3)
        assert r.crop is None and "truncated" in r.error

    def test_zero_bytes(self, tmp_path):
        (tmp_path / "empty.jpg").write_bytes(b"")
        r = load_crop(tmp_path / "empty.jpg", 16, 3)
        assert r.crop is None and r.error

    def test_unreadable_path(self, tmp_path):
        r = load_crop(tmp_path / "missing.png", 16, 3)
        assert r.crop is None and "cannot read" in r.error

    def test_max_pixels(self, tmp_path):
        Image.fromarray(_noise(40, 50)).save(tmp_path / "big.png")
        r = load_crop(tmp_path / "big.png", 16, 3, max_pixels=1999)
        assert r.crop is None and "too large (50×40 px > ingest.max_pixels = 1999)" in r.error
        assert load_crop(tmp_path / "big.png", 16, 3, max_pixels=2000).error is None


class TestFastPng:
    """8-bit grey and RGB PNGs go through libspng; the pixels equal Pillow's, every other PNG is Pillow's."""

    @pytest.mark.parametrize("mode", ["L", "RGB"])
    @pytest.mark.parametrize("channels", [1, 3])
    def test_same_pixels_as_pillow(self, mode, channels, monkeypatch):
        from pipeline.ingest import images
        rng = np.random.default_rng(0)
        arr = rng.integers(0, 256, (23, 31) if mode == "L" else (23, 31, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, mode).save(buf, "PNG")
        data = buf.getvalue()
        assert images._fast_png(data, channels, 10**9) is not None
        fast = images.decode_image(data, channels)
        monkeypatch.setattr(images, "pyspng", None)
        slow = images.decode_image(data, channels)
        assert fast.array.shape == slow.array.shape == (23, 31, channels)
        assert np.array_equal(fast.array, slow.array) and (fast.width, fast.height) == (slow.width, slow.height)

    @pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "I;16"])
    def test_other_pngs_are_left_to_pillow(self, mode):
        from pipeline.ingest import images
        img = Image.new("RGB", (8, 8), (10, 20, 30)).convert(mode) if mode != "I;16" else Image.new("I;16", (8, 8), 300)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        assert images._fast_png(buf.getvalue(), 3, 10**9) is None
        assert images.decode_image(buf.getvalue(), 3).array.shape == (8, 8, 3)

    def test_corrupt_png_still_says_what_is_wrong(self):
        from pipeline.ingest import images
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "PNG")
        data = buf.getvalue()[:60]
        assert images._fast_png(data, 3, 10**9) is None
        assert "truncated or corrupt" in images.decode_image(data, 3).error
