"""PNG thumbnails of image outputs: the encoder and the value mapping."""

import numpy as np

from graphsurgery.render import images


def test_png_round_trips_through_tensorflow():
    import tensorflow as tf
    rng = np.random.default_rng(0)
    for shape in [(5, 7), (5, 7, 3), (4, 6, 4)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        decoded = tf.io.decode_png(images.encode_png(pixels)).numpy()
        assert np.array_equal(decoded.reshape(pixels.shape), pixels)


def test_nchw_and_nhwc_images_map_from_minus_one_to_one():
    x = np.linspace(-1, 1, 3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8)
    assert images.is_image(x) and images.is_image(x.transpose(0, 2, 3, 1))
    assert not images.is_image(np.zeros((1, 16, 16, 8)))
    lo, hi = images.value_range(x)
    assert (lo, hi) == (-1.0, 1.0)
    px = images.to_pixels(x, lo, hi)
    assert px.shape == (8, 8, 3) and px.dtype == np.uint8
    assert px.min() == 0 and px.max() == 255
    assert np.array_equal(px, images.to_pixels(x.transpose(0, 2, 3, 1), lo, hi))


def test_thumbnail_and_error_image():
    big = np.zeros((1024, 512, 3), np.uint8)
    assert images.thumbnail(big).shape == (256, 128, 3)
    assert images.thumbnail(np.zeros((8, 8), np.uint8)).shape == (64, 64)
    a = np.zeros((1, 4, 4, 3))
    b = a.copy()
    b[0, 1, 2, 0] = 0.5
    err, peak = images.error_image(a, b)
    assert peak == 0.5 and err[1, 2] == 255 and err.sum() == 255
