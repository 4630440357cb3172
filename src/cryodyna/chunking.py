"""Cache-sized chunks of large row-wise computations."""

from __future__ import annotations

CHUNK_BYTES = 4 * 2**20  # working set of one chunk: stays in the CPU's caches
MAX_CHUNKS = 8  # beyond this, per-operation overhead outweighs the cache gain (chunks grow instead)


def row_chunks(n_rows: int, bytes_per_row: int, budget: int | None = None) -> list[slice]:
    """Consecutive slices of ``n_rows`` rows, each about ``budget`` bytes (default
    :data:`CHUNK_BYTES`) when a row holds ``bytes_per_row``, and at most :data:`MAX_CHUNKS` of
    them: temporaries made per row (per-edge terms, per-node image profiles) are then made and
    consumed chunk by chunk while they are still in cache (forward and backward), instead of one pass
    over memory per elementwise op."""
    step = max(1, (budget or CHUNK_BYTES) // max(1, bytes_per_row), -(-n_rows // MAX_CHUNKS))
    return [slice(lo, min(lo + step, n_rows)) for lo in range(0, n_rows, step)]
