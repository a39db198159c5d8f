"""Every vocabulary, special-token id, bin boundary and fixed numeric constant of ESM3, in one place.

Origins: section numbers refer to ``../shared/spec/REFERENCE_SPEC.md`` (facts of the official esm 3.2.1.post1
implementation) and ``PAPER_NOTES.md`` (paper Appendix A). Nothing here is tuned by us.
"""

from __future__ import annotations

import math
from fractions import Fraction

# --------------------------------------------------------------------------------------------------------
# Sequence track (spec §1): 33 tokens, logits/embedding width 64 (ids 33..63 never occur).
# --------------------------------------------------------------------------------------------------------
SEQUENCE_VOCAB: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
    "X", "B", "U", "Z", "O", ".", "-", "|", "<mask>",
)  # fmt: skip
SEQUENCE_BOS = 0  # "<cls>"
SEQUENCE_PAD = 1
SEQUENCE_EOS = 2
SEQUENCE_UNK = 3
SEQUENCE_CHAINBREAK = 31  # "|"
SEQUENCE_MASK = 32  # "<mask>"; user-facing strings write it as "_"
SEQUENCE_SPECIAL_IDS: frozenset[int] = frozenset({0, 1, 2, 3, 31, 32})
SEQUENCE_EMBED_DIM = 64  # rows of the embedding / width of the sequence logits
SEQUENCE_MASK_CHAR = "_"
SEQUENCE_CHAINBREAK_CHAR = "|"
# The 20 canonical amino acids in the official vocabulary order (ids 4..23).
CANONICAL_AMINO_ACIDS = "LAGVSERTIDPKQNFYMHWC"
CANONICAL_AMINO_ACID_IDS: tuple[int, ...] = tuple(range(4, 24))
# Ids 4..30 are what the official sampler treats as valid sequence outputs (spec §10.4).
SEQUENCE_SAMPLEABLE_IDS: tuple[int, ...] = tuple(range(4, 31))

# --------------------------------------------------------------------------------------------------------
# Structure tokens (spec §2): 4096 VQ-VAE codes then 5 specials. EOS comes before BOS.
# --------------------------------------------------------------------------------------------------------
STRUCTURE_N_CODES = 4096
STRUCTURE_MASK = 4096
STRUCTURE_EOS = 4097
STRUCTURE_BOS = 4098
STRUCTURE_PAD = 4099
STRUCTURE_CHAINBREAK = 4100
STRUCTURE_VOCAB_SIZE = 4101  # embedding rows in the trunk and in the structure decoder
# Official forward() overwrites structure specials from the sequence's specials, in this order (spec §2).
SEQUENCE_TO_STRUCTURE_SPECIALS: tuple[tuple[int, int], ...] = (
    (SEQUENCE_BOS, STRUCTURE_BOS),
    (SEQUENCE_PAD, STRUCTURE_PAD),
    (SEQUENCE_EOS, STRUCTURE_EOS),
    (SEQUENCE_CHAINBREAK, STRUCTURE_CHAINBREAK),
)

# --------------------------------------------------------------------------------------------------------
# SS8 (spec §3.1): 11 tokens; <pad> (0) doubles as mask, BOS, EOS and chain break.
# --------------------------------------------------------------------------------------------------------
SS8_VOCAB: tuple[str, ...] = ("<pad>", "<motif>", "<unk>", "G", "H", "I", "T", "E", "B", "S", "C")
SS8_STATES = "GHITEBSC"
SS8_PAD = 0
SS8_MOTIF = 1
SS8_UNK = 2
SS8_VOCAB_SIZE = 11
SS8_SPECIAL_IDS: frozenset[int] = frozenset({0, 1, 2})
SS8_MASK_CHAR = "_"  # a masked / unknown position in a user-facing SS8 string (spec §3.1)
# DSSP writes coil as " " (classic output) or "-", and DSSP >= 4 adds "P" (polyproline II); none of them is in
# the 8-state alphabet, all are coil "C" there (../shared/data/README.md, mkdssp 4.2.2). Our choice, documented.
DSSP_COIL_ALIASES = " -P"

# --------------------------------------------------------------------------------------------------------
# SASA (spec §3.2): 3 specials + 16 bins; token = 3 + bucketize(value, boundaries, right=False).
# --------------------------------------------------------------------------------------------------------
SASA_BOUNDARIES: tuple[float, ...] = (
    0.8, 4.0, 9.6, 16.4, 24.5, 32.9, 42.0, 51.5, 61.2, 70.9, 81.6, 93.3, 107.2, 125.4, 151.4,
)  # fmt: skip
SASA_PAD = 0
SASA_MOTIF = 1
SASA_UNK = 2
SASA_FIRST_BIN = 3
SASA_VOCAB_SIZE = 19
SASA_SPECIAL_IDS: frozenset[int] = frozenset({0, 1, 2})
# The tokenizer decodes the open top bin with upper edge 2 * 151.4 (midpoint 227.1), spec §3.2.
SASA_TOP_BIN_UPPER = 2 * SASA_BOUNDARIES[-1]

