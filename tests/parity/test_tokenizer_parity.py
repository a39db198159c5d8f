"""Token ids of every track against the official package (oracle), on real data (spec §1-3, §8).

Stand-in hyperplanes and residue-annotation CSV come from the ``oracle_workdir`` fixture (conftest); both
implementations read the same files from it.
"""

from __future__ import annotations

import gzip
import random
import warnings
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
import torch

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.tokenizers import (
    FunctionPredictions,
    FunctionTokenizer,
    FunctionVocabulary,
    ResidueAnnotationTokenizer,
    SASATokenizer,
    SequenceTokenizer,
    SS8Tokenizer,
    StructureTokenizer,
    apply_sequence_specials,
    decode_function_tokens,
    dssp_to_ss8,
    encode_annotation_tracks,
)
from tests.conftest import shared_data

N_SEQUENCES = 600


# --------------------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def function_vocab(oracle_workdir: Any) -> FunctionVocabulary:
    return FunctionVocabulary.load(oracle_workdir.root)


@pytest.fixture(scope="module")
def function_tokenizer(function_vocab: FunctionVocabulary) -> FunctionTokenizer:
    return FunctionTokenizer(function_vocab)


@pytest.fixture(scope="module")
def residue_tokenizer(oracle_workdir: Any) -> ResidueAnnotationTokenizer:
    return ResidueAnnotationTokenizer.from_directory(oracle_workdir.root)


def _read_fasta(path: Any) -> list[str]:
    sequences, current = [], []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            if current:
                sequences.append("".join(current))
            current = []
        elif line.strip():
            current.append(line.strip())
    if current:
        sequences.append("".join(current))
    return sequences


