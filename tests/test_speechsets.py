"""The tuning and held-out speech sets: disjoint, packaged (one generation everywhere), deterministic,
and built into a cache outside the source tree for a recipe with no packaged generation."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from labkit import noises, speechsets
from labkit.speechdata import SAMPLE_RATE, SENTENCES, speech_mask


def _base_and_variant(voice: str) -> tuple[str, str]:
    base, _, variant = voice.partition("+")
    return base, variant


def test_the_sets_share_no_sentence_voice_or_noise_recording():
    tuning, heldout = speechsets.load("tuning"), speechsets.load("heldout")
    assert not {u.text for u in tuning.utterances} & {u.text for u in heldout.utterances}
    assert {u.text for u in tuning.utterances} <= set(SENTENCES)
    bases = [{_base_and_variant(u.voice)[0] for u in s.utterances} for s in (tuning, heldout)]
    variants = [{_base_and_variant(u.voice)[1] for u in s.utterances} - {""} for s in (tuning, heldout)]
    assert not bases[0] & bases[1] and not variants[0] & variants[1]
    assert len({u.voice for u in heldout.utterances}) >= 8
    assert tuning.style != heldout.style and tuning.seed != heldout.seed
    for kind in ("pink", "babble", "hum"):
        a = speechsets.condition(tuning, kind, 10)[0][1]
        b = speechsets.condition(heldout, kind, 10)[0][1]
        n = min(a.size, b.size)
        assert abs(np.corrcoef(a[:n].astype(float), b[:n].astype(float))[0, 1]) < 0.1


def test_levels_span_minus_35_to_minus_6_dbfs_and_the_snr_is_as_stated():
    heldout = speechsets.load("heldout")
    peaks = [20 * np.log10(np.abs(s.audio).max() / 32767) for s in heldout.sessions]
    assert min(peaks) == pytest.approx(-35, abs=2.5) and max(peaks) == pytest.approx(-6, abs=2.5)
    for kind in ("white", "keyboard", "music"):
        mix, noise, utts = speechsets.condition(heldout, kind, 5)[2]
        speech = mix.astype(float) - noise
        p_speech = np.mean(speech[speech_mask(utts, mix.size)] ** 2)
        assert 10 * np.log10(p_speech / np.mean(noise.astype(float) ** 2)) == pytest.approx(5, abs=0.3)


def test_both_sets_load_their_packaged_generation_for_the_current_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))            # an empty cache: nothing is built
    speechsets.load.cache_clear()
    try:
        for name in ("tuning", "heldout"):
            path = speechsets.packaged_path(name)
            assert path.exists(), f"{path.name} is not packaged: run labkit.speechsets.package({name!r})"
            loaded = speechsets.load(name)
            with np.load(path, allow_pickle=False) as data:
                assert all(np.array_equal(s.audio, data[f"s{k}"]) for k, s in enumerate(loaded.sessions))
                labels = json.loads(str(data["labels"]))
            assert [[asdict(u) for u in s.utterances] for s in loaded.sessions] == labels
        assert not (tmp_path / "labkit").exists()
    finally:
        speechsets.load.cache_clear()
    with pytest.raises(ValueError, match="unknown speech set"):
        speechsets.package("training")


def test_package_writes_a_new_generation_and_removes_older_recipes_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(speechsets, "PACKAGED_DIR", tmp_path)
    older = tmp_path / "speechset-heldout-0123456789abcdef.npz"          # an older recipe's generation
    older.write_bytes(b"")
    speechsets.load.cache_clear()
    try:
        path = speechsets.package("heldout")
        assert path == speechsets.packaged_path("heldout") and path.parent == tmp_path
        assert not older.exists() and [p.name for p in tmp_path.iterdir()] == [path.name]     # no temp file left
        with np.load(path, allow_pickle=False) as data:
            assert np.array_equal(speechsets.load("heldout").sessions[0].audio, data["s0"])
        with pytest.raises(FileExistsError, match="overwrite=True"):
            speechsets.package("heldout")                      # the generation the figures were measured on
        assert speechsets.package("heldout", overwrite=True) == path
    finally:
        speechsets.load.cache_clear()


def test_a_recipe_with_no_packaged_generation_is_built_outside_the_source_tree_and_deterministic(
        tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(speechsets, "PACKAGED_DIR", tmp_path / "not-packaged")
    speechsets.load.cache_clear()
    try:
        fresh = speechsets.load("heldout")
        files = list((tmp_path / "labkit").glob("speechset-heldout-*.npz"))
        assert len(files) == 1
        repo = Path(speechsets.__file__).resolve().parents[1]
        assert repo not in files[0].resolve().parents
        speechsets.load.cache_clear()
        again = speechsets.load("heldout")                        # read back from the cache
        assert all(np.array_equal(a.audio, b.audio) for a, b in zip(fresh.sessions, again.sessions))
        assert fresh.utterances == again.utterances
    finally:
        speechsets.load.cache_clear()
    first = speechsets.condition(fresh, "fan", 10)[0][0]
    assert np.array_equal(first, speechsets.condition(fresh, "fan", 10)[0][0])       # seeded noise


def test_every_noise_kind_is_unit_rms_and_deterministic():
    for kind in noises.NOISE_KINDS:
        pool = [np.ones(1000)] if kind == "babble" else None
        x = noises.make(kind, SAMPLE_RATE * 2, SAMPLE_RATE, noises.HELDOUT_STYLE, seed=3, speech_pool=pool)
        assert np.sqrt(np.mean(x ** 2)) == pytest.approx(1.0)
        assert np.array_equal(x, noises.make(kind, SAMPLE_RATE * 2, SAMPLE_RATE, noises.HELDOUT_STYLE, 3, pool))
    with pytest.raises(ValueError):
        noises.make("rain", 100, SAMPLE_RATE, noises.HELDOUT_STYLE, 0)
