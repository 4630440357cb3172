import numpy as np
import pytest
import torch

from cryodyna.physics.restraints import ElasticRelease, clash_penalty, distance_deviation
from cryodyna.structure.blocks import assign_blocks, block_centroids, knn_graph, residue_block_links
from cryodyna.structure.pairs import clash_pairs, connect_pairs, elastic_pairs


def test_blocks_merge_short_runs_within_chain_only():
    ss = np.array(list("CCHHHHCEEE" + "HC" + "NNN"), dtype=object)
    chain = np.array(["A"] * 10 + ["B"] * 2 + ["C"] * 3, dtype=object)
    block = assign_blocks(ss, chain, min_length=3)
    # A: CC (first run opens block 0), HHHH (1), C (short -> 1), EEE (2); B: H opens 3, C short -> 3; C: one block 4
    assert block.tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]
    assert assign_blocks(ss, chain, min_length=1).max() == 6  # 4 runs in A, 2 in B, 1 in C


def test_block_graph_and_links_handle_tiny_models():
    coords = np.array([[0.0, 0, 0], [1, 0, 0], [10, 0, 0], [11, 0, 0]])
    chain = np.array(["A"] * 4, dtype=object)
    for block in (np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1])):
        cent = block_centroids(coords, block)
        nbr, dist = knn_graph(cent, 16)
        assert nbr.shape == (len(cent), len(cent)) and (nbr[:, 0] == np.arange(len(cent))).all() and (dist[:, 0] == 0).all()
        idx, mask = residue_block_links(coords, block, chain, cent)
        for i in range(4):
            assert block[i] not in idx[i][mask[i]]  # the own block is not a link
    idx, mask = residue_block_links(coords, np.array([0, 0, 1, 1]), chain, block_centroids(coords, np.array([0, 0, 1, 1])))
    assert mask.sum(1).tolist() == [1, 1, 1, 1]


def test_links_include_sequence_neighbours_of_the_same_chain_only():
    coords = np.stack([np.arange(12.0) * 5, np.zeros(12), np.zeros(12)], 1)
    block = np.repeat(np.arange(6), 2)
    chain = np.array(["A"] * 6 + ["B"] * 6, dtype=object)
    cent = block_centroids(coords, block)
    idx, mask = residue_block_links(coords, block, chain, cent, n_near=0)
    assert set(idx[5][mask[5]].tolist()) == {1}  # block 2 (chain A): block 3 starts chain B
    assert set(idx[6][mask[6]].tolist()) == {4}  # block 3 (chain B): block 2 belongs to chain A
    assert set(idx[2][mask[2]].tolist()) == {0, 2}
    near, near_mask = residue_block_links(coords, block, chain, cent, n_near=1)
    assert 3 in near[5][near_mask[5]]  # spatial neighbours may cross chains


def test_pair_sets():
    coords = np.array([[0.0, 0, 0], [3.8, 0, 0], [7.6, 0, 0], [3.8, 5.0, 0], [0, 20, 0], [3.0, 3.0, 0]])
    chain = np.array(["A", "A", "A", "B", "B", "B"], dtype=object)
    res = np.array([1, 2, 4, 1, 2, 3])
    conn = connect_pairs(chain, res)
    assert conn.tolist() == [[0, 1], [3, 4], [4, 5]]  # 2 -> 4 is a gap; chains never connect
    nucleic = np.array([False] * 6)
    el = elastic_pairs(coords, chain, nucleic, intra_cutoff=8.0, inter_cutoff=0.0, nucleic_cutoff=15.0, excluded=conn)
    assert sorted(map(tuple, el.tolist())) == [(0, 2), (1, 2), (3, 5)]
    el2 = elastic_pairs(coords, chain, nucleic, 8.0, 6.0, 15.0, conn)
    assert (1, 3) in set(map(tuple, el2.tolist())) and (0, 3) not in set(map(tuple, el2.tolist()))
    cl = clash_pairs(coords, min_distance=4.0, search=10.0, excluded=conn)
    d = np.linalg.norm(coords[cl[:, 0]] - coords[cl[:, 1]], axis=1)
    assert (d >= 4.0).all() and (d <= 10.0).all() and [0, 1] not in cl.tolist()
    assert [0, 5] in cl.tolist()  # 4.24 A apart in the reference: may not come closer than 4 A
    assert [1, 5] not in cl.tolist()  # 3.01 A apart already: never penalised


def reference_release(sq_err, group, keep):
    var = sq_err.var(0, unbiased=False)
    out = torch.ones(len(group), dtype=torch.bool)
    for g in group.unique():
        if g < 0:
            continue
        sel = torch.nonzero(group == g).flatten()
        order = sel[torch.argsort(var[sel], stable=True)]
        n_keep = int(np.ceil(keep * len(sel)))
        out[order[n_keep:]] = False
    return out


def test_release_mask_matches_per_chain_loop():
    torch.manual_seed(0)
    sq = torch.rand(8, 50) * torch.linspace(0.1, 3, 50)
    group = torch.tensor([0] * 20 + [1] * 25 + [-1] * 5)
    for keep in (0.5, 0.8, 0.99, 1.0):
        torch.testing.assert_close(ElasticRelease(group, keep).weights(sq) > 0, reference_release(sq, group, keep))
    assert (ElasticRelease(group, 0.1).weights(sq) > 0)[-5:].all()


def test_clash_and_deviation_values():
    x = torch.tensor([[[0.0, 0, 0], [3.0, 0, 0], [0, 5.0, 0]]])
    pairs = torch.tensor([[0, 1], [0, 2]])
    assert clash_penalty(x, pairs, 4.0).item() == pytest.approx(1.0)  # only (0, 1): (4 - 3)^2 / 1 entry
    assert clash_penalty(x, pairs, 2.0).item() == 0.0
    dev = distance_deviation(x, pairs, torch.tensor([3.5, 5.0]))
    torch.testing.assert_close(dev, torch.tensor([[0.25, 0.0]]))