@pytest.fixture(scope="module")
def real_sequences() -> list[str]:
    """>= 500 real sequences with rare letters, masks and chain breaks mixed in (seeded)."""
    all_seqs = _read_fasta(shared_data("sequences", "derived", "sequences_dedup.fasta"))
    rng = random.Random(1)
    picked = rng.sample(all_seqs, N_SEQUENCES)
    with_x = [s for s in all_seqs if "X" in s or "B" in s or "Z" in s][:40]
    out = []
    for n, seq in enumerate(picked + with_x):
        chars = list(seq)
        if n % 3 == 0:  # masks
            for i in rng.sample(range(len(chars)), k=max(1, len(chars) // 10)):
                chars[i] = "_"
        if n % 5 == 0:  # rare letters the natural data lack (U, O) and the ambiguous ones
            for i in rng.sample(range(len(chars)), k=min(3, len(chars))):
                chars[i] = rng.choice("XBUZO")
        seq = "".join(chars)
        if n % 7 == 0:  # complexes
            seq = seq + "|" + rng.choice(picked)[:50]
        out.append(seq)
    return out


# --------------------------------------------------------------------------------------------------------------
# sequence (spec §1)
# --------------------------------------------------------------------------------------------------------------
def test_sequence_ids_match_reference_on_real_sequences(reference_tokenizers: Any, real_sequences: list[str]) -> None:
    import esm.sdk.api  # noqa: F401, PLC0415 - resolves an import cycle inside esm.utils.decoding
    from esm.utils.decoding import decode_sequence  # noqa: PLC0415
    from esm.utils.encoding import tokenize_sequence  # noqa: PLC0415

    ours = SequenceTokenizer()
    ref = reference_tokenizers.sequence
    assert len(real_sequences) >= 500
    assert {"U", "O", "X", "B", "Z", "_", "|"} <= set("".join(real_sequences))
    for seq in real_sequences:
        expected = tokenize_sequence(seq, ref, add_special_tokens=True).numpy()
        np.testing.assert_array_equal(ours.encode(seq), expected, err_msg=seq)
        np.testing.assert_array_equal(ours.encode(seq.lower()), expected, err_msg="case-insensitive input")
        np.testing.assert_array_equal(ours.encode_reference(seq), expected)
        assert ours.decode(expected) == seq
        assert ours.decode_reference(expected) == decode_sequence(torch.from_numpy(expected), ref)


@pytest.mark.parametrize(
    "text",
    ["mkt", "M K", "M\tK\n", "MKé", "M<mask>K", "M<cls>K<eos>", "<MASK>", "<mas", "M__K", "", "<pad>", "M<null>K",
     "MK<unk>", "ΑΒ", "<<mask>>", "_<mask>_", "m|k", "mK_t|A"],
)  # fmt: skip
def test_sequence_reference_mode_reproduces_raw_reference(reference_tokenizers: Any, text: str) -> None:
    from esm.utils.encoding import tokenize_sequence  # noqa: PLC0415

    expected = tokenize_sequence(text, reference_tokenizers.sequence, add_special_tokens=True).numpy()
    np.testing.assert_array_equal(SequenceTokenizer().encode_reference(text), expected)


def test_sequence_decode_reference_keeps_specials_like_reference(reference_tokenizers: Any) -> None:
    import esm.sdk.api  # noqa: F401, PLC0415
    from esm.utils.decoding import decode_sequence  # noqa: PLC0415

    rng = np.random.default_rng(0)
    for _ in range(50):
        ids = np.concatenate(([0], rng.integers(0, 33, size=int(rng.integers(1, 30))), [2]))
        with warnings.catch_warnings():  # the reference warns about some inputs; only the strings matter
            warnings.simplefilter("ignore")
            expected = decode_sequence(torch.from_numpy(ids), reference_tokenizers.sequence)
        assert SequenceTokenizer().decode_reference(ids) == expected


# --------------------------------------------------------------------------------------------------------------
# structure tokens (spec §2)
# --------------------------------------------------------------------------------------------------------------
def test_structure_specials_match_reference(reference_tokenizers: Any) -> None:
    ref = reference_tokenizers.structure
    ours = StructureTokenizer()
    assert (ours.mask_id, ours.eos_id, ours.bos_id, ours.pad_id, ours.chain_break_id) == (
        ref.mask_token_id, ref.eos_token_id, ref.bos_token_id, ref.pad_token_id, ref.chain_break_token_id,
    )  # fmt: skip
    assert set(ref.special_token_ids) == {4096, 4097, 4098, 4099, 4100}


def test_structure_special_overwrite_rule_matches_reference_forward(reference_tokenizers: Any) -> None:
    """Capture the structure ids the official ESM3.forward actually embeds, for tricky inputs."""
    from esm.models.esm3 import ESM3  # noqa: PLC0415

    torch.manual_seed(0)
    model = ESM3(
        d_model=64, n_heads=2, v_heads=2, n_layers=1, structure_encoder_fn=None, structure_decoder_fn=None,
        function_decoder_fn=None, tokenizers=reference_tokenizers,
    ).eval()  # fmt: skip
    seen: list[torch.Tensor] = []
    model.encoder.structure_tokens_embed.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].clone()))
    seq = SequenceTokenizer().encode("MK_T|AV")
    seq = np.concatenate((seq, [C.SEQUENCE_PAD, C.SEQUENCE_PAD]))  # a right-padded batch member
    rng = np.random.default_rng(0)
    structure = rng.integers(0, 4096, size=seq.shape[0])
    structure[[2, 3]] = -1
    structure[4] = C.STRUCTURE_MASK
    structure[0] = 17  # a code where the sequence has BOS: must become BOS
    batch_seq = torch.from_numpy(np.stack([seq, seq]))
    batch_struct = torch.from_numpy(np.stack([structure, np.full_like(structure, -1)]))
    with torch.no_grad():
        model(sequence_tokens=batch_seq, structure_tokens=batch_struct.clone())
    np.testing.assert_array_equal(apply_sequence_specials(batch_struct, batch_seq).numpy(), seen[-1].numpy())
    np.testing.assert_array_equal(apply_sequence_specials(batch_struct.numpy(), batch_seq.numpy()), seen[-1].numpy())


# --------------------------------------------------------------------------------------------------------------
# SS8 (spec §3.1)
# --------------------------------------------------------------------------------------------------------------
def _dssp_chains() -> dict[tuple[str, str], str]:
    path = shared_data("dev", "derived", "mkdssp_ss8.tsv.gz")
    chains: dict[tuple[str, str], list[str]] = defaultdict(list)
    with gzip.open(path, "rt") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        f, c, s = header.index("file"), header.index("chain"), header.index("ss8")
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            chains[(fields[f], fields[c])].append(fields[s] or " ")
    return {key: "".join(states) for key, states in chains.items()}


