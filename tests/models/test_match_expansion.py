"""Related terms for a need (models/matching/expansion.py): two levels from a phrase vocabulary.

Most tests use a small vocabulary of hand-made vectors under a made-up model id: the ranking logic, not the
model, is under test there, and the nearest phrases can be read off the vectors. The last tests check the
shipped vocabulary file, and one embeds a real need with the real MiniLM to see it is usable end to end.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.matching.embeddings import EMBEDDING_DIM, MODEL_ID, TextEmbedder
from models.matching.expansion import (
    SHIPPED_VOCABULARY,
    ExpansionError,
    Vocabulary,
    VocabularyMismatch,
    related_terms,
)

FAKE_MODEL = "fake-model@tests"


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


# Four axes: "drone" things lie near axis 0, "battery" things near axis 1; the rest are far from the need.
PHRASES = {
    "unmanned aerial vehicle": _unit(1.0, 0.1, 0.0, 0.0),
    "quadcopter": _unit(0.95, 0.0, 0.3, 0.0),
    "rotor blade": _unit(0.6, 0.0, 0.8, 0.0),  # near "quadcopter", less so near the need
    "flight controller": _unit(0.7, 0.0, 0.0, 0.7),
    "lithium cell": _unit(0.1, 1.0, 0.0, 0.0),
    "charging station": _unit(0.3, 0.9, 0.0, 0.0),
    "cathode layer": _unit(0.0, 0.9, 0.0, 0.4),
    "gym equipment": _unit(0.0, 0.0, 0.0, 1.0),
}
NEED = _unit(1.0, 0.5, 0.0, 0.0)  # a drone that charges itself


@pytest.fixture
def vocabulary() -> Vocabulary:
    return Vocabulary(list(PHRASES), np.stack(list(PHRASES.values())), FAKE_MODEL)


def test_the_first_level_holds_the_phrases_nearest_the_need_best_first(vocabulary: Vocabulary) -> None:
    terms = related_terms(NEED, vocabulary, model_id=FAKE_MODEL, first=3, second=0)
    expected = sorted(PHRASES, key=lambda phrase: -float(PHRASES[phrase] @ NEED))[:3]
    assert [term.phrase for term in terms.first_level] == expected
    assert [term.score for term in terms.first_level] == pytest.approx(
        [float(PHRASES[p] @ NEED) for p in expected]
    )
    assert terms.second_level == ()


def test_the_second_level_is_nearest_the_first_level_and_disjoint_from_it(vocabulary: Vocabulary) -> None:
    terms = related_terms(NEED, vocabulary, model_id=FAKE_MODEL, first=2, second=3)
    first = {term.phrase for term in terms.first_level}
    second = [term.phrase for term in terms.second_level]
    assert first == set(sorted(PHRASES, key=lambda phrase: -float(PHRASES[phrase] @ NEED))[:2])
    assert len(second) == 3 and not first & set(second)
    # a plain reference: every other phrase by its best cosine to a first-level phrase
    best = {p: max(float(PHRASES[p] @ PHRASES[f]) for f in first) for p in PHRASES if p not in first}
    assert second == sorted(best, key=lambda phrase: -best[phrase])[:3]
    for term in terms.second_level:
        assert term.via in first
        assert term.score == pytest.approx(float(PHRASES[term.phrase] @ PHRASES[term.via]))
        # its score is its best cosine to any first-level term, and the list is best first
        assert term.score == pytest.approx(max(float(PHRASES[term.phrase] @ PHRASES[p]) for p in first))
    assert [term.score for term in terms.second_level] == sorted(
        (term.score for term in terms.second_level), reverse=True
    )
    assert "gym equipment" not in second  # far from every first-level term


def test_expansion_is_deterministic_and_breaks_ties_by_vocabulary_order() -> None:
    tied = Vocabulary(
        ["b twin", "a twin", "other"], np.stack([_unit(1, 0), _unit(1, 0), _unit(0, 1)]), FAKE_MODEL
    )
    runs = [related_terms(_unit(1, 0.2), tied, model_id=FAKE_MODEL, first=1, second=2) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert [term.phrase for term in runs[0].first_level] == ["b twin"]  # first in the vocabulary wins the tie
    assert [term.phrase for term in runs[0].second_level] == ["a twin", "other"]


def test_phrases_the_need_already_says_are_not_suggested(vocabulary: Vocabulary) -> None:
    need_text = "An Unmanned Aerial Vehicle that lands on a charging station"
    terms = related_terms(NEED, vocabulary, model_id=FAKE_MODEL, first=3, second=3, need_text=need_text)
    suggested = {term.phrase for term in (*terms.first_level, *terms.second_level)}
    assert suggested and not suggested & {"unmanned aerial vehicle", "charging station"}
    # whole words only: "cathode layer" is not said by "cathode layers are"
    kept = related_terms(NEED, vocabulary, model_id=FAKE_MODEL, first=8, second=0, need_text="cathode layers")
    assert "cathode layer" in {term.phrase for term in kept.first_level}


def test_a_vocabulary_of_another_model_is_refused_with_both_model_ids(vocabulary: Vocabulary) -> None:
    with pytest.raises(VocabularyMismatch, match=f"embedded by {FAKE_MODEL}, the need by {MODEL_ID}"):
        related_terms(NEED, vocabulary, model_id=MODEL_ID)


def test_a_need_of_another_dimension_is_refused(vocabulary: Vocabulary) -> None:
    with pytest.raises(VocabularyMismatch, match="4 dimensions, the need's 384"):
        related_terms(np.ones(EMBEDDING_DIM, dtype=np.float32), vocabulary, model_id=FAKE_MODEL)
    with pytest.raises(ExpansionError, match="one vector"):
        related_terms(NEED[None, :], vocabulary, model_id=FAKE_MODEL)
    with pytest.raises(ExpansionError, match="finite, non-zero"):
        related_terms(np.zeros(4), vocabulary, model_id=FAKE_MODEL)
    with pytest.raises(ExpansionError, match="first must be an int from 0 to 100"):
        related_terms(NEED, vocabulary, model_id=FAKE_MODEL, first=101)


@pytest.mark.parametrize(
    ("phrases", "vectors", "message"),
    [
        (["a", "a"], [_unit(1, 0), _unit(0, 1)], "distinct"),
        (["a", "b"], [_unit(1, 0)], "one vector per phrase"),
        (["a", "b\nc"], [_unit(1, 0), _unit(0, 1)], "single lines"),
        (["a", "b"], [[2.0, 0.0], _unit(0, 1)], "unit norm"),
        ([], np.zeros((0, 2)), "at least one phrase"),
    ],
)
def test_a_malformed_vocabulary_is_refused(phrases: list, vectors: list, message: str) -> None:
    with pytest.raises(ExpansionError, match=message):
        Vocabulary(phrases, np.array(vectors, dtype=np.float32), FAKE_MODEL)


def test_a_saved_vocabulary_loads_back_and_another_file_is_refused(vocabulary: Vocabulary, tmp_path) -> None:
    path = tmp_path / "vocabulary.npz"
    vocabulary.save(path)
    loaded = Vocabulary.load(path)
    assert (loaded.phrases, loaded.model_id) == (vocabulary.phrases, FAKE_MODEL)
    np.testing.assert_allclose(loaded.vectors, vocabulary.vectors, atol=1e-3)  # float16 on disk
    other = tmp_path / "other.npz"
    np.savez(other, vectors=vocabulary.vectors)
    with pytest.raises(ExpansionError, match="is not a phrase vocabulary"):
        Vocabulary.load(other)


def test_the_shipped_vocabulary_is_minilm_s_compact_and_distinct() -> None:
    shipped = Vocabulary.load(SHIPPED_VOCABULARY)
    shipped.require(MODEL_ID, EMBEDDING_DIM)
    assert SHIPPED_VOCABULARY.stat().st_size <= 2_000_000
    assert len(shipped) == len(set(shipped.phrases)) >= 2000


def test_a_real_need_finds_related_patent_phrases_with_the_real_model() -> None:
    need = "lithium battery cathode coating with a longer cycle life"
    shipped = Vocabulary.load(SHIPPED_VOCABULARY)
    terms = related_terms(TextEmbedder().embed_one(need), shipped, model_id=MODEL_ID, need_text=need)
    assert len(terms.first_level) == len(terms.second_level) == 8
    assert any("cathode" in term.phrase for term in terms.first_level), terms
    assert all(term.score > 0.3 for term in terms.first_level), terms