# --------------------------------------------------------------------------------------------------------
# Function tokens (spec §3.3): 8 tokens per residue (one per LSH depth), 260 values per depth.
# --------------------------------------------------------------------------------------------------------
FUNCTION_PAD = 0
FUNCTION_MOTIF = 1
FUNCTION_UNK = 2
FUNCTION_NONE = 3  # "<none>": a residue with no annotation in an annotated protein; NOT a special id
FUNCTION_LSH_OFFSET = 4  # token id = 4 + k for <lsh:k>, k in 0..255
FUNCTION_DEPTH = 8
FUNCTION_BITS_PER_TOKEN = 8
FUNCTION_VOCAB_SIZE = 260
# bits an <lsh:k> token holds: k < 260 - 4 = 256, so 8; more bits would only unpack zeros (and 64+ shift past int64)
FUNCTION_MAX_BITS_PER_TOKEN = (FUNCTION_VOCAB_SIZE - FUNCTION_LSH_OFFSET - 1).bit_length()
FUNCTION_SPECIAL_IDS: frozenset[int] = frozenset({0, 1, 2})
N_KEYWORDS = 58641  # keyword_vocabulary_safety_filtered_58641.txt
N_INTERPRO = 29026  # entry_list_safety_29026.list
# A label is routed to the function track if a regex *search* for this finds a known InterPro id (spec §3.3).
INTERPRO_ID_PATTERN = r"IPR\d+"
# The function decoder only decodes rows with none of these ids (pad, unk, none; spec §8).
FUNCTION_UNDECODABLE_IDS: frozenset[int] = frozenset({0, 2, 3})

# Official release file names (spec §0).
KEYWORD_VOCABULARY_FILE = "keyword_vocabulary_safety_filtered_58641.txt"
KEYWORD_IDF_FILE = "keyword_idf_safety_filtered_58641.npy"
INTERPRO_TO_KEYWORDS_FILE = "interpro_29026_to_keywords_58641.csv"
INTERPRO_ENTRY_LIST_FILE = "entry_list_safety_29026.list"
LSH_HYPERPLANES_FILE = "hyperplanes_8bit_58641.npz"
RESIDUE_ANNOTATION_VOCAB_FILE = "uniref90_and_mgnify90_residue_annotations_gt_1k_proteins.csv"
# Headers of the official files (spec §0, §3.4).
INTERPRO_TO_KEYWORDS_HEADER: tuple[str, ...] = ("interpro_id", "keywords")
INTERPRO_ENTRY_LIST_HEADER: tuple[str, ...] = ("ENTRY_AC", "ENTRY_TYPE", "ENTRY_NAME")
RESIDUE_ANNOTATION_HEADER: tuple[str, ...] = ("label", "label_clean", "count")

# --------------------------------------------------------------------------------------------------------
# Residue annotations (spec §3.4): 4 specials + 1474 labels, up to 16 labels per residue.
# --------------------------------------------------------------------------------------------------------
RESIDUE_PAD = 0
RESIDUE_MOTIF = 1
RESIDUE_UNK = 2
RESIDUE_NONE = 3
RESIDUE_VOCAB_SIZE = 1478
RESIDUE_N_LABELS = 1474  # distinct label_clean values of the official CSV (spec §3.4)
RESIDUE_FIRST_LABEL = 4  # label k (0-based, sorted by count) has id 4 + k
RESIDUE_SPECIAL_IDS: frozenset[int] = frozenset({0, 1, 2})
RESIDUE_MAX_PER_POSITION = 16

# --------------------------------------------------------------------------------------------------------
# Context (the paper trains with a 2048-token context): the default max_length of the trunk and of the structure
# decoder, and the default limit of a structure token row.
# --------------------------------------------------------------------------------------------------------
MODEL_CONTEXT = 2048  # tokens, BOS/EOS included

# --------------------------------------------------------------------------------------------------------
# pLDDT conditioning (spec §4.2): 16 Gaussian RBFs on [0, 1], sigma = 1/16.
# --------------------------------------------------------------------------------------------------------
PLDDT_RBF_BINS = 16

