"""The protein tasks' building blocks: sequence recovery, track orders, motif selection and placement, decoding
settings; and the tasks' API on a tiny random bundle (chain-of-thought order, SS8 prompt kept, determinism)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from openesm3.config import FOLD_DECODING, TaskDecoding
from openesm3.errors import InputError
from openesm3.generation import design as design_module
from openesm3.generation.bundle import ModelBundle
from openesm3.generation.design import Motif, design, design_prompt, parse_track_order, select_motif
from openesm3.generation.tasks import fold, inverse_fold, predict_function, sequence_recovery
from openesm3.protein import Protein
from tests.conftest import TEST_DATA
from tests.task_testing import KEYWORDS, save_tiny_bundle, save_tiny_vocabulary

ZIPPER = TEST_DATA / "structures" / "2ZTA.pdb.gz"  # GCN4 leucine zipper, chains A and B, residues 1-31


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    root = tmp_path_factory.mktemp("tasks")
    return ModelBundle(save_tiny_bundle(root / "w", seed=3), vocabulary_dir=save_tiny_vocabulary(root / "voc"))


def test_sequence_recovery_by_hand() -> None:
    assert sequence_recovery("MKTAY", "MKSAY") == pytest.approx(0.8)
    # Masks, chain breaks and X of the native are not counted: M, K, A -> 2 of 3 recovered.
    assert sequence_recovery("MA|AY", "MK|AX") == pytest.approx(2 / 3)
    assert sequence_recovery("mkt", "MKT") == 1.0
    assert math.isnan(sequence_recovery("AAA", "__X"))
    with pytest.raises(InputError, match="4 positions, the native 5"):
        sequence_recovery("MKTA", "MKTAY")


def test_track_order_aliases_and_errors() -> None:
    assert parse_track_order("ss8,structure,sequence") == ("secondary_structure", "structure", "sequence")
    assert parse_track_order("function") == ("function", "sequence", "structure")
    with pytest.raises(InputError, match="unknown track 'torsion'"):
        parse_track_order("torsion,sequence")
    with pytest.raises(InputError, match="track 'seq' is listed twice"):
        parse_track_order("sequence,seq")


def test_select_motif_keeps_residues_and_names_problems() -> None:
    structure = Protein.from_structure(ZIPPER)
    motif = select_motif(structure, "B5-10")
    (_, start, _), (_, b_start, _) = structure.chain_segments()
    index = b_start + 4  # chain B's residue 5 (chain B numbered from 1)
    assert structure.residue_index[index] == 5
    assert motif.sequence == structure.sequence[index : index + 6]
    np.testing.assert_array_equal(motif.coordinates, structure.coordinates[index : index + 6])
    assert select_motif(structure, "A2-3,A7").sequence == "".join(structure.sequence[i] for i in (1, 2, 6))
    with pytest.raises(InputError, match="chain 'Z' is not in the file"):
        select_motif(structure, "Z1-5", source="2ZTA.pdb.gz")
    with pytest.raises(InputError, match="chain A has no residue 32"):
        select_motif(structure, "A30-40")
    with pytest.raises(InputError, match="cannot read 'A10:20'"):
        select_motif(structure, "A10:20")
    with pytest.raises(InputError, match="ends before it starts"):
        select_motif(structure, "A10-5")


def test_select_motif_keeps_inserted_residues() -> None:
    # Chain A renumbered as antibody / chymotrypsin files are: 1, 2, 3, 3A, 3B, 4, ... (insertion codes).
    structure = Protein.from_structure(ZIPPER)
    numbers, codes = structure.residue_index.copy(), structure.insertion_code.copy()
    numbers[3:31] = [3, 3, *range(4, 30)]
    codes[3:5] = ["A", "B"]
    structure = structure.replace(residue_index=numbers, insertion_code=codes)
    # A range covers every residue numbered in it, in chain order: 2, 3, 3A, 3B, 4 (not 2, 3, 4, which are not
    # contiguous in space).
    motif = select_motif(structure, "A2-4")
    assert motif.sequence == structure.sequence[1:6]
    np.testing.assert_array_equal(motif.coordinates, structure.coordinates[1:6])
    assert select_motif(structure, "A3").sequence == structure.sequence[2:5]
    # A number used twice in one chain (no insertion code to tell them apart) is an error, not a guess.
    numbers[7] = 5  # chain A: ..., 4, 5, 5, 7, ...
    with pytest.raises(InputError, match="chain A has two residues numbered 5"):
        select_motif(structure.replace(residue_index=numbers), "A4-5")


def test_design_prompt_places_motif_and_rejects_misfits() -> None:
    motif = select_motif(Protein.from_structure(ZIPPER), "A5-10")
    prompt = design_prompt(20, motifs=[Motif(motif, 3, "m")], ss8="__HHHH" + "_" * 14, keywords=["zinc"])
    assert prompt.sequence == "___" + motif.sequence + "_" * 11
    np.testing.assert_array_equal(prompt.coordinates[3:9], motif.coordinates)
    assert np.isnan(prompt.coordinates[:3]).all() and np.isnan(prompt.coordinates[9:]).all()
    assert [(a.label, a.start, a.end) for a in prompt.function_annotations] == [("zinc", 1, 20)]
    with pytest.raises(InputError, match="6 residues at position 16 do not fit a design of length 20"):
        design_prompt(20, motifs=[Motif(motif, 15, "m")])
    with pytest.raises(InputError, match="positions 6-11 overlap another motif"):
        design_prompt(20, motifs=[Motif(motif, 0, "a"), Motif(motif, 5, "b")])
    with pytest.raises(InputError, match="--ss8: 3 letters for a design of length 20"):
        design_prompt(20, ss8="HHH")
    with pytest.raises(InputError, match="invalid"):
        design_prompt(5, ss8="HHXHH")


def test_task_decoding_steps_and_validation() -> None:
    assert FOLD_DECODING.steps_for(21) == 11 and FOLD_DECODING.temperature == 0.0
    assert TaskDecoding(num_steps=3).steps_for(100) == 3
    assert TaskDecoding(steps_per_residue=1.0).steps_for(7) == 7
    with pytest.raises(InputError, match="temperature"):
        TaskDecoding(temperature=-1.0)
    with pytest.raises(InputError, match="num_steps"):
        TaskDecoding(num_steps=0)


def test_chain_of_thought_order_and_ss8_prompt_kept(bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, bool, bool]] = []
    real = design_module.run_track

    def spy(bundle_, prompts, track, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        t = prompts[0]
        ss8_done = t.secondary_structure is not None and bool((t.secondary_structure[1:-1] != 0).all())
        structure_done = t.structure is not None and bool((t.structure[1:-1] < 4096).all())
        seen.append((track, ss8_done, structure_done))
        return real(bundle_, prompts, track, *args, **kwargs)

    monkeypatch.setattr(design_module, "run_track", spy)
    ss8 = "__HHHHHH__EEEE" + "_" * 10
    prompt = design_prompt(24, ss8=ss8)
    decoding = TaskDecoding(num_steps=3)
    results = design(bundle, [prompt, prompt], ("secondary_structure", "structure", "sequence"), decoding, seed=5)
    # Each track is generated once, in order, conditioned on the tracks before it.
    assert seen == [("secondary_structure", False, False), ("structure", True, False), ("sequence", True, True)]
    for result in results:
        assert not isinstance(result, Exception)
        protein = result.protein
        assert all(protein.secondary_structure[i] == c for i, c in enumerate(ss8) if c != "_")
        assert "_" not in protein.secondary_structure and "_" not in protein.sequence
        assert set(protein.sequence) <= set("LAGVSERTIDPKQNFYMHWC")
        assert protein.coordinates.shape == (24, 37, 3) and protein.plddt.shape == (24,)
    # Deterministic by seed whatever the batch size; the two designs of one call have their own streams.
    again = design(bundle, [prompt, prompt], ("ss8", "structure", "sequence"), decoding, seed=5, batch_size=1)  # type: ignore[arg-type]
    assert [a.protein.sequence for a in again] == [r.protein.sequence for r in results]
    np.testing.assert_allclose(again[0].protein.coordinates, results[0].protein.coordinates, atol=1e-4)
    assert results[0].protein.sequence != results[1].protein.sequence


def test_fold_and_inverse_fold_api(bundle: ModelBundle) -> None:
    zipper = Protein.from_structure(ZIPPER)
    folded = fold(bundle, [Protein(sequence="MKTAYIAK", name="a"), Protein(name="empty", secondary_structure="HHH"),
                           zipper], TaskDecoding(num_steps=2, temperature=0.0))  # fmt: skip
    assert isinstance(folded[0], Protein) and folded[0].pae.shape == (8, 8) and 0 <= folded[0].ptm <= 1
    assert "protein 'empty': has no sequence to fold" in str(folded[1])
    assert folded[2].chain_ids == ("A", "B") and np.isnan(folded[2].plddt[31])  # the chain break
    samples = inverse_fold(bundle, [zipper, Protein(sequence="MKT", name="noxyz")], 2, TaskDecoding(num_steps=2))
    assert [s.name for s in samples[0]] == ["2ZTA_1", "2ZTA_2"]
    assert all(s.sequence[31] == "|" and len(s) == len(zipper) for s in samples[0])
    assert "protein 'noxyz': has no coordinates" in str(samples[1])


def test_fold_delivers_each_result_as_its_batch_finishes(bundle: ModelBundle) -> None:
    """``on_result`` lets a long run save each structure as it comes; the results are the ones fold returns."""
    proteins = [Protein(sequence="MKTAYIAKQR", name="a"), Protein(name="empty", secondary_structure="HHH"),
                Protein(sequence="MKTAY", name="b"), Protein(sequence="MKTAYIA", name="c")]  # fmt: skip
    events: list[tuple[str, object]] = []
    delivered: dict[int, object] = {}

    def on_result(i: int, result: object) -> None:
        events.append(("result", i))
        delivered[i] = result

    decoding = TaskDecoding(num_steps=2, temperature=0.0)
    results = fold(bundle, proteins, decoding, batch_size=1, progress=lambda n: events.append(("batch", n)),
                   on_result=on_result)  # fmt: skip
    # Batches go shortest first, each result before its batch's progress; the unpromptable protein comes last.
    assert events == [("batch", 1), ("result", 2), ("batch", 1), ("result", 3), ("batch", 1), ("result", 0),
                      ("batch", 1), ("result", 1)]  # fmt: skip
    assert [delivered[i] for i in range(4)] == results
    plain = fold(bundle, proteins, decoding, batch_size=1)
    for got, expected in zip(results, plain):
        if isinstance(expected, Protein):
            np.testing.assert_array_equal(got.coordinates, expected.coordinates)
        else:
            assert str(got) == str(expected)


def test_inverse_fold_and_predict_function_deliver_each_protein_once_its_batch_is_done(bundle: ModelBundle) -> None:
    """``on_batch`` gets each protein as soon as all of it is final (samples of one structure may straddle batches);
    together, once each, the results the task returns, and the same as without the callback."""
    zipper = Protein.from_structure(ZIPPER)
    proteins = [zipper, Protein(sequence="MKT", name="noxyz"), zipper.replace(name="again")]
    batches: list[list[int]] = []
    delivered: dict[int, object] = {}

    def on_batch(pairs: list[tuple[int, object]]) -> None:
        batches.append([i for i, _ in pairs])
        delivered.update(pairs)

    decoding = TaskDecoding(num_steps=2)
    samples = inverse_fold(bundle, proteins, 3, decoding, batch_size=2, on_batch=on_batch)
    # 6 samples of two structures in batches of 2: the first is done with the second batch, the other with the
    # third; the protein without coordinates comes last.
    assert batches == [[0], [2], [1]]
    assert [delivered[i] for i in range(3)] == samples
    plain = inverse_fold(bundle, proteins, 3, decoding, batch_size=2)
    assert [[d.sequence for d in s] for s in (samples[0], samples[2])] == [
        [d.sequence for d in s] for s in (plain[0], plain[2])
    ]
    batches.clear()
    delivered.clear()
    functions = predict_function(bundle, [Protein(sequence="MKTAYIAKQR", name="a"), Protein(name="none"),
                                          Protein(sequence="MKTAY", name="b")], decoding, batch_size=1,
                                 on_batch=on_batch)  # fmt: skip
    assert batches == [[2], [0], [1]] and [delivered[i] for i in range(3)] == functions


def test_inverse_fold_keeps_native_side_chains_only_where_the_residue_is_kept(bundle: ModelBundle) -> None:
    zipper = Protein.from_structure(ZIPPER)
    (design,) = inverse_fold(bundle, [zipper], 1, TaskDecoding(num_steps=2), seed=1)[0]
    present = np.isfinite(design.coordinates).all(-1)  # [L, 37]
    native = np.isfinite(zipper.coordinates).all(-1)
    changed = np.array([a != b for a, b in zip(design.sequence, zipper.sequence)])
    assert changed.any() and (~changed).any()
    np.testing.assert_array_equal(present[~changed], native[~changed])  # kept residues: every native atom
    # Elsewhere the native's backbone, CB only for a designed residue that has one, and no other atom.
    backbone = [0, 1, 2, 4]  # N, CA, C, O
    np.testing.assert_array_equal(present[changed][:, backbone], native[changed][:, backbone])
    has_cb = np.array([aa != "G" for aa in design.sequence])
    np.testing.assert_array_equal(present[changed, 3], native[changed, 3] & has_cb[changed])
    side = np.ones(37, dtype=bool)
    side[[0, 1, 2, 3, 4, 36]] = False  # backbone, CB, OXT
    assert not present[changed][:, side].any()
    # Written and read back, every residue carries only atoms of its own type.
    written = Protein.from_structure(design.to_complex())
    np.testing.assert_array_equal(np.isfinite(written.coordinates).all(-1), present)


def test_design_takes_the_track_order_as_text(bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch) -> None:
    # parse_track_order reads "ss8,structure"; design used to split such a string into letters ('s', 's', '8', ...).
    seen: list[str] = []
    real = design_module.run_track

    def spy(bundle_, prompts, track, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(track)
        return real(bundle_, prompts, track, *args, **kwargs)

    monkeypatch.setattr(design_module, "run_track", spy)
    (result,) = design(bundle, [design_prompt(6)], "ss8,structure", TaskDecoding(num_steps=1))
    assert not isinstance(result, Exception)
    assert seen == ["secondary_structure", "structure", "sequence"]


def test_task_arguments_get_one_line_errors(bundle: ModelBundle) -> None:
    protein = Protein(sequence="MKTAYIAK")
    for task in (fold, inverse_fold, design, predict_function):
        with pytest.raises(InputError, match="list"):
            task(bundle, protein)  # type: ignore[arg-type]
        with pytest.raises(InputError, match="batch_size"):
            task(bundle, [protein], batch_size=0)
        with pytest.raises(InputError, match="seed"):
            task(bundle, [protein], seed=-1)


def test_streams_choose_each_proteins_draws(bundle: ModelBundle) -> None:
    """``streams=[i]`` gives a protein the draws it has at place i of a longer input (what the CLI passes when it
    drops unreadable records); bad streams are one-line errors."""
    decoding = TaskDecoding(num_steps=3, temperature=1.0, strategy="random")
    structures = TEST_DATA / "structures"
    first = Protein.from_structure(structures / "localunfolding__trp-cage-cage__2JOF_A.pdb.gz")
    second = Protein.from_structure(structures / "2ZTA.pdb.gz", chains=["A"])
    both = inverse_fold(bundle, [first, second], 2, decoding, seed=4)
    alone = inverse_fold(bundle, [second], 2, decoding, seed=4, streams=[1])
    default = inverse_fold(bundle, [second], 2, decoding, seed=4)
    assert [d.sequence for d in alone[0]] == [d.sequence for d in both[1]]  # type: ignore[union-attr]
    assert [d.sequence for d in default[0]] != [d.sequence for d in both[1]]  # type: ignore[union-attr]
    for streams, message in (([0, 1], "1 proteins but 2 streams"), ([-1], "non-negative"), (3, "a list of int")):
        with pytest.raises(InputError, match=message):
            fold(bundle, [first], streams=streams)  # type: ignore[arg-type]


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    about_z = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    about_x = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return about_z @ about_x


def test_restore_motif_brings_the_whole_design_into_the_motif_frame() -> None:
    # The decoded design is the true structure moved rigidly: superposed on the motif backbone, every residue must
    # land back on the truth (not only the motif), the motif RMSD is 0, and a residue whose backbone the prompt
    # gives only in part is no motif residue (it is neither fitted on nor overwritten).
    rng = np.random.default_rng(0)
    truth = rng.normal(scale=6.0, size=(8, 37, 3)).astype(np.float32)
    truth[:, 4:] = np.nan  # backbone atoms only
    moved = (truth.astype(np.float64) @ _rotation(0.7).T + np.array([3.0, -5.0, 2.0])).astype(np.float32)
    prompt_xyz = np.full_like(truth, np.nan)
    prompt_xyz[1:5] = truth[1:5]
    prompt_xyz[6, 1] = truth[6, 1] + 50.0  # CA alone (and far off): not a fixed residue
    prompt = Protein(sequence="A" * 8, coordinates=prompt_xyz)
    result = design_module._restore_motif(Protein(sequence="G" * 8, coordinates=moved), prompt)
    assert result.motif_rmsd is not None and result.motif_rmsd < 1e-4
    np.testing.assert_allclose(result.protein.coordinates[:, :4], truth[:, :4], atol=1e-3)
    np.testing.assert_array_equal(result.protein.coordinates[1:5], prompt_xyz[1:5])  # the prompt's own atoms


def test_design_seeds_each_track_by_its_place_and_keeps_generated_structure(
    bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The docstring's contract: prompt i's track j draws from derive_seed(derive_seed(seed, j), i), and once
    # structure tokens are generated they condition the later tracks (not dropped for the motif coordinates).
    from openesm3.generation.iterative import derive_seed

    calls: list[tuple[str, list[int], list[bool]]] = []
    real = design_module.run_track

    def spy(bundle_, prompts, track, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append((track, list(kwargs["seeds"]), list(kwargs["condition_on_coordinates_only"])))
        return real(bundle_, prompts, track, *args, **kwargs)

    monkeypatch.setattr(design_module, "run_track", spy)
    motif_residues = select_motif(Protein.from_structure(ZIPPER), "A10-15")
    prompts = [design_prompt(12, motifs=[Motif(motif_residues, 3, "m")]), design_prompt(12)]
    results = design(bundle, prompts, "structure,sequence", TaskDecoding(num_steps=2), seed=5)
    assert not any(isinstance(r, Exception) for r in results)
    assert [c[0] for c in calls] == ["structure", "sequence"]
    for j, (_, seeds, _) in enumerate(calls):
        assert seeds == [derive_seed(derive_seed(5, j), i) for i in range(2)]
    assert calls[0][2] == [True, True] and calls[1][2] == [False, False]


def test_a_motif_range_ending_one_before_its_start_is_refused() -> None:
    # "A10-9" selects nothing; beside another range it would silently drop out of the motif.
    zipper = Protein.from_structure(ZIPPER)
    with pytest.raises(InputError, match=r"range 'A10-9' ends before it starts"):
        select_motif(zipper, "A1-3,A10-9")


def test_inverse_fold_sample_k_is_the_same_whatever_the_number_of_samples(bundle: ModelBundle) -> None:
    """Sample k draws from its own stream: ``<name>_1`` of a run asking for one sample is ``<name>_1`` of a run asking
    for three, whichever batch each sample falls in."""
    zipper = Protein.from_structure(ZIPPER)
    decoding = TaskDecoding(num_steps=2, temperature=1.0)
    (three,) = inverse_fold(bundle, [zipper], 3, decoding, seed=4, batch_size=2)
    for k in (1, 2, 3):
        (first_k,) = inverse_fold(bundle, [zipper], k, decoding, seed=4, batch_size=2)
        assert [s.sequence for s in first_k] == [s.sequence for s in three[:k]]
    assert len({s.sequence for s in three}) == 3  # the samples differ: their order is seen


def test_predict_function_delivers_no_empty_batch(bundle: ModelBundle) -> None:
    batches: list[list[int]] = []
    proteins = [Protein(sequence="MKTAYIAKQR", name="a"), Protein(sequence="MKTAY", name="b")]
    predict_function(bundle, proteins, TaskDecoding(num_steps=2), batch_size=1,
                     on_batch=lambda pairs: batches.append([i for i, _ in pairs]))  # fmt: skip
    assert batches == [[1], [0]]


def test_design_with_a_function_track_decodes_its_annotations(bundle: ModelBundle) -> None:
    """A function track in the order is generated, then decoded into annotations of the design (the prompt had
    none); without it the design keeps the prompt's."""
    prompt = design_prompt(length=12)
    decoding = TaskDecoding(num_steps=2, temperature=1.0)
    (with_function,) = design(bundle, [prompt], "function,sequence,structure", decoding, seed=1)
    assert with_function.protein.function_annotations, "random decoder: some annotation expected"
    (without,) = design(bundle, [prompt], "sequence,structure", decoding, seed=1)
    assert without.protein.function_annotations == prompt.function_annotations