def test_ss8_ids_match_reference_on_dssp_of_real_structures(reference_tokenizers: Any) -> None:
    import esm.sdk.api  # noqa: F401, PLC0415
    from esm.utils.encoding import tokenize_secondary_structure  # noqa: PLC0415

    chains = _dssp_chains()
    assert len(chains) >= 500
    ours = SS8Tokenizer()
    rng = random.Random(0)
    n_residues = 0
    for n, raw in enumerate(chains.values()):
        ss8 = dssp_to_ss8(raw)
        if n % 4 == 0:  # masked positions
            chars = list(ss8)
            for i in rng.sample(range(len(chars)), k=max(1, len(chars) // 5)):
                chars[i] = "_"
            ss8 = "".join(chars)
        expected = tokenize_secondary_structure(ss8, reference_tokenizers.secondary_structure).numpy()
        got = ours.encode(ss8)
        np.testing.assert_array_equal(got, expected)
        assert ours.decode(got) == ss8
        n_residues += len(ss8)
    assert n_residues > 100_000


def test_ss8_reference_rejects_what_we_reject(reference_tokenizers: Any) -> None:
    from openesm3.errors import TokenizationError  # noqa: PLC0415

    for bad in ("HHPEE", "HH-E", "HH E", "HHX"):
        with pytest.raises(KeyError):
            reference_tokenizers.secondary_structure.encode(list(bad))
        with pytest.raises(TokenizationError, match="position 3"):
            SS8Tokenizer().encode(bad)


# --------------------------------------------------------------------------------------------------------------
# SASA (spec §3.2)
# --------------------------------------------------------------------------------------------------------------
def _real_sasa_values() -> list[np.ndarray]:
    import biotite.structure as struc  # noqa: PLC0415
    import biotite.structure.io.pdb as pdb  # noqa: PLC0415

    directory = shared_data("dev", "top240")
    values = []
    for name in ("1a2p.pdb.gz", "1a62.pdb.gz", "1a8u.pdb.gz", "1aac.pdb.gz", "1ads.pdb.gz"):
        path = directory / name
        if not path.exists():
            continue
        with gzip.open(path, "rt") as handle:
            atoms = pdb.PDBFile.read(handle).get_structure(model=1)
        atoms = atoms[struc.filter_amino_acids(atoms) & (atoms.element != "H")]
        atom_sasa = struc.sasa(atoms, vdw_radii="ProtOr")
        values.append(struc.apply_residue_wise(atoms, atom_sasa, np.nansum).astype(np.float32))
    assert len(values) >= 3
    return values


EDGE_VALUES = [0.0, -0.0, 0.8, 0.81, 0.80000001, 0.8000001, float(np.float32(0.8)), 4.0, 4.0000001, 9.6000001,
               151.4, 151.41, 200.0, 1e9, float("inf")]  # fmt: skip
EDGE_VALUES += [b + d for b in C.SASA_BOUNDARIES for d in (-1e-4, 0.0, 1e-4)]


def test_sasa_ids_match_reference_on_real_structures_and_bin_edges(reference_tokenizers: Any) -> None:
    import esm.sdk.api  # noqa: F401, PLC0415
    from esm.utils.decoding import decode_sasa  # noqa: PLC0415
    from esm.utils.encoding import tokenize_sasa  # noqa: PLC0415

    ref = reference_tokenizers.sasa
    ours = SASATokenizer()
    cases = [*(_real_sasa_values()), np.asarray(EDGE_VALUES)]
    for values in cases:
        as_list: list[float | None] = [float(v) for v in values]
        as_list[::7] = [None] * len(as_list[::7])
        expected = tokenize_sasa(as_list, ref).numpy()
        np.testing.assert_array_equal(ours.encode(as_list), expected)
        np.testing.assert_array_equal(ours.encode(values), tokenize_sasa([float(v) for v in values], ref).numpy())
        decoded = np.asarray(decode_sasa(torch.from_numpy(expected), ref), dtype=np.float64)
        np.testing.assert_array_equal(ours.decode(expected).astype(np.float32), decoded.astype(np.float32))
    assert list(ours.encode([0.8, 0.81, 151.4, 200.0])[1:-1]) == [3, 4, 17, 18]


# --------------------------------------------------------------------------------------------------------------
# function tokens (spec §3.3)
# --------------------------------------------------------------------------------------------------------------
def _random_function_annotations(
    rng: random.Random, vocab: FunctionVocabulary, length: int, n: int
) -> list[tuple[str, int, int]]:
    names = {e.id: e.name for e in vocab.entries}
    ids = [i for i in vocab.interpro_ids if vocab.interpro_keywords.get(i)]
    out = []
    for _ in range(n):
        start = rng.randint(1, length)
        end = min(length, start + rng.randint(0, max(1, length // 2)))
        r = rng.random()
        if r < 0.4:
            label = rng.choice(ids)
        elif r < 0.5:
            ipr = rng.choice(ids)
            label = f"{names[ipr]} ({ipr})"  # how the SDK labels decoded InterPro annotations
        else:
            label = rng.choice(vocab.keywords)
        out.append((label, start, end))
    return out


def test_function_ids_match_reference_on_real_annotations(
    reference_tokenizers: Any, function_tokenizer: FunctionTokenizer, function_vocab: FunctionVocabulary
) -> None:
    from esm.sdk.api import FunctionAnnotation as RefAnnotation  # noqa: PLC0415

    ref = reference_tokenizers.function
    rng = random.Random(0)
    n_residues = n_none = 0
    for trial in range(40):
        length = rng.randint(1, 60)
        anns = _random_function_annotations(rng, function_vocab, length, 0 if trial == 0 else rng.randint(1, 12))
        expected = ref.encode(ref.tokenize([RefAnnotation(*a) for a in anns], length)).numpy()
        got = function_tokenizer.encode([FunctionAnnotation(*a) for a in anns], length)
        np.testing.assert_array_equal(got, expected, err_msg=str(anns))
        n_residues += length
        n_none += int((got[:, 0] == C.FUNCTION_NONE).sum())
    assert n_none > 0 and n_residues > 1_000


def test_function_keyword_sets_and_stacked_annotations_match_reference(
    reference_tokenizers: Any, function_tokenizer: FunctionTokenizer, function_vocab: FunctionVocabulary
) -> None:
    """Many overlapping labels on the same residues, repeated labels, and the keyword 'null'."""
    from esm.sdk.api import FunctionAnnotation as RefAnnotation  # noqa: PLC0415

    ref = reference_tokenizers.function
    rng = random.Random(3)
    cases = [
        [("null", 1, 3), ("kringle", 2, 4)],
        [("kringle", 1, 5), ("kringle", 1, 5), ("IPR000001", 3, 5), ("Kringle (IPR000001)", 1, 2)],
        [("IPR000001 IPR000003", 1, 4)],  # first id wins
    ]
    for _ in range(10):
        cases.append([(lab, 1, 30) for lab, _, _ in _random_function_annotations(rng, function_vocab, 30, 12)])
    for anns in cases:
        expected = ref.encode(ref.tokenize([RefAnnotation(*a) for a in anns], 30)).numpy()
        np.testing.assert_array_equal(function_tokenizer.encode([FunctionAnnotation(*a) for a in anns], 30), expected)


def test_interpro_entry_without_keywords_is_unk_where_reference_crashes(
    reference_tokenizers: Any, function_tokenizer: FunctionTokenizer, function_vocab: FunctionVocabulary
) -> None:
    from esm.sdk.api import FunctionAnnotation as RefAnnotation  # noqa: PLC0415

    empty = [i for i in function_vocab.interpro_ids if not function_vocab.interpro_keywords.get(i)]
    assert empty == ["IPR006563"]
    with pytest.raises(TypeError):
        reference_tokenizers.function.tokenize([RefAnnotation("IPR006563", 1, 2)], 3)
    got = function_tokenizer.encode([FunctionAnnotation("IPR006563", 1, 2)], 3)
    assert got[1:3].tolist() == [[C.FUNCTION_UNK] * 8] * 2 and got[3].tolist() == [C.FUNCTION_NONE] * 8


def test_unknown_function_labels_are_rejected_like_reference(
    reference_tokenizers: Any, function_tokenizer: FunctionTokenizer
) -> None:
    from esm.sdk.api import FunctionAnnotation as RefAnnotation  # noqa: PLC0415

    from openesm3.errors import TokenizationError  # noqa: PLC0415

    for label in ("IPR999999", "not a keyword", "Kringle"):
        with pytest.raises(ValueError):
            reference_tokenizers.function.tokenize([RefAnnotation(label, 1, 2)], 3)
        with pytest.raises(TokenizationError, match="unknown label"):
            function_tokenizer.encode([FunctionAnnotation(label, 1, 2)], 3)


# --------------------------------------------------------------------------------------------------------------
# residue annotations (spec §3.4)
# --------------------------------------------------------------------------------------------------------------
def _reference_residue_tokens(tokenizer: Any, anns: list[tuple[str, int, int]], sequence: str) -> np.ndarray:
    sample = {
        "interpro_site_descriptions": [a[0] for a in anns],
        "interpro_site_starts": [a[1] for a in anns],
        "interpro_site_ends": [a[2] for a in anns],
        "interpro_site_residues": [sequence[a[1] - 1 : a[2]] for a in anns],
    }
    return tokenizer.encode(tokenizer.tokenize(sample, sequence)).numpy()


def test_residue_vocabulary_order_matches_reference(
    reference_tokenizers: Any, residue_tokenizer: ResidueAnnotationTokenizer
) -> None:
    ref_vocab = list(reference_tokenizers.residue_annotations.vocabulary)
    ours = [residue_tokenizer.vocabulary.token_string(i) for i in range(residue_tokenizer.vocabulary.vocab_size)]
    assert len(ours) == C.RESIDUE_VOCAB_SIZE
    assert ours == ref_vocab


def test_residue_ids_match_reference_tokenizer(
    oracle_workdir: Any, reference_tokenizers: Any, residue_tokenizer: ResidueAnnotationTokenizer
) -> None:
    labels = list(residue_tokenizer.vocabulary.labels)
    quirky = [lab for lab in labels if lab not in residue_tokenizer.vocabulary.label_to_clean]
    assert quirky, "the stand-in CSV must exercise the label -> label_clean lookup quirk"
    rng = random.Random(0)
    seqs = ["".join(rng.choice(C.CANONICAL_AMINO_ACIDS) for _ in range(rng.randint(5, 120))) for _ in range(60)]
    n_unk = 0
    for n, seq in enumerate(seqs):
        length = len(seq)
        anns = []
        for _ in range(rng.randint(0 if n < 3 else 1, 25)):
            start = rng.randint(1, length)
            label = rng.choice(quirky) if rng.random() < 0.2 else rng.choice(labels)
            anns.append((label, start, min(length, start + rng.randint(0, 10))))
        if n % 10 == 0:  # more than 16 labels on one residue: truncation in set order
            anns += [(lab, 1, 2) for lab in rng.sample(labels, 20)]
        expected = _reference_residue_tokens(reference_tokenizers.residue_annotations, anns, seq)
        got = residue_tokenizer.encode([FunctionAnnotation(*a) for a in anns], length, lookup="reference")
        np.testing.assert_array_equal(got, expected)
        n_unk += int((got == C.RESIDUE_UNK).sum())
        # Our default lookup differs only in residues where the reference has <unk>.
        clean = residue_tokenizer.encode([FunctionAnnotation(*a) for a in anns], length)
        same = ~(expected == C.RESIDUE_UNK).any(axis=1)
        np.testing.assert_array_equal(clean[same], expected[same])
        assert not (clean == C.RESIDUE_UNK).any()
    assert n_unk > 0


def test_sdk_drops_residue_annotations_but_we_keep_them(
    oracle_workdir: Any,
    reference_tokenizers: Any,
    function_tokenizer: FunctionTokenizer,
    residue_tokenizer: ResidueAnnotationTokenizer,
) -> None:
    """Spec §13.16: the official encode path returns an all-zero residue track; the function track agrees."""
    from esm.sdk.api import FunctionAnnotation as RefAnnotation  # noqa: PLC0415
    from esm.utils.encoding import tokenize_function_annotations  # noqa: PLC0415

    labels = [lab for lab in residue_tokenizer.vocabulary.labels if lab in residue_tokenizer.vocabulary.label_to_clean]
    anns = [("IPR000001", 2, 20), ("zinc", 5, 9), (labels[0], 3, 8), (labels[5], 10, 30)]
    sequence = "M" * 40
    with oracle_workdir.active():
        ref_function, ref_residue = tokenize_function_annotations(
            [RefAnnotation(*a) for a in anns], sequence, reference_tokenizers.function,
            reference_tokenizers.residue_annotations,
        )  # fmt: skip
    ours_function, ours_residue = encode_annotation_tracks(
        [FunctionAnnotation(*a) for a in anns], len(sequence), function_tokenizer, residue_tokenizer
    )
    np.testing.assert_array_equal(ours_function, ref_function.numpy())
    assert not ref_residue.numpy().any()  # the official quirk
    assert (ours_residue[3:9] == residue_tokenizer.vocabulary.label_index[labels[0]]).any(axis=1).all()


def test_residue_decoding_matches_reference(
    reference_tokenizers: Any, residue_tokenizer: ResidueAnnotationTokenizer
) -> None:
    import esm.sdk.api  # noqa: F401, PLC0415
    from esm.utils.decoding import decode_residue_annotation_tokens  # noqa: PLC0415

    rng = np.random.default_rng(0)
    for _ in range(30):
        length = int(rng.integers(5, 80))
        tokens = np.zeros((length + 2, 16), dtype=np.int64)
        for label_id in rng.integers(4, C.RESIDUE_VOCAB_SIZE, size=4):
            for _ in range(3):  # a few runs of the same label, with gaps of various sizes
                start = int(rng.integers(1, length + 1))
                end = min(length, start + int(rng.integers(0, 9)))
                tokens[start : end + 1, int(rng.integers(0, 3))] = label_id
        tokens[rng.integers(1, length + 1, size=3), 5] = rng.integers(0, 4, size=3)  # specials and <none>
        expected = decode_residue_annotation_tokens(torch.from_numpy(tokens), reference_tokenizers.residue_annotations)
        got = residue_tokenizer.decode(tokens)
        assert [(a.label, a.start, a.end) for a in got] == [(a.label, a.start, a.end) for a in expected]


# --------------------------------------------------------------------------------------------------------------
# function decoding post-processing (spec §8): the network is replaced by given logits on both sides
# --------------------------------------------------------------------------------------------------------------
class _GivenProbabilities:
    def __init__(self, interpro: np.ndarray, keywords: np.ndarray) -> None:
        self.interpro, self.keywords = interpro, keywords
        self.calls: list[np.ndarray] = []

    def predict(self, tokens: np.ndarray) -> FunctionPredictions:
        self.calls.append(tokens)
        return FunctionPredictions(self.interpro, self.keywords)


def test_function_decoding_postprocessing_matches_reference(
    oracle_workdir: Any, reference_tokenizers: Any, function_vocab: FunctionVocabulary
) -> None:
    import esm.sdk.api  # noqa: F401, PLC0415
    from esm.models.function_decoder import FunctionTokenDecoder, FunctionTokenDecoderConfig  # noqa: PLC0415
    from esm.utils.decoding import decode_function_tokens as ref_decode  # noqa: PLC0415

    with oracle_workdir.active():
        decoder = FunctionTokenDecoder(FunctionTokenDecoderConfig(d_model=16, n_heads=2, n_layers=1))
    rng = np.random.default_rng(0)
    for trial in range(6):
        length = int(rng.integers(10, 60)) if trial else 50
        tokens = rng.integers(4, 260, size=(length + 2, 8))
        tokens[0] = tokens[-1] = 0
        if trial:
            tokens[rng.integers(1, length + 1, size=3), rng.integers(0, 8)] = rng.integers(0, 4)  # undecodable rows
        rows = np.flatnonzero(~np.isin(tokens, (0, 2, 3)).any(axis=1))
        # The official decoder runs the network on every row and ignores undecodable ones afterwards.
        # Logits: mostly very negative, with runs of hits for a few classes (gaps of various sizes).
        interpro = np.full((length + 2, function_vocab.n_interpro), -8.0, dtype=np.float32)
        keywords = np.full((length + 2, function_vocab.n_keywords), -8.0, dtype=np.float32)
        for table, threshold_logit in ((interpro, -2.0), (keywords, 0.1)):
            for cls in rng.integers(0, table.shape[1], size=5):
                for _ in range(3):
                    start = int(rng.integers(0, length + 2))
                    table[start : start + int(rng.integers(1, 9)), cls] = threshold_logit + rng.normal(0, 1.5)
            if trial == 0:  # exact edges: gap of 3 merges, gap of 4 does not; 5 residues kept, 4 dropped
                for start, end in ((1, 5), (9, 13), (20, 24), (29, 33), (40, 43)):
                    table[start : end + 1, 7] = 5.0
        logits = {
            "interpro_logits": torch.from_numpy(interpro),
            "keyword_logits": torch.from_numpy(keywords),
            "keyword_tfidf": torch.zeros_like(torch.from_numpy(keywords)),
        }
        decoder.forward = lambda token_ids, _l=logits: _l  # type: ignore[method-assign]
        with oracle_workdir.active():
            expected = ref_decode(torch.from_numpy(tokens), decoder, reference_tokenizers.function)
        given = _GivenProbabilities(
            torch.sigmoid(logits["interpro_logits"]).numpy()[rows],
            torch.sigmoid(logits["keyword_logits"]).numpy()[rows],
        )
        got = decode_function_tokens(tokens, given, function_vocab)
        np.testing.assert_array_equal(given.calls[0], tokens[rows])
        assert [(a.label, a.start, a.end) for a in got] == [(a.label, a.start, a.end) for a in expected], trial
        if trial == 0:
            edge = [(a.start, a.end) for a in got if a.label in (function_vocab.keywords[7], "0")]
            assert (1, 13) in edge and (20, 24) in edge and (29, 33) in edge and (40, 43) not in edge


# --------------------------------------------------------------------------------------------------------------
# build-your-own: the official tokenizer reads a vocabulary we built and agrees with ours
# --------------------------------------------------------------------------------------------------------------
def test_official_tokenizer_reads_a_vocabulary_we_built(tmp_path: Any, esm_reference: Any) -> None:
    from esm.sdk.api import FunctionAnnotation as RefAnnotation  # noqa: PLC0415
    from esm.tokenization import InterProQuantizedTokenizer  # noqa: PLC0415

    from openesm3.tokenizers import build  # noqa: PLC0415

    terms = [
        build.FunctionTerm(f"IPR{i:06d}", "Domain", f"entry {i} alpha beta gamma{i % 5} delta{i % 3}")
        for i in range(1, 30)
    ]
    rng = random.Random(0)
    corpus = {f"P{n}": [f"IPR{rng.randint(1, 29):06d}" for _ in range(3)] for n in range(50)}
    build.write_function_vocabulary(build.build_function_vocabulary(terms, corpus, seed=11), tmp_path)
    ref = InterProQuantizedTokenizer(
        lsh_path=str(tmp_path / C.LSH_HYPERPLANES_FILE),
        keyword_vocabulary_path=str(tmp_path / C.KEYWORD_VOCABULARY_FILE),
        keyword_idf_path=str(tmp_path / C.KEYWORD_IDF_FILE),
        interpro_entry_path=str(tmp_path / C.INTERPRO_ENTRY_LIST_FILE),
        interpro2keywords_path=str(tmp_path / C.INTERPRO_TO_KEYWORDS_FILE),
    )
    ours = FunctionTokenizer.from_directory(tmp_path)
    labels = [t.id for t in terms] + list(ours.vocabulary.keywords)
    for _ in range(30):
        length = rng.randint(1, 40)
        anns = []
        for _ in range(rng.randint(1, 6)):
            start = rng.randint(1, length)
            anns.append((rng.choice(labels), start, rng.randint(start, length)))
        expected = ref.encode(ref.tokenize([RefAnnotation(*a) for a in anns], length)).numpy()
        np.testing.assert_array_equal(ours.encode([FunctionAnnotation(*a) for a in anns], length), expected)