# --------------------------------------------------------------------------------------------------------
# Structure comparison (spec §12; TM-score from Zhang & Skolnick 2004 and their TM-score program).
# --------------------------------------------------------------------------------------------------------
ATOM37_NUM_ATOMS = 37
ATOM37_CA_INDEX = 1  # atom37 order N, CA, C, CB, O, ... (spec §12)
LDDT_CUTOFF = 15.0  # pairs are scored when their distance in the reference structure is below this (Angstrom)
LDDT_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # a pair scores the fraction of these it is under
LDDT_EPS = 1e-10  # distances are sqrt(eps + d^2); per-residue (eps + sum) / (eps + count)
GDT_TS_CUTOFFS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
GDT_HA_CUTOFFS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
# TM-score d0(L) = 1.24 (L - 15)^(1/3) - 1.8 for L > 21, else the minimum 0.5 (TM-score program).
TM_D0_SCALE = 1.24
TM_D0_LENGTH_OFFSET = 15.0
TM_D0_OFFSET = 1.8
TM_D0_MIN = 0.5
TM_D0_MIN_LENGTH = 21  # d0 is the formula only above this length (at 21 the formula gives 0.45 < 0.5)
TM_D0_SEARCH_RANGE: tuple[float, float] = (4.5, 8.0)  # d0 clamped to this range sets the search cutoffs
TM_SEARCH_MAX_ITERATIONS = 20  # re-selection / re-superposition rounds per seed
TM_SEARCH_N_FRAGMENT_LENGTHS = 5  # seed fragments of L, L/2, ..., L/16 residues, then the minimum
TM_SEARCH_MIN_FRAGMENT = 4  # shortest seed fragment
TM_SEARCH_MIN_SELECTED = 3  # the selection cutoff grows by 0.5 A until at least 3 residues are selected
TM_SEARCH_CUTOFF_STEP = 0.5

# --------------------------------------------------------------------------------------------------------
# Taxonomy track of the 98B model (paper A.1.9, PAPER_NOTES §2.13): lineage terms from a 40,000-term vocabulary,
# embedded 768 wide and summed. Our ids: 0 = no term (skipped by the bag), terms 1..n.
# --------------------------------------------------------------------------------------------------------
TAXONOMY_PAD = 0
TAXONOMY_N_TERMS_98B = 40000
TAXONOMY_EMBED_DIM = 768

# --------------------------------------------------------------------------------------------------------
# Transformer numerics (spec §4.4).
# --------------------------------------------------------------------------------------------------------
LAYER_NORM_EPS = 1e-5
ROTARY_BASE = 10000.0
GRAM_SCHMIDT_EPS = 1e-10  # spec §4.3
FRAME_VALID_MAX_COORD = 1e6  # a coordinate must be < 1e6 (no abs) for a residue to have a frame, spec §4.3
RESIDUAL_SCALE_REFERENCE_DEPTH = 36  # residual branches are divided by sqrt(n_layers / 36), spec §4.4
FLOAT32_MIN = -3.4028234663852886e38  # torch.finfo(torch.float32).min, used as "masked" logit value


def ffn_hidden_dim(d_model: int, multiple: int = 256, expansion: Fraction = Fraction(8, 3)) -> int:
    """SwiGLU hidden width: expansion * d rounded *up* to a multiple of 256 (spec §4.4: 1536->4096, 1280->3584
    with the default 8/3; the structure encoder uses 4: 1024->4096, spec §6 step 5)."""
    return int(multiple * math.ceil(Fraction(expansion) * d_model / multiple))  # exact: no float rounding


ENCODER_FFN_EXPANSION = Fraction(4)  # structure encoder SwiGLU: W1 (8192, 1024), W2 (1024, 4096), spec §6 step 5 / §9


