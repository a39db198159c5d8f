"""``openesm3 build-function-vocab CORPUS OUT``: make a function vocabulary for your own annotation source.

Inputs (tab-separated, UTF-8, a header line first, ``#`` lines are comments):

- ``CORPUS``: one row per (protein, label), columns ``protein_id`` and ``label`` (others ignored, so
  e.g. ``start``/``end`` may stay). A label is a term id (or text containing an ``IPR`` id of a term) or a
  keyword. The corpus sets the IDF: each protein is one document.
- ``--terms TERMS``: columns ``term_id, term_type, term_name, keywords``; ``keywords`` comma-separated, repeats
  count as term frequency; empty = extracted from ``term_name``. Without ``--terms`` the terms and keyword
  list of an existing vocabulary are reused (``--base-vocab``, or the usual search: $OPENESM3_VOCAB_DIR, the
  installed esm package), so only the IDF and the hyperplanes are new.
- ``--keywords FILE``: the keyword list, one per line (default: every keyword of the terms, sorted).
- ``--residue-corpus FILE``: optional, columns ``protein_id, label``: also write the residue-annotation CSV,
  keeping labels seen in >= ``--residue-min-proteins`` proteins. Without it, ``--overwrite`` removes an earlier
  build's residue-annotation CSV from ``OUT``, which would otherwise pass for this build's.

``OUT`` receives the official file names and formats; load it with ``FunctionVocabulary.load(OUT)`` or point
``OPENESM3_VOCAB_DIR`` at it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-function-vocab",
        help="build a function-keyword vocabulary (IDF, LSH hyperplanes, term lists) from your own annotations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("corpus", type=Path, help="TSV: protein_id, label (one row per annotation)")
    parser.add_argument("out", help="output directory (created)")  # text: pathlib would read ./- as -
    parser.add_argument("--terms", type=Path, help="TSV: term_id, term_type, term_name, keywords")
    parser.add_argument("--keywords", type=Path, help="keyword list, one per line")
    parser.add_argument("--base-vocab", type=Path, help="reuse the terms and keywords of this vocabulary")
    parser.add_argument("--seed", type=int, default=0, help="seed of the LSH hyperplanes (default 0)")
    parser.add_argument("--residue-corpus", type=Path, help="TSV: protein_id, label of residue-level annotations")
    parser.add_argument(
        "--residue-min-proteins", type=int, default=1,
        help="keep residue labels seen in at least this many proteins (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", "--force", dest="overwrite", action="store_true",
        help="replace the vocabulary already in OUT: its files, and its residue-annotation CSV, which is removed "
        "when this build has none (no --residue-corpus) (default: refuse; --force is the former name)",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from openesm3 import constants as C  # noqa: PLC0415
    from openesm3.cli.common import check_output_dir, refuse_stdout  # noqa: PLC0415
    from openesm3.errors import InputError, OutputsExistError  # noqa: PLC0415
    from openesm3.tokenizers import build  # noqa: PLC0415
    from openesm3.tokenizers.vocabulary import FUNCTION_FILES, FunctionVocabulary  # noqa: PLC0415
    from openesm3.utils.checks import check_seed  # noqa: PLC0415

    refuse_stdout(args.out, "OUT", "build-function-vocab writes a vocabulary directory")
    out = Path(args.out)
    check_seed(args.seed, "--seed")
    check_output_dir(args.out, "OUT")  # a file there or on its way, a read-only place: before the build, not after
    build.check_vocabulary_directory(out)  # a directory named like one of its files: before the build too
    # The residue CSV is this build's or none: one of an earlier build, left beside the new files, would be read as
    # this vocabulary's, so it is replaced or (no --residue-corpus) removed, and refused without --overwrite.
    outputs = [*FUNCTION_FILES, C.RESIDUE_ANNOTATION_VOCAB_FILE]
    existing = [name for name in outputs if (out / name).exists()]
    stale_residue = not args.residue_corpus and C.RESIDUE_ANNOTATION_VOCAB_FILE in existing
    if existing and not args.overwrite:
        removes = f" ({C.RESIDUE_ANNOTATION_VOCAB_FILE} then removed: no --residue-corpus)" if stale_residue else ""
        raise OutputsExistError(
            f"{out}: already holds {', '.join(existing)}; give a new directory, or --overwrite to replace them"
            + removes
        )
    corpus = build.read_annotation_corpus(args.corpus)
    if args.terms is not None:
        terms = build.read_terms(args.terms)
        keywords = build.read_keyword_list(args.keywords) if args.keywords else None
        extract = True
    else:
        if args.keywords is not None:
            raise InputError("--keywords needs --terms (without --terms the base vocabulary's keywords are used)")
        base = FunctionVocabulary.load(args.base_vocab, with_hyperplanes=False)
        terms = [build.FunctionTerm(e.id, e.type, e.name, base.interpro_keywords.get(e.id, ())) for e in base.entries]
        keywords = list(base.keywords)
        extract = False  # terms without keywords in the base vocabulary stay without
    # The input files are checked line by line as they are read; what remains names the corpus file or the term.
    vocabulary = build.build_function_vocabulary(
        terms, corpus, keywords=keywords, seed=args.seed, extract_missing_keywords=extract, corpus_name=str(args.corpus)
    )
    residue = None
    if args.residue_corpus:  # read and built before anything is written: a bad residue corpus leaves OUT alone
        counts = build.count_label_proteins(build.read_annotation_corpus(args.residue_corpus))
        try:
            residue = build.build_residue_annotation_vocabulary(counts, min_proteins=args.residue_min_proteins)
        except InputError as exc:
            raise InputError(f"{args.residue_corpus}: {exc}") from exc
    paths = build.write_vocabulary_directory(out, vocabulary, residue)  # without residue: removes an earlier one
    if residue is not None:
        print(f"residue annotations: {len(residue.labels)} labels", file=sys.stderr)
    elif stale_residue:
        print(f"removed {out / C.RESIDUE_ANNOTATION_VOCAB_FILE}: an earlier build's residue annotations (no "
              "--residue-corpus)", file=sys.stderr)  # fmt: skip
    idf = vocabulary.idf
    print(
        f"{len(corpus)} proteins, {vocabulary.n_interpro} terms, {vocabulary.n_keywords} keywords, "
        f"IDF {float(idf.min()):.3f}..{float(idf.max()):.3f}, seed {args.seed}",
        file=sys.stderr,
    )
    for path in paths:
        print(path)
    return 0
