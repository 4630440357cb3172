"""The on-disk image cache and MRCS stacks: rows come back in the order asked, files are checked, and
reading a whole cache or stack, or writing a stack, does not grow the process's resident memory (a
memory map did)."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

from cryodyna.data.image_cache import ImageCache


def _cache(tmp_path, n=40, d=6):
    images = np.random.default_rng(0).normal(size=(n, d, d)).astype(np.float32)
    cache = ImageCache.create(tmp_path / "images.npy", n, d)
    cache.write(0, images[:25])
    cache.write(25, images[25:])
    return cache, images


def test_rows_in_the_order_asked(tmp_path):
    cache, images = _cache(tmp_path)
    for idx in ([7, 3, 41 - 2, 8, 9, 10, 3], [0], list(range(40))[::-1], []):
        np.testing.assert_array_equal(cache.read(np.array(idx, dtype=np.int64)), images[idx])
    np.testing.assert_array_equal(cache.read_all(chunk=7), images)
    np.testing.assert_array_equal(np.load(cache.path), images)  # a plain .npy file
    again = pickle.loads(pickle.dumps(cache))
    np.testing.assert_array_equal(again.read(np.array([5, 1])), images[[5, 1]])


def test_wrong_or_short_file(tmp_path):
    np.save(tmp_path / "f64.npy", np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="float32"):
        ImageCache(tmp_path / "f64.npy")
    cache, _ = _cache(tmp_path)
    with open(cache.path, "r+b") as f:
        f.truncate(cache.offset + 10 * cache.row_bytes)
    with pytest.raises(OSError, match="ends before image 12"):
        ImageCache(cache.path).read(np.array([3, 12]))


PEAK = """
import sys
import numpy as np
from cryodyna.data.image_cache import ImageCache
from cryodyna.io.mrc import ImageStack

def peak_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024

path, mode = sys.argv[1], sys.argv[2]
before = peak_mb()
rows = np.random.default_rng(0).permutation(2000)
if mode == "cache":
    cache = ImageCache(path)
    for start in range(0, 2000, 64):
        cache.read(rows[start:start + 64]).sum()
elif mode == "stack":
    stack = ImageStack()
    for i in rows:
        stack.image(path, int(i)).sum()
else:
    images = np.load(path, mmap_mode="r")
    for start in range(0, 2000, 64):
        images[np.sort(rows[start:start + 64])].sum()
print(peak_mb() - before)
"""


def test_reading_everything_keeps_resident_memory_flat(tmp_path):
    cache = ImageCache.create(tmp_path / "images.npy", 2000, 128)  # 131 MB
    for start in range(0, 2000, 250):
        cache.write(start, np.ones((250, 128, 128), np.float32))
    growth = {mode: float(subprocess.run([sys.executable, "-c", PEAK, str(cache.path), mode], capture_output=True,
                                         text=True, check=True).stdout) for mode in ("cache", "mmap")}
    assert growth["cache"] < 20, growth
    assert growth["mmap"] > 100, growth  # what the test would see without the cache's explicit reads


def test_reading_a_stack_keeps_resident_memory_flat(tmp_path):
    from cryodyna.io.mrc import StackWriter

    writer = StackWriter(tmp_path / "particles.mrcs", 2000, 128, 1.0)  # 131 MB
    for _ in range(8):
        writer.write(np.ones((250, 128, 128), np.float32))
    writer.close()
    growth = float(subprocess.run([sys.executable, "-c", PEAK, str(tmp_path / "particles.mrcs"), "stack"], capture_output=True,
                                  text=True, check=True).stdout)
    assert growth < 20, growth


WRITE = """
import sys
import numpy as np
from cryodyna.io.mrc import StackWriter

def peak_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024

block = np.ones((250, 128, 128), np.float32)
before = peak_mb()
writer = StackWriter(sys.argv[1], 2000, 128, 1.0)
for _ in range(8):
    writer.write(block)
writer.close()
print(peak_mb() - before)
"""


def test_stack_writer_header_and_memory(tmp_path):
    import mrcfile

    from cryodyna.io.mrc import StackWriter

    images = np.random.default_rng(1).normal(size=(9, 8, 8)).astype(np.float32)
    for float16 in (False, True):
        writer = StackWriter(tmp_path / "s.mrcs", 9, 8, 1.5, float16)
        writer.write(images[:4])
        writer.write(images[4:])
        writer.close()
        with mrcfile.open(tmp_path / "s.mrcs") as m:
            data = m.data.astype(np.float64)
            assert m.data.dtype == (np.float16 if float16 else np.float32) and float(m.voxel_size.x) == 1.5
            np.testing.assert_allclose(data, images, atol=2e-3 if float16 else 0)
            np.testing.assert_allclose([m.header.dmin, m.header.dmax, m.header.dmean, m.header.rms],
                                       [data.min(), data.max(), data.mean(), data.std()], rtol=1e-5, atol=1e-6)
    growth = float(subprocess.run([sys.executable, "-c", WRITE, str(tmp_path / "big.mrcs")], capture_output=True, text=True,
                                  check=True).stdout)
    assert growth < 40, growth  # 131 MB written; one chunk's temporaries take 16 MB; a memory map would hold 131 MB