# --------------------------------------------------------------------------------------------------------
# Structure decoder heads (spec §7).
# --------------------------------------------------------------------------------------------------------
PAE_N_BINS = 64
PAE_MAX_BIN = 31.0  # bin centres 0.25, 0.75, ..., 31.25, then 31.75
PLDDT_N_BINS = 50
DISTOGRAM_N_BINS = 64
DIRECTION_N_BINS = 16
DIRECTION_N_PAIRS = 6  # 96 = 16 * 6 direction logits in the pairwise head
AFFINE_TRANSLATION_SCALE = 10.0
AFFINE_VECTOR_EPS = 1e-5
# The decoder's confidence heads, as a weights file records which were trained (checkpoints.format, config.json's
# "trained_heads"): "plddt" (pLDDT) and "pae" (the pairwise head's PAE outputs, from which pTM is computed).
CONFIDENCE_HEADS = ("plddt", "pae")
N_TORSIONS = 7  # the affine head's 14 extra outputs: sin/cos of up to 7 torsions (unused by the open decoder)
# Local backbone coordinates (Angstrom) placed by the decoder's frames: N, CA, C (spec §7).
BACKBONE_LOCAL_COORDS: tuple[tuple[float, float, float], ...] = (
    (0.5256, 1.3612, 0.0),
    (0.0, 0.0, 0.0),
    (-1.5251, 0.0, 0.0),
)
# Backbone O from the frame (origin C, x = C - CA, xy-plane = N_next - C), spec §12.
OXYGEN_LOCAL_COORDS: tuple[float, float, float] = (0.6240, -1.0613, 0.0103)
# Structure tokenizer training losses (paper A.1.7.3, Algorithms 10-11; PAPER_NOTES §2.10).
# Distogram: 64 bins on C-beta distance with the 63 AlphaFold2 edges linspace(2.3125, 21.6875) Angstrom (step
# 0.3125; the paper prints 0.3075, a typo: PAPER_NOTES §7 item 3). Binned directions: 16 equal bins on [-1, 1].
DISTOGRAM_FIRST_EDGE = 2.3125
DISTOGRAM_LAST_EDGE = 21.6875
DISTANCE_LOSS_CLAMP = 25.0  # squared distance error clamped at (5 A)^2 (Algorithm 10)
DIRECTION_LOSS_CLAMP = 20.0  # squared Gram-matrix error clamped at 20 (Algorithm 11)
FAPE_CLAMP = 10.0  # frame-aligned point error clamped at 10 A (AlphaFold2; our addition to the tokenizer losses)
PEPTIDE_BOND_MAX_LENGTH = 2.0  # C(i)-N(i+1) farther apart: no bond (as structure.residue_constants)
ALL_ATOM_BOND_CUTOFF = 2.0  # atoms of one residue closer than this are "bonded" (all-atom direction loss)
ALL_ATOM_MAX_DIRECTION_VECTORS = 10_000  # the paper subsamples the all-atom direction vectors to at most this
# Virtual C-beta (paper A.1.7.3.1, distogram loss): a*n + b*(N->CA) + c*(CA->C) + CA, n = (N->CA) x (CA->C).
VIRTUAL_CB_COEFFS: tuple[float, float, float] = (-0.58273431, 0.56802827, -0.54067466)

# --------------------------------------------------------------------------------------------------------
# Structure encoder (spec §6).
# --------------------------------------------------------------------------------------------------------
ENCODER_N_NEIGHBORS = 16
ENCODER_MAX_RELATIVE_POSITION = 32  # relative offsets clamped to [-32, 32], then shifted by +33
ENCODER_MISSING_COST = 1e6  # knn cost of a pair with missing coordinates: 1e6 + 100 * |i - j|
ENCODER_MISSING_COST_PER_OFFSET = 100.0

# --------------------------------------------------------------------------------------------------------
# Iterative decoding and sampling (spec §10.3-10.4, §11, §13.11-12; paper A.1.10, Algorithm 14).
# --------------------------------------------------------------------------------------------------------
# Ids the official sampler may emit per track: all ids minus the tokenizer's specials (spec §10.4).
STRUCTURE_SAMPLEABLE_IDS: tuple[int, ...] = tuple(range(STRUCTURE_N_CODES))
SS8_SAMPLEABLE_IDS: tuple[int, ...] = tuple(range(3, SS8_VOCAB_SIZE))
SASA_SAMPLEABLE_IDS: tuple[int, ...] = tuple(range(SASA_FIRST_BIN, SASA_VOCAB_SIZE))
# keep = int(schedule((t + 1) / num_steps) * total + 0.1), float32, truncated (spec §10.3, §13.12).
SCHEDULE_ROUNDING_OFFSET = 0.1
# Annealed temperature T = max(T0 - t / max(1, num_steps - 1), 0.001) ** 2 (spec §10.3).
ANNEALED_TEMPERATURE_FLOOR = 0.001
# Function track: a position becomes all-<none> when the mean over depths of p(<none>) exceeds this (§10.4).
FUNCTION_P_NONE_THRESHOLD = 0.05
# Residue annotations: the 16 largest logits, kept where sigmoid >= 0.5 (spec §10.4).
RESIDUE_ANNOTATION_THRESHOLD = 0.5
# Sampled SASA floats: expected value over tokens 3..17 with the bin midpoints of [0, 0.8, ..., 151.4];
# token 18 (the open top bin) contributes 0, and argmax == 18 gives +inf (spec §10.4, §13.14).
SASA_OPEN_BIN_TOKEN = SASA_VOCAB_SIZE - 1

# --------------------------------------------------------------------------------------------------------
# Function decoder decoding defaults (spec §8).
# --------------------------------------------------------------------------------------------------------
FUNCTION_DECODER_INTERPRO_THRESHOLD = 0.1
FUNCTION_DECODER_KEYWORD_THRESHOLD = 0.5
ANNOTATION_GAP_MERGE = 3
ANNOTATION_MIN_LENGTH = 5