@pytest.mark.parametrize("task", ["predict_function", "design"])
def test_the_function_tasks_check_the_vocabulary_against_the_decoder_themselves(
    bundle: ModelBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str
) -> None:
    """From Python, a function vocabulary that is not the decoder's (e.g. one made by build-function-vocab, given to
    the official decoder) was named only when check_function_vocabulary() had been called first, as the CLI does;
    otherwise the trunk ran and every protein came back with a shape error. The tasks now check it themselves, before
    the trunk is loaded."""
    from openesm3.errors import VocabularyError  # noqa: PLC0415
    from openesm3.tokenizers import FunctionVocabulary  # noqa: PLC0415
    from openesm3.tokenizers.build import write_function_vocabulary  # noqa: PLC0415
    from openesm3.tokenizers.vocabulary import InterProEntry  # noqa: PLC0415

    entries = tuple(InterProEntry(f"IPR{i:06d}", "Domain", f"Entry {i}") for i in range(1, 5))  # the decoder has 5
    other = FunctionVocabulary(KEYWORDS, np.full(len(KEYWORDS), 5.0), entries, {e.id: KEYWORDS[:2] for e in entries},
                               np.ones((8, 8, len(KEYWORDS)), np.float32))  # fmt: skip
    write_function_vocabulary(other, tmp_path / "other")
    mismatched = ModelBundle(bundle.weights, vocabulary_dir=tmp_path / "other")
    get = ModelBundle._get

    def no_trunk(self: ModelBundle, model_type: str) -> object:
        assert model_type != "esm3", "the trunk was loaded"
        return get(self, model_type)

    monkeypatch.setattr(ModelBundle, "_get", no_trunk)
    decoding = TaskDecoding(num_steps=2)
    with pytest.raises(VocabularyError, match=r"predicts 5 InterPro entries and 30 keywords, but the function "
                       r"vocabulary \(.*other.*\) has 4 InterPro entries and 30 keywords"):  # fmt: skip
        if task == "predict_function":
            predict_function(mismatched, [Protein(sequence="MKTAYIAK")], decoding)
        else:
            design(mismatched, [design_prompt(length=8)], "function,sequence", decoding)
