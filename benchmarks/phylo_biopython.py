"""Biopython's parsimony search on a PhyloGFN alignment, the reference for benchmarks/phylo_parsimony.py.

    python benchmarks/phylo_biopython.py --dataset DS1 --out benchmarks/results/phylo_biopython_DS1.json

``ParsimonyTreeConstructor(NNITreeSearcher(ParsimonyScorer()))`` from its default start (a UPGMA
tree on identity distances), on the same alignment; the tree found is re-scored with
gfn's Fitch implementation (gaps a fifth state, as Biopython's character sets do) and both
scores are written with the wall and CPU times.  Needs ``pip install biopython`` (the ``phylo`` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import write_json  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="DS1")
    p.add_argument("--taxa", type=int, default=0, help="first k taxa only (0: all)")
    p.add_argument("--data-dir", default="")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    from Bio.Align import MultipleSeqAlignment
    from Bio.Phylo.TreeConstruction import NNITreeSearcher, ParsimonyScorer, ParsimonyTreeConstructor
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord

    from gfn.envs.phylo import PhyloTree, read_fasta
    from gfn.envs.phylo.metrics import biopython_to_nested, build_forest
    from gfn.envs.sequences.data import data_file

    path = data_file(args.data_dir or None, f"phylo/{args.dataset}.fasta", "phylo")
    names, seqs = read_fasta(path)
    if args.taxa:
        names, seqs = names[:args.taxa], seqs[:args.taxa]
    aln = MultipleSeqAlignment([SeqRecord(Seq(s), id=nm) for nm, s in zip(names, seqs)])
    scorer = ParsimonyScorer()
    t0, c0 = time.perf_counter(), time.process_time()
    tree = ParsimonyTreeConstructor(NNITreeSearcher(scorer)).build_tree(aln)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    bio_score = scorer.get_score(tree, aln)

    env = PhyloTree(args.dataset, taxa=args.taxa, data_dir=args.data_dir)
    nested = biopython_to_nested(tree.root, env.alignment.names)
    ours = float(env.parsimony(build_forest(env, nested))[0])
    report = {"dataset": args.dataset, "taxa": env.n, "method": "Biopython ParsimonyTreeConstructor + NNI "
              "(UPGMA identity start)", "biopython_score": int(bio_score), "gfn_fitch_score": ours,
              "wall_s": wall, "cpu_s": cpu, "greedy_parsimony": env.greedy_parsimony(), "tree": str(nested)}
    print(report)
    if args.out:
        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
