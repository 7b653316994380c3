"""Matching's plaintext side: MiniLM embeddings, the projection head's wire format and numpy projection, and
the phrase pairs split across nodes by CPC section.

The model is loaded once per test session (a fixture) and embeds about a dozen texts here; one more load
happens in a fresh process, to see what importing and loading touch. A load costs about 8 s on 2 cores,
most of it importing torch and sentence-transformers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.matching.embeddings import (
    EMBEDDING_DIM,
    MODEL_ID,
    EmbeddingInputError,
    EmptyTextError,
    TextEmbedder,
)
from models.matching.phrase_pairs import (
    CPC_SECTIONS,
    PhrasePairError,
    cpc_section,
    load_phrase_pairs,
    split_by_section,
)
from models.matching.projection import (
    INPUT_DIM,
    PROJECTION_DIM,
    Projection,
    ProjectionError,
    WireFormatError,
    head_from_weights,
    initial_weights,
    pair_cosines,
    pair_losses,
    parameter_count,
    project,
    weights_from_bytes,
    weights_of_head,
    weights_to_bytes,
)

REPO = Path(__file__).resolve().parents[2]
# Pairs of the valid split (ids of data/phrase_similarity_valid.csv.gz): for each anchor, a target rated
# 1.0 and one rated 0.0 by the human raters.
SAME_ANCHOR_HIGH_LOW = (
    ("7e76f0b9afa0c5a2", "365c4d15a02c9a1e"),  # central flow path: center flow paths / central alignment
    ("d9adc1518bd204d2", "ff22b8854e032896"),  # estimated amount: estimation amount / ... blood flow rate
    ("41d19656035e8eba", "18cdc8a291ff0572"),  # rotor stages: rotors stage / apart
    ("74701f6b3dbc323c", "03cc0a174a0d038e"),  # stabilizer members: stabilizers members / vector line
)
# Run in a fresh process: what importing our modules pulls in, then whether loading the model and embedding
# one text touches a socket (an audit hook sees every socket connect and name lookup made from Python).
_FRESH_PROCESS_CHECK = """
import json, sys
import models.matching.embeddings, models.matching.phrase_pairs, models.matching.projection
heavy = sorted(name for name in ("torch", "sentence_transformers", "transformers") if name in sys.modules)
events = []
sys.addaudithook(lambda event, args: events.append(event) if event.startswith("socket.") else None)
from models.matching.embeddings import TextEmbedder
shape = TextEmbedder().embed(["unmanned aerial vehicle"]).shape
print(json.dumps({"heavy": heavy, "socket_events": sorted(set(events)), "shape": list(shape)}))
"""


@pytest.fixture(scope="session")
def embedder() -> TextEmbedder:
    """One embedder with the model loaded, shared by the tests (the model is cached per process anyway)."""
    text_embedder = TextEmbedder()
    text_embedder.load()
    return text_embedder


@pytest.fixture(scope="session")
def valid_pairs():
    return {pair.pair_id: pair for pair in load_phrase_pairs("valid")}


@pytest.fixture(scope="session")
def train_pairs():
    return load_phrase_pairs("train")


# ---- embeddings --------------------------------------------------------------------------------------


def test_importing_is_light_and_loading_and_embedding_touch_no_network() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS_CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=REPO,
        env={key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")},
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"heavy": [], "socket_events": [], "shape": [1, EMBEDDING_DIM]}


def test_the_embedder_returns_float32_unit_vectors_of_the_model_dimension(embedder: TextEmbedder) -> None:
    texts = [
        "Unmanned aerial vehicle with a camera gimbal",
        "rotor stages",
        "A method for training a network",
    ]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert embedder.model_id == MODEL_ID and "all-MiniLM-L6-v2" in MODEL_ID and "==0.1.0" in MODEL_ID


def test_the_same_text_gives_the_same_vector_within_a_batch_and_across_calls(embedder: TextEmbedder) -> None:
    text = "rotor stages"
    batch = embedder.embed([text, "a much longer text about something else entirely, to pad the batch", text])
    np.testing.assert_allclose(batch[0], batch[2], atol=1e-6)
    np.testing.assert_allclose(embedder.embed_one(text), batch[0], atol=1e-5)


def test_phrases_rated_the_same_score_higher_than_phrases_rated_unrelated(
    embedder: TextEmbedder, valid_pairs
) -> None:
    for high_id, low_id in SAME_ANCHOR_HIGH_LOW:
        high, low = valid_pairs[high_id], valid_pairs[low_id]
        assert (high.score, low.score, high.anchor) == (1.0, 0.0, low.anchor)
        anchor, same, unrelated = embedder.embed([high.anchor, high.target, low.target])
        assert anchor @ same > anchor @ unrelated + 0.2, (high.anchor, high.target, low.target)


def test_no_texts_give_an_empty_array_without_loading_anything() -> None:
    vectors = TextEmbedder().embed([])
    assert vectors.shape == (0, EMBEDDING_DIM) and vectors.dtype == np.float32


@pytest.mark.parametrize("texts", [["fine", ""], ["   ", "fine"], ["\n\t"]])
def test_empty_or_whitespace_texts_are_refused_with_their_positions(texts: list[str]) -> None:
    with pytest.raises(EmptyTextError, match="empty or only whitespace"):
        TextEmbedder().embed(texts)


@pytest.mark.parametrize("texts", ["a bare string", ["fine", 3], [b"bytes"], 42])
def test_anything_but_a_sequence_of_strings_is_refused(texts) -> None:
    with pytest.raises(EmbeddingInputError):
        TextEmbedder().embed(texts)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_a_batch_size_that_is_not_a_positive_int_is_refused(batch_size) -> None:
    with pytest.raises(EmbeddingInputError, match="batch_size"):
        TextEmbedder(batch_size=batch_size)


# ---- projection head ---------------------------------------------------------------------------------


def _unit_rows(count: int, seed: int = 7) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, INPUT_DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_the_wire_format_round_trips_exactly() -> None:
    weights = initial_weights(seed=3)
    data = weights_to_bytes(weights)
    assert len(data) == parameter_count() * 4 == PROJECTION_DIM * INPUT_DIM * 4
    back = weights_from_bytes(data)
    assert [array.shape for array in back] == [(PROJECTION_DIM, INPUT_DIM)]
    np.testing.assert_array_equal(back[0], weights[0])
    back[0][0, 0] = 1.0  # fresh, writable arrays


def test_a_projection_read_from_bytes_takes_its_dimension_from_the_length() -> None:
    sent = Projection.initial(seed=5, dim=64)
    received = Projection.from_bytes(sent.to_bytes())
    assert received.dimension == 64 and received.digest == sent.digest
    np.testing.assert_array_equal(received.weights[0], sent.weights[0])
    assert Projection.initial(seed=6, dim=64).digest != sent.digest


def test_a_head_loads_from_a_jobs_model_file_or_its_bytes_form(tmp_path: Path) -> None:
    head = Projection.initial(seed=8)
    np.savez(tmp_path / "job-model.npz", *head.weights)  # as the coordinator's job store writes it
    (tmp_path / "head.bin").write_bytes(head.to_bytes())
    assert Projection.load(tmp_path / "job-model.npz").digest == head.digest
    assert Projection.load(tmp_path / "head.bin").digest == head.digest
    np.savez(tmp_path / "valuation.npz", np.zeros((32, 21), dtype=np.float32))
    with pytest.raises(WireFormatError, match="shape"):
        Projection.load(tmp_path / "valuation.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(WireFormatError, match="not a model file"):
        Projection.load(tmp_path / "broken.npz")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 3, b"\x00" * (INPUT_DIM * 4 + 4), b"\x00" * (INPUT_DIM * 4 * (INPUT_DIM + 1))],
)
def test_bytes_of_the_wrong_length_are_refused(data: bytes) -> None:
    with pytest.raises(WireFormatError, match="bytes"):
        Projection.from_bytes(data)
    with pytest.raises(WireFormatError):
        weights_from_bytes(data)


def test_weights_with_nan_or_infinity_are_refused() -> None:
    weights = initial_weights(seed=1)
    for bad in (np.nan, np.inf):
        weights[0][5, 7] = bad
        data = np.ascontiguousarray(weights[0], dtype="<f4").tobytes()
        with pytest.raises(WireFormatError, match="NaN or infinite"):
            weights_from_bytes(data)
        with pytest.raises(ProjectionError):  # what a node's handler catches
            Projection.from_bytes(data)


def test_weights_of_the_wrong_shape_are_refused_when_sent() -> None:
    with pytest.raises(WireFormatError, match="shapes"):
        weights_to_bytes([np.zeros((PROJECTION_DIM, INPUT_DIM - 1), dtype=np.float32)])
    with pytest.raises(WireFormatError, match="shapes"):
        weights_to_bytes(initial_weights(seed=0, dim=64))  # a 64-d head where 128 is expected


def test_the_initial_projection_is_seeded_and_has_orthonormal_rows() -> None:
    first, again, other = initial_weights(11)[0], initial_weights(11)[0], initial_weights(12)[0]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    np.testing.assert_allclose(first @ first.T, np.eye(PROJECTION_DIM), atol=1e-5)


def test_a_full_width_orthogonal_projection_keeps_every_cosine() -> None:
    vectors = _unit_rows(20)
    rotated = project(vectors, initial_weights(seed=2, dim=INPUT_DIM))
    np.testing.assert_allclose(rotated @ rotated.T, vectors @ vectors.T, atol=1e-5)


def test_project_gives_unit_vectors_and_equals_the_torch_head() -> None:
    import torch

    weights = initial_weights(seed=4)
    head = head_from_weights(weights)
    with torch.no_grad():  # move the head off its initial weights, as training would
        head.weight.add_(0.05 * torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(0)))
    trained = weights_of_head(head)
    vectors = _unit_rows(50)
    projected = project(vectors, trained)
    assert projected.shape == (50, PROJECTION_DIM) and projected.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-6)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(head(torch.from_numpy(vectors)), dim=-1).numpy()
        cosines = pair_cosines(head, torch.from_numpy(vectors.reshape(25, 2, INPUT_DIM))).numpy()
    np.testing.assert_allclose(projected, expected, atol=1e-6)
    np.testing.assert_allclose(np.sum(projected[0::2] * projected[1::2], axis=1), cosines, atol=1e-6)
    np.testing.assert_allclose(project(vectors[0], trained), projected[0], atol=1e-7)


def test_the_pair_loss_is_the_squared_gap_to_the_offset_score() -> None:
    import torch

    head = head_from_weights(initial_weights(seed=4))
    pairs = torch.from_numpy(_unit_rows(6).reshape(3, 2, INPUT_DIM))
    scores = torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad():
        losses = pair_losses(head, pairs, scores)
        cosines = pair_cosines(head, pairs)
    assert losses.shape == (3,)
    np.testing.assert_allclose(losses.numpy(), ((cosines - scores - 0.2) ** 2).numpy(), atol=1e-7)


@pytest.mark.parametrize(
    "vectors",
    [np.zeros((2, INPUT_DIM - 1)), np.zeros((2, 2, INPUT_DIM)), np.full((1, INPUT_DIM), np.nan)],
)
def test_vectors_of_the_wrong_shape_or_not_finite_are_refused(vectors: np.ndarray) -> None:
    with pytest.raises(ProjectionError):
        project(vectors, initial_weights(seed=0))


def test_an_empty_batch_projects_to_an_empty_batch() -> None:
    projected = Projection.initial(seed=0).apply(np.zeros((0, INPUT_DIM), dtype=np.float32))
    assert projected.shape == (0, PROJECTION_DIM) and projected.dtype == np.float32


def test_a_vector_the_head_maps_to_zero_is_refused() -> None:
    with pytest.raises(ProjectionError, match="map to zero"):
        project(np.zeros((1, INPUT_DIM)), initial_weights(seed=0))


def test_a_head_with_a_bias_is_not_a_projection_head() -> None:
    import torch

    with pytest.raises(WireFormatError, match="bias-free"):
        weights_of_head(torch.nn.Linear(INPUT_DIM, PROJECTION_DIM, bias=True))


# ---- phrase pairs and their split ----------------------------------------------------------------------


def test_the_pair_files_load_whole_with_scores_on_the_rating_scale(train_pairs, valid_pairs) -> None:
    assert len(train_pairs) == 29_178 and len(valid_pairs) == 3_648
    assert {pair.score for pair in train_pairs} == {0.0, 0.25, 0.5, 0.75, 1.0}
    first = train_pairs[0]
    assert (first.anchor, first.target, first.context, first.section) == (
        "project onto surface",
        "disposing",
        "G03",
        "G",
    )


def test_an_unknown_split_or_section_letter_is_refused() -> None:
    with pytest.raises(PhrasePairError, match="split"):
        load_phrase_pairs("test")  # type: ignore[arg-type]
    with pytest.raises(PhrasePairError, match="CPC section"):
        cpc_section("Z99")


@pytest.mark.parametrize("nodes", [1, 2, 3, 4, 8])
def test_the_split_covers_every_train_pair_once_and_never_splits_a_section(train_pairs, nodes: int) -> None:
    shares = split_by_section(train_pairs, nodes)
    assert len(shares) == nodes
    ids = [pair.pair_id for share in shares for pair in share.pairs]
    assert sorted(ids) == sorted(pair.pair_id for pair in train_pairs)
    sections = [section for share in shares for section in share.sections]
    assert len(sections) == len(set(sections)) and set(sections) <= set(CPC_SECTIONS)
    for share in shares:
        assert {pair.section for pair in share.pairs} == set(share.sections)


def test_the_split_is_deterministic_and_balanced_for_three_nodes(train_pairs) -> None:
    shares = split_by_section(train_pairs, 3)
    assert shares == split_by_section(list(train_pairs), 3)
    assert [(share.sections, len(share.pairs)) for share in shares] == [
        (("A", "E", "H"), 9_427),
        (("B", "F"), 9_682),
        (("C", "D", "G"), 10_069),
    ]


@pytest.mark.parametrize("nodes", [0, -1, 9, 2.0, True])
def test_a_node_count_that_cannot_hold_whole_sections_is_refused(train_pairs, nodes) -> None:
    with pytest.raises(PhrasePairError, match="nodes"):
        split_by_section(train_pairs, nodes)
